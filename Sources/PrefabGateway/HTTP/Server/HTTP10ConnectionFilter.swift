import NIOCore
import NIOHTTP1

/// Adds `Connection: close` to an HTTP/1.0 request that did not ask for `keep-alive`: the request
/// the gateway's handlers see has no HTTP version (`HTTPRequest`), and without the header they
/// would keep its connection open after the answer, which such a client reads to the
/// connection's end (`Gateway.keepsConnection`). Just after the HTTP decoder; it leaves at a
/// connection's first HTTP/1.1 request, so the common connection pays for it once.
final class HTTP10ConnectionFilter: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        // Once the decoder is gone (a parse error), what comes is its left-over bytes.
        guard (try? context.pipeline.syncOperations.handler(type: ByteToMessageHandler<HTTPRequestDecoder>.self)) != nil
        else {
            context.fireChannelRead(data)
            context.pipeline.syncOperations.removeHandler(self, promise: nil)
            return
        }
        guard case .head(var head) = unwrapInboundIn(data) else {
            context.fireChannelRead(data)
            return
        }
        guard head.version == .http1_0 else {
            context.fireChannelRead(data)
            context.pipeline.syncOperations.removeHandler(self, promise: nil)
            return
        }
        let saysClose = head.headers[canonicalForm: "connection"].contains { $0.lowercased() == "close" }
        if !head.isKeepAlive, !saysClose { head.headers.add(name: "Connection", value: "close") }
        context.fireChannelRead(wrapInboundOut(.head(head)))
    }
}
