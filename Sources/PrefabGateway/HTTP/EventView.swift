import HTTPTypes
import Hummingbird
import NIOCore
import PrefabKit

/// A wire format that an invocation's events are written in as they arrive (NDJSON, OpenAI chat
/// chunks, the AI SDK's UI message stream): a view of the same event log that SSE reads, so each
/// format keeps the log's guarantees (order, one terminal event last, the `files` event, flow
/// control, cancel when the client leaves).
protocol EventFormat: Sendable {
    /// Bytes that keep an idle stream open through proxies; nil when the format has none.
    var heartbeat: [UInt8]? { get }
    /// Appends what `event` (whose one-line JSON is `json`) becomes in this format; possibly
    /// nothing. The terminal event comes last, once.
    mutating func append(_ event: PrefabEvent, json: ArraySlice<UInt8>, to bytes: inout [UInt8])
}

/// The front ends the gateway answers a call through, counted in `/metrics` by this name.
enum WireFormat: String, Sendable {
    case sse, json, ndjson, webSocket = "websocket", mcp, openAI = "openai", aiSDK = "ai-sdk"
}

extension Gateway {
    /// Admits and starts a call of `function` whose events a view will read, and waits the
    /// quick-answer window; the returned reader is already attached.
    func startViewedCall(
        _ function: LoadedFunction,
        _ inputs: PrefabInputs,
        format: WireFormat,
        request: Request,
        context: GatewayRequestContext
    ) async throws -> (Invocation, EventLog.Reader) {
        try await admit(function)
        let invocation = try makeInvocation(
            function, inputs, baseURL: baseURL(for: request), owner: context.apiKey, flowControl: true, format: format)
        let reader = invocation.events.attach()
        guard start(invocation, on: context.channel.eventLoop) else {
            reader.detach()
            abandon(invocation)
            throw overloaded
        }
        _ = await invocation.events.waitUntilFinished(within: configuration.quickAnswerWindow)
        return (invocation, reader)
    }

    /// The answer that writes `reader`'s events in `format`: whole on a kept-alive connection when
    /// the call has already ended, otherwise streamed until its end on a watched connection, as
    /// `eventStreamResponse` does for SSE.
    func eventViewResponse(
        _ invocation: Invocation,
        reader: EventLog.Reader,
        format: some EventFormat,
        headers: HTTPFields,
        request: Request,
        context: GatewayRequestContext
    ) -> Response {
        var headers = headers
        headers[.invocationId] = invocation.id
        var format = format
        let lease = ReaderLease(invocation: invocation, reader: reader, grace: configuration.resumeGrace)
        var available: [UInt8] = []
        let whole = reader.takeAvailable(into: &available)
        var first: [UInt8] = []
        Self.encode(sse: available, in: &format, to: &first)
        if whole {
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
            body: ResponseBody { [first, format, heartbeats] writer in
                defer { lease.release() }
                heartbeats.add(reader, watch: watch)
                defer { heartbeats.remove(reader) }
                var format = format
                // As for SSE: each write waits until the event loop has run it.
                func send(_ bytes: [UInt8]) async throws {
                    try await watch.writing {
                        try await writer.write(ByteBuffer(bytes: bytes))
                        try await eventLoop.submit {}.get()
                    }
                }
                func stream() async throws {
                    if !first.isEmpty { try await send(first) }
                    var sse: [UInt8] = []
                    var out: [UInt8] = []
                    while true {
                        switch await reader.next(into: &sse) {
                        case .events:
                            out.removeAll(keepingCapacity: true)
                            Self.encode(sse: sse, in: &format, to: &out)
                            if !out.isEmpty { try await send(out) }
                        case .idle:
                            if let heartbeat = format.heartbeat { try await send(heartbeat) }
                        case .finished:
                            return
                        }
                    }
                }
                try await Self.watchingHangUp(
                    channel, requestBody, keepingConnection: keepAlive, onHangUp: { lease.release() }, stream)
                try await writer.finish(nil)
            }
        )
    }

    /// Every event of `reader` until the call's end, for an answer that is one document (a
    /// non-streaming chat completion). A client that hangs up meanwhile lets go of the call, which
    /// is then cancelled as a stream's would be. True when the connection closes after the answer
    /// (`watchingHangUpSayingClose`).
    func readAllEvents(
        _ invocation: Invocation,
        reader: EventLog.Reader,
        request: Request,
        context: GatewayRequestContext,
        _ each: (PrefabEvent) -> Void
    ) async throws -> Bool {
        let lease = ReaderLease(invocation: invocation, reader: reader, grace: configuration.resumeGrace)
        defer { lease.release() }
        func read() async {
            var sse: [UInt8] = []
            while await reader.next(into: &sse) != .finished {
                for json in EventLog.jsonObjects(inSSE: sse) {
                    if let event = Self.event(json) { each(event) }
                }
            }
        }
        if invocation.events.finalCount != nil {
            await read()
            return false
        }
        return try await Self.watchingHangUpSayingClose(
            context.channel, request.body, keepingConnection: Self.keepsConnection(request),
            onHangUp: { lease.release() }, read
        ).closesConnection
    }

    /// Encodes the events of SSE messages (as the event log holds them) in `format`.
    private static func encode(sse: [UInt8], in format: inout some EventFormat, to bytes: inout [UInt8]) {
        for json in EventLog.jsonObjects(inSSE: sse) {
            guard let event = event(json) else { continue }
            format.append(event, json: json, to: &bytes)
        }
    }

    private static func event(_ json: ArraySlice<UInt8>) -> PrefabEvent? {
        (try? JSONValue(parsing: json)).flatMap(PrefabEvent.init(json:))
    }
}

extension SSEEncoder {
    /// Appends `data: ` with `value` as one line of JSON, and the blank line: the messages of the
    /// OpenAI and AI SDK streams, whose clients parse every `data:` as JSON.
    static func appendJSONData(_ value: JSONValue, to bytes: inout [UInt8]) {
        bytes += "data: ".utf8
        value.appendJSON(to: &bytes)
        bytes += "\n\n".utf8
    }
}
