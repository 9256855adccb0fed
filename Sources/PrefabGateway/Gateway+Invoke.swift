import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import PrefabKit
import Synchronization

/// One call being served: what was asked and where its files go.
struct Invocation: Sendable {
    let id: String
    let function: LoadedFunction
    let inputs: PrefabInputs
    /// The scheme, host and port that file URLs start with.
    let baseURL: String
    let started = ContinuousClock.now
}

extension Gateway {
    /// `POST /invoke/<name>`: checks the request, then answers a stream of SSE events, the
    /// collected events as JSON (`Accept: application/json`), or a non-streaming function's result.
    func invoke(_ request: Request, context: some RequestContext) async throws -> Response {
        let name = context.parameters.get("name") ?? ""
        guard let function = catalog.functions[name] else {
            throw GatewayError(.notFound, .functionNotFound, "no function named '\(name)'; GET /manifest lists them")
        }
        var request = request
        let inputs = try await readInputs(&request)
        let validated: PrefabInputs
        switch function.manifest.validate(inputs) {
        case .success(let value): validated = value
        case .failure(let error):
            throw GatewayError(.unprocessableContent, error.code, error.message, details: error.details)
        }
        let invocation = Invocation(
            id: InvocationID.make(),
            function: function,
            inputs: validated,
            baseURL: baseURL(for: request)
        )
        switch function.implementation {
        case .result(let body):
            return try await respondWithResult(invocation, body)
        case .streaming(let body):
            let accept = request.headers[.accept] ?? ""
            if accept.contains("application/json"), !accept.contains("text/event-stream") {
                return try await respondWithCollectedEvents(invocation, body)
            }
            return try await respondWithStream(invocation, body, requestBody: request.body)
        }
    }

    /// Reads `{"inputs": {...}}`; an empty body means no inputs.
    private func readInputs(_ request: inout Request) async throws -> PrefabInputs {
        let body: ByteBuffer
        do {
            body = try await request.collectBody(upTo: configuration.maxBodyBytes)
        } catch is NIOTooManyBytesError {
            throw GatewayError(
                .contentTooLarge,
                .payloadTooLarge,
                "the request body is larger than the limit of \(configuration.maxBodyBytes) bytes"
            )
        }
        guard body.readableBytes > 0 else { return [:] }
        let json: JSONValue
        do {
            json = try body.withUnsafeReadableBytes { try JSONValue(parsing: $0) }
        } catch {
            throw GatewayError(.badRequest, .invalidJSON, "the body is not valid JSON: \(error)")
        }
        guard let object = json.objectValue else {
            throw GatewayError(.badRequest, .invalidRequest, #"the body must be a JSON object: {"inputs": {...}}"#)
        }
        if let unknown = object.keys.sorted().first(where: { $0 != "inputs" }) {
            throw GatewayError(
                .badRequest,
                .invalidRequest,
                #"unknown member '\#(unknown)' in the body: put the function's inputs inside {"inputs": {...}}"#
            )
        }
        guard let inputs = object["inputs"], !inputs.isNull else { return [:] }
        guard let values = inputs.objectValue else {
            throw GatewayError(.badRequest, .invalidRequest, "'inputs' must be a JSON object, got \(inputs.typeName)")
        }
        return PrefabInputs(values)
    }

    private func baseURL(for request: Request) -> String {
        if let configured = configuration.publicBaseURL { return configured }
        // The Host header is echoed into URLs: only a plain host[:port] is trusted.
        let authority = request.head.authority ?? ""
        let safe = !authority.isEmpty && authority.utf8.allSatisfy(Self.authorityBytes.contains)
        return "http://" + (safe ? authority : "\(configuration.host):\(configuration.port)")
    }

    private static let authorityBytes = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:[]".utf8)

    // MARK: Streaming as Server-Sent Events

    private func respondWithStream(
        _ invocation: Invocation,
        _ function: @escaping StreamingFunction,
        requestBody: RequestBody
    ) async throws -> Response {
        let channel = EventChannel(
            maxEvents: configuration.streamBufferEvents,
            maxBytes: configuration.streamBufferBytes
        )
        let context = makeContext(invocation) { event in
            try channel.send { sequence, bytes in SSEEncoder.appendEvent(event, id: sequence, to: &bytes) }
        }
        let accepted = pool.submit { [self] in
            let terminal = withTimeout(invocation, context) { context.run(function, inputs: invocation.inputs) }
            if let files = filesEvent(invocation, context) {
                try? channel.send { sequence, bytes in SSEEncoder.appendEvent(files, id: sequence, to: &bytes) }
            }
            try? channel.send { sequence, bytes in SSEEncoder.appendEvent(terminal, id: sequence, to: &bytes) }
            channel.finish()
            log(invocation, outcome: terminal, events: channel.count)
        }
        guard accepted else { throw overloaded }

        var headers: HTTPFields = [
            .contentType: "text/event-stream; charset=utf-8",
            .cacheControl: "no-cache",
        ]
        headers[.accelBuffering] = "no"
        headers[.invocationId] = invocation.id

        // A function that is done within moments (an echo, a short burst) is answered whole, on a
        // connection that stays open for the next request.
        let quick = await channel.waitUntilFinished(within: configuration.quickAnswerWindow)
        var first: [UInt8] = []
        channel.takeAvailable(into: &first)
        if quick, channel.isComplete {
            return Response(status: .ok, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(bytes: first)))
        }

        // Anything longer streams on a watched connection. Watching for the client's close
        // consumes the connection's read side, so it cannot carry another request: say so, and
        // clients open a new one.
        headers[.connection] = "close"
        let heartbeatInterval = configuration.heartbeatInterval
        let stopIfAbandoned = StopOnRelease(channel: channel, context: context)
        return Response(
            status: .ok,
            headers: headers,
            body: ResponseBody { [first] writer in
                withExtendedLifetime(stopIfAbandoned) {}
                let heartbeat = Task {
                    while !Task.isCancelled {
                        try? await Task.sleep(for: heartbeatInterval)
                        channel.heartbeat()
                    }
                }
                defer { heartbeat.cancel() }
                do {
                    // The client's close becomes a cancel within milliseconds, instead of at the
                    // second write that fails.
                    try await requestBody.consumeWithInboundCloseHandler { _ in
                        if !first.isEmpty { try await writer.write(ByteBuffer(bytes: first)) }
                        var bytes: [UInt8] = []
                        while true {
                            switch await channel.next(into: &bytes) {
                            case .events: try await writer.write(ByteBuffer(bytes: bytes))
                            case .idle: try await writer.write(ByteBuffer(bytes: SSEEncoder.heartbeat))
                            case .finished: return
                            }
                        }
                    } onInboundClosed: {
                        context.cancel()
                        channel.close()
                    }
                } catch {
                    context.cancel()
                    channel.close()
                    throw error
                }
                try await writer.finish(nil)
            }
        )
    }

