import ArgumentParser
import Foundation
import PrefabGateway

/// `prefab-gateway install`: gives each Python prefab with a `requirements.txt` its own `.venv`.
struct Install: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Create a .venv with the requirements.txt packages for each Python prefab that has one."
    )

    @Argument(help: "Prefab folders to install (default: every one under the prefabs directory).")
    var folders: [String] = []

    @OptionGroup var prefabs: PrefabsOptions

    @Option(help: "The Python that creates the environments (env PREFAB_GATEWAY_PYTHON; default python3).")
    var python: String?

    func run() throws {
        let directory = prefabs.url
        let candidates =
            folders.isEmpty
            ? ((try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []).sorted().map {
                directory.appendingPathComponent($0)
            }
            : folders.map { URL(fileURLWithPath: $0) }
        let python = python ?? Environment.value("PREFAB_GATEWAY_PYTHON") ?? "python3"
        var installed = 0
        for folder in candidates {
            let requirements = folder.appendingPathComponent("requirements.txt")
            guard FileManager.default.fileExists(atPath: requirements.path) else { continue }
            print("\(folder.lastPathComponent): creating .venv and installing requirements.txt")
            try runStep(python, ["-m", "venv", ".venv"], in: folder)
            try runStep(".venv/bin/python", ["-m", "pip", "install", "--quiet", "-r", "requirements.txt"], in: folder)
            installed += 1
        }
        print("installed \(installed) prefab environment\(installed == 1 ? "" : "s")")
    }

    private func runStep(_ command: String, _ arguments: [String], in folder: URL) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [command] + arguments
        process.currentDirectoryURL = folder
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw ValidationError(
                "\(folder.lastPathComponent): `\(([command] + arguments).joined(separator: " "))` failed"
            )
        }
    }
}
