import Hummingbird
import HummingbirdCore
import HummingbirdWebSocket
import Logging
import NIOCore
import NIOHTTP1

/// The server's connections: HTTP/1 with the WebSocket upgrade, plus two fixes. Until its first
/// request arrives, a connection waits in the upgrade negotiation, where a graceful shutdown does
/// not reach it: a client that connected and sent nothing kept the server from ever stopping
/// (seen as test runs that never ended). Such a connection is now closed when the server shuts down.
/// Nor does Hummingbird's idle timeout reach it there: a client that sends its first request's
/// headers a byte at a time (slowloris) is closed once `idleTimeout` passes without them.
///
/// Hummingbird's handling of a connection waits behind a `ConnectionGate` until a request needs it.
struct QuiescingChannel<Inner: ServerChildChannel>: ServerChildChannel {
    let inner: Inner
    let idleTimeout: TimeAmount?

    struct Value: ServerChildChannelValue {
        let inner: Inner.Value
        let gate: ConnectionGate
        var channel: any Channel { inner.channel }
    }

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        let gate = ConnectionGate()
        channel.closeFuture.whenComplete { _ in gate.close() }
        do {
            try channel.syncOptions?.setOption(.recvAllocator, value: Self.readBuffers)
            try channel.pipeline.syncOperations.addHandler(gate, position: .first)
            try channel.pipeline.syncOperations.addHandler(HangUpHandler(), position: .first)
            try channel.pipeline.syncOperations.addHandler(CloseSilentConnectionOnQuiesce(), position: .first)
            try channel.pipeline.syncOperations.addHandler(
                FirstRequestGuard(timeout: idleTimeout), position: .first)
        } catch {
            return channel.eventLoop.makeFailedFuture(error)
        }
        return inner.setup(channel: channel, logger: logger).flatMapThrowing { value in
            // Last for now: it sees the errors of the first request's parsing.
            try channel.pipeline.syncOperations.addHandler(FirstRequestErrorCatcher())
            let decoder = try channel.pipeline.syncOperations.handler(
                type: ByteToMessageHandler<HTTPRequestDecoder>.self)
            try channel.pipeline.syncOperations.addHandler(RequestHeadFilter(), position: .after(decoder))
            return Value(inner: value, gate: gate)
        }
    }

    /// A connection keeps its read buffer between reads (NIO pools it): at NIO's 2,048 bytes to
    /// start, that was 2 KB of every open stream (heaptrack, 2,000 tickers), for a request that is
    /// usually a few hundred bytes. A read that fills the buffer doubles the next one's, up to
    /// 64 KiB, so a large body costs a few more reads at its start.
    static var readBuffers: AdaptiveRecvByteBufferAllocator {
        AdaptiveRecvByteBufferAllocator(minimum: 64, initial: 512, maximum: 65_536)
    }

    func handle(value: Value, logger: Logger) async {
        let needed = await withTaskCancellationHandler {
            await value.gate.wait()
        } onCancel: {
            value.gate.close()
            value.channel.close(promise: nil)
        }
        guard needed else { return }
        await inner.handle(value: value.inner, logger: logger)
    }
}

extension HTTPServerBuilder {
    /// HTTP/1 with WebSocket upgrades decided by `webSocketRouter`, safe to shut down.
    /// A connection that stays `idleTimeout` without a request (or without its whole headers) is
    /// closed; a running response is never cut.
    /// A WebSocket frame may be as large as `maxFrameBytes` (the library's default is 16 KiB).
    /// `additionalChannelHandlers` are made for each connection and go after the HTTP decoding.
    static func http1WebSocketUpgradeQuiescing<Router: HTTPResponderBuilder>(
        webSocketRouter: Router,
        idleTimeout: Duration?,
        maxFrameBytes: Int,
        additionalChannelHandlers: @autoclosure @escaping @Sendable () -> [any RemovableChannelHandler] = []
    ) -> HTTPServerBuilder where Router.Responder.Context: WebSocketRequestContext {
        let webSocketResponder = webSocketRouter.buildResponder()
        let timeout = idleTimeout.map { TimeAmount.nanoseconds(Int64($0.seconds * 1e9)) }
        return HTTPServerBuilder { responder in
            QuiescingChannel(
                inner: HTTP1WebSocketUpgradeChannel(
                    responder: responder,
                    webSocketResponder: webSocketResponder,
                    configuration: .init(
                        http1: .init(
                            additionalChannelHandlers: additionalChannelHandlers(), idleTimeout: timeout),
                        ws: .init(maxFrameSize: maxFrameBytes)
                    )
                ),
                idleTimeout: timeout
            )
        }
    }
}