    // MARK: Collected as one JSON document

    private func respondWithCollectedEvents(
        _ invocation: Invocation,
        _ function: @escaping StreamingFunction
    ) async throws -> Response {
        let collector = EventCollector(maxBytes: configuration.maxCollectedBytes)
        let context = makeContext(invocation) { event in try collector.append(event) }
        let (terminal, files) = try await runOnPool { [self] in
            let outcome = withTimeout(invocation, context) { context.run(function, inputs: invocation.inputs) }
            return (outcome, filesEvent(invocation, context))
        }
        if let files { collector.appendAlways(files) }
        collector.appendAlways(terminal)
        log(invocation, outcome: terminal, events: collector.count)
        var bytes = Array(#"{"events":"#.utf8)
        collector.appendArray(to: &bytes)
        bytes += #","files":"#.utf8
        JSONValue.array(files?.data?.arrayValue ?? []).appendJSON(to: &bytes)
        bytes += #","invocation_id":"#.utf8
        JSONValue.appendJSONString(invocation.id, to: &bytes)
        bytes += #","success":\#(terminal.type == PrefabEvent.done)}"#.utf8
        bytes.append(UInt8(ascii: "\n"))
        var headers: HTTPFields = [.contentType: "application/json; charset=utf-8"]
        headers[.invocationId] = invocation.id
        return Response(status: .ok, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(bytes: bytes)))
    }

    // MARK: Non-streaming

    private func respondWithResult(_ invocation: Invocation, _ function: @escaping ResultFunction) async throws
        -> Response
    {
        let context = makeContext(invocation) { _ in }
        let (result, files) = try await runOnPool { [self] in
            let outcome = withTimeout(invocation, context) { context.run(function, inputs: invocation.inputs) }
            return (outcome, filesEvent(invocation, context))
        }
        let fileList = JSONValue.array(files?.data?.arrayValue ?? [])
        var response: Response
        switch result {
        case .success(let value):
            log(invocation, outcome: .done(), events: 0)
            response = .json(
                ["success": true, "result": value, "files": fileList, "invocation_id": .string(invocation.id)]
            )
        case .failure(let error):
            log(invocation, outcome: .error(error), events: 0)
            let failure = GatewayError(
                error.code == .invalidInputs ? .unprocessableContent : .internalServerError,
                error.code,
                error.message,
                details: error.details
            )
            var body = failure.jsonValue.objectValue ?? [:]
            body["success"] = false
            body["files"] = fileList
            body["invocation_id"] = .string(invocation.id)
            response = .json(.object(body), status: failure.status)
        }
        response.headers[.invocationId] = invocation.id
        return response
    }

    // MARK: Shared

