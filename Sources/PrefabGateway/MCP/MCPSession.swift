import Foundation
import MCP
import PrefabKit
import Synchronization

/// One MCP client's session, on `/mcp` or over stdio (`prefab-gateway mcp`): its MCP `Server`
/// and transport, the API key that opened it, and the calls it is running, which end with it.
final class MCPSession: Sendable {
    let id: String
    /// The API key that opened the session, the only one that reaches it; nil when keys are off.
    let owner: Int?
    let server: Server
    /// The Streamable HTTP transport of a session on `/mcp`; nil over stdio.
    let httpTransport: StatefulHTTPServerTransport?
    private let transport: any Transport
    /// The base of its file URLs when its requests name no `Host` (stdio).
    private let fileBaseURL: String?
    private let state: Mutex<State>

    private struct State {
        var lastUsed: ContinuousClock.Instant
        var calls: [String: Invocation] = [:]
        /// The client said at `initialize` that it answers `elicitation/create`.
        var canElicit = false
        var ended = false
        /// GET streams being written now (one, unless a new one is refused with 409).
        var notificationStreams = 0
        /// The id of the last event written on a GET stream.
        var lastNotificationEventID: String?
    }

    /// A session over `transport`, whose file URLs start with `fileBaseURL`; without a transport,
    /// a Streamable HTTP one for `/mcp`, whose file URLs follow each request's `Host`.
    init(id: String, owner: Int?, transport: (any Transport)? = nil, fileBaseURL: String? = nil) {
        self.id = id
        self.owner = owner
        self.fileBaseURL = fileBaseURL
        self.server = Server(
            name: "prefab-gateway",
            version: "1.0.0",
            title: "Prefab Gateway",
            instructions: "Every tool is a prefab function: its text, structured result and output files come back "
                + "in the tool result; progress comes as notifications when a progress token is sent.",
            capabilities: .init(tools: .init(listChanged: false))
        )
        let http = StatefulHTTPServerTransport(
            sessionIDGenerator: FixedSessionID(id: id),
            // The SDK's default also checks Host and Origin, allowing loopback only; the gateway's
            // BrowserAccessPolicy has already decided those, as for every other route.
            validationPipeline: StandardValidationPipeline(validators: [
                AcceptHeaderValidator(mode: .sseRequired),
                ContentTypeValidator(),
                ProtocolVersionValidator(),
                SessionValidator(),
            ])
        )
        self.httpTransport = transport == nil ? http : nil
        self.transport = transport ?? http
        self.state = Mutex(State(lastUsed: .now))
    }

    /// Registers the tools and starts the server on the transport.
    func start(tools: [Tool], gateway: Gateway) async throws {
        await server.withMethodHandler(ListTools.self) { _ in ListTools.Result(tools: tools) }
        await server.withMethodHandler(CallTool.self) { [weak self, weak gateway] parameters in
            guard let self, let gateway else { throw MCPError.internalError("the MCP session has ended") }
            let authority = Server.currentHandlerContext?.httpContext?.header("Host")
            return try await MCPToolCall(
                gateway: gateway, session: self, parameters: parameters,
                baseURL: self.fileBaseURL ?? gateway.baseURL(forAuthority: authority)
            ).run()
        }
        try await server.start(transport: transport) { [weak self] _, capabilities in
            self?.state.withLock { $0.canElicit = capabilities.elicitation != nil }
        }
    }

    /// An `/mcp` request for this session's HTTP transport.
    func handle(_ request: MCP.HTTPRequest) async -> MCP.HTTPResponse {
        guard let httpTransport else {
            return .error(statusCode: 404, .invalidRequest("this MCP session is not served over HTTP"))
        }
        return await httpTransport.handleRequest(request)
    }

    var canElicit: Bool { state.withLock { $0.canElicit } }

    /// A request of the session arrived.
    func touch() {
        state.withLock { $0.lastUsed = .now }
    }

    /// No request for `timeout` and no call running.
    func isIdle(at now: ContinuousClock.Instant, timeout: Duration) -> Bool {
        state.withLock { $0.calls.isEmpty && now - $0.lastUsed >= timeout }
    }

    /// Where a new GET stream resumes: the last event id written on the previous one, once that
    /// one has ended (its client left: noticed at the next write or ping). Nil while one is open,
    /// or before any.
    func notificationStreamResumePoint() -> String? {
        state.withLock { $0.notificationStreams == 0 ? $0.lastNotificationEventID : nil }
    }

    func notificationStreamOpened() {
        state.withLock { $0.notificationStreams += 1 }
    }

    func notificationStreamClosed() {
        state.withLock { $0.notificationStreams -= 1 }
    }

    /// An SSE event the SDK wrote on the GET stream: remembers its id (`id: ...` on its first line).
    func relayed(_ event: Data) {
        let prefix = Array("id: ".utf8)
        guard event.starts(with: prefix), let end = event.firstIndex(of: UInt8(ascii: "\n")) else { return }
        let id = String(decoding: event[event.startIndex + prefix.count..<end], as: UTF8.self)
        state.withLock { $0.lastNotificationEventID = id }
    }

    /// Counts a call as the session's; false once the session has ended.
    func add(_ invocation: Invocation) -> Bool {
        state.withLock { state in
            guard !state.ended else { return false }
            state.calls[invocation.id] = invocation
            return true
        }
    }

    func remove(_ invocation: Invocation) {
        _ = state.withLock { $0.calls.removeValue(forKey: invocation.id) }
    }

    /// Ends the session: its running calls are cancelled with `reason`, its streams closed, and
    /// any request it still sends is answered 404.
    func end(_ reason: PrefabError) async {
        let calls = state.withLock { state in
            state.ended = true
            return Array(state.calls.values)
        }
        for invocation in calls { invocation.context.cancel(reason) }
        await server.stop()
    }
}

/// The gateway chooses the session id before the transport sees `initialize`, so that it can
/// find the session by that id.
private struct FixedSessionID: SessionIDGenerator {
    let id: String
    func generateSessionID() -> String { id }
}
