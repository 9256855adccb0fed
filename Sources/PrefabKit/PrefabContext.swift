import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// What a running function gets besides its inputs: `yield`, cancellation, its invocation id and
/// its output directory.
///
/// The context enforces the stream rules: a terminal event (`done`/`error`) is held back and
/// sent when the function returns, and any `yield` after it, or after cancellation, throws.
public final class PrefabContext: Sendable {
    /// Receives every non-terminal event in order; throwing stops the function.
    public typealias Sink = @Sendable (PrefabEvent) throws -> Void
    /// Receives the events of an async function: where ``Sink`` would block its thread (a full
    /// buffer), this one suspends.
    public typealias AsyncSink = @Sendable (PrefabEvent) async throws -> Void

    /// The invocation's id, the one in the gateway's `/invocations/<id>` URLs.
    public let invocationId: String
    private let outputPath: @Sendable () -> String
    private let outputURL: @Sendable () -> URL
    private let makeOutputDirectory: @Sendable (String) throws -> Void
    private let sink: Sink
    private let asyncSink: AsyncSink?
    /// How an async function's `sleep` waits; nil is `Task.sleep`.
    let sleeper: (@Sendable (Duration) async throws -> Void)?
    private let cancelled = Atomic<Bool>(false)
    /// Set with the terminal event; an atomic keeps the per-event check off the lock.
    private let ended = Atomic<Bool>(false)
    private let state = Mutex(State())
    /// How long `ask` waits for an answer when it is given no timeout; nil waits until cancelled.
    public let questionTimeout: Duration?
    /// Set when the function runs where it must not block (an event loop): a synchronous `ask`,
    /// `nextMessage` or `sleep` cancels the call with it and throws it instead of waiting.
    package let waitRefusal: PrefabError?

    private struct State {
        var terminal: PrefabEvent?
        var outputDirectoryCreated = false
        var cancelReason: PrefabError?
        var cancelHandlers: [@Sendable () -> Void] = []
        /// Made when first needed: most calls get no message, ask nothing and never sleep here,
        /// and an inbox (its lock and condition) was four allocations of every call, kept for as
        /// long as a finished call is.
        var inbox: MessageInbox?
        /// The function has returned: an inbox made from now on refuses messages at once.
        var finished = false
    }

    /// The call's messages and questions. One made after a cancel, or once the function has
    /// returned, starts out closed as the inbox then would have been.
    var inbox: MessageInbox {
        state.withLock { state in
            if let inbox = state.inbox { return inbox }
            let inbox = MessageInbox()
            // Closed before anyone else can reach it (the inbox never takes this lock).
            if let closedWith = state.cancelReason ?? (state.finished ? Self.finishedReason : nil) {
                inbox.cancel(closedWith)
            }
            state.inbox = inbox
            return inbox
        }
    }

    /// A context for running a function outside the gateway: in a test, or in a host of its own.
    ///
    /// - Parameters:
    ///   - invocationId: What the function reads as ``invocationId``.
    ///   - outputDirectory: Where the function's output files go; created when the function first
    ///     asks for ``outputDirectory``.
    ///   - questionTimeout: How long `ask` waits for an answer when it is given no timeout; nil waits
    ///     until the invocation is cancelled.
    ///   - sink: Receives every non-terminal event in order; `run` returns the terminal one.
    ///   - asyncSink: Receives the events of an async function, when given; otherwise `sink` does.
    public convenience init(
        invocationId: String,
        outputDirectory: URL,
        questionTimeout: Duration? = nil,
        sink: @escaping Sink,
        asyncSink: AsyncSink? = nil
    ) {
        self.init(
            invocationId: invocationId, outputPath: { outputDirectory.path }, outputURL: { outputDirectory },
            makeOutputDirectory: nil, questionTimeout: questionTimeout, sink: sink, asyncSink: asyncSink, sleeper: nil,
            waitRefusal: nil)
    }

