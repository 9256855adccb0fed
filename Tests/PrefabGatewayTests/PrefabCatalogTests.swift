import Foundation
import PrefabGateway
import PrefabKit
import Testing

/// Loading prefab folders: each broken one is reported with file, JSON path and reason, and skipped.
@Suite(.timeLimit(.minutes(1))) struct PrefabCatalogTests {
    let root = FileManager.default.temporaryDirectory.appendingPathComponent("catalog-\(UUID().uuidString)")
    let noop: PrefabFunction = .streaming({ _, _ in })

    func load(_ manifests: [String: String], compiled: [String: [String: PrefabFunction]]) throws -> PrefabCatalog {
        for (folder, text) in manifests { try LiveGateway.writeManifest(text, folder: folder, in: root) }
        return PrefabCatalog.load(from: root, compiled: compiled)
    }

    @Test func loadsGoodPrefabsAndReportsEachBrokenOne() throws {
        defer { try? FileManager.default.removeItem(at: root) }
        let catalog = try load(
            [
                "alpha":
                    #"{"functions": [{"name": "shared", "streaming": true}, {"name": "alpha", "streaming": true}]}"#,
                "beta": #"{"functions": [{"name": "shared", "streaming": true}]}"#,
                "gamma": #"{"functions": [{"description": "no name"}]}"#,
                "delta": "{\"functions\": [\n  {\"name\": \"d\",}\n]}",
                "epsilon": #"{"functions": [{"name": "unbuilt", "streaming": true}]}"#,
            ],
            compiled: [
                "alpha": ["shared": noop, "alpha": noop], "beta": ["shared": noop], "epsilon": [:],
            ]
        )
        #expect(catalog.functions.keys.sorted() == ["alpha", "shared"])
        #expect(catalog.functions["shared"]?.prefab == "alpha")
        let problems = Dictionary(grouping: catalog.problems) {
            URL(fileURLWithPath: $0.file).deletingLastPathComponent().lastPathComponent
        }
        #expect(problems["beta"]?.first?.path == "$.functions[0].name")
        #expect(problems["beta"]?.first?.reason.contains("duplicate function name 'shared'") == true)
        #expect(problems["gamma"]?.first?.path == "$.functions[0].name")
        #expect(problems["delta"]?.first?.reason.contains("line 2") == true)
        #expect(problems["epsilon"]?.first?.reason.contains("no implementation") == true)
        #expect(catalog.problems.count == 4)
    }

    @Test func aManifestThatIsADirectoryOrMissingIsReported() throws {
        defer { try? FileManager.default.removeItem(at: root) }
        try FileManager.default.createDirectory(
            at: root.appendingPathComponent("dir/prefab-manifest.json"),
            withIntermediateDirectories: true
        )
        try FileManager.default.createDirectory(
            at: root.appendingPathComponent("empty"), withIntermediateDirectories: true)
        let catalog = PrefabCatalog.load(from: root, compiled: [:])
        #expect(catalog.functions.isEmpty)
        #expect(
            catalog.problems.map(\.reason) == [
                "is a directory: the manifest must be a regular file",
                "missing: a prefab folder needs a prefab-manifest.json",
            ])
    }

    /// A process prefab's call waits on its process: it cannot run on an event loop.
    @Test func aProcessPrefabThatAsksForTheEventLoopIsReported() throws {
        defer { try? FileManager.default.removeItem(at: root) }
        try LiveGateway.writeManifest(
            #"{"functions": [{"name": "py", "streaming": true, "runs_on_event_loop": true}]}"#, folder: "py", in: root)
        try "def py(inputs, context):\n    yield {'type': 'done'}\n".write(
            to: root.appendingPathComponent("py/main.py"), atomically: true, encoding: .utf8)
        let catalog = PrefabCatalog.load(from: root, compiled: [:])
        #expect(catalog.functions.isEmpty)
        #expect(catalog.problems.first?.path == "$.functions[0].runs_on_event_loop")
        #expect(catalog.problems.first?.reason.contains("only a compiled Swift function") == true)
    }

    @Test func aStreamingFlagThatDiffersFromTheBuildIsReported() throws {
        defer { try? FileManager.default.removeItem(at: root) }
        let catalog = try load(
            ["flip": #"{"functions": [{"name": "flip", "streaming": false}]}"#],
            compiled: ["flip": ["flip": noop]]
        )
        #expect(catalog.functions.isEmpty)
        #expect(catalog.problems.first?.path == "$.functions[0].streaming")
    }

    @Test func theExamplePythonPrefabsLoadByConventionOrRuntimeBlock() throws {
        // The repository's own prefabs folder, as `serve` reads it, without the compiled Swift ones.
        // A prefab added there (say by `prefab-gateway new`) is fine: only the examples are named.
        let prefabs = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent(
            "../../prefabs"
        ).standardizedFileURL
        let catalog = PrefabCatalog.load(from: prefabs, compiled: [:])
        #expect(Set(["batch_items", "count_lines", "flaky_steps", "wizard_py"]).isSubset(of: catalog.functions.keys))
        #expect(catalog.functions.values.allSatisfy { $0.runtime == "python" })
        // Every folder with Swift code, and only those, is reported as not built.
        let swiftFolders = try FileManager.default.contentsOfDirectory(atPath: prefabs.path).filter {
            let files = try? FileManager.default.contentsOfDirectory(atPath: prefabs.appendingPathComponent($0).path)
            return files?.contains { $0.hasSuffix(".swift") } == true
        }
        let unbuilt = catalog.problems.map {
            URL(fileURLWithPath: $0.file).deletingLastPathComponent().lastPathComponent
        }
        #expect(unbuilt.sorted() == swiftFolders.sorted())
        #expect(
            Set(["batch_process", "chat_stream", "echo", "fail_midway", "report", "wizard"]).isSubset(of: unbuilt))
    }
}
