import Foundation
import PrefabGateway
import PrefabKit
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Broken and hostile prefab folders: each is a clear load problem naming its file, never a crash
/// or a hang, and a good prefab beside it still loads.
@Suite(.timeLimit(.minutes(1))) struct HostileManifestTests {
    /// One hostile prefab folder, made by `make` in the prefabs root (and an `outside` folder).
    struct Case: CustomTestStringConvertible, Sendable {
        var name: String
        /// Words the problem's reason must contain.
        var reason: String
        var make: @Sendable (_ prefabs: URL, _ outside: URL) throws -> Void

        var testDescription: String { name }
    }

    static func manifest(_ folder: String, _ text: String, files: [String: String] = [:]) -> Case.Make {
        { prefabs, _ in
            try LiveGateway.writeManifest(text, folder: folder, in: prefabs)
            for (path, content) in files {
                try content.write(
                    to: prefabs.appendingPathComponent("\(folder)/\(path)"), atomically: true, encoding: .utf8)
            }
        }
    }

    static let python = #"{"runtime": {"kind": "python", "entry": "main.py"}, "functions": [{"name": "p"}]}"#

    static let cases: [Case] =
        [
            Case(
                name: "functions of the wrong type", reason: "must be an array",
                make: manifest("bad", #"{"functions": "f"}"#)),
            Case(name: "no functions", reason: "missing: a manifest lists its functions", make: manifest("bad", "{}")),
            Case(
                name: "a top level that is not an object", reason: "must be a JSON object", make: manifest("bad", "[]")),
            Case(
                name: "fields of the wrong type",
                reason: "must be a",
                make: manifest("bad", #"{"functions": [{"name": 3, "streaming": "yes"}]}"#)
            ),
            Case(
                name: "a function name that is not a URL segment",
                reason: "name",
                make: manifest("bad", #"{"functions": [{"name": "../x", "streaming": true}]}"#)
            ),
            Case(
                name: "a function twice in one manifest",
                reason: "duplicate function name 'd'",
                make: manifest(
                    "bad", #"{"functions": [{"name": "d", "streaming": true}, {"name": "d", "streaming": true}]}"#)
            ),
            Case(
                name: "a function name another prefab has",
                reason: "duplicate function name 'good'",
                make: manifest(
                    "zz_dup",
                    #"{"runtime": {"kind": "python"}, "functions": [{"name": "good"}]}"#,
                    files: ["main.py": "def good():\n    return 1\n"]
                )
            ),
            Case(name: "invalid JSON", reason: "invalid JSON", make: manifest("bad", #"{"functions": ["#)),
            Case(
                name: "invalid UTF-8",
                reason: "invalid JSON",
                make: { prefabs, _ in
                    try LiveGateway.writeManifest("", folder: "bad", in: prefabs)
                    let bytes: [UInt8] =
                        Array(#"{"functions": [{"name": ""#.utf8) + [0xFF, 0xFE] + Array(#""}]}"#.utf8)
                    try Data(bytes).write(to: prefabs.appendingPathComponent("bad/prefab-manifest.json"))
                }
            ),
            Case(
                name: "nesting a million deep",
                reason: "invalid JSON",
                make: manifest("bad", String(repeating: "[", count: 1_000_000))
            ),
            Case(name: "an empty file", reason: "is empty", make: manifest("bad", "")),
            Case(
                name: "a huge file",
                reason: "a manifest may be at most",
                make: manifest("bad", #"{"functions": [{"name": "big"}]}"# + String(repeating: " ", count: 2 << 20))
            ),
            Case(
                name: "a manifest that is a directory",
                reason: "is a directory",
                make: { prefabs, _ in
                    try FileManager.default.createDirectory(
                        at: prefabs.appendingPathComponent("bad/prefab-manifest.json"),
                        withIntermediateDirectories: true)
                }
            ),
            Case(
                name: "a manifest that is a FIFO (reading it would block)",
                reason: "must be a regular file",
                make: { prefabs, _ in
                    let folder = prefabs.appendingPathComponent("bad")
                    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
                    guard mkfifo(folder.appendingPathComponent("prefab-manifest.json").path, 0o644) == 0 else {
                        throw CocoaError(.fileWriteUnknown)
                    }
                }
            ),
            Case(
                name: "a prefab folder linked from outside the prefabs directory",
                reason: "outside",
                make: { prefabs, outside in
                    try LiveGateway.writeManifest(python, folder: "elsewhere", in: outside)
                    try "def p():\n    return 1\n".write(
                        to: outside.appendingPathComponent("elsewhere/main.py"), atomically: true, encoding: .utf8)
                    try FileManager.default.createSymbolicLink(
                        at: prefabs.appendingPathComponent("bad"),
                        withDestinationURL: outside.appendingPathComponent("elsewhere"))
                }
            ),
            Case(
                name: "a dangling link as a prefab folder",
                reason: "does not exist",
                make: { prefabs, outside in
                    try FileManager.default.createSymbolicLink(
                        at: prefabs.appendingPathComponent("bad"),
                        withDestinationURL: outside.appendingPathComponent("gone"))
                }
            ),
            Case(
                name: "a manifest linked from outside its folder",
                reason: "outside",
                make: { prefabs, outside in
                    try FileManager.default.createDirectory(at: outside, withIntermediateDirectories: true)
                    try python.write(to: outside.appendingPathComponent("m.json"), atomically: true, encoding: .utf8)
                    try FileManager.default.createDirectory(
                        at: prefabs.appendingPathComponent("bad"), withIntermediateDirectories: true)
                    try FileManager.default.createSymbolicLink(
                        at: prefabs.appendingPathComponent("bad/prefab-manifest.json"),
                        withDestinationURL: outside.appendingPathComponent("m.json"))
                }
            ),
            Case(
                name: "a missing entry file", reason: "does not exist in the prefab folder",
                make: manifest("bad", python)),
            Case(
                name: "an entry file that escapes with ../",
                reason: "is outside the prefab folder",
                make: manifest(
                    "bad", #"{"runtime": {"kind": "python", "entry": "../good/main.py"}, "functions": [{"name": "p"}]}"#
                )
            ),
            Case(
                name: "an entry file linked from outside",
                reason: "is outside the prefab folder",
                make: { prefabs, outside in
                    try FileManager.default.createDirectory(at: outside, withIntermediateDirectories: true)
                    try "def p():\n    return 1\n".write(
                        to: outside.appendingPathComponent("main.py"), atomically: true, encoding: .utf8)
                    try LiveGateway.writeManifest(python, folder: "bad", in: prefabs)
                    try FileManager.default.createSymbolicLink(
                        at: prefabs.appendingPathComponent("bad/main.py"),
                        withDestinationURL: outside.appendingPathComponent("main.py"))
                }
            ),
            Case(
                name: "a command that escapes with ../",
                reason: "is outside the prefab folder",
                make: manifest(
                    "bad",
                    #"{"runtime": {"kind": "process", "command": ["../../bin/sh"]}, "functions": [{"name": "p"}]}"#)
            ),
            Case(
                name: "a command that does not exist",
                reason: "does not exist or is not executable",
                make: manifest(
                    "bad",
                    #"{"runtime": {"kind": "process", "command": ["./missing.sh"]}, "functions": [{"name": "p"}]}"#)
            ),
            Case(
                name: "an unknown runtime kind",
                reason: "unknown runtime kind",
                make: manifest("bad", #"{"runtime": {"kind": "cobol"}, "functions": [{"name": "p"}]}"#)
            ),
        ] + workerCases

    /// Worker settings out of type or range (each would start no worker, or far too many).
    static let workerCases: [Case] = [
        (
            "an unknown isolation", #""isolation": "thread""#,
            #"$.runtime.isolation: must be "worker" or "process-per-call""#
        ),
        (
            "an isolation that is not a string", #""isolation": 1"#,
            #"$.runtime.isolation: must be "worker" or "process-per-call""#
        ),
        ("workers below 0", #""workers": -1"#, "$.runtime.workers: must be an integer from 0 to 64"),
        ("workers above 64", #""workers": 65"#, "$.runtime.workers: must be an integer from 0 to 64"),
        ("workers as a string", #""workers": "2""#, "$.runtime.workers: must be an integer from 0 to 64"),
        ("workers as a fraction", #""workers": 1.5"#, "$.runtime.workers: must be an integer from 0 to 64"),
        ("workers as a boolean", #""workers": true"#, "$.runtime.workers: must be an integer from 0 to 64"),
        ("max_calls of 0", #""max_calls": 0"#, "$.runtime.max_calls: must be an integer at least 1"),
        ("max_workers of 0", #""max_workers": 0"#, "$.runtime.max_workers: must be an integer at least 1"),
        (
            "max_workers below workers", #""workers": 4, "max_workers": 2"#,
            "$.runtime.max_workers: is 2, fewer than the 4 workers"
        ),
        (
            "workers with a process per call", #""isolation": "process-per-call", "max_calls": 5"#,
            #"$.runtime.max_calls: has no meaning with "isolation": "process-per-call""#
        ),
        (
            "workers for a command", #""kind": "process", "command": ["/bin/true"], "workers": 2"#,
            "$.runtime.workers: only Python prefabs have workers"
        ),
    ].map { name, runtime, reason in
        Case(
            name: name, reason: reason,
            make: manifest(
                "bad", #"{"runtime": {\#(runtime)}, "functions": [{"name": "p"}]}"#,
                files: ["main.py": "def p():\n    return 1\n"]))
    }

    @Test(arguments: cases)
    func aHostilePrefabIsAClearProblemAndTheGoodOneStillLoads(_ hostile: Case) throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("hostile-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: root) }
        let prefabs = root.appendingPathComponent("prefabs")
        try LiveGateway.writeManifest(
            #"{"functions": [{"name": "good", "streaming": true}]}"#, folder: "good", in: prefabs)
        try hostile.make(prefabs, root.appendingPathComponent("outside"))
        let catalog = PrefabCatalog.load(from: prefabs, compiled: ["good": ["good": .streaming { _, _ in }]])
        #expect(catalog.functions.keys.sorted() == ["good"])
        #expect(catalog.problems.count >= 1)
        let problem = try #require(catalog.problems.first)
        #expect(
            problem.file.contains("/prefabs/bad") || problem.file.contains("/prefabs/zz_dup"), "\(problem.file)")
        #expect(problem.description.contains(hostile.reason), "\(problem)")
    }

    @Test func loadProblemsShowInHealthAndTheGoodPrefabServes() async throws {
        let good = TestPrefab.streaming("good") { _, context in try context.yield(.content("fine")) }
        try await LiveGateway.run(
            [good],
            rawManifests: [
                "empty": "", "broken": #"{"functions": ["#,
                "escape": #"{"runtime": {"entry": "../x.py"}, "functions": [{"name": "p"}]}"#,
            ]
        ) { gateway in
            let health = try await gateway.request(.get, "/health").json
            #expect(health?["status"] == "degraded")
            let files = health?["load_errors"]?.arrayValue?.compactMap { $0["file"]?.stringValue } ?? []
            #expect(files.count == 3)
            for folder in ["empty", "broken", "escape"] {
                #expect(files.contains { $0.hasSuffix("/\(folder)/prefab-manifest.json") }, "\(files)")
            }
            #expect(try await gateway.invoke("good").events == [.content("fine"), .done()])
        }
    }
}

extension HostileManifestTests.Case {
    typealias Make = @Sendable (_ prefabs: URL, _ outside: URL) throws -> Void
}