    /// The output directory's path, and its URL, are made only when they are asked for: most
    /// calls write no file, and a `URL` cost a short call several thousand instructions to make
    /// and as many for each `path` (a process call needs only the path: callgrind, `echo_py`).
    /// `makeOutputDirectory` makes the folder at that path on first use (by default one `mkdir`).
    /// `sleeper` is how an async function's ``sleep(for:)`` waits (a gateway's timer of the
    /// thread the function runs on), instead of `Task.sleep`.
    package convenience init(
        invocationId: String,
        outputDirectoryPath: @escaping @Sendable () -> String,
        makeOutputDirectory: (@Sendable (String) throws -> Void)? = nil,
        questionTimeout: Duration? = nil,
        sink: @escaping Sink,
        asyncSink: AsyncSink? = nil,
        sleeper: (@Sendable (Duration) async throws -> Void)? = nil,
        waitRefusal: PrefabError? = nil
    ) {
        self.init(
            invocationId: invocationId, outputPath: outputDirectoryPath,
            outputURL: { URL(fileURLWithPath: outputDirectoryPath(), isDirectory: true) },
            makeOutputDirectory: makeOutputDirectory, questionTimeout: questionTimeout, sink: sink,
            asyncSink: asyncSink, sleeper: sleeper, waitRefusal: waitRefusal)
    }

    private init(
        invocationId: String,
        outputPath: @escaping @Sendable () -> String,
        outputURL: @escaping @Sendable () -> URL,
        makeOutputDirectory: (@Sendable (String) throws -> Void)?,
        questionTimeout: Duration?,
        sink: @escaping Sink,
        asyncSink: AsyncSink?,
        sleeper: (@Sendable (Duration) async throws -> Void)?,
        waitRefusal: PrefabError?
    ) {
        self.sleeper = sleeper
        self.waitRefusal = waitRefusal
        self.invocationId = invocationId
        self.outputPath = outputPath
        self.outputURL = outputURL
        self.makeOutputDirectory = makeOutputDirectory ?? Self.makeDirectory
        self.questionTimeout = questionTimeout
        self.sink = sink
        self.asyncSink = asyncSink
    }

    /// True once the client has gone away or the invocation was cancelled.
    public var isCancelled: Bool { cancelled.load(ordering: .relaxed) }

    /// Why the invocation was cancelled, once it was.
    public var cancelReason: PrefabError? { state.withLock { $0.cancelReason } }

    /// Stops the function at its next `yield`, which throws `reason`; the stream ends with an
    /// `error` event carrying it. The first reason given wins.
    public func cancel(_ reason: PrefabError = .cancelled) {
        let (handlers, inbox) = state.withLock { state -> ([@Sendable () -> Void], MessageInbox?) in
            guard state.cancelReason == nil else { return ([], state.inbox) }
            state.cancelReason = reason
            defer { state.cancelHandlers = [] }
            return (state.cancelHandlers, state.inbox)
        }
        cancelled.store(true, ordering: .releasing)
        inbox?.cancel(reason)
        for handler in handlers { handler() }
    }

    /// Runs `handler` once when the invocation is cancelled (at once if it already is): for a
    /// function blocked somewhere other than `yield`, such as reading a child process's output.
    public func onCancel(_ handler: @escaping @Sendable () -> Void) {
        let runNow = state.withLock { state -> Bool in
            if state.cancelReason != nil { return true }
            // A gateway's call registers two or three: room for them at once, not grown twice.
            if state.cancelHandlers.isEmpty { state.cancelHandlers.reserveCapacity(4) }
            state.cancelHandlers.append(handler)
            return false
        }
        if runNow { handler() }
    }

    /// Sends one event. Throws when the invocation is cancelled (the function should let it
    /// propagate), or after a terminal event.
    public func yield(_ event: PrefabEvent) throws {
        guard try admit(event) else { return }
        do {
            try sink(event)
        } catch {
            throw sinkError(error)
        }
    }

    /// Sends one event from an async function: like `yield`, but where `yield` would block its
    /// thread (a slow client), this suspends.
    public func yield(_ event: PrefabEvent) async throws {
        guard try admit(event) else { return }
        do {
            if let asyncSink { try await asyncSink(event) } else { try sink(event) }
        } catch {
            throw sinkError(error)
        }
    }

    /// The checks of `yield`: true when `event` goes to the sink, false for the terminal event
    /// (held back until the function returns).
    private func admit(_ event: PrefabEvent) throws -> Bool {
        if isCancelled { throw cancelReason ?? .cancelled }
        if event.isTerminal {
            try state.withLock { state in
                if state.terminal != nil { throw Self.streamEnded }
                state.terminal = event
            }
            ended.store(true, ordering: .releasing)
            return false
        }
        if ended.load(ordering: .acquiring) { throw Self.streamEnded }
        // Recorded before the client can see it, so that its answer is always accepted.
        if event.isQuestion { inbox.questionAsked(event) }
        return true
    }

