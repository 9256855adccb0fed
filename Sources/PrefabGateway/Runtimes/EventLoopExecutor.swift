import NIOCore
import NIOPosix
import Synchronization

/// Runs an async function's task on the event loop of the connection it answers; its
/// `context.sleep` is a timer of that loop (`sleep(for:)`), so each event of a sleeping stream
/// is made and written by one thread.
///
/// On Swift's global executor, each event of a ticker cost three threads: dispatch's timer
/// thread, a cooperative thread to resume the task, then the event loop to write it. The price:
/// an async function that computes for long between its awaits holds up the other connections
/// of its loop, as it would hold one of the few cooperative threads on the global executor.
final class EventLoopExecutor: TaskExecutor {
    let loop: any EventLoop

    private init(loop: any EventLoop) {
        self.loop = loop
    }

    /// One executor per loop, kept for the process's life: the loops
    /// (`MultiThreadedEventLoopGroup.singleton`'s) live as long, and a task does not own its
    /// preferred executor.
    private static let executors = Mutex<[ObjectIdentifier: EventLoopExecutor]>([:])

    static func of(_ loop: any EventLoop) -> EventLoopExecutor {
        executors.withLock { executors in
            let key = ObjectIdentifier(loop)
            if let executor = executors[key] { return executor }
            let executor = EventLoopExecutor(loop: loop)
            executors[key] = executor
            return executor
        }
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        loop.execute { job.runSynchronously(on: self.asUnownedTaskExecutor()) }
    }

    /// The sleeps ending in one millisecond, and the loop's task that wakes them.
    private struct Millisecond {
        var wakes: [Wake]
        let timer: Scheduled<Void>
    }

    /// The sleeps of tasks on this loop, by the millisecond they end in. Only touched on `loop`.
    private nonisolated(unsafe) var sleeps: [Int64: Millisecond] = [:]

    /// Sleeps waiting on this loop's timers (for tests). Only on `loop`.
    var pendingSleeps: Int { sleeps.values.reduce(0) { $0 + $1.wakes.count } }

    /// An async function's `context.sleep`: on an event loop, a timer of that loop, which resumes
    /// the task where it runs (`Task.sleep` would wake dispatch's timer thread, then a
    /// cooperative thread); elsewhere `Task.sleep`. Throws `CancellationError` once the task is
    /// cancelled.
    ///
    /// Sleeps ending in the same millisecond share one of the loop's scheduled tasks, woken at its
    /// end (at most 1 ms late): 10,000 tickers kept 5,000 scheduled tasks in each loop's heap, and
    /// its upkeep was a tenth of the gateway's time (`perf`).
    static func sleep(for duration: Duration) async throws {
        guard let loop = MultiThreadedEventLoopGroup.currentEventLoop else {
            return try await Task.sleep(for: duration)
        }
        let executor = of(loop)
        let wake = Wake()
        try await withTaskCancellationHandler {
            try await withUnsafeThrowingContinuation { continuation in
                wake.wait(continuation)
                executor.add(wake, after: duration)
            }
        } onCancel: {
            wake.resume(cancelled: true)
            // Runs after `add`, which ran in the loop's current job.
            executor.loop.execute { executor.remove(wake) }
        }
    }

    /// On `loop`: wakes `wake` once `duration` has passed.
    private func add(_ wake: Wake, after duration: Duration) {
        let end = NIODeadline.now().uptimeNanoseconds + duration.clampedNanoseconds
        let millisecond = Int64((end + 999_999) / 1_000_000)
        wake.millisecond = millisecond
        if sleeps[millisecond]?.wakes.append(wake) != nil { return }
        let timer = loop.scheduleTask(deadline: .uptimeNanoseconds(UInt64(millisecond) * 1_000_000)) {
            for wake in self.sleeps.removeValue(forKey: millisecond)?.wakes ?? [] { wake.resume(cancelled: false) }
        }
        sleeps[millisecond] = Millisecond(wakes: [wake], timer: timer)
    }

    /// On `loop`: forgets a cancelled sleep at once, and its millisecond's timer when it was the
    /// last there. Otherwise a cancelled sleep of an hour kept its wake, and the loop its
    /// scheduled task, for that hour (for ever, for a sleep of centuries).
    private func remove(_ wake: Wake) {
        guard let millisecond = wake.millisecond else { return }
        sleeps[millisecond]?.wakes.removeAll { $0 === wake }
        if sleeps[millisecond]?.wakes.isEmpty == true { sleeps.removeValue(forKey: millisecond)?.timer.cancel() }
    }

    /// One sleep's end: its timer or its task's cancel, whichever comes first (the cancel may come
    /// before the continuation is stored).
    private final class Wake: Sendable {
        /// The millisecond it ends in. Only touched on the loop.
        nonisolated(unsafe) var millisecond: Int64?

        private struct State {
            var continuation: UnsafeContinuation<Void, any Error>?
            /// Whether it ended by a cancel, once it has ended.
            var endedByCancel: Bool?
        }
        private let state = Mutex(State())

        func wait(_ continuation: UnsafeContinuation<Void, any Error>) {
            let endedByCancel = state.withLock { state -> Bool? in
                if state.endedByCancel == nil { state.continuation = continuation }
                return state.endedByCancel
            }
            if endedByCancel == true { continuation.resume(throwing: CancellationError()) }
        }

        func resume(cancelled: Bool) {
            let continuation = state.withLock { state -> UnsafeContinuation<Void, any Error>? in
                guard state.endedByCancel == nil else { return nil }
                state.endedByCancel = cancelled
                defer { state.continuation = nil }
                return state.continuation
            }
            guard let continuation else { return }
            if cancelled {
                continuation.resume(throwing: CancellationError())
            } else {
                continuation.resume()
            }
        }
    }
}
