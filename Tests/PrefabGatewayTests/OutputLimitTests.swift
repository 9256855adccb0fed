import Foundation
import HTTPTypes
import PrefabGateway
import PrefabKit
import Testing

/// `maxOutputBytes`: a call whose output folder grows past it ends with `OUTPUT_TOO_LARGE`, lists
/// no files and leaves no folder behind; a process is stopped while it writes.
@Suite(.timeLimit(.minutes(1))) struct OutputLimitTests {
    static let limit = 10_000

    static func limited(_ configuration: inout GatewayConfiguration) {
        configuration.maxOutputBytes = limit
    }

    /// A Swift function that writes `bytes` bytes into its output folder.
    static func writer(_ name: String, bytes: Int) -> TestPrefab {
        .streaming(name) { _, context in
            let file = try context.outputDirectory.appendingPathComponent("out.bin")
            try Data(count: bytes).write(to: file)
            try context.yield(.content("written"))
        }
    }

    static func outputFolder(_ gateway: LiveGateway, _ reply: TestReply) throws -> URL {
        let id = try #require(reply.headers[HTTPField.Name("X-Invocation-Id")!])
        return gateway.dataDirectory.appendingPathComponent("outputs/\(id)")
    }

    @Test func aSwiftFunctionOverTheLimitEndsWithOUTPUT_TOO_LARGEAndItsFolderIsDeleted() async throws {
        try await LiveGateway.run([Self.writer("big", bytes: Self.limit + 1)], configure: Self.limited) { gateway in
            let reply = try await gateway.invoke("big")
            #expect(reply.status == .ok)
            #expect(reply.events.map(\.type) == ["content", "error"])
            #expect(reply.events.last?.errorCode == "OUTPUT_TOO_LARGE")
            #expect(reply.events.last?.data?.stringValue?.contains("\(Self.limit) bytes") == true)
            #expect(!FileManager.default.fileExists(atPath: try Self.outputFolder(gateway, reply).path))
        }
    }

    @Test func aSwiftFunctionAtTheLimitKeepsItsFiles() async throws {
        try await LiveGateway.run([Self.writer("fits", bytes: Self.limit)], configure: Self.limited) { gateway in
            let reply = try await gateway.invoke("fits")
            #expect(reply.events.map(\.type) == ["content", "files", "done"])
            #expect(FileManager.default.fileExists(atPath: try Self.outputFolder(gateway, reply).path))
        }
    }

    @Test func aNonStreamingFunctionOverTheLimitFailsWithNoFiles() async throws {
        let prefab = TestPrefab.result("bigResult") { _, context in
            try Data(count: Self.limit * 2).write(to: try context.outputDirectory.appendingPathComponent("out.bin"))
            return "ok"
        }
        try await LiveGateway.run([prefab], configure: Self.limited) { gateway in
            let reply = try await gateway.invoke("bigResult")
            #expect(reply.errorCode == "OUTPUT_TOO_LARGE")
            #expect(reply.json?["files"] == [])
            #expect(reply.json?["success"] == false)
        }
    }

    @Test(arguments: Isolation.allCases) func aPythonWriteIsRefusedJustPastTheLimit(_ isolation: Isolation) async throws
    {
        // The file size limit stops the write itself: the file ends one byte past the limit. The
        // file lies outside the output folder, where the gateway's own check (which stops the
        // child) does not look: only the limit can stop this write, and nothing races the report.
        let code = """
            import os
            def flood(path):
                try:
                    with open(path, "wb") as file:
                        file.write(b"x" * 1000000)
                except OSError:
                    yield {"type": "content", "data": os.path.getsize(path)}
                    raise
                yield {"type": "content", "data": os.path.getsize(path)}
            """
        let parameters = #", "parameters": [{"name": "path", "type": "string", "required": true}]"#
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("fsize-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: file) }
        try await ProcessRuntimeTests.run(
            ProcessRuntimeTests.python(isolation, "flood", code, extra: parameters), configure: Self.limited
        ) { gateway in
            let reply = try await gateway.invoke("flood", #"{"inputs": {"path": "\#(file.path)"}}"#)
            #expect(reply.events.map(\.type) == ["content", "error"])
            #expect(reply.events.first?.data == .int(Self.limit + 1))
            #expect(reply.events.last?.errorCode == "OUTPUT_TOO_LARGE")
        }
    }

    @Test func aCommandThatKeepsWritingIsStoppedWhileItRuns() async throws {
        let script = """
            #!/bin/sh
            read call
            echo '{"type": "start"}'
            while true; do head -c 4096 /dev/zero >>"$PREFAB_OUTPUT_DIR/big.bin"; sleep 0.01; done
            """
        let manifest =
            #"{"runtime": {"kind": "process", "command": ["./run.sh"]}, "functions": [{"name": "grow", "streaming": true}]}"#
        try await LiveGateway.run(
            [],
            rawManifests: ["grow": manifest],
            files: ["grow/run.sh": script],
            configure: Self.limited
        ) { gateway in
            let started = ContinuousClock.now
            let reply = try await gateway.invoke("grow")
            #expect(ContinuousClock.now - started < .seconds(20), "the writer was stopped, not waited for")
            #expect(reply.events.map(\.type) == ["start", "error"])
            #expect(reply.events.last?.errorCode == "OUTPUT_TOO_LARGE")
            #expect(!FileManager.default.fileExists(atPath: try Self.outputFolder(gateway, reply).path))
        }
    }
}
