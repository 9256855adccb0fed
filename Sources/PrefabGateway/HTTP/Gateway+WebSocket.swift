import HTTPTypes
import Hummingbird
import HummingbirdWebSocket
import NIOCore
import NIOWebSocket
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
            self.catalog.functions[context.parameters.get("name") ?? ""] == nil ? .dontUpgrade : .upgrade([:])
        } onUpgrade: { inbound, outbound, context in
            try await self.serveWebSocket(inbound, outbound, context)
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
            try await Self.send(event, to: outbound)
            try await outbound.close(.normalClosure, reason: nil)
            return
        }
        let reader = invocation.events.attach()
        let lease = ReaderLease(invocation: invocation, reader: reader, grace: configuration.resumeGrace)
        defer { lease.release() }

        let channel = context.requestContext.channel
        let watch = stuckClientWatch(invocation, channel: channel)
        heartbeats.add(reader, watch: watch)
        defer { heartbeats.remove(reader) }
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                while true {
                    let (events, batch) = await reader.nextEvents()
                    switch batch {
                    case .events:
                        try await watch.writing {
                            for event in events { try await Self.sendText(event, to: outbound) }
                            // As for SSE: let the loop run its writes (and other connections) first.
                            try await channel.eventLoop.submit {}.get()
                        }
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
                    try await Self.send(rejection, to: outbound)
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
        let invocation = try makeInvocation(
            function,
            inputs,
            baseURL: baseURL(for: context.request),
            owner: context.requestContext.apiKey,
            flowControl: true,
            format: .webSocket
        )
        guard start(invocation) else {
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

    private static func send(_ event: PrefabEvent, to outbound: WebSocketOutboundWriter) async throws {
        var bytes: [UInt8] = []
        event.appendJSON(to: &bytes)
        try await sendText(bytes[...], to: outbound)
    }

    /// Sends one text message in frames of at most 16 KiB, the size every client takes (the
    /// library would use the server's own frame limit, which is as large as the body limit).
    private static func sendText(_ text: ArraySlice<UInt8>, to outbound: WebSocketOutboundWriter) async throws {
        var rest = text
        var opcode = WebSocketOpcode.text
        repeat {
            let frame = rest.prefix(outboundFrameBytes)
            rest = rest.dropFirst(frame.count)
            try await outbound.write(
                .custom(WebSocketFrame(fin: rest.isEmpty, opcode: opcode, data: ByteBuffer(bytes: frame))))
            opcode = .continuation
        } while !rest.isEmpty
    }

    static let outboundFrameBytes = 16 * 1024

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