/// Closes the connection on a shutdown request while nothing has been received on it yet; after
/// that, the HTTP handlers behind it deal with shutdown themselves.
private final class CloseSilentConnectionOnQuiesce: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny

    private var received = false

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        received = true
        context.fireChannelRead(data)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is ChannelShouldQuiesceEvent, !received {
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }
}

/// Guards a connection until its first request is parsed. Closes it when the request's headers
/// are not all in within `timeout` of connecting (Hummingbird's own idle timeout starts only with
/// the first request), and answers 400 with the JSON error body when `FirstRequestErrorCatcher`
/// reports that they could not be parsed: the upgrade negotiation would otherwise wait forever
/// (seen with control characters in a header value). First in the pipeline, so what it writes
/// goes out as it is.
private final class FirstRequestGuard: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let timeout: TimeAmount?
    private var deadline: Scheduled<Void>?
    /// How much of the blank line that ends the headers (`\r\n\r\n`) was seen last.
    private var matched = 0
    private var headersEnded = false
    private var answered = false

    init(timeout: TimeAmount?) {
        self.timeout = timeout
    }

    func handlerAdded(context: ChannelHandlerContext) {
        guard let timeout else { return }
        deadline = context.eventLoop.assumeIsolated().scheduleTask(in: timeout) { [weak self] in
            guard let self, !self.headersEnded else { return }
            context.close(promise: nil)
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        deadline?.cancel()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if !headersEnded {
            let pattern: [UInt8] = [13, 10, 13, 10]
            for byte in unwrapInboundIn(data).readableBytesView {
                matched = byte == pattern[matched] ? matched + 1 : (byte == 13 ? 1 : 0)
                if matched == pattern.count {
                    headersEnded = true
                    deadline?.cancel()
                    break
                }
            }
        }
        context.fireChannelRead(data)
    }

    func triggerUserOutboundEvent(context: ChannelHandlerContext, event: Any, promise: EventLoopPromise<Void>?) {
        // A refused WebSocket upgrade: the gateway's own answer, before the library fails the upgrade.
        if let refusal = event as? WebSocketRefusal {
            answer(refusal.response, context: context)
            promise?.succeed()
            return
        }
        guard let refusal = event as? FirstRequestErrorCatcher.Refusal else {
            context.triggerUserOutboundEvent(event, promise: promise)
            return
        }
        let body = GatewayError(.badRequest, .invalidRequest, "the request is not valid HTTP: \(refusal.reason)")
            .jsonValue.jsonString(pretty: false)
        let head =
            "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json; charset=utf-8\r\n"
            + "Content-Length: \(body.utf8.count + 1)\r\nConnection: close\r\n\r\n"
        answer(ByteBuffer(string: head + body + "\n"), context: context)
        promise?.succeed()
    }

    /// Writes a whole response and closes the connection; only the first answer goes out.
    private func answer(_ response: ByteBuffer, context: ChannelHandlerContext) {
        guard !answered else { return }
        answered = true
        context.writeAndFlush(wrapOutboundOut(response)).assumeIsolated().whenComplete { _ in
            context.close(promise: nil)
        }
    }
}

/// Catches an error in parsing the first request, which nothing else handles before the upgrade
/// negotiation is over, and has `FirstRequestGuard` answer it; leaves once a request got through.
private final class FirstRequestErrorCatcher: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny

    struct Refusal {
        var reason: String
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        context.fireChannelRead(data)
        context.pipeline.syncOperations.removeHandler(self, promise: nil)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.triggerUserOutboundEvent(Refusal(reason: "\(error)"), promise: nil)
    }
}
