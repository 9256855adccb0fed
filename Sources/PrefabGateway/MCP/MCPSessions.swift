import Foundation
import HTTPTypes
import Hummingbird
import Logging
import MCP
import NIOCore
import PrefabKit
import Synchronization

/// The MCP sessions of `/mcp` (Streamable HTTP): an `initialize` without `Mcp-Session-Id` opens
/// one, every later request names it. A session with no request and no running call for
/// `idleTimeout` ends, at most `maxSessions` are open at once, `DELETE /mcp` ends one; a
/// session's calls are cancelled when it ends.
///
/// The MCP SDK's transport does the protocol (SSE framing, the GET stream for notifications and
/// server requests, resumption); this type only finds the transport a request belongs to and
/// turns Hummingbird's request and response into the SDK's and back.
final class MCPSessions: Sendable {
    private struct State {
        var sessions: [String: MCPSession] = [:]
        var sweep: GatewayTimer?
        var closed = false
    }

    private let state = Mutex(State())
    let tools: [Tool]
    let maxSessions: Int
    let idleTimeout: Duration
    /// Keeps idle streams open through proxies, and notices clients that left (the gateway's timer).
    let pings: HeartbeatTimer
    let logger: Logger

    init(catalog: PrefabCatalog, maxSessions: Int, idleTimeout: Duration, pings: HeartbeatTimer, logger: Logger) {
        self.tools = MCPToolCatalog(catalog: catalog).tools
        self.maxSessions = max(0, maxSessions)
        self.idleTimeout = idleTimeout
        self.pings = pings
        self.logger = logger
    }

    /// Open sessions.
    var count: Int { state.withLock { $0.sessions.count } }

    /// `POST`, `GET` or `DELETE /mcp`.
    func respond(to request: Hummingbird.Request, context: GatewayRequestContext, gateway: Gateway) async throws
        -> Hummingbird.Response
    {
        var request = request
        let body: ByteBuffer
        do {
            body = try await gateway.collectBody(&request)
        } catch let error as GatewayError {
            // A JSON-RPC error, which is what an MCP client reads (a body over the limit).
            return response(
                .error(
                    statusCode: Int(error.status.code),
                    .serverError(code: -32000, message: "\(error.code.rawValue): \(error.message)")))
        }
        var message = Self.message(request, body: body)
        guard let sessionID = request.headers[.mcpSessionId] else {
            guard request.method == .post, Self.isInitialize(body) else {
                return response(
                    .error(
                        statusCode: 400,
                        .invalidRequest(
                            "no Mcp-Session-Id header: send initialize (without one) to open a session, then name it in every request"
                        )))
            }
            return await open(message, owner: context.apiKey, gateway: gateway)
        }
        // A session opened with one API key is not found with another.
        guard let session = session(sessionID), session.owner == context.apiKey else {
            let shown = String(sessionID.prefix(64))
            return response(
                .error(
                    statusCode: 404,
                    .invalidRequest(
                        "no MCP session '\(shown)': it ended or expired; send initialize without Mcp-Session-Id to open a new one"
                    )))
        }
        session.touch()
        let lastEventID = message.header(MCP.HTTPHeaderName.lastEventID)
        // The GET stream of notifications and server requests (not a resumed POST stream).
        let notificationStream =
            request.method == .get
            && (lastEventID == nil || lastEventID?.hasPrefix(Self.notificationStreamPrefix) == true)
        if notificationStream, lastEventID == nil, let resume = session.notificationStreamResumePoint() {
            // The SDK allows one GET stream per session and never learns that its client left:
            // a client that opens a new one without Last-Event-ID would get 409 for the rest of
            // the session. Once the gateway saw the old one end, the new one resumes it instead.
            var headers = message.headers
            headers[MCP.HTTPHeaderName.lastEventID] = resume
            message = MCP.HTTPRequest(method: message.method, headers: headers, body: message.body, path: message.path)
        }
        let answer = await session.handle(message)
        if request.method == .delete, answer.statusCode == 200 {
            await end(sessionID, PrefabError(.cancelled, "the MCP client ended its session"))
        }
        return response(answer, notificationsOf: notificationStream ? session : nil)
    }

    /// How the SDK (0.12.1) names the events of a session's GET stream: `_GET_stream_<n>`.
    static let notificationStreamPrefix = "_GET_stream_"

    private func session(_ id: String) -> MCPSession? {
        state.withLock { $0.sessions[id] }
    }

    /// Opens a session for an `initialize` request, unless `maxSessions` are open.
    private func open(_ message: MCP.HTTPRequest, owner: Int?, gateway: Gateway) async -> Hummingbird.Response {
        // Behind a balancer, the id starts with this replica's route, which routes the session's
        // later requests back here (docs/deployment.md).
        let route = gateway.configuration.routeID.map { $0 + "." } ?? ""
        let session = MCPSession(id: route + InvocationID.make(), owner: owner)
        let refusal: MCP.HTTPResponse? = state.withLock { state in
            if state.closed {
                return .error(
                    statusCode: 503, .serverError(code: -32000, message: "SHUTTING_DOWN: the gateway is shutting down"))
            }
            guard state.sessions.count < maxSessions else {
                return .error(
                    statusCode: 503,
                    .serverError(
                        code: -32000,
                        message:
                            "TOO_MANY_SESSIONS: \(maxSessions) MCP sessions are open, the gateway's limit; end one with DELETE /mcp or retry once an idle one expires (after \(String(format: "%g", idleTimeout.seconds)) s)"
                    ),
                    extraHeaders: ["Retry-After": "5"]
                )
            }
            state.sessions[session.id] = session
            if state.sweep == nil { scheduleSweep(&state) }
            return nil
        }
        if let refusal { return response(refusal) }
        do {
            try await session.start(tools: tools, gateway: gateway)
        } catch {
            await end(session.id, PrefabError(.internalError, "the MCP session could not start"))
            return response(.error(statusCode: 500, .internalError("the MCP session could not start: \(error)")))
        }
        let answer = await session.handle(message)
        if case .error = answer {
            await end(session.id, PrefabError(.cancelled, "the MCP session's initialize was refused"))
        } else {
            logger.info("MCP session opened", metadata: ["session": "\(session.id)", "open": "\(count)"])
        }
        return response(answer)
    }

