import Foundation
import PackagePlugin

/// Generates the registry of Swift prefabs from the manifests under `prefabs/`, so that a new
/// prefab folder is picked up by the next build with no edit outside it.
@main
struct PrefabRegistryPlugin: BuildToolPlugin {
    func createBuildCommands(context: PluginContext, target: any Target) throws -> [Command] {
        guard let target = target as? SourceModuleTarget else { return [] }
        let manifests = target.sourceFiles.map(\.url).filter { $0.lastPathComponent == "prefab-manifest.json" }
        let swiftFolders = Set(target.sourceFiles(withSuffix: "swift").map { $0.url.deletingLastPathComponent().path })
        let output = context.pluginWorkDirectoryURL.appending(path: "PrefabRegistry.swift")
        var arguments = ["--output", output.path]
        for manifest in manifests.sorted(by: { $0.path < $1.path }) {
            let folder = manifest.deletingLastPathComponent().path
            arguments += [swiftFolders.contains(folder) ? "--swift" : "--other", manifest.path]
        }
        // Every non-Swift file is an input: manifest edits re-run the generator, and SwiftPM does
        // not warn about files it cannot handle.
        let inputs = target.sourceFiles.filter { $0.type != .source }.map(\.url)
        return [
            .buildCommand(
                displayName: "Generating the prefab registry from \(manifests.count) manifests",
                executable: try context.tool(named: "PrefabRegistryGenerator").url,
                arguments: arguments,
                inputFiles: inputs,
                outputFiles: [output]
            )
        ]
    }
}
