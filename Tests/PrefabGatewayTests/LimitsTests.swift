import Foundation
import HTTPTypes
import PrefabGateway
import PrefabKit
import Testing

/// Every limit of the gateway, hit on a live server, with the error it answers.
@Suite(.timeLimit(.minutes(1))) struct LimitsTests {
    static let echo = TestPrefab.result("echo", parameters: [ParameterManifest(name: "value", type: .array)]) {
        inputs, _ in inputs["value"] ?? .null
    }

    static let text = TestPrefab.result("text", parameters: [ParameterManifest(name: "value", type: .string)]) {
        inputs, _ in inputs["value"] ?? .null
    }

    /// Starts, then waits for the test to let it go on (or 10 s).
    static func blocking(_ name: String, _ probe: Probe, maxConcurrency: Int? = nil) -> TestPrefab {
        TestPrefab(
            folder: name,
            manifest: FunctionManifest(name: name, streaming: true, maxConcurrency: maxConcurrency),
            implementation: .streaming { _, context in
                try context.yield(.start())
                _ = probe.proceed.wait(timeout: DispatchTime.now() + 10.0)
            }
        )
    }

    // MARK: Concurrency and the queue

    @Test func aCallPastTheLimitWaitsInTheQueueAndRunsWhenASlotFrees() async throws {
        let probe = Probe()
        try await LiveGateway.run([Self.blocking("blocking", probe)], configure: { $0.maxConcurrentInvocations = 1 }) {
            gateway in
            var first = try await gateway.openStream("blocking")
            #expect(try await first.nextEvent()?.type == "start")
            let second = Task { try await gateway.invoke("blocking") }
            var queued: JSONValue?
            for _ in 0..<100 where queued != 1 {
                queued = try await gateway.request(.get, "/health").json?["queued"]
                try await Task.sleep(for: .milliseconds(20))
            }
            #expect(queued == 1)
            probe.proceed.signal()
            #expect(try await first.rest().last?.prefabEvent?.type == "done")
            probe.proceed.signal()
            let reply = try await second.value
            #expect(reply.status == .ok)
            #expect(reply.events.last?.type == "done")
        }
    }

    @Test func manyCallsPastTheLimitAllRunInTurn() async throws {
        let short = TestPrefab.streaming("short") { _, context in
            Thread.sleep(forTimeInterval: 0.005)
            try context.yield(.content("ok"))
        }
        try await LiveGateway.run([short], configure: { $0.maxConcurrentInvocations = 4 }) { gateway in
            let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
                for _ in 0..<60 { group.addTask { Int(try await gateway.invoke("short").status.code) } }
                return try await group.reduce(into: [Int]()) { $0.append($1) }
            }
            #expect(statuses == Array(repeating: 200, count: 60))
        }
    }

    @Test func aFullQueueIs429WithRetryAfter() async throws {
        let probe = Probe()
        try await LiveGateway.run(
            [Self.blocking("blocking", probe)],
            configure: {
                $0.maxConcurrentInvocations = 1
                $0.maxQueuedInvocations = 0
            }
        ) { gateway in
            var first = try await gateway.openStream("blocking")
            #expect(try await first.nextEvent()?.type == "start")
            let second = try await gateway.invoke("blocking")
            #expect(second.status == .tooManyRequests)
            #expect(second.errorCode == "OVERLOADED")
            #expect(second.headers[.retryAfter] == "1")
            probe.proceed.signal()
            #expect(try await first.rest().last?.prefabEvent?.type == "done")
        }
    }

    @Test func aCallThatWaitsPastTheQueueTimeoutIs429() async throws {
        let probe = Probe()
        try await LiveGateway.run(
            [Self.blocking("blocking", probe)],
            configure: {
                $0.maxConcurrentInvocations = 1
                $0.queueTimeout = .milliseconds(300)
            }
        ) { gateway in
            var first = try await gateway.openStream("blocking")
            #expect(try await first.nextEvent()?.type == "start")
            let asked = ContinuousClock.now
            let second = try await gateway.invoke("blocking")
            #expect(ContinuousClock.now - asked >= .milliseconds(300))
            #expect(second.status == .tooManyRequests)
            #expect(second.errorCode == "OVERLOADED")
            #expect(second.json?["error"]?["message"]?.stringValue?.contains("no slot came free") == true)
            #expect(second.headers[.retryAfter] == "1")
            probe.proceed.signal()
            #expect(try await first.rest().last?.prefabEvent?.type == "done")
        }
    }

    @Test func maxConcurrencyInTheManifestLimitsThatFunctionOnly() async throws {
        let probe = Probe()
        let other = Probe()
        try await LiveGateway.run(
            [Self.blocking("single", probe, maxConcurrency: 1), Self.blocking("other", other)],
            configure: { $0.maxQueuedInvocations = 0 }
        ) { gateway in
            let manifest = try await gateway.request(.get, "/manifest").json
            #expect(manifest?["functions"]?.arrayValue?.first { $0["name"] == "single" }?["max_concurrency"] == 1)
            var first = try await gateway.openStream("single")
            #expect(try await first.nextEvent()?.type == "start")
            let refused = try await gateway.invoke("single")
            #expect(refused.status == .tooManyRequests)
            #expect(refused.json?["error"]?["message"]?.stringValue?.contains("'single' runs at most 1") == true)
            // Another function is not held back by it.
            other.proceed.signal()
            #expect(try await gateway.invoke("other").events.last?.type == "done")
            probe.proceed.signal()
            #expect(try await first.rest().last?.prefabEvent?.type == "done")
            // The slot is free again.
            probe.proceed.signal()
            #expect(try await gateway.invoke("single").events.last?.type == "done")
        }
    }

    // MARK: Inputs

    @Test func inputsNestedPastTheDepthLimitAre422() async throws {
        try await LiveGateway.run([Self.echo], configure: { $0.maxInputDepth = 4 }) { gateway in
            func nested(_ depth: Int) -> String {
                #"{"inputs": {"value": "# + String(repeating: "[", count: depth) + String(repeating: "]", count: depth)
                    + "}}"
            }
            #expect(try await gateway.invoke("echo", nested(4)).status == .ok)
            let deep = try await gateway.invoke("echo", nested(5))
            #expect(deep.status == .unprocessableContent)
            #expect(deep.errorCode == "INPUT_TOO_DEEP")
        }
    }

    @Test func aMillionNestedArraysIs422NotACrash() async throws {
        try await LiveGateway.run([Self.echo], configure: { $0.maxBodyBytes = 4 << 20 }) { gateway in
            let depth = 1_000_000
            let body =
                #"{"inputs": {"value": "# + String(repeating: "[", count: depth) + String(repeating: "]", count: depth)
                + "}}"
            let reply = try await gateway.invoke("echo", body)
            #expect(reply.status == .unprocessableContent)
            #expect(reply.errorCode == "INPUT_TOO_DEEP")
            #expect(try await gateway.invoke("echo", #"{"inputs": {"value": [1]}}"#).status == .ok)
        }
    }

    @Test func aStringOrKeyPastTheLengthLimitIs422WithItsPath() async throws {
        try await LiveGateway.run([Self.text, Self.echo], configure: { $0.maxInputStringBytes = 10 }) { gateway in
            #expect(try await gateway.invoke("text", #"{"inputs": {"value": "0123456789"}}"#).status == .ok)
            let long = try await gateway.invoke("text", #"{"inputs": {"value": "0123456789a"}}"#)
            #expect(long.status == .unprocessableContent)
            #expect(long.errorCode == "INPUT_TOO_LONG")
            #expect(long.json?["error"]?["details"]?.arrayValue?.first?["path"] == "inputs.value")
            let key = try await gateway.invoke("echo", #"{"inputs": {"value": [{"a-very-long-key": 1}]}}"#)
            #expect(key.errorCode == "INPUT_TOO_LONG")
            #expect(key.json?["error"]?["details"]?.arrayValue?.first?["path"] == "inputs.value[0] (a key)")
        }
    }

    // MARK: Requests

    @Test func aURLPastTheLimitIs414() async throws {
        try await LiveGateway.run([Self.text], configure: { $0.maxURLBytes = 64 }) { gateway in
            #expect(try await gateway.request(.get, "/manifest?short").status == .ok)
            let reply = try await gateway.request(.get, "/manifest?" + String(repeating: "a", count: 100))
            #expect(reply.status == .uriTooLong)
            #expect(reply.errorCode == "URL_TOO_LONG")
        }
    }

    @Test func headersPastTheLimitAre431() async throws {
        try await LiveGateway.run([Self.text], configure: { $0.maxHeaderBytes = 1024 }) { gateway in
            let padding = HTTPField.Name("X-Padding")!
            #expect(try await gateway.request(.get, "/manifest", headers: [padding: "small"]).status == .ok)
            let big = String(repeating: "p", count: 2000)
            let reply = try await gateway.request(.get, "/manifest", headers: [padding: big])
            #expect(reply.status.code == 431)
            #expect(reply.errorCode == "HEADERS_TOO_LARGE")
        }
    }

    // MARK: Time

    /// Yields until its `yield` throws, and says why.
    static func endless(_ probe: Probe, payload: String = "tick", pause: TimeInterval, timeout: Double? = nil)
        -> TestPrefab
    {
        TestPrefab(
            folder: "endless",
            manifest: FunctionManifest(name: "endless", streaming: true, timeoutSeconds: timeout),
            implementation: .streaming { _, context in
                do {
                    while true {
                        try context.yield(.content(payload))
                        if pause > 0 { Thread.sleep(forTimeInterval: pause) }
                    }
                } catch let error as PrefabError {
                    probe.stop(with: error.code.rawValue)
                    throw error
                }
            }
        )
    }

    @Test func aCallPastItsManifestTimeoutEndsWithTIMEOUT() async throws {
        let probe = Probe()
        try await LiveGateway.run([Self.endless(probe, pause: 0.01, timeout: 0.3)]) { gateway in
            let reply = try await gateway.invoke("endless")
            #expect(reply.events.last?.errorCode == "TIMEOUT")
            #expect(reply.events.last?["data"]?.stringValue?.contains("its time limit of 0.3 s") == true)
            #expect(probe.stoppedWith == "TIMEOUT")
        }
    }

    @Test func noCallRunsPastTheMaximumDurationWhateverItsManifestSays() async throws {
        let probe = Probe()
        try await LiveGateway.run(
            [Self.endless(probe, pause: 0.01, timeout: 600)],
            configure: { $0.maxStreamDuration = .milliseconds(300) }
        ) { gateway in
            let started = ContinuousClock.now
            let reply = try await gateway.invoke("endless")
            // Its manifest allows 600 s; 0.3 s is the maximum (7 s seen with the load average at 15).
            #expect(ContinuousClock.now - started < .seconds(20))
            #expect(reply.events.last?.errorCode == "TIMEOUT")
            #expect(reply.events.last?["data"]?.stringValue?.contains("maximum call duration of 0.3 s") == true)
        }
    }

    @Test func aClientThatReadsNothingIsDisconnectedAndItsCallCancelled() async throws {
        let probe = Probe()
        let payload = String(repeating: "x", count: 64 * 1024)
        try await LiveGateway.run(
            [Self.endless(probe, payload: payload, pause: 0)],
            configure: {
                $0.heartbeatInterval = .milliseconds(100)
                $0.clientIdleTimeout = .milliseconds(500)
            }
        ) { gateway in
            let connection = try RawConnection(port: gateway.port, receiveBuffer: 64 * 1024)
            try connection.sendPost("/invoke/endless", json: #"{"inputs": {}}"#)
            _ = try await connection.readOffPool(until: "\r\n\r\n")
            // The client reads nothing more: the socket fills, the write waits, and after the
            // idle timeout the gateway gives up on the client.
            #expect(await Probe.eventually(within: .seconds(15)) { probe.stoppedWith != nil })
            #expect(probe.stoppedWith == "CLIENT_TIMEOUT")
            // The server closed the connection: reading drains what was sent, then ends.
            let closing = ContinuousClock.now
            await #expect(throws: RawConnectionError.self) {
                _ = try await connection.readOffPool(until: "never sent", limit: 256 << 20)
            }
            // Sooner than the read timeout (10 s): the end of the connection, not a stall.
            #expect(ContinuousClock.now - closing < .seconds(5))
        }
    }
}
