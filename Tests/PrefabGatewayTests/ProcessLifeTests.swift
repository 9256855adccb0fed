import Foundation
import PrefabGateway
import PrefabKit
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// A process prefab's life beyond its events: what it started ends with it, what it prints on
/// stderr reaches the crash report, and messages to it are bounded.
@Suite struct ProcessLifeTests {
    static func command(_ name: String, _ script: String, timeout: Int = 60) -> (
        manifests: [String: String], files: [String: String]
    ) {
        let manifest =
            #"{"runtime": {"kind": "process", "command": ["./run.sh"]}, "functions": [{"name": "\#(name)", "streaming": true, "timeout_seconds": \#(timeout)}]}"#
        return ([name: manifest], ["\(name)/run.sh": "#!/bin/sh\n" + script])
    }

    @Test(arguments: Isolation.allCases) func aCrashReportsTheLast20LinesOfStderr(_ isolation: Isolation) async throws {
        let code = """
            import os, sys
            def noisy():
                yield {"type": "start"}
                for line in range(1, 31):
                    print(f"line {line}", file=sys.stderr, flush=True)
                os._exit(5)
            """
        try await ProcessRuntimeTests.run(ProcessRuntimeTests.python(isolation, "noisy", code)) { gateway in
            let error = try #require(try await gateway.invoke("noisy").events.last)
            #expect(error.errorCode == "PREFAB_CRASHED")
            let tail = (11...30).map { "line \($0)" }
            #expect(error.fields["details"] == .array(tail.map { .string($0) }))
            #expect(
                error.data?.stringValue
                    == "the prefab process exited with status 5; last lines of stderr:\n" + tail.joined(separator: "\n")
            )
        }
    }

    /// True once no function runs (the relay of a call whose stdout is held open keeps its thread).
    static func idle(_ gateway: LiveGateway) async -> Bool {
        for _ in 0..<250 {
            if let health = try? await gateway.request(.get, "/health"), health.json?["running"] == 0 { return true }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return false
    }

    /// A command that starts a `setsid` daemon holding its stdout, then ends: the call must end
    /// when the command does (not at its 60 s timeout), and the daemon with it.
    @Test func aDescendantThatLeftTheProcessGroupEndsWithTheCall() async throws {
        let script = """
            read call
            setsid sleep 1000 &
            echo "{\\"type\\": \\"start\\", \\"data\\": {\\"sleeper\\": $!}}"
            echo '{"type": "done"}'
            """
        try await ProcessRuntimeTests.run(Self.command("escape", script)) { gateway in
            for _ in 0..<3 {
                let started = ContinuousClock.now
                let events = try await gateway.invoke("escape").events
                // Seen: well under a second; the relay waited for the 60 s timeout before.
                #expect(ContinuousClock.now - started < .seconds(10))
                #expect(events.map(\.type) == ["start", "done"])
                let sleeper = try #require(events.first?.data?["sleeper"]?.intValue)
                #expect(await Probe.eventually { ProcessRuntimeTests.isGone(Int32(sleeper)) }, "sleeper \(sleeper)")
                #expect(await Self.idle(gateway), "the call's relay still waits for its stdout")
            }
        }
    }

    @Test(arguments: Isolation.allCases) func aPythonDescendantInANewSessionEndsWithTheCall(_ isolation: Isolation)
        async throws
    {
        let code = """
            import subprocess
            def escape():
                sleeper = subprocess.Popen(["sleep", "1000"], start_new_session=True)
                yield {"type": "done", "data": sleeper.pid}
            """
        try await ProcessRuntimeTests.run(ProcessRuntimeTests.python(isolation, "escape", code)) { gateway in
            let started = ContinuousClock.now
            let events = try await gateway.invoke("escape").events
            #expect(ContinuousClock.now - started < .seconds(10))
            let sleeper = try #require(events.last?.data?.intValue)
            #expect(await Probe.eventually { ProcessRuntimeTests.isGone(Int32(sleeper)) }, "sleeper \(sleeper)")
            #expect(await Self.idle(gateway))
        }
    }

    /// Posts 1 KB messages to a running call until one is refused; the number accepted.
    static func messagesAccepted(_ gateway: LiveGateway, _ function: String, upTo limit: Int) async throws -> (
        accepted: Int, refusal: TestReply?
    ) {
        var stream = try await gateway.openStream(function)
        #expect(try await stream.nextEvent()?.type == "start")
        let id = try #require(stream.response.headers.first(name: "X-Invocation-Id"))
        let message = #"{"type": "note", "data": "\#(String(repeating: "x", count: 1000))"}"#
        for sent in 0..<limit {
            let reply = try await gateway.request(.post, "/invocations/\(id)/messages", body: message)
            if reply.status != .accepted { return (sent, reply) }
        }
        return (limit, nil)
    }

    @Test func messagesToACommandThatNeverReadsAreRefusedPastTheBound() async throws {
        let script = """
            read call
            echo '{"type": "start"}'
            sleep 60
            """
        try await ProcessRuntimeTests.run(Self.command("deaf", script)) { gateway in
            let (accepted, refusal) = try await Self.messagesAccepted(gateway, "deaf", upTo: 2000)
            // 256 wait in the gateway; the pipe holds 64 KiB (~63 messages of 1 KB) and a part.
            #expect(accepted >= 256 && accepted <= 256 + 64 + 2, "accepted \(accepted)")
            #expect(refusal?.status == .tooManyRequests)
            #expect(refusal?.errorCode == "TOO_MANY_MESSAGES")
        }
    }

    @Test(arguments: Isolation.allCases) func messagesToAPythonPrefabThatNeverReadsAreRefusedPastTheBound(
        _ isolation: Isolation
    ) async throws {
        let code = """
            import time
            def deaf():
                yield {"type": "start"}
                time.sleep(60)
            """
        try await ProcessRuntimeTests.run(ProcessRuntimeTests.python(isolation, "deaf", code)) { gateway in
            let (accepted, refusal) = try await Self.messagesAccepted(gateway, "deaf", upTo: 2000)
            // 256 in the gateway, the pipe (~63), and for a runner of one call 256 more in it and its
            // read buffer (~8); a worker reads messages only as its prefab asks for them.
            let runner = isolation == .processPerCall ? 256 + 8 : 0
            #expect(accepted >= 256 + runner - 8 && accepted <= 256 + runner + 64 + 2, "accepted \(accepted)")
            #expect(refusal?.errorCode == "TOO_MANY_MESSAGES")
        }
    }

    /// Many calls, each sent messages while it is cancelled: every message a prefab echoes is its
    /// own (a write after the close of stdin, to a reused descriptor, would put one in another).
    @Test(arguments: Isolation.allCases) func messagesRacingCancelsReachOnlyTheirOwnCall(_ isolation: Isolation)
        async throws
    {
        let code = """
            from prefab_runtime import next_message
            def echo(tag):
                yield {"type": "start"}
                while True:
                    message = next_message()
                    yield {"type": "content", "data": {"tag": tag, "message": message.get("data")}}
            """
        let parameters = #", "parameters": [{"name": "tag", "type": "string", "required": true}]"#
        try await ProcessRuntimeTests.run(ProcessRuntimeTests.python(isolation, "echo", code, extra: parameters)) {
            gateway in
            try await withThrowingTaskGroup(of: Void.self) { group in
                // HTTPClient.shared opens 8 connections per host: 4 streams leave room for the posts.
                for call in 0..<4 {
                    group.addTask {
                        let tag = "call-\(call)"
                        var stream = try await gateway.openStream("echo", #"{"inputs": {"tag": "\#(tag)"}}"#)
                        #expect(try await stream.nextEvent()?.type == "start")
                        let id = try #require(stream.response.headers.first(name: "X-Invocation-Id"))
                        try await withThrowingTaskGroup(of: Void.self) { senders in
                            for _ in 0..<2 {
                                senders.addTask {
                                    for _ in 0..<30 {
                                        _ = try await gateway.request(
                                            .post, "/invocations/\(id)/messages",
                                            body: #"{"type": "note", "data": "\#(tag)"}"#)
                                    }
                                }
                            }
                            senders.addTask {
                                try await Task.sleep(for: .milliseconds(100))
                                _ = try await gateway.request(.delete, "/invocations/\(id)")
                            }
                            try await senders.waitForAll()
                        }
                        for message in try await stream.rest() {
                            guard let event = message.prefabEvent, event.type == "content" else { continue }
                            #expect(event.data?["tag"]?.stringValue == tag)
                            #expect(event.data?["message"]?.stringValue == tag, "\(event)")
                        }
                    }
                }
                try await group.waitForAll()
            }
        }
    }
}
