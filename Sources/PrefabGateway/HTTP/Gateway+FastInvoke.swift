import HTTPTypes
import NIOCore
import NIOHTTPTypes
import PrefabKit

/// A call `InvokeFastPath` may serve: its head passed every check the common middleware makes.
struct FastCall {
    var head: HTTPRequest
    var function: LoadedFunction
    /// The API key's position when keys are on.
    var owner: Int?
    /// The request's `Connection` header.
    var connection: String?
    var body = ByteBuffer()

    /// The request as it came, for Hummingbird.
    var parts: [HTTPRequestPart] {
        body.readableBytes > 0 ? [.head(head), .body(body)] : [.head(head)]
    }
}

/// The header fields the fast path reads, found in one pass over the request's fields: each
/// `HTTPFields` lookup by name walks them all and joins what it finds (a dozen lookups cost a
/// call about 7% of `echo`'s instructions, callgrind).
struct FastCallFields {
    /// `Origin` (CORS), `Upgrade` or `Expect`: Hummingbird answers such a request.
    var needsHummingbird = false
    var accept: String?
    var contentLength: String?
    var authorization: String?
    var connection: String?

    init(_ fields: HTTPFields) {
        for field in fields {
            switch field.name.canonicalName {
            case "origin", "upgrade", "expect": needsHummingbird = true
            case "accept": Self.add(field.value, to: &accept)
            case "content-length": Self.add(field.value, to: &contentLength)
            case "authorization": Self.add(field.value, to: &authorization)
            case "connection": Self.add(field.value, to: &connection)
            default: break
            }
        }
    }

    /// Repeated fields joined as `HTTPFields` joins them.
    private static func add(_ value: String, to joined: inout String?) {
        joined = joined.map { $0 + ", " + value } ?? value
    }
}

/// A call `InvokeFastPath` started, while its answer is written. `closesConnection`, `watch`
/// and `streamedByTask` are only touched on the connection's event loop.
final class FastAnswer: @unchecked Sendable {
    let invocation: Invocation
    let reader: EventLog.Reader
    /// The connection closes after this answer: the request said `Connection: close` (otherwise
    /// it carries the next request, streamed answers too: `Gateway.keepsConnection`), or a
    /// pipelined request after it could not be parsed.
    var closesConnection: Bool
    /// How long the stream's current write has waited, once it streams.
    private(set) var watch: WriteWatch?
    /// A task writes the rest of the stream (`Gateway.streamRest`).
    var streamedByTask = false
    private let lease: ReaderLease
    private let heartbeats: HeartbeatTimer

    init(invocation: Invocation, reader: EventLog.Reader, closesConnection: Bool, gateway: Gateway) {
        self.invocation = invocation
        self.reader = reader
        self.closesConnection = closesConnection
        self.lease = ReaderLease(invocation: invocation, reader: reader, grace: gateway.configuration.resumeGrace)
        self.heartbeats = gateway.heartbeats
    }

    /// The answer streams from now on: heartbeats while it is idle, and a client that reads
    /// nothing is dropped.
    func streamBegan(watch: WriteWatch) {
        self.watch = watch
        heartbeats.add(reader, watch: watch)
    }

    /// The answer is over, or its client left: the call loses this reader (and is cancelled after
    /// the resume grace when it has no other). Any number of times, from any thread.
    func release() {
        heartbeats.remove(reader)
        lease.release()
    }
}

extension Gateway {
    /// The call `head` asks for, when `InvokeFastPath` may serve it: `POST /invoke/<name>` of a
    /// streaming function, answered as SSE, from a client that is not a browser page (`Origin`
    /// needs CORS), within the size limits, the host check and the API key check. Nil sends the
    /// request to Hummingbird, which answers it as before (with its error, if it has one).
    /// `allowedAuthority` is a `Host` that passed the host check before on this connection.
    func fastCall(for head: HTTPRequest, allowedAuthority: String?) -> FastCall? {
        guard head.method == .post, let path = head.path, path.hasPrefix("/invoke/") else { return nil }
        var name = path.dropFirst("/invoke/".count)
        if let query = name.firstIndex(of: "?") { name = name[..<query] }
        guard !name.isEmpty, !name.utf8.contains(where: { $0 == UInt8(ascii: "/") || $0 == UInt8(ascii: "%") }),
            let function = catalog.functions[String(name)]
        else { return nil }
        switch function.implementation {
        case .streaming, .asyncStreaming: return fastCall(head, function, allowedAuthority: allowedAuthority)
        case .result: return nil
        }
    }

    private func fastCall(_ head: HTTPRequest, _ function: LoadedFunction, allowedAuthority: String?) -> FastCall? {
        let fields = FastCallFields(head.headerFields)
        guard !fields.needsHummingbird, !Self.wantsJSON(fields.accept), !Self.wantsNDJSON(fields.accept) else {
            return nil
        }
        if let length = fields.contentLength {
            guard let bytes = Int(length), bytes <= configuration.maxBodyBytes else { return nil }
        }
        guard headSizeLimits.refusal(of: head) == nil else { return nil }
        // Without `Origin` (checked above), `browserAccess.refusal` checks the host alone.
        if head.authority != allowedAuthority {
            guard browserAccess.refusal(of: head) == nil else { return nil }
        }
        var owner: Int?
        if apiKeys.isEnabled {
            guard let key = try? apiKeys.owner(authorization: fields.authorization) else { return nil }
            owner = key
        }
        return FastCall(head: head, function: function, owner: owner, connection: fields.connection)
    }

    /// Checks the inputs, admits and starts the call; nil, with nothing started, when any of it
    /// fails or would have to wait (Hummingbird then takes the request and says why, or queues it).
    /// An async function runs on `loop`, the connection's.
    func startFastCall(_ call: FastCall, on loop: any EventLoop) -> FastAnswer? {
        let function = call.function
        guard let inputs = try? validatedInputs(of: function, call: call.body),
            admissions.tryAdmit(function.manifest.name, limit: function.manifest.maxConcurrency)
        else { return nil }
        // A synchronous function with `runs_on_event_loop` runs on `loop` (`EventLoopCalls` holds
        // no other kind).
        let waitRefusal = eventLoopCalls.refusal(for: function.manifest.name)
        guard
            let invocation = try? makeInvocation(
                function, inputs, baseURL: baseURL(forAuthority: call.head.authority), owner: call.owner,
                flowControl: true, format: .sse, waitRefusal: waitRefusal)
        else { return nil }
        let reader = invocation.events.attach()
        guard start(invocation, on: loop) else {
            abandon(invocation)
            return nil
        }
        return FastAnswer(
            invocation: invocation, reader: reader,
            closesConnection: !Self.keepsConnection(connection: call.connection), gateway: self)
    }

    /// Writes the rest of a streamed answer through `sink`, from a task of its own, starting with
    /// `first`, as `eventStreamResponse` does: heartbeats while idle, the answer's end once the
    /// call's last event is out.
    func streamRest(of answer: FastAnswer, first: [UInt8], to sink: FastStreamSink) {
        guard let watch = answer.watch else { return }
        let reader = answer.reader
        Task.detached {
            var bytes = first
            do {
                try await watch.writing { try await sink.write(bytes) }
                reading: while true {
                    switch await reader.next(into: &bytes) {
                    case .events: try await watch.writing { try await sink.write(bytes) }
                    case .idle: try await watch.writing { try await sink.write(SSEEncoder.heartbeat) }
                    case .finished: break reading
                    }
                }
                sink.end()
            } catch {
                // The connection closed: its client left.
                answer.release()
            }
        }
    }
}
