import Foundation
import HTTPTypes
import PrefabGateway
import PrefabKit
import Synchronization
import Testing

/// Viewers of an invocation's events (`GET /invocations/<id>/events`) beside its own client.
@Suite(.timeLimit(.minutes(1))) struct InvocationViewerTests {
    /// Records its invocation id, then waits (in `context.sleep`, which a cancel interrupts) until
    /// the test releases it; a streaming one yields `start` first.
    static func gated(streaming: Bool, gate: Gate) -> TestPrefab {
        let wait: @Sendable (PrefabContext) throws -> Void = { context in
            gate.id.withLock { $0 = context.invocationId }
            while !gate.released.withLock({ $0 }) { try context.sleep(for: .milliseconds(10)) }
        }
        if streaming {
            return .streaming("gated") { _, context in
                try context.yield(.start())
                try wait(context)
            }
        }
        return .result("gated") { _, context in
            try wait(context)
            return "released"
        }
    }

    /// A viewer that leaves does not cancel a JSON call (a result function, or a stream collected
    /// with `Accept: application/json`) whose own client still waits for the answer. Before, the
    /// viewer was the call's only reader, and its departure cancelled the call.
    @Test(arguments: [false, true])
    func aViewerThatLeavesDoesNotCancelAJSONCall(streaming: Bool) async throws {
        let gate = Gate()
        try await LiveGateway.run([Self.gated(streaming: streaming, gate: gate)]) { gateway in
            let headers: HTTPFields = streaming ? [.accept: "application/json"] : [:]
            async let reply = gateway.invoke("gated", headers: headers)
            // Only a precondition: the function has started (slow when the whole suite runs on a
            // busy machine).
            #expect(await Probe.eventually(within: .seconds(30)) { gate.id.withLock { $0 } != nil })
            let invocation = try #require(gate.id.withLock { $0 })

            let viewer = try RawConnection(port: gateway.port)
            try viewer.sendRaw(
                Array("GET /invocations/\(invocation)/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".utf8))
            _ = try await viewer.readOffPool(until: "\r\n\r\n")
            #expect(try await InvocationTests.status(gateway, invocation)["readers"] == 2)
            viewer.hangUp()
            // The gateway sees the viewer go (the call's own client stays a reader).
            var status: JSONValue = .null
            for _ in 0..<250 {
                status = try await InvocationTests.status(gateway, invocation)
                if status["readers"] != 2 { break }
                try await Task.sleep(for: .milliseconds(20))
            }
            #expect(status["readers"] == 1)
            #expect(status["state"] == "running")

            gate.released.withLock { $0 = true }
            let answer = try await reply
            #expect(answer.status == .ok)
            if streaming {
                #expect(answer.json?["success"] == true)
                #expect(answer.json?["events"]?.arrayValue?.last?["type"] == "done")
            } else {
                #expect(answer.json?["result"] == "released")
            }
        }
    }
}

/// What a gated function tells its test (its invocation id), and the test's go-ahead.
final class Gate: Sendable {
    let id = Mutex<String?>(nil)
    let released = Mutex(false)
}
