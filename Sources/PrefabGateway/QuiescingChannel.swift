import Hummingbird
import HummingbirdCore
import HummingbirdWebSocket
import Logging
import NIOCore

/// The server's connections: HTTP/1 with the WebSocket upgrade, plus two fixes. Until its first
/// request arrives, a connection waits in the upgrade negotiation, where a graceful shutdown does
/// not reach it: a client that connected and sent nothing kept the server from ever stopping
/// (seen as test runs that never ended). Such a connection is now closed when the server shuts down.
/// Nor does Hummingbird's idle timeout reach it there: a client that sends its first request's
/// headers a byte at a time (slowloris) is closed once `idleTimeout` passes without them.
struct QuiescingChannel<Inner: ServerChildChannel>: ServerChildChannel {
    typealias Value = Inner.Value
    let inner: Inner
    let idleTimeout: TimeAmount?

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        do {
            try channel.pipeline.syncOperations.addHandler(CloseSilentConnectionOnQuiesce(), position: .first)
            if let idleTimeout {
                try channel.pipeline.syncOperations.addHandler(FirstRequestDeadline(timeout: idleTimeout), position: .first)
            }
        } catch {
            return channel.eventLoop.makeFailedFuture(error)
        }
        return inner.setup(channel: channel, logger: logger)
    }

    func handle(value: Value, logger: Logger) async {
        await inner.handle(value: value, logger: logger)
    }
}

extension HTTPServerBuilder {
    /// HTTP/1 with WebSocket upgrades decided by `webSocketRouter`, safe to shut down.
    /// A connection that stays `idleTimeout` without a request (or without its whole headers) is
    /// closed; a running response is never cut.
    static func http1WebSocketUpgradeQuiescing<Router: HTTPResponderBuilder>(
        webSocketRouter: Router,
        idleTimeout: Duration?
    ) -> HTTPServerBuilder where Router.Responder.Context: WebSocketRequestContext {
        let webSocketResponder = webSocketRouter.buildResponder()
        let timeout = idleTimeout.map { TimeAmount.nanoseconds(Int64($0.seconds * 1e9)) }
        return HTTPServerBuilder { responder in
            QuiescingChannel(
                inner: HTTP1WebSocketUpgradeChannel(
                    responder: responder,
                    webSocketResponder: webSocketResponder,
                    configuration: .init(http1: .init(idleTimeout: timeout))
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

/// Closes the connection when its first request's headers are not all in within `timeout` of
/// connecting. Hummingbird's own idle timeout starts only with the first request.
private final class FirstRequestDeadline: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private let timeout: TimeAmount
    private var deadline: Scheduled<Void>?
    /// How much of the blank line that ends the headers (`\r\n\r\n`) was seen last.
    private var matched = 0
    private var headersEnded = false

    init(timeout: TimeAmount) {
        self.timeout = timeout
    }

    func handlerAdded(context: ChannelHandlerContext) {
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
}
