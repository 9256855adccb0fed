import NIOCore

/// Tells a response that its client hung up: the end of the connection's input (the client
/// closed or half-closed it) or the connection's close, within milliseconds. Hummingbird's way,
/// `consumeWithInboundCloseHandler`, keeps a child task reading the request's stream for each
/// open response (~6 KB of heap a stream, measured with thousands of streams); this costs a
/// waiting response a closure in its connection's `HangUpHandler`.
struct HangUpWatch: Sendable {
    private let handler: NIOLoopBound<HangUpHandler>

    /// Runs `onHangUp` once when the client of `channel` hangs up (at once if it already has),
    /// until `stop`. Nil when the channel has no `HangUpHandler` (a server set up otherwise).
    static func start(_ channel: any Channel, onHangUp: @escaping @Sendable () -> Void) async -> HangUpWatch? {
        let loop = channel.eventLoop
        let handler = try? await loop.submit {
            let handler = try channel.pipeline.syncOperations.handler(type: HangUpHandler.self)
            handler.watch(onHangUp)
            return NIOLoopBound(handler, eventLoop: loop)
        }.get()
        return handler.map { HangUpWatch(handler: $0) }
    }

    /// The response is over: a later hang-up is not its client's leaving.
    func stop() {
        handler.eventLoop.execute { [handler] in handler.value.stopWatching() }
    }
}

/// First in every connection's pipeline: notices the end of input and the close, and tells the
/// response waiting for them (`HangUpWatch`).
final class HangUpHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny

    private var hungUp = false
    private var onHangUp: (@Sendable () -> Void)?

    fileprivate func watch(_ action: @escaping @Sendable () -> Void) {
        if hungUp {
            action()
        } else {
            onHangUp = action
        }
    }

    fileprivate func stopWatching() {
        onHangUp = nil
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, event == .inputClosed { hangUp() }
        context.fireUserInboundEventTriggered(event)
    }

    func channelInactive(context: ChannelHandlerContext) {
        hangUp()
        context.fireChannelInactive()
    }

    private func hangUp() {
        hungUp = true
        let action = onHangUp
        onHangUp = nil
        action?()
    }
}
