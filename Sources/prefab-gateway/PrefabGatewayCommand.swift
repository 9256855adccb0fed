import ArgumentParser
import BenchPrefabs
import Foundation
import Logging
import PrefabGateway
import PrefabKit
import Prefabs

@main
struct PrefabGatewayCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "prefab-gateway",
        abstract: "Serves the functions of prefab folders over HTTP, streaming their events as Server-Sent Events.",
        subcommands: [Serve.self, MCPStdio.self, List.self, Validate.self, Install.self, Invoke.self, New.self],
        defaultSubcommand: Serve.self
    )
}

/// Where the prefabs are: shared by every command.
struct PrefabsOptions: ParsableArguments {
    @Option(
        name: .customLong("prefabs"), help: "The prefabs directory (env PREFAB_GATEWAY_PREFABS; default ./prefabs).")
    var directory: String?

    var url: URL {
        URL(fileURLWithPath: directory ?? Environment.value("PREFAB_GATEWAY_PREFABS") ?? "prefabs")
    }

    func loadCatalog() -> PrefabCatalog {
        PrefabCatalog.load(from: url, compiled: CompiledPrefabs.all)
    }
}

/// Reads the `PREFAB_GATEWAY_*` environment variables that stand in for flags.
enum Environment {
    static func value(_ name: String) -> String? {
        ProcessInfo.processInfo.environment[name].flatMap { $0.isEmpty ? nil : $0 }
    }

    static func parse<T: LosslessStringConvertible>(_ name: String) throws -> T? {
        guard let text = value(name) else { return nil }
        guard let parsed = T(text) else { throw ValidationError("\(name)=\(text) is not a valid value") }
        return parsed
    }
}

/// Every Swift prefab compiled into this executable, by folder: the examples and the benchmark ones.
enum CompiledPrefabs {
    static let all = Prefabs.PrefabRegistry.functions.merging(BenchPrefabs.PrefabRegistry.functions) { example, _ in
        example
    }
}
