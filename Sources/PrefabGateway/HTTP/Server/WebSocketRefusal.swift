import HTTPTypes
import Hummingbird
import NIOCore

/// The answer to a WebSocket upgrade that the gateway refused with one of its errors (an origin
/// or host not allowed, no API key, ...): the whole HTTP response, written by the connection's
/// first handler. Without it the WebSocket library only fails the upgrade, which was answered
/// with a bare 400 "not valid HTTP".
struct WebSocketRefusal: Sendable {
    let response: ByteBuffer
}

/// Sends the gateway's error answer for a refused upgrade as a `WebSocketRefusal`. First on the
/// WebSocket router, so it sees the errors of every other middleware as responses.
struct WebSocketRefusalReporter: RouterMiddleware {
    typealias Context = GatewayWebSocketContext

    func handle(
        _ request: Request,
        context: Context,
        next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        let response = try await next(request, context)
        // 200 means "upgrade"; only the gateway's own errors carry a body worth sending.
        guard response.status != .ok, response.headers[.contentType]?.hasPrefix("application/json") == true else {
            return response
        }
        let collector = BodyCollector()
        try await response.body.write(collector)
        var text = "HTTP/1.1 \(response.status.code) \(response.status.reasonPhrase)\r\n"
        for field in response.headers where field.name != .contentLength && field.name != .connection {
            text += "\(field.name.rawName): \(field.value)\r\n"
        }
        text += "Content-Length: \(collector.bytes.readableBytes)\r\nConnection: close\r\n\r\n"
        var bytes = ByteBuffer(string: text)
        bytes.writeImmutableBuffer(collector.bytes)
        context.channel.triggerUserOutboundEvent(WebSocketRefusal(response: bytes), promise: nil)
        return response
    }

    /// Keeps what is written to it (a class: the body takes its writer by value).
    private final class BodyCollector: ResponseBodyWriter {
        var bytes = ByteBuffer()
        func write(_ buffer: ByteBuffer) async throws { bytes.writeImmutableBuffer(buffer) }
        func finish(_ trailingHeaders: HTTPFields?) async throws {}
    }
}
