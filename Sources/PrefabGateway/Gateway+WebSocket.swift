import HTTPTypes
import Hummingbird
import HummingbirdWebSocket
import NIOCore
import PrefabKit

/// The context of a WebSocket upgraded from `GET /invoke/<name>/ws`.
typealias InvokeWebSocketContext = WebSocketRouterContext<GatewayWebSocketContext>

extension Gateway {
    /// The router that decides WebSocket upgrades: only `GET /invoke/<name>/ws` of a known
    /// function upgrades; anything else falls through to the HTTP routes and their errors.
    func makeWebSocketRouter() -> Router<GatewayWebSocketContext> {
        let router = Router(context: GatewayWebSocketContext.self)
        router.middlewares.add(WebSocketRefusalReporter())
        addCommonMiddleware(to: router)
        router.ws("/invoke/:name/ws") { _, context in
            catalog.functions[context.parameters.get("name") ?? ""] == nil ? .dontUpgrade : .upgrade([:])
        } onUpgrade: { inbound, outbound, context in
            try await serveWebSocket(inbound, outbound, context)
        }
        return router
    }

    /// `GET /invoke/<name>/ws` without a WebSocket upgrade: say how to use it.
    func webSocketWithoutUpgrade(context: some RequestContext) throws -> Response {
        _ = try function(named: context.parameters.get("name") ?? "")
        throw GatewayError(
            .upgradeRequired,
            .upgradeRequired,
            "this endpoint speaks WebSocket: connect with a WebSocket client and send {\"inputs\": {...}} first",
            headers: [.upgrade: "websocket"]
        )
    }

    /// One call over one WebSocket: the first message is the call (`{"inputs": {...}}`), then
    /// events go out as text messages (one JSON event each) while messages come in — answers,
    /// anything the function reads, or `{"type": "cancel"}`. The socket closes after the
    /// terminal event. A refused message is answered with a `rejected` event and changes nothing.
    private func serveWebSocket(
        _ inbound: WebSocketInboundStream,
        _ outbound: WebSocketOutboundWriter,
        _ context: InvokeWebSocketContext
    ) async throws {
        var messages = inbound.messages(maxSize: configuration.maxBodyBytes).makeAsyncIterator()
        guard let call = try await messages.next() else { return }
        let invocation: Invocation
        do {
            invocation = try await startWebSocketCall(call, context)
        } catch {
            let event = PrefabEvent.error(PrefabError(error.code, error.message, details: error.details))
            try await outbound.writeTextMessage(event.jsonString)
            try await outbound.close(.normalClosure, reason: nil)
            return
        }
        let reader = invocation.events.attach()
        let lease = ReaderLease(invocation: invocation, reader: reader, grace: configuration.resumeGrace)
        defer { lease.release() }

        let eventLoop = context.requestContext.channel.eventLoop
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                while true {
                    let (events, batch) = await reader.nextEvents()
                    switch batch {
                    case .events:
                        for event in events {
                            try await outbound.writeTextMessage(String(decoding: event, as: UTF8.self))
                        }
                        // As for SSE: let the loop run its writes (and other connections) first.
                        try await eventLoop.submit {}.get()
                    case .idle:
                        continue
                    case .finished:
                        try await outbound.close(.normalClosure, reason: nil)
                        return
                    }
                }
            }
            while let message = try await messages.next() {
                if let rejection = handle(message, for: invocation) {
                    try await outbound.writeTextMessage(rejection.jsonString)
                }
            }
            // The client closed its side: the events have nowhere to go.
            lease.release()
            try await group.waitForAll()
        }
    }

    /// Checks the call of a WebSocket, then starts it.
    private func startWebSocketCall(
        _ message: WebSocketMessage,
        _ context: InvokeWebSocketContext
    ) async throws(GatewayError) -> Invocation {
        let function = try function(named: context.requestContext.parameters.get("name") ?? "")
        let inputs = try validatedInputs(of: function, call: Self.bytes(of: message))
        try await admit(function)
        let invocation = makeInvocation(
            function,
            inputs,
            baseURL: baseURL(for: context.request),
            owner: context.requestContext.apiKey,
            flowControl: true
        )
        let started: Bool
        switch function.implementation {
        case .streaming(let body): started = start(invocation, body)
        case .result(let body): started = start(invocation, body)
        }
        guard started else {
            abandon(invocation)
            throw overloaded
        }
        return invocation
    }

    /// Delivers one incoming message; returns the `rejected` event to send back when it is refused.
    private func handle(_ message: WebSocketMessage, for invocation: Invocation) -> PrefabEvent? {
        let json = try? JSONValue(parsing: Array(Self.bytes(of: message).readableBytesView))
        guard let event = json.flatMap(PrefabEvent.init(json:)) else {
            return Self.rejected(
                .invalidMessage,
                #"a message is one event object with a string "type", e.g. {"type": "answer", "data": {"questionId": "q1", "answer": "A"}}"#
            )
        }
        if event.type == "cancel" {
            invocation.context.cancel(PrefabError(.cancelled, "the invocation was cancelled by a client"))
            return nil
        }
        do throws(GatewayError) {
            try deliver(event, to: invocation)
            return nil
        } catch {
            return Self.rejected(error.code, error.message, details: error.details)
        }
    }

    private static func rejected(_ code: PrefabError.Code, _ message: String, details: [JSONValue] = []) -> PrefabEvent
    {
        var event = PrefabEvent(
            type: "rejected", fields: ["data": .string(message), "error_code": .string(code.rawValue)])
        if !details.isEmpty { event["details"] = .array(details) }
        return event
    }

    private static func bytes(of message: WebSocketMessage) -> ByteBuffer {
        switch message {
        case .text(let text): ByteBuffer(string: text)
        case .binary(let buffer): buffer
        }
    }
}

extension PrefabError.Code {
    public static let upgradeRequired: Self = "UPGRADE_REQUIRED"
}
