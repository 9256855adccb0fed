import Foundation
import PrefabKit
import Testing

@testable import Prefabs

/// The manifest of the example prefab in `prefabs/<folder>/`.
func exampleManifest(_ folder: String) throws -> PrefabManifest {
    let url = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent()
        .deletingLastPathComponent()
        .deletingLastPathComponent()
        .appendingPathComponent("prefabs/\(folder)/prefab-manifest.json")
    return try PrefabManifest(parsing: Data(contentsOf: url))
}

@Suite("Generated PrefabRegistry")
struct RegistryTests {
    static let kinds: [(folder: String, streaming: Bool)] = [
        ("batch_process", true), ("chat_stream", true), ("echo", false), ("fail_midway", true), ("report", true),
    ]

    @Test("the registry holds exactly the six example folders")
    func folders() {
        #expect(
            PrefabRegistry.functions.keys.sorted() == [
                "batch_process", "chat_stream", "echo", "fail_midway", "report", "wizard",
            ])
    }

    @Test("each example folder registers one function of its name, with the right kind", arguments: kinds)
    func kind(folder: String, streaming: Bool) throws {
        let functions = try #require(PrefabRegistry.functions[folder])
        #expect(functions.keys.sorted() == [folder])
        let function = try #require(functions[folder])
        #expect(function.isStreaming == streaming)
    }

    @Test("the registered kind matches the manifest's streaming flag", arguments: kinds.map(\.folder))
    func kindMatchesManifest(folder: String) throws {
        let manifest = try exampleManifest(folder)
        #expect(manifest.name == folder)
        #expect(manifest.functions.map(\.name) == [folder])
        let registered = try #require(PrefabRegistry.functions[folder]?[folder])
        #expect(registered.isStreaming == manifest.functions[0].streaming)
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