    /// Before a synchronous wait: where the function must not block, the call ends here with
    /// `waitRefusal` (a cancel, so that a function that catches it stops at its next `yield`).
    func checkMayWait() throws {
        guard let waitRefusal else { return }
        cancel(waitRefusal)
        throw waitRefusal
    }

    /// A cancel that wakes a `yield` waiting in the sink says why, not just "cancelled".
    /// A sink that refuses to wait (`waitRefusal`) ends the call, as `checkMayWait` does.
    private func sinkError(_ error: any Error) -> any Error {
        if let waitRefusal, let refused = error as? PrefabError, refused == waitRefusal { cancel(waitRefusal) }
        return cancelReason ?? error
    }

    /// The directory for output files, `data/outputs/<invocation>/` under the gateway; created on
    /// first use so that functions without files cost nothing.
    public var outputDirectory: URL {
        get throws {
            try makeOutputDirectoryIfNeeded()
            return outputURL()
        }
    }

    /// ``outputDirectory``'s path, the folder made as for it.
    package var outputDirectoryPath: String {
        get throws {
            try makeOutputDirectoryIfNeeded()
            return outputPath()
        }
    }

    private func makeOutputDirectoryIfNeeded() throws {
        try state.withLock { state in
            if !state.outputDirectoryCreated {
                try makeOutputDirectory(outputPath())
                state.outputDirectoryCreated = true
            }
        }
    }

    /// One `mkdir` when the parent exists (the gateway's case): FileManager's `createDirectory`
    /// also looks the path and its parent up first, which was a tenth of a Python call's gateway time.
    package static func makeDirectory(_ path: String) throws {
        #if canImport(Glibc) || canImport(Darwin)
            if mkdir(path, 0o777) == 0 { return }
        #endif
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    /// The output directory if the function asked for it, for listing what it wrote.
    public var usedOutputDirectory: URL? {
        state.withLock { $0.outputDirectoryCreated } ? outputURL() : nil
    }

    /// ``usedOutputDirectory``'s path.
    package var usedOutputDirectoryPath: String? {
        state.withLock { $0.outputDirectoryCreated } ? outputPath() : nil
    }

    /// The function has returned: messages are refused from now on, and what its cancel
    /// handlers hold (a child process, say) is let go even though the context lives on.
    private func finished() {
        let inbox = state.withLock { state in
            state.finished = true
            state.cancelHandlers = []
            return state.inbox
        }
        inbox?.cancel(Self.finishedReason)
    }

    private static let finishedReason = PrefabError(.invocationFinished, "the function has returned")
    private static let streamEnded = PrefabError(.streamEnded, "the stream already ended with a terminal event")
}

extension PrefabContext {
    /// Runs a streaming function under the stream rules and returns the one terminal event to
    /// send last: the function's own, `done` if it returned without one, or `error` if it threw.
    public func run(_ function: StreamingFunction, inputs: PrefabInputs) -> PrefabEvent {
        var thrown: (any Error)?
        do {
            try function(inputs, self)
        } catch {
            thrown = error
        }
        return end(thrown: thrown)
    }

    /// Runs an async streaming function in the current task, under the same rules. Run it in a
    /// task that is cancelled when the context is (`onCancel { task.cancel() }`), so that a
    /// cancel also ends the function's other awaits, not only its next `yield` or `sleep`.
    public func run(_ function: AsyncStreamingFunction, inputs: PrefabInputs) async -> PrefabEvent {
        var thrown: (any Error)?
        do {
            try await function(inputs, self)
        } catch {
            thrown = error
        }
        return end(thrown: thrown)
    }

    /// The function has returned (or thrown `thrown`): the terminal event to send.
    private func end(thrown: (any Error)?) -> PrefabEvent {
        finished()
        if let terminal = state.withLock({ $0.terminal }) { return terminal }
        if let reason = cancelReason { return .error(reason) }
        if let thrown { return .error(PrefabError(describing: thrown)) }
        return .done()
    }

    /// Runs a non-streaming function; events it yields are dropped.
    public func run(_ function: ResultFunction, inputs: PrefabInputs) -> Result<JSONValue, PrefabError> {
        defer { finished() }
        do {
            return .success(try function(inputs, self))
        } catch {
            return .failure(cancelReason ?? PrefabError(describing: error))
        }
    }
}
