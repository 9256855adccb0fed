import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import PrefabKit
import Synchronization

extension Gateway {
    /// `POST /invoke/<name>`: checks the request, then answers a stream of SSE events, the
    /// collected events as JSON (`Accept: application/json`), or a non-streaming function's result.
    func invoke(_ request: Request, context: GatewayRequestContext) async throws -> Response {
        let function = try function(named: context.parameters.get("name") ?? "")
        var request = request
        let inputs = try validatedInputs(of: function, call: try await collectBody(&request))
        let baseURL = baseURL(for: request)
        let owner = context.apiKey
        if Self.wantsNDJSON(request.headers[.accept]) {
            return try await respondWithNDJSON(function, inputs, request: request, context: context)
        }
        try await admit(function)
        switch function.implementation {
        case .result:
            let invocation = try makeInvocation(
                function, inputs, baseURL: baseURL, owner: owner, flowControl: false, format: .json)
            return try await respondWithResult(invocation, request: request, context: context)
        case .streaming, .asyncStreaming:
            if Self.wantsJSON(request.headers[.accept]) {
                return try await respondWithCollectedEvents(
                    function, inputs, baseURL: baseURL, owner: owner, request: request, context: context)
            }
            let invocation = try makeInvocation(
                function, inputs, baseURL: baseURL, owner: owner, flowControl: true, format: .sse)
            return try await respondWithStream(invocation, request: request, context: context)
        }
    }

    /// An `Accept` header that asks for newline-delimited JSON events.
    static func wantsNDJSON(_ accept: String?) -> Bool {
        guard let accept else { return false }
        return contains(accept, "application/x-ndjson")
    }

    /// An `Accept` header that asks for JSON and not for a stream. Compared as bytes: Foundation's
    /// `contains` cost a short call several thousand instructions.
    static func wantsJSON(_ accept: String?) -> Bool {
        guard let accept else { return false }
        return contains(accept, "application/json") && !contains(accept, "text/event-stream")
    }

    /// Whether `text` contains `part` (lowercase), in ASCII letters of either case with
    /// `ignoringCase`.
    static func contains(_ text: String, _ part: StaticString, ignoringCase: Bool = false) -> Bool {
        let needle = UnsafeBufferPointer(start: part.utf8Start, count: part.utf8CodeUnitCount)
        var haystack = Array(text.utf8)
        if ignoringCase {
            for index in haystack.indices where (65...90).contains(haystack[index]) { haystack[index] += 32 }
        }
        guard haystack.count >= needle.count else { return false }
        return (0...haystack.count - needle.count).contains { start in
            needle.indices.allSatisfy { haystack[start + $0] == needle[$0] }
        }
    }

    func function(named name: String) throws(GatewayError) -> LoadedFunction {
        guard let function = catalog.functions[name] else {
            throw GatewayError(.notFound, .functionNotFound, "no function named '\(name)'; GET /manifest lists them")
        }
        return function
    }

    /// The inputs of a call `{"inputs": {...}}` (an empty one means no inputs), checked against
    /// the function's parameters.
    func validatedInputs(of function: LoadedFunction, call body: ByteBuffer) throws(GatewayError) -> PrefabInputs {
        let inputs = try readInputs(body)
        switch function.manifest.validate(inputs) {
        case .success(let value): return value
        case .failure(let error):
            throw GatewayError(.unprocessableContent, error.code, error.message, details: error.details)
        }
    }

