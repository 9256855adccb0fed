import Foundation
import HummingbirdWSClient
import Logging
import PrefabGateway
import PrefabKit
import Synchronization
import Testing

/// `GET /invoke/<name>/ws`: the call, the events and the answers on one WebSocket.
@Suite(.timeLimit(.minutes(1))) struct WebSocketTests {
    /// Connects, sends `call`, then hands every event to `reply`, which may answer with messages
    /// to send back. Returns the events in order, once the gateway has closed the socket.
    static func converse(
        _ gateway: LiveGateway,
        _ function: String,
        call: String = #"{"inputs": {}}"#,
        reply: @escaping @Sendable (PrefabEvent) -> [String] = { _ in [] }
    ) async throws -> [PrefabEvent] {
        try await conversation(gateway, function, call: call, reply: reply).events
    }

    /// `converse`, also returning how the socket was closed. The client closes it itself after
    /// `leaveAfter` events; it sends frames of up to `maxFrameSize` bytes (as a browser would send
    /// a large message in one frame, when that is large).
    static func conversation(
        _ gateway: LiveGateway,
        _ function: String,
        call: String = #"{"inputs": {}}"#,
        maxFrameSize: Int = 1 << 14,
        leaveAfter: Int? = nil,
        reply: @escaping @Sendable (PrefabEvent) -> [String] = { _ in [] }
    ) async throws -> (events: [PrefabEvent], close: WebSocketCloseFrame?) {
        let events = Mutex<[PrefabEvent]>([])
        let close = try await WebSocketClient.connect(
            url: "ws://127.0.0.1:\(gateway.port)/invoke/\(function)/ws",
            configuration: .init(maxFrameSize: maxFrameSize),
            logger: Logger(label: "ws-test")
        ) { inbound, outbound, _ in
            try await outbound.writeTextMessage(call)
            for try await message in inbound.messages(maxSize: 1 << 20) {
                guard case .text(let text) = message, let event = PrefabEvent(json: try JSONValue(parsing: text)) else {
                    Issue.record("not a JSON event: \(message)")
                    continue
                }
                let count = events.withLock { events in
                    events.append(event)
                    return events.count
                }
                if count == leaveAfter { return }
                for answer in reply(event) { try await outbound.writeTextMessage(answer) }
            }
        }
        return (events.withLock { $0 }, close)
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
            // Several requests on one kept-alive connection, as before WebSockets were added: the
            // same socket carries each request and its answer.
            let connection = try RawConnection(port: gateway.port)
            for index in 0..<3 {
                try connection.sendRaw(Array("GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".utf8))
                // A JSON body ends with "}" and a newline; nothing before it in the answer does.
                let answer = try await connection.readOffPool(until: "}\n")
                #expect(answer.hasPrefix("HTTP/1.1 200 OK\r\n"), "answer \(index): \(answer.prefix(200))")
                #expect(!answer.lowercased().contains("connection: close"))
            }
        }
    }

    /// A message as large as an HTTP body may be goes through, in one frame as a browser sends
    /// it: the WebSocket library's own frame limit (16 KiB) closed the socket with 1009 before.
    @Test func aMessageUpToTheBodyLimitReachesTheFunction() async throws {
        let reader = TestPrefab.streaming("reader") { _, context in
            try context.yield(.start())
            guard let message = try context.nextMessage(timeout: .seconds(20)) else {
                throw PrefabError("NO_MESSAGE", "no message came")
            }
            try context.yield(.content("\(message.data?.stringValue?.utf8.count ?? -1)"))
        }
        let size = 512 * 1024
        try await LiveGateway.run([reader]) { gateway in
            let (events, close) = try await Self.conversation(gateway, "reader", maxFrameSize: 1 << 20) { event in
                event.type == "start" ? [#"{"type": "note", "data": "\#(String(repeating: "x", count: size))"}"#] : []
            }
            #expect(events.map(\.type) == ["start", "content", "done"])
            #expect(events.dropFirst().first == .content("\(size)"))
            #expect(close?.closeCode == .normalClosure)
        }
    }

    /// Large events go out in frames a client with the usual 16 KiB frame limit takes.
    @Test func aLargeEventReachesAClientWithSmallFrames() async throws {
        let large = String(repeating: "y", count: 100 * 1024)
        let big = TestPrefab.streaming("big") { _, context in try context.yield(.content(large)) }
        try await LiveGateway.run([big]) { gateway in
            let (events, close) = try await Self.conversation(gateway, "big", maxFrameSize: 1 << 14)
            #expect(events.map(\.type) == ["content", "done"])
            #expect(events.first?["data"]?.stringValue?.count == large.count)
            #expect(close?.closeCode == .normalClosure)
        }
    }

    /// A client that opens a call and then reads nothing: once the socket buffers are full the
    /// gateway's write waits, and after the client idle timeout the call ends with
    /// `CLIENT_TIMEOUT`, as for a stream. Before, the function waited in `yield` until its own
    /// timeout (600 s by default). The bound is the SSE test's: the idle timeout (0.5 s) plus the
    /// time to fill the buffers, with room for a loaded machine.
    @Test func aClientThatStopsReadingIsDisconnectedAndItsCallCancelled() async throws {
        let probe = Probe()
        let payload = String(repeating: "x", count: 64 * 1024)
        try await LiveGateway.run(
            [DisconnectAndBackpressureTests.endless(probe, payload: payload, pause: 0)],
            configure: {
                $0.heartbeatInterval = .milliseconds(100)
                $0.clientIdleTimeout = .milliseconds(500)
            }
        ) { gateway in
            let connection = try RawConnection(port: gateway.port, receiveBuffer: 64 * 1024)
            try await connection.upgradeToWebSocket("/invoke/endless/ws")
            try connection.sendWebSocketText(#"{"inputs": {}}"#)
            #expect(await Probe.eventually(within: .seconds(15)) { probe.stoppedWith != nil })
            #expect(probe.stoppedWith == "CLIENT_TIMEOUT")
        }
    }

    /// A client whose socket dropped resumes the call over SSE from the events it counted: it
    /// gets exactly the rest, to the end.
    @Test func aDroppedWebSocketCallIsResumedOverSSE() async throws {
        let probe = Probe()
        try await LiveGateway.run([InvocationTests.gatedCounter(probe)], configure: { $0.resumeGrace = .seconds(10) }) {
            gateway in
            let (seen, _) = try await Self.conversation(gateway, "counter", leaveAfter: 3)
            #expect(seen.map(\.type) == ["start", "content", "content"])
            #expect(Array(seen.dropFirst()) == [.content("a1"), .content("a2")])
            let id = try #require(seen.first?["invocation_id"]?.stringValue)
            // The gateway notices the socket's close before the run goes on.
            #expect(try await InvocationTests.readersLeft(gateway, id) == 0)
            probe.proceed.signal()
            let resumed = try await gateway.request(.get, "/invocations/\(id)/events?after=3")
            #expect(resumed.status == .ok)
            var parser = SSEParser()
            let messages = parser.feed(resumed.body.readableBytesView)
            #expect(messages.map(\.lastEventId) == (4...10).map(String.init))
            #expect(
                messages.compactMap(\.prefabEvent)
                    == ["a3", "a4", "b5", "b6", "b7", "b8"].map(PrefabEvent.content) + [.done()]
            )
        }
    }
}
