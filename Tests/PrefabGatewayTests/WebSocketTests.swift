import Foundation
import HummingbirdWSClient
import Logging
import PrefabGateway
import PrefabKit
import Synchronization
import Testing

/// `GET /invoke/<name>/ws`: the call, the events and the answers on one WebSocket.
@Suite struct WebSocketTests {
    /// Connects, sends `call`, then hands every event to `reply`, which may answer with messages
    /// to send back. Returns the events in order, once the gateway has closed the socket.
    static func converse(
        _ gateway: LiveGateway,
        _ function: String,
        call: String = #"{"inputs": {}}"#,
        reply: @escaping @Sendable (PrefabEvent) -> [String] = { _ in [] }
    ) async throws -> [PrefabEvent] {
        let events = Mutex<[PrefabEvent]>([])
        try await WebSocketClient.connect(
            url: "ws://127.0.0.1:\(gateway.port)/invoke/\(function)/ws",
            logger: Logger(label: "ws-test")
        ) { inbound, outbound, _ in
            try await outbound.writeTextMessage(call)
            for try await message in inbound.messages(maxSize: 1 << 20) {
                guard case .text(let text) = message, let event = PrefabEvent(json: try JSONValue(parsing: text)) else {
                    Issue.record("not a JSON event: \(message)")
                    continue
                }
                events.withLock { $0.append(event) }
                for answer in reply(event) { try await outbound.writeTextMessage(answer) }
            }
        }
        return events.withLock { $0 }
    }

    @Test(arguments: ["wizard", "wizard_py"])
    func theWizardIsAnsweredOverTheWebSocket(function: String) async throws {
        try await InvocationTests.withWizards { gateway in
            let events = try await Self.converse(gateway, function) { event in
                switch event.data?["questionId"] {
                case "name": [InvocationTests.answer("name", "demo")]
                // A wrong answer is refused and changes nothing; the right one goes through.
                case "template":
                    [InvocationTests.answer("template", "java"), InvocationTests.answer("template", "cli")]
                default: []
                }
            }
            #expect(events.map(\.type) == ["start", "question", "question", "rejected", "done"])
            let id = try #require(events.first?["invocation_id"]?.stringValue)
            #expect(events[3].errorCode == "INVALID_ANSWER")
            #expect(events.last == .done(["name": "demo", "template": "cli"]))
            let status = try await gateway.request(.get, "/invocations/\(id)")
            #expect(status.json?["state"] == "done")
        }
    }

    @Test func aCancelMessageEndsTheRunWithCANCELLED() async throws {
        try await InvocationTests.withWizards { gateway in
            let events = try await Self.converse(gateway, "wizard") { event in
                event.type == "question" ? [#"{"type": "cancel"}"#] : []
            }
            #expect(events.map(\.type) == ["start", "question", "error"])
            #expect(events.last?.errorCode == "CANCELLED")
        }
    }

    @Test func aBadCallGetsAnErrorEventAndTheSocketCloses() async throws {
        try await InvocationTests.withWizards { gateway in
            let wrongType = try await Self.converse(gateway, "wizard", call: #"{"inputs": {"greeting": 5}}"#)
            #expect(wrongType.map(\.type) == ["error"])
            #expect(wrongType.first?.errorCode == "INVALID_INPUTS")
            let notJSON = try await Self.converse(gateway, "wizard", call: "hello")
            #expect(notJSON.first?.errorCode == "INVALID_JSON")
        }
    }

    @Test func withoutAnUpgradeTheEndpointExplainsItself() async throws {
        try await InvocationTests.withWizards { gateway in
            let plain = try await gateway.request(.get, "/invoke/wizard/ws")
            #expect(plain.status == .upgradeRequired)
            #expect(plain.errorCode == "UPGRADE_REQUIRED")
            let unknown = try await gateway.request(.get, "/invoke/nothing/ws")
            #expect(unknown.status == .notFound)
            #expect(unknown.errorCode == "FUNCTION_NOT_FOUND")
        }
    }

    @Test func plainHTTPStillWorksOnTheUpgradeCapableServer() async throws {
        try await InvocationTests.withWizards { gateway in
            // Several requests on one kept-alive connection, as before WebSockets were added.
            for _ in 0..<3 {
                let reply = try await gateway.request(.get, "/health")
                #expect(reply.status == .ok)
            }
        }
    }
}

@Suite struct ShutdownTests {
    @Test func theServerStopsEvenWithAConnectionThatNeverSentARequest() async throws {
        let silentClient = Mutex<RawConnection?>(nil)
        let stopped = Mutex(false)
        Task {
            try await LiveGateway.run([]) { gateway in
                // Connected, and nothing sent: the connection waits for its first request.
                silentClient.withLock { $0 = try? RawConnection(port: gateway.port) }
                let health = try await gateway.request(.get, "/health")
                #expect(health.status == .ok)
            }
            stopped.withLock { $0 = true }
        }
        let deadline = ContinuousClock.now + .seconds(20)
        while ContinuousClock.now < deadline, !stopped.withLock({ $0 }) {
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(stopped.withLock { $0 }, "the server did not shut down within 20 s while a connection had sent nothing")
        silentClient.withLock { $0?.hangUp() }
    }
}
