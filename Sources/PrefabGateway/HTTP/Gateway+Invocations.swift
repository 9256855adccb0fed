import HTTPTypes
import Hummingbird
import NIOCore
import PrefabKit
import Synchronization

extension Gateway {
    /// `GET /invocations/<id>`: state, function, timing, event count.
    func invocationStatus(context: GatewayRequestContext) async throws -> Response {
        if let row = try await storedRow(context) { return .json(row.statusJSON) }
        return .json(try invocation(context).statusJSON)
    }

    /// `DELETE /invocations/<id>` (or `POST .../cancel`): the function's next `yield` throws, a
    /// process prefab is stopped, and the stream ends with an `error` event `CANCELLED`.
    func cancelInvocation(context: GatewayRequestContext) async throws -> Response {
        if let row = try await storedRow(context) {
            return try await forward(SharedStore.Command(invocationId: row.id, kind: "cancel"), to: row)
        }
        let invocation = try invocation(context)
        try requireRunning(invocation)
        invocation.context.cancel(PrefabError(.cancelled, "the invocation was cancelled by a client"))
        return .json(["id": .string(invocation.id), "state": "cancelling"], status: .accepted)
    }

    /// `POST /invocations/<id>/messages`: one event object (an `answer`, or anything the
    /// function reads with `nextMessage`), delivered to the running function.
    func deliverMessage(_ request: Request, context: GatewayRequestContext) async throws -> Response {
        let row = try await storedRow(context)
        if row == nil { _ = try invocation(context) }
        var request = request
        let json = try await readJSONBody(&request)
        guard let message = PrefabEvent(json: json) else {
            throw GatewayError(
                .badRequest,
                .invalidMessage,
                #"a message is one event object with a string "type", e.g. {"type": "answer", "data": {"questionId": "q1", "answer": "A"}}"#
            )
        }
        if let row {
            return try await forward(
                SharedStore.Command(invocationId: row.id, kind: "message", body: message.jsonString), to: row)
        }
        let invocation = try invocation(context)
        try requireRunning(invocation)
        try deliver(message, to: invocation)
        return .json(["id": .string(invocation.id), "delivered": true], status: .accepted)
    }

    /// Hands `message` to the invocation, turning a refusal into its HTTP error.
    func deliver(_ message: PrefabEvent, to invocation: Invocation) throws(GatewayError) {
        do {
            try invocation.context.deliver(message)
        } catch {
            switch error.code {
            case .questionNotPending, .invocationFinished:
                throw GatewayError(.conflict, error.code, error.message, details: error.details)
            case .invalidAnswer:
                throw GatewayError(.unprocessableContent, error.code, error.message, details: error.details)
            case .tooManyMessages:
                throw GatewayError(.tooManyRequests, error.code, error.message, headers: [.retryAfter: "1"])
            default:
                throw GatewayError(.badRequest, error.code, error.message, details: error.details)
            }
        }
    }

    /// `GET /invocations/<id>/events`: every event after `Last-Event-ID` (or `?after=`), then the
    /// live ones until the end. 204 when there is nothing more to come, which tells a browser's
    /// `EventSource` to stop reconnecting.
    func invocationEvents(_ request: Request, context: GatewayRequestContext) async throws -> Response {
        let row = try await storedRow(context)
        let text = request.headers[.lastEventID] ?? request.uri.queryParameters.get("after") ?? "0"
        guard let after = Int(text.filter { $0 != " " }), after >= 0 else {
            throw GatewayError(
                .badRequest,
                .invalidRequest,
                "Last-Event-ID (or ?after=) must be an event number, not '\(text)'"
            )
        }
        if let row { return storedEvents(row, after: after, request: request, context: context) }
        let invocation = try invocation(context)
        if let count = invocation.events.finalCount, after >= count {
            var response = Response(status: .noContent)
            response.headers[.invocationId] = invocation.id
            return response
        }
        let reader = invocation.events.attach(after: after)
        return eventStreamResponse(invocation, reader: reader, request: request, context: context)
    }

    /// The SSE answer for `reader`: whole on a kept-alive connection when everything is already
    /// there, otherwise streamed until the end on a watched connection.
    func eventStreamResponse(
        _ invocation: Invocation,
        reader: EventLog.Reader,
        request: Request,
        context: GatewayRequestContext
    ) -> Response {
        var headers = Self.eventStreamHeaders
        headers[.invocationId] = invocation.id
        let lease = ReaderLease(invocation: invocation, reader: reader, grace: configuration.resumeGrace)
        var first: [UInt8] = []
        if reader.takeAvailable(into: &first) {
            lease.release()
            return Response(status: .ok, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(bytes: first)))
        }