    private func readInputs(_ body: ByteBuffer) throws(GatewayError) -> PrefabInputs {
        guard body.readableBytes > 0 else { return [:] }
        let json: JSONValue
        let limits = inputLimits
        do {
            json = try body.withUnsafeReadableBytes { try JSONValue(parsing: $0, options: limits.parseOptions) }
        } catch {
            if (error as? JSONParseError)?.isTooDeep == true { throw limits.tooDeep }
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
        try limits.check(values)
        return PrefabInputs(values)
    }

    var inputLimits: InputLimits {
        InputLimits(maxDepth: configuration.maxInputDepth, maxStringBytes: configuration.maxInputStringBytes)
    }

    func baseURL(for request: Request) -> String {
        baseURL(forAuthority: request.head.authority)
    }

    /// The base of file URLs for a request sent to `authority` (its `Host`).
    func baseURL(forAuthority authority: String?) -> String {
        if let configured = configuration.publicBaseURL { return configured }
        // The Host header is echoed into URLs: only a plain host[:port] is trusted.
        let authority = authority ?? ""
        let safe = !authority.isEmpty && authority.utf8.allSatisfy(Self.isAuthorityByte)
        return "http://" + (safe ? authority : "\(configuration.host):\(configuration.port)")
    }

    /// Letters, digits and `.-:[]`.
    private static func isAuthorityByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "."), UInt8(ascii: "-"), UInt8(ascii: ":"),
            UInt8(ascii: "["), UInt8(ascii: "]"):
            true
        default: false
        }
    }

    // MARK: Streaming as Server-Sent Events

    private func respondWithStream(
        _ invocation: Invocation,
        request: Request,
        context: GatewayRequestContext
    ) async throws -> Response {
        let reader = invocation.events.attach()
        guard start(invocation, on: context.channel.eventLoop) else {
            abandon(invocation)
            throw overloaded
        }
        // A function that is done within moments (an echo, a short burst) is answered whole, on a
        // connection that stays open for the next request.
        _ = await invocation.events.waitUntilFinished(within: configuration.quickAnswerWindow)
        return eventStreamResponse(invocation, reader: reader, request: request, context: context)
    }

    /// Starts the invocation's call: its events, then the `files` event, then the terminal event
    /// (a non-streaming function's result becomes the `done` event). False when too many are
    /// running. An async function runs on `loop`, the event loop of the connection it answers,
    /// when there is one (`EventLoopExecutor`).
    func start(_ invocation: Invocation, on loop: (any EventLoop)? = nil) -> Bool {
        launch(invocation, on: loop, call(of: invocation))
    }

    /// The invocation's call: a synchronous function runs on a function thread, an async one in a
    /// task of its own (which holds no thread while it waits).
    private func call(of invocation: Invocation) -> CallWork {
        switch invocation.function.implementation {
        case .streaming(let function):
            return .blocking { [self] in
                let terminal = invocation.context.run(function, inputs: invocation.takeInputs())
                return checkedOutcome(invocation, terminal)
            }
        case .asyncStreaming(let function):
            return .async { [self] in
                let terminal = await invocation.context.run(function, inputs: invocation.takeInputs())
                return checkedOutcome(invocation, terminal)
            }
        case .result(let function):
            return .blocking { [self] in result(of: invocation, function) }
        }
    }

    /// Runs a non-streaming call on the current (function) thread.
    private func result(of invocation: Invocation, _ function: ResultFunction) -> CallOutcome {
        var result = invocation.context.run(function, inputs: invocation.takeInputs())
        var failure: PrefabError.Code?
        if case .failure(let error) = result { failure = error.code }
        let output = checkOutput(invocation, code: failure)
        if let tooLarge = output.tooLarge { result = .failure(tooLarge) }
        var outcome = CallOutcome(result: result)
        outcome.outputHasFiles = output.hasFiles
        return outcome
    }

    /// Runs `work` (the call) on a function thread — or as a task when its function has proven
    /// short (`ShortCalls`) — under its time limit; false when too many functions are running.
    /// The call ends once, and `onEnd` learns how: when `work` returns, or
    /// — if the call was cancelled (its time limit, its client, a cancel, the shutdown) and its
    /// function has not returned within `stuckFunctionGrace` — by the gateway, with the cancel
    /// reason. A function blocked where a cancel cannot reach it (`Thread.sleep`, a blocking read)
    /// would otherwise hold its call, its stream and its slot forever. Its thread then counts as
    /// stuck until it returns, and what it yields meanwhile is dropped.
    private func launch(
        _ invocation: Invocation,
        on loop: (any EventLoop)? = nil,
        onEnd: @escaping @Sendable (CallEnd) -> Void = { _ in },
        _ work: CallWork
    ) -> Bool {
        let grace = stuckFunctionGrace(of: invocation.function)
        // Weak: a call that ends in time is not kept for its timer.
        invocation.context.onCancel { [self, weak invocation] in
            guard let invocation else { return }
            GatewayTimer.schedule(after: grace) { [self, weak invocation] in
                guard let invocation, let end = endStuck(invocation, after: grace) else { return }
                onEnd(end)
            }
        }
        switch work {
        case .blocking(let work):
            let name = invocation.function.manifest.name
            let run: @Sendable () -> Void = { [self] in
                let began = ContinuousClock.now
                let outcome = withTimeout(invocation, work)
                shortCalls.record(name, ran: .now - began)
                returned(invocation, outcome, onEnd: onEnd)
            }
            // Its manifest says it is quick: no hand-off at all (see `EventLoopCalls`).
            if invocation.runsOnEventLoop, let loop, loop.inEventLoop {
                let began = ContinuousClock.now
                run()
                let took = ContinuousClock.now - began
                if eventLoopCalls.ran(name, for: took) {
                    logger.warning(
                        "a call of a function that runs on the event loop took \(Self.millisecondsText(took)) ms, over \(Self.millisecondsText(eventLoopCalls.overrunLimit)) ms, and \(EventLoopCalls.overrunsToLeave) of its calls within \(Int(EventLoopCalls.overrunWindow.seconds)) s did: the function runs on function threads from now on",
                        metadata: ["invocation": "\(invocation.id)", "function": "\(name)"])
                }
                return true
            }
            // A function that has proven short runs as a task, on the thread that serves
            // requests: no hand-off to a function thread and back (see `ShortCalls`).
            if shortCalls.begin(name) {
                Task { [shortCalls] in
                    run()
                    shortCalls.end()
                }
                return true
            }
            return pool.submit(run)
        case .async(let work):
            // Detached: it needs none of the request's task-locals, whose copy would cost it
            // memory for its whole life.
            let executor: (any TaskExecutor)? = loop.map { EventLoopExecutor.of($0) }
            let task = Task.detached(executorPreference: executor) { [self] in
                let timer = timeLimit(invocation)
                let outcome = await work()
                timer.cancel()
                returned(invocation, outcome, onEnd: onEnd)
            }
            // A cancel also ends the function's awaits (`Task.sleep`, a network call), not only
            // its next `yield`.
            invocation.context.onCancel { task.cancel() }
            return true
        }
    }

    /// The call's function has returned: the call ends, unless the gateway already ended it
    /// (the function was stuck).
    private func returned(_ invocation: Invocation, _ outcome: CallOutcome, onEnd: (CallEnd) -> Void) {
        if let end = end(invocation, outcome) {
            onEnd(end)
        } else {
            runningCalls.stuckFunctionReturned()
            logger.notice(
                "a stuck function returned",
                metadata: [
                    "invocation": "\(invocation.id)", "function": "\(invocation.function.manifest.name)",
                    "stuck": "\(runningCalls.stuck)",
                ])
        }
    }

    /// How long a cancelled function may take to return before the gateway ends its call: a
    /// Swift function stops at its next `yield` (or `ask`, `context.sleep`); a process prefab is
    /// given its termination grace, from SIGTERM to SIGKILL, on top.
    private func stuckFunctionGrace(of function: LoadedFunction) -> Duration {
        let grace = configuration.stuckFunctionGrace
        return function.runtime == "swift" ? grace : grace + configuration.processes.terminationGrace
    }

    /// Ends the call whose function has returned: the `files` event (if it wrote any), the
    /// terminal event, and the record of its end. Nil when the gateway has already ended it.
    private func end(_ invocation: Invocation, _ outcome: CallOutcome) -> CallEnd? {
        guard invocation.claimEnd() else { return nil }
        let files = filesEvent(invocation, hasFiles: outcome.outputHasFiles)
        if let files { invocation.sendClosing(files) }
        invocation.sendClosing(outcome.terminal)
        complete(invocation, terminal: outcome.terminal)
        return CallEnd(terminal: outcome.terminal, files: files, result: outcome.result)
    }

    /// Ends a cancelled call whose function did not return within `grace`, with the cancel
    /// reason, and counts its thread as stuck. Nil when the call has ended already.
    private func endStuck(_ invocation: Invocation, after grace: Duration) -> CallEnd? {
        let reason = invocation.context.cancelReason ?? .cancelled
        guard invocation.claimEnd() else { return nil }
        runningCalls.functionStuck()
        logger.warning(
            "a function did not stop within \(grace.seconds) s of its cancel: its call is ended, its thread counted stuck",
            metadata: [
                "invocation": "\(invocation.id)", "function": "\(invocation.function.manifest.name)",
                "reason": "\(reason.code.rawValue)", "stuck": "\(runningCalls.stuck)",
            ])
        let terminal = PrefabEvent.error(reason)
        invocation.sendClosing(terminal)
        complete(invocation, terminal: terminal)
        return CallEnd(terminal: terminal, files: nil, result: .failure(reason))
    }

    // MARK: Collected as one JSON document

    private func respondWithCollectedEvents(
        _ function: LoadedFunction,
        _ inputs: PrefabInputs,
        baseURL: String,
        owner: Int?,
        request: Request,
        context: GatewayRequestContext
    ) async throws -> Response {
        let collector = EventCollector(maxBytes: configuration.maxCollectedBytes)
        let invocation = try makeInvocation(
            function, inputs, baseURL: baseURL, owner: owner, flowControl: false, format: .json
        ) { event in try collector.append(event) }
        let (end, watched) = try await runToEnd(invocation, request: request, context: context)
        let (terminal, files) = (end.terminal, end.files)
        if let files { collector.appendAlways(files) }
        collector.appendAlways(terminal)
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
        if watched { headers[.connection] = "close" }
        return Response(status: .ok, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(bytes: bytes)))
    }

    // MARK: Non-streaming

    private func respondWithResult(
        _ invocation: Invocation,
        request: Request,
        context: GatewayRequestContext
    ) async throws -> Response {
        let (end, watched) = try await runToEnd(invocation, request: request, context: context)
        let fileList = JSONValue.array(end.files?.data?.arrayValue ?? [])
        var response: Response
        switch end.result ?? .failure(PrefabError(.internalError, "the call ended without a result")) {
        case .success(let value):
            response = .json(
                ["success": true, "result": value, "files": fileList, "invocation_id": .string(invocation.id)]
            )
        case .failure(let error):
            let status: HTTPResponse.Status =
                switch error.code {
                case .invalidInputs: .unprocessableContent
                case .shuttingDown: .serviceUnavailable
                default: .internalServerError
                }
            let failure = GatewayError(
                status,
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
        if watched { response.headers[.connection] = "close" }
        return response
    }

    // MARK: Shared

    /// Runs the invocation's call and waits for it without blocking an event loop. A call still
    /// running after the quick-answer window is cancelled when its client hangs up; `watched` says
    /// whether the connection closes after the answer (`watchingHangUpSayingClose`). The
    /// waiting client counts as a reader of the call's events, so that a viewer of them
    /// (`/invocations/<id>/events`) who leaves does not cancel a call whose client still waits.
    private func runToEnd(
        _ invocation: Invocation,
        request: Request,
        context: GatewayRequestContext
    ) async throws -> (end: CallEnd, watched: Bool) {
        let ownClient = invocation.events.attach()
        defer { ownClient.detach() }
        let promise = context.channel.eventLoop.makePromise(of: CallEnd.self)
        guard launch(invocation, on: context.channel.eventLoop, onEnd: { promise.succeed($0) }, call(of: invocation))
        else {
            abandon(invocation)
            promise.fail(overloaded)
            throw overloaded
        }
        if await invocation.events.waitUntilFinished(within: configuration.quickAnswerWindow) {
            return (try await promise.futureResult.get(), false)
        }
        let hungUp = PrefabError(.cancelled, "the client disconnected before the answer")
        let answer = try await Self.watchingHangUpSayingClose(
            context.channel, request.body, keepingConnection: Self.keepsConnection(request),
            onHangUp: { invocation.context.cancel(hungUp) }
        ) {
            try await promise.futureResult.get()
        }
        return (answer.value, answer.closesConnection)
    }

    /// Runs the invocation's call for a caller that is not waiting on an HTTP connection (an MCP
    /// tool call) and waits for its end; nil, with the call forgotten, when no function thread is
    /// free. The caller counts as a reader of the call's events, as in `runToEnd`.
    func callToEnd(_ invocation: Invocation) async -> CallEnd? {
        let ownClient = invocation.events.attach()
        defer { ownClient.detach() }
        let end = await withCheckedContinuation { continuation in
            let waiter = CallEndWaiter(continuation)
            if !launch(invocation, onEnd: { waiter.resume($0) }, call(of: invocation)) { waiter.resume(nil) }
        }
        guard let end else {
            abandon(invocation)
            return nil
        }
        return end
    }

    /// Waits for the call's turn: past the gateway's total or the function's `max_concurrency`
    /// it queues, and a full queue or a long wait is answered 429. Each admitted call ends with
    /// `complete` or `abandon`, which give its slot back.
    func admit(_ function: LoadedFunction) async throws(GatewayError) {
        let name = function.manifest.name
        do {
            try await admissions.admit(name, limit: function.manifest.maxConcurrency)
        } catch {
            let limit =
                function.manifest.maxConcurrency.map { "'\(name)' runs at most \($0) calls at once" }
                ?? "the gateway runs at most \(admissions.maxRunning) calls at once"
            let reason =
                switch error {
                case .queueFull: "and \(admissions.maxQueued) calls are already waiting"
                case .waitedTooLong: "and no slot came free within \(admissions.queueTimeout.seconds) s"
                }
            throw GatewayError(
                .tooManyRequests, .overloaded, "\(limit), \(reason); retry shortly", headers: [.retryAfter: "1"])
        }
    }

    /// Forgets a call that was admitted but could not start.
    func abandon(_ invocation: Invocation) {
        invocation.events.finish()
        invocations.remove(invocation)
        store?.forget(invocation.id)
        runningCalls.remove(invocation)
        admissions.release(invocation.function.manifest.name)
    }

    /// The server stopped listening: every running call ends with `SHUTTING_DOWN` (its function
    /// stops at its next `yield`, a process prefab is stopped), and no new call starts.
    func beginShutdown() {
        let calls = runningCalls.shutDown()
        if !calls.isEmpty { logger.notice("shutting down: ending \(calls.count) running calls") }
        for invocation in calls { invocation.context.cancel(Self.shutdownReason) }
    }

    static let shutdownReason = PrefabError(.shuttingDown, "the gateway is shutting down")

    var shuttingDown: GatewayError {
        GatewayError(
            .serviceUnavailable, .shuttingDown, "the gateway is shutting down; retry on another instance or later",
            headers: [.retryAfter: "1", .connection: "close"])
    }

    /// No function thread came free: 429 like any other refusal for load (docs/http-api.md's promise).
    /// Stuck functions hold threads too: the message says so when there are any.
    var overloaded: GatewayError {
        let stuck = runningCalls.stuck
        let held = stuck > 0 ? " (\(stuck) function threads are stuck in calls that have ended)" : ""
        return GatewayError(
            .tooManyRequests,
            .overloaded,
            "\(configuration.maxConcurrentInvocations) functions are already running\(held); retry shortly",
            headers: [.retryAfter: "1"]
        )
    }

    /// A new invocation of an admitted call, reachable at `/invocations/<id>` from now on (with
    /// the API key `owner` when keys are on), counted by the wire `format` it is answered in. `sink` sees each event the function yields before
    /// the event log does. Once the gateway is shutting down, the call is refused (503) and its
    /// slot given back.
    func makeInvocation(
        _ function: LoadedFunction,
        _ inputs: PrefabInputs,
        baseURL: String,
        owner: Int?,
        flowControl: Bool,
        format: WireFormat,
        waitRefusal: PrefabError? = nil,
        sink: (@Sendable (PrefabEvent) throws -> Void)? = nil
    ) throws(GatewayError) -> Invocation {
        // A process call needs its folder before it runs: its id is that of a spare folder.
        let spare = function.runtime == "swift" ? nil : outputs.spares.take()
        defer { if let spare { outputs.spares.settle(spare) } }
        let id = spare ?? InvocationID.make()
        var mirror: (@Sendable (Int, [UInt8]) -> Void)?
        if let store {
            mirror = { sequence, message in store.appended(id, sequence: sequence, message: message) }
        }
        let makeFolder: @Sendable (String) throws -> Void
        let folder: @Sendable () -> String
        if spare == nil {
            makeFolder = { [spares = outputs.spares] path in try spares.make(path) }
            folder = { [outputs] in outputs.directoryPath(for: id) }
        } else {
            makeFolder = { path in try SpareFolders.ensure(path) }
            // Asked for three times a process call: made once.
            let path = outputs.directoryPath(for: id)
            folder = { path }
        }
        let invocation = Invocation(
            id: id,
            function: function,
            inputs: inputs,
            baseURL: baseURL,
            owner: owner,
            outputDirectoryPath: folder,
            makeOutputDirectory: makeFolder,
            events: EventLog(
                flowControl: flowControl,
                maxEvents: configuration.streamBufferEvents,
                maxBytes: configuration.streamBufferBytes,
                historyBytes: configuration.eventHistoryBytes,
                waitRefusal: waitRefusal,
                mirror: mirror
            ),
            questionTimeout: configuration.questionTimeout,
            waitRefusal: waitRefusal,
            sink: sink
        )
        guard runningCalls.add(invocation) else {
            admissions.release(function.manifest.name)
            throw shuttingDown
        }
        invocations.add(invocation)
        store?.started(invocation)
        metrics.invocationStarted(format: format.rawValue)
        return invocation
    }

    /// The call has ended and its last event is in the log: record how, and log it. Its slot is
    /// free from now on.
    private func complete(_ invocation: Invocation, terminal: PrefabEvent) {
        invocation.finish(with: terminal)
        store?.ended(invocation, terminal: terminal)
        invocations.finished(invocation)
        runningCalls.remove(invocation)
        admissions.release(invocation.function.manifest.name)
        log(invocation, outcome: terminal, events: invocation.events.count)
    }

    /// Runs `body` (the call), cancelling it with `TIMEOUT` once it runs past its limit: the
    /// manifest's `timeout_seconds` or the gateway's default, never past `maxStreamDuration`. A
    /// process prefab is stopped at once; a Swift function at its next `yield` (one that never
    /// comes to it has its call ended by the gateway: see `launch`).
    private func withTimeout<T>(_ invocation: Invocation, _ body: () -> T) -> T {
        let timer = timeLimit(invocation)
        defer { timer.cancel() }
        return body()
    }

    /// The timer that cancels the invocation with `TIMEOUT` at its time limit.
    private func timeLimit(_ invocation: Invocation) -> GatewayTimer {
        let ownLimit = invocation.function.manifest.timeoutSeconds ?? configuration.defaultTimeout?.seconds
        let maximum = configuration.maxStreamDuration.seconds
        let seconds = min(ownLimit ?? .infinity, maximum)
        let whose = seconds < (ownLimit ?? .infinity) ? "the gateway's maximum call duration" : "its time limit"
        return GatewayTimer.schedule(after: .seconds(seconds)) {
            let limit = String(format: "%g", seconds)
            invocation.context.cancel(PrefabError(.timeout, "the call ran past \(whose) of \(limit) s"))
        }
    }

    /// The outcome of a streaming call: its terminal event, or `OUTPUT_TOO_LARGE` when the call's
    /// output folder is over the limit.
    private func checkedOutcome(_ invocation: Invocation, _ terminal: PrefabEvent) -> CallOutcome {
        let code = terminal.type == PrefabEvent.error ? terminal.errorCode.map { PrefabError.Code(rawValue: $0) } : nil
        let output = checkOutput(invocation, code: code)
        var outcome = CallOutcome(terminal: output.tooLarge.map { .error($0) } ?? terminal)
        outcome.outputHasFiles = output.hasFiles
        return outcome
    }

    /// The call's output folder once its function has returned: whether it holds anything (nil
    /// when the function never asked for it, or the folder is gone), and `OUTPUT_TOO_LARGE` when
    /// it is over the limit or the call already ended with that code (a Python child whose write
    /// was refused); the folder is deleted then, so nothing of it is listed, served or kept.
    private func checkOutput(
        _ invocation: Invocation, code: PrefabError.Code?
    ) -> (hasFiles: Bool?, tooLarge: PrefabError?) {
        guard let directory = invocation.context.usedOutputDirectoryPath else { return (nil, nil) }
        let hasFiles = OutputStore.hasEntries(directory)
        let limit = configuration.maxOutputBytes
        guard code == .outputTooLarge || (hasFiles == true && OutputStore.size(of: directory) > limit)
        else { return (hasFiles, nil) }
        try? FileManager.default.removeItem(atPath: directory)
        return (nil, .outputTooLarge(limit: limit))
    }

    /// The `files` event for what the function wrote, if it wrote anything. `hasFiles`: what
    /// `checkOutput` saw when the function returned (the folder is read once a call, not twice),
    /// nil to look now.
    private func filesEvent(_ invocation: Invocation, hasFiles: Bool?) -> PrefabEvent? {
        guard let directory = invocation.context.usedOutputDirectoryPath else { return nil }
        outputOwners.record(invocation.id, owner: invocation.owner)
        switch hasFiles ?? OutputStore.hasEntries(directory) {
        case false?:
            outputs.spares.keep(directory)
            return nil
        case nil:
            return nil
        case true?:
            outputs.markEnded(directory)
            let entries = outputs.fileEntries(in: directory, invocationId: invocation.id, baseURL: invocation.baseURL)
            return entries.isEmpty ? nil : .files(entries)
        }
    }

    /// `duration` in milliseconds with one decimal ("5.7"), from integers: Foundation's
    /// `String(format: "%.1f")` was a third of the log line's cost (perf, `echo` at 64 connections
    /// at `info`, the default level).
    static func millisecondsText(_ duration: Duration) -> String {
        let tenths = Int((max(0, duration.seconds) * 10_000).rounded())
        return "\(tenths / 10).\(tenths % 10)"
    }

    /// One line per invocation (id, function, outcome, events, duration), and its metrics.
    private func log(_ invocation: Invocation, outcome terminal: PrefabEvent, events: Int) {
        let cancelled = terminal.errorCode == PrefabError.Code.cancelled.rawValue
        let outcome = cancelled ? "cancelled" : terminal.type == PrefabEvent.done ? "done" : "error"
        let duration = ContinuousClock.now - invocation.started
        metrics.invocationEnded(
            function: invocation.function.manifest.name, outcome: outcome, duration: duration, events: events)
        // The line is built only when it is written: formatting it cost a short call more than
        // its metrics (`--log-level warning` drops it; `info`, the default, writes it).
        guard logger.logLevel <= .info else { return }
        var metadata: Logger.Metadata = [
            "invocation": "\(invocation.id)",
            "function": "\(invocation.function.manifest.name)",
            "outcome": "\(outcome)",
            "events": "\(events)",
            "duration_ms": "\(Self.millisecondsText(duration))",
        ]
        if let code = terminal.errorCode, !cancelled { metadata["error_code"] = "\(code)" }
        logger.info("invocation", metadata: metadata)
    }
}

/// A call's work: a synchronous function blocks a function thread, an async one runs in a task.
enum CallWork {
    case blocking(@Sendable () -> CallOutcome)
    case async(@Sendable () async -> CallOutcome)
}

/// What a function thread hands back: the terminal event, and a non-streaming function's result.
struct CallOutcome: Sendable {
    var terminal: PrefabEvent
    var result: Result<JSONValue, PrefabError>?
    /// Whether the output folder held anything when the function returned; nil when unknown.
    var outputHasFiles: Bool?

    init(terminal: PrefabEvent) {
        self.terminal = terminal
    }

    init(result: Result<JSONValue, PrefabError>) {
        self.result = result
        switch result {
        case .success(let value): terminal = .done(value)
        case .failure(let error): terminal = .error(error)
        }
    }
}

/// How a call ended: its terminal event, the `files` event if it listed any, and a non-streaming
/// function's result.
struct CallEnd: Sendable {
    var terminal: PrefabEvent
    var files: PrefabEvent?
    var result: Result<JSONValue, PrefabError>?
}

/// Hands a call's end to the task waiting for it, once: a call refused at launch is forgotten,
/// but a late cancel could still end it.
private final class CallEndWaiter: Sendable {
    private let continuation: Mutex<CheckedContinuation<CallEnd?, Never>?>

    init(_ continuation: CheckedContinuation<CallEnd?, Never>) {
        self.continuation = Mutex(continuation)
    }

    func resume(_ end: CallEnd?) {
        continuation.withLock { $0.take() }?.resume(returning: end)
    }
}

/// Events of a streaming function called for one JSON answer, encoded as they arrive and capped.
private final class EventCollector: Sendable {
    private struct State {
        var bytes: [UInt8] = []
        var count = 0
        /// The closing events are in: nothing the function yields later gets into the answer.
        var closed = false
    }

    private let state = Mutex(State())
    private let maxBytes: Int

    init(maxBytes: Int) {
        self.maxBytes = maxBytes
    }

    var count: Int { state.withLock { $0.count } }

    /// Adds an event; throws `RESPONSE_TOO_LARGE` past the cap, which ends the function, and
    /// `STREAM_ENDED` after the closing events.
    func append(_ event: PrefabEvent) throws {
        try state.withLock { state in
            guard !state.closed else {
                throw PrefabError(.streamEnded, "the call has already ended: an event after its end is dropped")
            }
            guard state.bytes.count < maxBytes else {
                throw PrefabError(
                    .responseTooLarge,
                    "the events exceed \(maxBytes) bytes: call without Accept: application/json to stream them"
                )
            }
            Self.add(event, to: &state)
        }
    }

    /// Adds the gateway's own closing events, which always fit, and closes the answer.
    func appendAlways(_ event: PrefabEvent) {
        state.withLock { state in
            state.closed = true
            Self.add(event, to: &state)
        }
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

extension HTTPField.Name {
    /// The invocation's id, on every answer of `/invoke`.
    static let invocationId = HTTPField.Name("X-Invocation-Id")!
    /// Tells nginx not to buffer a stream.
    static let accelBuffering = HTTPField.Name("X-Accel-Buffering")!
}
