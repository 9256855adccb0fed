import NIOCore
import NIOHTTP1

/// Takes away an `Upgrade` header that names no protocol the gateway speaks (WebSocket is the only
/// one), so that the request is served as plain HTTP, which RFC 9110 §7.8 allows: the upgrade
/// negotiation closed such a connection without any answer (`Upgrade: h2c` on `GET /health`).
/// Just after the HTTP decoder, for the first request only (the only one that negotiates). A
/// WebSocket upgrade opens the connection's `ConnectionGate`.
final class UnknownUpgradeFilter: ChannelInboundHandler, RemovableChannelHandler {
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
        context.fireChannelRead(wrapInboundOut(.head(head)))
        context.pipeline.syncOperations.removeHandler(self, promise: nil)
    }
}
