import NIOCore
import NIOHTTP1

/// Mends a request's head just after the HTTP decoder, where its HTTP version is still known:
///
/// - An `Upgrade` header that names no protocol the gateway speaks (WebSocket is the only one) is
///   taken away, so that the request is served as plain HTTP, which RFC 9110 §7.8 allows: the
///   upgrade negotiation closed such a connection without any answer (`Upgrade: h2c` on
///   `GET /health`). A WebSocket upgrade opens the connection's `ConnectionGate`.
/// - An HTTP/1.0 request that did not ask for `keep-alive` gets `Connection: close`: the request
///   the gateway's handlers see has no version (`HTTPRequest`), and without the header they would
///   keep its connection open after the answer, which such a client reads to the connection's end
///   (`Gateway.keepsConnection`).
///
/// It leaves at a connection's first HTTP/1.1 request (the only one that negotiates an upgrade),
/// so the common connection pays for it once.
final class RequestHeadFilter: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        // Once the decoder is gone (a parse error, an upgrade), what comes is its left-over bytes.
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
        let protocols = head.headers[canonicalForm: "upgrade"].map { $0.lowercased() }
        if !protocols.isEmpty, !protocols.contains(where: { $0 == "websocket" || $0.hasPrefix("websocket/") }) {
            head.headers.remove(name: "upgrade")
            let connection = head.headers[canonicalForm: "connection"].filter { $0.lowercased() != "upgrade" }
            head.headers.remove(name: "connection")
            if !connection.isEmpty { head.headers.add(name: "Connection", value: connection.joined(separator: ", ")) }
        } else if !protocols.isEmpty {
            // A WebSocket: Hummingbird's handler runs it.
            (try? context.pipeline.syncOperations.handler(type: ConnectionGate.self))?.open()
        }
        guard head.version == .http1_0 else {
            context.fireChannelRead(wrapInboundOut(.head(head)))
            context.pipeline.syncOperations.removeHandler(self, promise: nil)
            return
        }
        let saysClose = head.headers[canonicalForm: "connection"].contains { $0.lowercased() == "close" }
        if !head.isKeepAlive, !saysClose { head.headers.add(name: "Connection", value: "close") }
        context.fireChannelRead(wrapInboundOut(.head(head)))
    }
}