    /// Runs `work` on a function thread and waits for it without blocking an event loop.
    private func runOnPool<T: Sendable>(_ work: @escaping @Sendable () -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            let accepted = pool.submit { continuation.resume(returning: work()) }
            if !accepted { continuation.resume(throwing: overloaded) }
        }
    }

    private var overloaded: GatewayError {
        GatewayError(
            .serviceUnavailable,
            .overloaded,
            "\(configuration.maxConcurrentInvocations) functions are already running; retry shortly",
            headers: [.retryAfter: "1"]
        )
    }

    /// The context of one call: its id, its output directory, and where its events go.
    private func makeContext(_ invocation: Invocation, sink: @escaping PrefabContext.Sink) -> PrefabContext {
        PrefabContext(invocationId: invocation.id, outputDirectory: outputs.directory(for: invocation.id), sink: sink)
    }

    /// Runs `body` (the call), cancelling it with `TIMEOUT` once it runs past its limit: the
    /// manifest's `timeout_seconds`, or the gateway's default. A process prefab is stopped at
    /// once; a Swift function at its next `yield`.
    private func withTimeout<T>(_ invocation: Invocation, _ context: PrefabContext, _ body: () -> T) -> T {
        let seconds = invocation.function.manifest.timeoutSeconds ?? configuration.defaultTimeout?.seconds
        guard let seconds else { return body() }
        let timer = DispatchWorkItem {
            let limit = String(format: "%g", seconds)
            context.cancel(PrefabError(.timeout, "the call ran past its time limit of \(limit) s"))
        }
        DispatchQueue.gatewayTimers.asyncAfter(deadline: .now() + seconds, execute: timer)
        defer { timer.cancel() }
        return body()
    }

    /// The `files` event for what the function wrote, if it wrote anything.
    private func filesEvent(_ invocation: Invocation, _ context: PrefabContext) -> PrefabEvent? {
        guard let directory = context.usedOutputDirectory else { return nil }
        let entries = outputs.fileEntries(in: directory, invocationId: invocation.id, baseURL: invocation.baseURL)
        return entries.isEmpty ? nil : .files(entries)
    }

    /// One line per invocation: id, function, outcome, events, duration.
    private func log(_ invocation: Invocation, outcome terminal: PrefabEvent, events: Int) {
        let cancelled = terminal.errorCode == PrefabError.Code.cancelled.rawValue
        let outcome = cancelled ? "cancelled" : terminal.type == PrefabEvent.done ? "done" : "error"
        let milliseconds = (ContinuousClock.now - invocation.started).seconds * 1000
        var metadata: Logger.Metadata = [
            "invocation": "\(invocation.id)",
            "function": "\(invocation.function.manifest.name)",
            "outcome": "\(outcome)",
            "events": "\(events)",
            "duration_ms": "\(String(format: "%.1f", milliseconds))",
        ]
        if let code = terminal.errorCode, !cancelled { metadata["error_code"] = "\(code)" }
        logger.info("invocation", metadata: metadata)
    }
}

/// Events of a streaming function called for one JSON answer, encoded as they arrive and capped.
private final class EventCollector: Sendable {
    private struct State {
        var bytes: [UInt8] = []
        var count = 0
    }

    private let state = Mutex(State())
    private let maxBytes: Int

    init(maxBytes: Int) {
        self.maxBytes = maxBytes
    }

    var count: Int { state.withLock { $0.count } }

    /// Adds an event; throws `RESPONSE_TOO_LARGE` past the cap, which ends the function.
    func append(_ event: PrefabEvent) throws {
        try state.withLock { state in
            guard state.bytes.count < maxBytes else {
                throw PrefabError(
                    .responseTooLarge,
                    "the events exceed \(maxBytes) bytes: call without Accept: application/json to stream them"
                )
            }
            Self.add(event, to: &state)
        }
    }

    /// Adds the gateway's own closing events, which always fit.
    func appendAlways(_ event: PrefabEvent) {
        state.withLock { Self.add(event, to: &$0) }
    }

    func appendArray(to bytes: inout [UInt8]) {
        bytes.append(UInt8(ascii: "["))
        state.withLock { bytes += $0.bytes }
        bytes.append(UInt8(ascii: "]"))
    }

    private static func add(_ event: PrefabEvent, to state: inout State) {
        if state.count > 0 { state.bytes.append(UInt8(ascii: ",")) }
        event.appendJSON(to: &state.bytes)
        state.count += 1
    }
}

/// Stops a function whose response body is dropped without being written (the connection failed
/// before the head went out): nothing would ever read its events, so it must not wait forever.
private final class StopOnRelease: Sendable {
    let channel: EventChannel
    let context: PrefabContext

    init(channel: EventChannel, context: PrefabContext) {
        self.channel = channel
        self.context = context
    }

    deinit {
        context.cancel()
        channel.close()
    }
}

extension HTTPField.Name {
    /// The invocation's id, on every answer of `/invoke`.
    static let invocationId = HTTPField.Name("X-Invocation-Id")!
    /// Tells nginx not to buffer a stream.
    static let accelBuffering = HTTPField.Name("X-Accel-Buffering")!
}
