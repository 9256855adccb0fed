import Foundation
import PrefabKit
import Testing

@testable import Prefabs

/// The repository's `prefabs/` folder, which the registry plugin compiles into `Prefabs`.
let examplesDirectory = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent()
    .deletingLastPathComponent()
    .deletingLastPathComponent()
    .appendingPathComponent("prefabs")

/// The manifest of the prefab in `prefabs/<folder>/`.
func exampleManifest(_ folder: String) throws -> PrefabManifest {
    try PrefabManifest(
        parsing: Data(contentsOf: examplesDirectory.appendingPathComponent("\(folder)/prefab-manifest.json")))
}

/// The Swift prefab folders under `prefabs/` as they are on disk when the tests run, counted as
/// the registry plugin counts them: a folder with a `prefab-manifest.json` and a `.swift` file.
/// Read from the tree, not listed here, so that a folder the build did not register is caught and
/// a prefab added by `prefab-gateway new` is checked like the examples.
func swiftPrefabFolders() throws -> [String] {
    let files = FileManager.default
    return try files.contentsOfDirectory(atPath: examplesDirectory.path).filter { folder in
        let contents = (try? files.contentsOfDirectory(atPath: examplesDirectory.appendingPathComponent(folder).path))
        return contents?.contains("prefab-manifest.json") == true
            && contents?.contains { $0.hasSuffix(".swift") } == true
    }.sorted()
}

@Suite("Generated PrefabRegistry")
struct RegistryTests {
    /// The examples the suites of this target call by name, with their kind.
    static let examples: [(folder: String, streaming: Bool)] = [
        ("batch_process", true), ("chat_stream", true), ("echo", false), ("fail_midway", true), ("report", true),
        ("wizard", true),
    ]

    @Test("the Swift folders found under prefabs/ include every example")
    func findsTheExamples() throws {
        let folders = try swiftPrefabFolders()
        #expect(Set(Self.examples.map(\.folder)).isSubset(of: folders), "found \(folders)")
    }

    @Test(
        "every Swift folder under prefabs/ is registered with each function of its manifest, of its kind",
        arguments: try swiftPrefabFolders()
    )
    func registered(folder: String) throws {
        let manifest = try exampleManifest(folder)
        let functions = try #require(
            PrefabRegistry.functions[folder], "prefabs/\(folder) is not in the registry of this build")
        #expect(functions.keys.sorted() == manifest.functions.map(\.name).sorted())
        for function in manifest.functions {
            #expect(functions[function.name]?.isStreaming == function.streaming, "\(function.name)")
        }
    }

    @Test("no folder under prefabs/ without Swift code is in the registry: the Python prefabs are not")
    func onlySwiftFolders() throws {
        let others = try Set(FileManager.default.contentsOfDirectory(atPath: examplesDirectory.path))
            .subtracting(swiftPrefabFolders())
        #expect(others.isSuperset(of: ["python_batch", "python_wizard"]))
        #expect(others.intersection(PrefabRegistry.functions.keys).isEmpty)
    }

    @Test("each example registers one function of its name, of its kind", arguments: examples)
    func kind(folder: String, streaming: Bool) throws {
        let functions = try #require(PrefabRegistry.functions[folder])
        #expect(functions.keys.sorted() == [folder])
        let function = try #require(functions[folder])
        #expect(function.isStreaming == streaming)
    }

    @Test("a registered function runs: echo through the registry")
    func runsThroughRegistry() throws {
        guard case .result(let echo) = PrefabRegistry.functions["echo"]?["echo"] else {
            Issue.record("echo is not registered as a result function")
            return
        }
        #expect(try call(echo, inputs: ["text": "hi"]) == ["text": "hi", "length": 2])
    }
}
