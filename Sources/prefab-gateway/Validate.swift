import ArgumentParser
import Foundation
import PrefabGateway

/// `prefab-gateway validate [dir]`: checks every manifest; exits non-zero on any problem.
struct Validate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check the manifests of a prefabs directory and that every function has an implementation."
    )

    @Argument(help: "The prefabs directory (default: --prefabs, PREFAB_GATEWAY_PREFABS or ./prefabs).")
    var directory: String?

    @OptionGroup var prefabs: PrefabsOptions

    func run() throws {
        var options = prefabs
        if let directory { options.directory = directory }
        let catalog = options.loadCatalog()
        for problem in catalog.problems {
            print("error: \(problem)")
        }
        let prefabCount = Set(catalog.functions.values.map(\.prefab)).count
        if catalog.problems.isEmpty {
            print("ok: \(catalog.functions.count) functions in \(prefabCount) prefabs under \(options.url.path)")
        } else {
            let count = catalog.problems.count
            print("\(count) problem\(count == 1 ? "" : "s"); \(catalog.functions.count) functions would load")
            throw ExitCode.failure
        }
    }
}
