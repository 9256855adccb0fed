import Hummingbird
import HummingbirdWebSocket
import NIOCore

/// A request context that carries the API key a request was made with.
protocol APIKeyRequestContext: RequestContext {
    /// Which configured key authenticated the request; nil when keys are off.
    var apiKey: Int? { get set }
}

/// The context of every HTTP request: Hummingbird's, the connection (so that a stream can drop
/// a client that stopped reading) and the request's API key.
struct GatewayRequestContext: APIKeyRequestContext {
    var coreContext: CoreRequestContextStorage
    let channel: any Channel
    var apiKey: Int?

    init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
        self.channel = source.channel
    }
}

/// The context of a WebSocket upgrade request: the connection and the request's API key.
struct GatewayWebSocketContext: APIKeyRequestContext, WebSocketRequestContext {
    var coreContext: CoreRequestContextStorage
    let webSocket: WebSocketHandlerReference<Self>
    let channel: any Channel
    var apiKey: Int?

    init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
        self.webSocket = .init()
        self.channel = source.channel
    }
}