    /// Ends one session (see `MCPSession.end`).
    func end(_ id: String, _ reason: PrefabError) async {
        guard let session = state.withLock({ $0.sessions.removeValue(forKey: id) }) else { return }
        await session.end(reason)
        logger.info("MCP session ended", metadata: ["session": "\(id)", "reason": "\(reason.message)"])
    }

    /// The gateway is shutting down: every session ends, which closes its streams (an open GET
    /// stream would otherwise hold the server), and no new one opens.
    func closeAll() async {
        let sessions = state.withLock { state in
            state.closed = true
            state.sweep?.cancel()
            state.sweep = nil
            return Array(state.sessions.keys)
        }
        for id in sessions { await end(id, Gateway.shutdownReason) }
    }

    // MARK: Idle expiry

    /// Checks for idle sessions every quarter of `idleTimeout` (at most every 30 s) while any
    /// session is open.
    private func scheduleSweep(_ state: inout State) {
        let interval = min(Duration.seconds(30), max(.milliseconds(100), idleTimeout / 4))
        state.sweep = GatewayTimer.schedule(after: interval) { [weak self] in
            guard let self else { return }
            Task { await self.sweep() }
        }
    }

    private func sweep() async {
        let now = ContinuousClock.now
        let idle = state.withLock { state in
            let idle = state.sessions.filter { $0.value.isIdle(at: now, timeout: idleTimeout) }.map(\.key)
            state.sweep = nil
            if !state.closed, state.sessions.count > idle.count { scheduleSweep(&state) }
            return idle
        }
        for id in idle {
            await end(id, PrefabError(.cancelled, "the MCP session expired"))
        }
    }

    // MARK: Hummingbird to the MCP SDK and back

    /// Whether the body is a JSON-RPC `initialize` request (the SDK's own check is internal to it).
    static func isInitialize(_ body: ByteBuffer) -> Bool {
        let json = body.withUnsafeReadableBytes { try? JSONValue(parsing: $0) }
        guard let object = json?.objectValue, let id = object["id"], !id.isNull else { return false }
        return object["method"]?.stringValue == "initialize"
    }

    static func message(_ request: Hummingbird.Request, body: ByteBuffer) -> MCP.HTTPRequest {
        var headers: [String: String] = [:]
        for field in request.headers {
            let name = field.name.canonicalName
            headers[name] = headers[name].map { $0 + ", " + field.value } ?? field.value
        }
        // HTTP/1's Host is the request's authority here, not a header field.
        if let authority = request.head.authority { headers["Host"] = authority }
        return MCP.HTTPRequest(
            method: request.method.rawValue,
            headers: headers,
            body: body.readableBytes > 0 ? Data(body.readableBytesView) : nil,
            path: request.uri.path
        )
    }

    /// The Hummingbird response for the SDK's; `session` is given for its GET stream, which it
    /// watches (see `MCPSession.notificationStreamResumePoint`).
    func response(_ answer: MCP.HTTPResponse, notificationsOf session: MCPSession? = nil) -> Hummingbird.Response {
        var headers = HTTPFields()
        for (name, value) in answer.headers {
            if let name = HTTPField.Name(name) { headers[name] = value }
        }
        let status = HTTPTypes.HTTPResponse.Status(code: answer.statusCode)
        switch answer {
        case .stream(let stream, _):
            headers[.accelBuffering] = "no"
            return Hummingbird.Response(
                status: status, headers: headers,
                body: ResponseBody { [pings] writer in
                    session?.notificationStreamOpened()
                    defer { session?.notificationStreamClosed() }
                    try await Self.write(stream, pings: pings, to: &writer) { session?.relayed($0) }
                })
        default:
            let body = answer.bodyData.map { ByteBuffer(bytes: $0) } ?? ByteBuffer()
            return Hummingbird.Response(status: status, headers: headers, body: ResponseBody(byteBuffer: body))
        }
    }

    /// Writes the SDK's SSE bytes as they come, and the `: ping` comments of `pings`: an idle GET
    /// stream or a long call's stream then stays open through proxies, and a client that left is
    /// noticed at the next ping, which ends the stream.
    static func write(
        _ stream: AsyncThrowingStream<Data, any Error>, pings: HeartbeatTimer, to writer: inout any ResponseBodyWriter,
        relayed: @escaping @Sendable (Data) -> Void = { _ in }
    ) async throws {
        let (chunks, input) = AsyncStream.makeStream(of: ByteBuffer.self)
        let forward = Task {
            do {
                for try await chunk in stream {
                    relayed(chunk)
                    input.yield(ByteBuffer(bytes: chunk))
                }
            } catch {}
            input.finish()
        }
        let pinged = pings.add(input)
        defer {
            forward.cancel()
            pings.remove(pinged: pinged)
        }
        for await chunk in chunks { try await writer.write(chunk) }
        try await writer.finish(nil)
    }
}

extension HTTPField.Name {
    /// The MCP session a request belongs to.
    static let mcpSessionId = HTTPField.Name("Mcp-Session-Id")!
}