        let watch = stuckClientWatch(invocation, channel: context.channel)
        let keepAlive = Self.keepsConnection(request)
        if !keepAlive { headers[.connection] = "close" }
        let requestBody = request.body
        let channel = context.channel
        let eventLoop = channel.eventLoop
        return Response(
            status: .ok,
            headers: headers,
            body: ResponseBody { [first, heartbeats] writer in
                defer { lease.release() }
                heartbeats.add(reader, watch: watch)
                defer { heartbeats.remove(reader) }
                /// Writes `bytes`, then waits until the event loop has run the write. Without the
                /// wait a fast stream queues its next write before the loop's task queue empties,
                /// and the loop serves no other connection's I/O until it does (a flood held every
                /// request on its loop for 20 s). Events that come meanwhile go out in one write.
                func send(_ bytes: [UInt8]) async throws {
                    try await watch.writing {
                        try await writer.write(ByteBuffer(bytes: bytes))
                        try await eventLoop.submit {}.get()
                    }
                }
                func stream() async throws {
                    if !first.isEmpty { try await send(first) }
                    var bytes: [UInt8] = []
                    while true {
                        switch await reader.next(into: &bytes) {
                        case .events: try await send(bytes)
                        case .idle: try await send(SSEEncoder.heartbeat)
                        case .finished: return
                        }
                    }
                }
                // The client's close is noticed within milliseconds, instead of at the second
                // write that fails: its reader is let go, and its call cancelled after the
                // resume grace.
                try await Self.watchingHangUp(
                    channel, requestBody, keepingConnection: keepAlive, onHangUp: { lease.release() }, stream)
                try await writer.finish(nil)
            }
        )
    }

    /// Runs `body` (a response that waits a while), calling `onHangUp` if the client hangs up
    /// meanwhile, through the connection's `HangUpHandler`. It only watches, so with
    /// `keepingConnection` the connection then carries the client's next request; otherwise its
    /// input is closed when the response ends. On a channel set up without the handler,
    /// Hummingbird's watch (a task per response) reads the connection's input, which is closed.
    static func watchingHangUp<Value: Sendable>(
        _ channel: any Channel,
        _ requestBody: RequestBody,
        keepingConnection: Bool = false,
        onHangUp: @escaping @Sendable () -> Void,
        _ body: () async throws -> Value
    ) async throws -> Value {
        try await watchingHangUpSayingClose(
            channel, requestBody, keepingConnection: keepingConnection, onHangUp: onHangUp, body
        ).value
    }

    /// `watchingHangUp`, also saying whether the connection closes after the response (for its
    /// `Connection` header, when that is decided after the wait).
    static func watchingHangUpSayingClose<Value: Sendable>(
        _ channel: any Channel,
        _ requestBody: RequestBody,
        keepingConnection: Bool,
        onHangUp: @escaping @Sendable () -> Void,
        _ body: () async throws -> Value
    ) async throws -> (value: Value, closesConnection: Bool) {
        let watch = await HangUpWatch.start(channel, onHangUp: onHangUp)
        defer {
            watch?.stop()
            // Ends Hummingbird's wait for the connection's next request.
            if watch == nil || !keepingConnection { channel.close(mode: .input, promise: nil) }
        }
        guard watch != nil else {
            let value = try await requestBody.consumeWithInboundCloseHandler { _ in
                try await body()
            } onInboundClosed: {
                onHangUp()
            }
            return (value, true)
        }
        return (try await body(), !keepingConnection)
    }

    /// Whether the connection carries the client's next request after an answer that waited: yes
    /// unless the request said `Connection: close`, as HTTP/1.1 keeps connections by default (an
    /// HTTP/1.0 request without `keep-alive` arrives with `close` added: `RequestHeadFilter`).
    /// Closing after every such answer cost clients that send no `Connection` header (Go's and
    /// Rust's HTTP clients, curl, the benchmark's) a new connection per streamed call. A client
    /// that reads a stream to the connection's end sends `Connection: close`.
    static func keepsConnection(_ request: Request) -> Bool {
        keepsConnection(connection: request.headers[.connection])
    }

    /// The same from the request's `Connection` header.
    static func keepsConnection(connection: String?) -> Bool {
        !contains(connection ?? "", "close", ignoringCase: true)
    }

    func invocation(_ context: GatewayRequestContext) throws -> Invocation {
        let id = context.parameters.get("id") ?? ""
        // Another key's invocation is not found rather than forbidden: ids are not confirmed.
        guard let invocation = invocations.invocation(id), invocation.owner == context.apiKey else {
            throw GatewayError(
                .notFound,
                .invocationNotFound,
                "no invocation '\(id)': it never existed, or it ended more than \(Int(configuration.invocationRetention.seconds)) s ago"
            )
        }
        return invocation
    }

    func requireRunning(_ invocation: Invocation) throws {
        let phase = invocation.phase
        guard phase == .running else {
            throw GatewayError(
                .conflict, .invocationFinished, "the invocation has already ended: it is \(phase.rawValue)")
        }
    }

    /// The request body, refused with 413 past the gateway's size limit.
    func collectBody(_ request: inout Request) async throws -> ByteBuffer {
        let tooLarge = GatewayError(
            .contentTooLarge,
            .payloadTooLarge,
            "the request body is larger than the limit of \(configuration.maxBodyBytes) bytes"
        )
        // A declared length over the limit is refused before a byte of the body is read.
        if let length = request.headers[.contentLength].flatMap(Int.init), length > configuration.maxBodyBytes {
            throw tooLarge
        }
        do {
            return try await request.collectBody(upTo: configuration.maxBodyBytes)
        } catch is NIOTooManyBytesError {
            throw tooLarge
        } catch {
            // The client cut the body short, or framed it badly (chunked encoding).
            throw GatewayError(.badRequest, .invalidRequest, "the request body could not be read: \(error)")
        }
    }

    /// A JSON request body, with the gateway's size limit and clear errors.
    func readJSONBody(_ request: inout Request) async throws -> JSONValue {
        let body = try await collectBody(&request)
        do {
            return try body.withUnsafeReadableBytes { try JSONValue(parsing: $0) }
        } catch {
            throw GatewayError(.badRequest, .invalidJSON, "the body is not valid JSON: \(error)")
        }
    }
}

