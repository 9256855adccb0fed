import Foundation
import PrefabKit
import Synchronization

/// One call of a function, from its request until it is forgotten: what was asked, its context
/// (cancel, messages), its events for every reader, and how it ended.
final class Invocation: Sendable {
    enum Phase: String, Sendable {
        case running, done, failed, cancelled
    }

    let id: String
    let function: LoadedFunction
    /// Until the call takes them (`takeInputs`): a finished call is kept for minutes, its
    /// inputs need not be.
    private let inputs: Mutex<PrefabInputs?>
    /// The scheme, host and port that file URLs start with.
    let baseURL: String
    /// The API key that started the call, the only one that reaches it; nil when keys are off.
    let owner: Int?
    let started = ContinuousClock.now
    let startedAt = Date()
    let context: PrefabContext
    let events: EventLog
    /// The call runs on the event loop of the connection that asked (`EventLoopCalls`).
    var runsOnEventLoop: Bool { context.waitRefusal != nil }
    private let state = Mutex(State())
    /// Set by whoever ends the call (its function thread, or the gateway for a stuck function).
    private let ended = Atomic<Bool>(false)

    private struct State {
        var phase = Phase.running
        var finishedAt: Date?
        var duration: Duration?
        var error: PrefabError?
        var departures = 0
    }

    init(
        id: String = InvocationID.make(),
        function: LoadedFunction,
        inputs: PrefabInputs,
        baseURL: String,
        owner: Int? = nil,
        outputDirectoryPath: @escaping @Sendable () -> String,
        makeOutputDirectory: (@Sendable (String) throws -> Void)? = nil,
        events: EventLog,
        questionTimeout: Duration?,
        waitRefusal: PrefabError? = nil,
        sink: (@Sendable (PrefabEvent) throws -> Void)? = nil
    ) {
        self.id = id
        self.function = function
        self.inputs = Mutex(inputs)
        self.baseURL = baseURL
        self.owner = owner
        self.events = events
        self.context = PrefabContext(
            invocationId: id,
            outputDirectoryPath: outputDirectoryPath,
            makeOutputDirectory: makeOutputDirectory,
            questionTimeout: questionTimeout,
            sink: { [events, id] event in
                try sink?(event)
                try events.send { sequence, bytes in Self.appendMessage(event, sequence: sequence, id: id, to: &bytes) }
            },
            asyncSink: { [events, id] event in
                try sink?(event)
                try await events.send { sequence, bytes in
                    Self.appendMessage(event, sequence: sequence, id: id, to: &bytes)
                }
            },
            sleeper: { try await EventLoopExecutor.sleep(for: $0) },
            waitRefusal: waitRefusal
        )
        context.onCancel { [events] in events.stopProducer() }
    }

    /// The inputs, for the call's one run; empty for any later caller.
    func takeInputs() -> PrefabInputs {
        inputs.withLock { $0.take() } ?? PrefabInputs()
    }

    /// Appends one of the gateway's closing events (`files`, the terminal event).
    func sendClosing(_ event: PrefabEvent) {
        events.sendClosing { [id] sequence, bytes in Self.appendMessage(event, sequence: sequence, id: id, to: &bytes) }
    }

    /// One SSE message; the first event of every invocation also carries its id.
    private static func appendMessage(_ event: PrefabEvent, sequence: Int, id: String, to bytes: inout [UInt8]) {
        guard sequence == 1 else {
            SSEEncoder.appendEvent(event, id: sequence, to: &bytes)
            return
        }
        SSEEncoder.appendEvent(event, adding: "invocation_id", .string(id), id: sequence, to: &bytes)
    }

    var phase: Phase { state.withLock { $0.phase } }

    /// True for the one caller that gets to end the call (send its closing events, record how it
    /// ended); false for any later one.
    func claimEnd() -> Bool {
        !ended.exchange(true, ordering: .acquiringAndReleasing)
    }

    /// Records how the call ended; the terminal event tells done, failed or cancelled.
    func finish(with terminal: PrefabEvent) {
        let error: PrefabError? =
            terminal.type == PrefabEvent.error
            ? PrefabError(
                .init(rawValue: terminal.errorCode ?? PrefabError.Code.unexpectedError.rawValue),
                terminal.data?.stringValue ?? ""
            ) : nil
        finish(error: error)
    }

    func finish(error: PrefabError?) {
        state.withLock { state in
            state.phase = error == nil ? .done : error?.code == PrefabError.Code.cancelled ? .cancelled : .failed
            state.error = error
            state.finishedAt = Date()
            state.duration = ContinuousClock.now - started
        }
        events.finish()
    }

    /// A reader left. With nobody reading a running call, it is cancelled after `grace` (at
    /// once for zero), unless a client resumes it first.
    func readerLeft(remaining: Int, grace: Duration) {
        // A call that has ended cannot be cancelled: no error to word, no timer to arm (a quick
        // call's client leaves after its end; each left a 10 s timer in the heap before).
        guard remaining == 0, phase == .running else { return }
        let abandoned = PrefabError(
            .cancelled,
            "the client disconnected and did not resume within \(String(format: "%g", grace.seconds)) s"
        )
        guard grace > .zero else {
            if phase == .running { context.cancel(abandoned) }
            return
        }
        // Only the latest departure's timer counts: a client that resumed and left again gets
        // a full grace period.
        let departure = state.withLock { state in
            state.departures += 1
            return state.departures
        }
        // Weak: a call that ends within the grace period is not kept for its timer.
        GatewayTimer.schedule(after: grace) { [weak self] in
            guard let self else { return }
            let latest = state.withLock { $0.phase == .running && $0.departures == departure }
            if latest && events.readerCount == 0 { context.cancel(abandoned) }
        }
    }

    /// `GET /invocations/<id>`: state, function, timing and event counts.
    var statusJSON: JSONValue {
        let state = state.withLock { $0 }
        let milliseconds = (state.duration ?? ContinuousClock.now - started).seconds * 1000
        var status: [String: JSONValue] = [
            "id": .string(id),
            "function": .string(function.manifest.name),
            "state": .string(state.phase.rawValue),
            "started_at": .string(Self.timestamp(startedAt)),
            "finished_at": state.finishedAt.map { .string(Self.timestamp($0)) } ?? .null,
            "duration_ms": .double((milliseconds * 10).rounded() / 10),
            "events": .int(events.count),
            "oldest_kept_event": .int(events.oldestKept),
            "readers": .int(events.readerCount),
        ]
        if let error = state.error {
            status["error"] = ["code": .string(error.code.rawValue), "message": .string(error.message)]
        }
        return .object(status)
    }

    private static func timestamp(_ date: Date) -> String {
        date.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true))
    }
}