/// A reader's hold on an invocation's events. Released once — when its response ends, its client
/// disconnects, or the response is dropped unwritten — it detaches the reader, and a call left
/// with no reader is cancelled after the resume grace period.
final class ReaderLease: Sendable {
    private let invocation: Invocation
    private let reader: EventLog.Reader
    private let grace: Duration
    private let released = Atomic<Bool>(false)

    init(invocation: Invocation, reader: EventLog.Reader, grace: Duration) {
        self.invocation = invocation
        self.reader = reader
        self.grace = grace
    }

    func release() {
        guard !released.exchange(true, ordering: .acquiringAndReleasing) else { return }
        invocation.readerLeft(remaining: reader.detach(), grace: grace)
    }

    deinit { release() }
}

extension Gateway {
    /// The headers of every answer that streams SSE: not cached, not buffered by a proxy (nginx
    /// reads `X-Accel-Buffering`).
    static let eventStreamHeaders: HTTPFields = [
        .contentType: "text/event-stream; charset=utf-8",
        .cacheControl: "no-cache",
        .accelBuffering: "no",
    ]

    /// Drops a client that reads nothing for `clientIdleTimeout`, and stops its call: otherwise
    /// the function would wait in `yield` until its timeout. For every streamed answer.
    func stuckClientWatch(_ invocation: Invocation, channel: any Channel) -> WriteWatch {
        stuckClientWatch(invocation) { channel.close(promise: nil) }
    }

    /// `stuckClientWatch`, where `disconnect` closes the client's connection.
    func stuckClientWatch(_ invocation: Invocation, disconnect: @escaping @Sendable () -> Void) -> WriteWatch {
        let idleTimeout = configuration.clientIdleTimeout.seconds
        return WriteWatch {
            invocation.context.cancel(
                PrefabError(.clientTimeout, "the client read nothing for \(idleTimeout) s and was disconnected"))
            disconnect()
        }
    }
}

extension PrefabError.Code {
    public static let invocationNotFound: Self = "INVOCATION_NOT_FOUND"
    public static let clientTimeout: Self = "CLIENT_TIMEOUT"
}

extension HTTPField.Name {
    /// Where a reconnecting SSE client (a browser's `EventSource`) resumes.
    static let lastEventID = HTTPField.Name("Last-Event-ID")!
}
