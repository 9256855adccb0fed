import Foundation
import PrefabKit
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// A Python prefab's process in the runner's worker mode: it imported the prefab once and serves
/// call after call, one at a time.
///
/// Held by one call at a time (or by the thread that starts it): `reader` and `calls` are used
/// only by the holder, and a worker changes hands under the pool's lock.
final class Worker: @unchecked Sendable {
    let child: ChildProcess
    /// The worker's stdout, read across its calls.
    var reader: LineReader
    /// Calls served, the current one included.
    private(set) var calls = 0
    /// When it last came free (under the pool's lock).
    var idleSince = ContinuousClock.now
    private let serving = Mutex<(call: Int, stopped: Bool)>((0, false))

    init(child: ChildProcess, reader: LineReader) {
        self.child = child
        self.reader = reader
    }

    /// The call line that says the worker has imported the prefab.
    static let readyLine = Array(#"{"ready":true}"#.utf8)

    /// The number of the call that begins now (1, 2, ...).
    func beginCall() -> Int {
        calls += 1
        serving.withLock { $0.call = calls }
        return calls
    }

    /// Stops the worker if it still serves call `number`: a cancel that comes after its call ended
    /// must not reach the next call on the worker.
    func stop(call number: Int, graceful: Bool) {
        let stop = serving.withLock { serving in
            guard serving.call == number else { return false }
            serving.stopped = true
            return true
        }
        if stop { child.stop(graceful: graceful) }
    }

    /// Ends the current call; true when the worker may serve another.
    func endCall() -> Bool {
        serving.withLock { serving in
            serving.call = 0
            return !serving.stopped
        } && child.isRunning
    }
}

/// The workers of one Python prefab: `workers` kept ready, more started when calls would
/// otherwise wait on busy ones, up to `max_workers`.
///
/// A call takes an idle worker if there is one (the one that came free last: its memory is warm).
/// Otherwise it waits in line, and a worker that comes free goes to the call that has waited
/// longest. When workers come free but a call still waits past `patience` (a flood of short calls:
/// a call's round trip through the pipes, not the CPU, bounds what a worker serves), one more is
/// started at a time, ~40 ms of CPU each, until calls wait less than that or there are four per
/// core. When calls find no worker busy (a cold pool), one is started for each, up to four per
/// core too. When none has come free for ten times `patience` while some are busy (every worker
/// is in a long call: a sleeping or streaming prefab), each waiting call has one more started, up
/// to 16 starting at once, so slow calls still all run at once. Workers beyond `workers` that
/// stay idle for `idleExit` end.
final class WorkerPool: Sendable {
    let launch: ProcessLaunch
    let settings: WorkerSettings
    private let runtime: ProcessRuntime
    private let state = Mutex(State())

    private struct State {
        /// Idle workers; the one that came free last is last.
        var idle: [Worker] = []
        var busy = 0
        var starting = 0
        var waiters: [Waiter] = []
        /// Workers handed to calls so far: whether the pool makes progress.
        var handoffs = 0
        var closed = false
        var idleCheckScheduled = false

        var total: Int { idle.count + busy + starting }
    }

    /// What a waiting call gets.
    enum Outcome {
        case worker(Worker)
        case failed(PrefabError)
    }

    /// A call waiting for a worker.
    final class Waiter: Sendable {
        let signal = DispatchSemaphore(value: 0)
        /// Set once, under the pool's lock.
        let outcome = Mutex<Outcome?>(nil)
    }

    init(launch: ProcessLaunch, settings: WorkerSettings, runtime: ProcessRuntime) {
        self.launch = launch
        self.settings = settings
        self.runtime = runtime
    }

    /// Workers being started now.
    var starting: Int { state.withLock { $0.starting } }

    /// Starts the workers kept ready.
    func prewarm() {
        let count = state.withLock { state in
            let count = state.closed ? 0 : max(0, settings.workers - state.total)
            state.starting += count
            return count
        }
        for _ in 0..<count { startWorker() }
    }

    /// A worker for the call of `context`, waiting for one if need be; throws when the call is
    /// cancelled meanwhile (a time limit too), or a worker cannot be started.
    func acquire(for context: PrefabContext) throws -> Worker {
        let waiter = Waiter()
        let patience = runtime.options.workerPatience
        var progress = 0
        var progressAt = ContinuousClock.now
        var starts = 0
        let taken: Worker? = try state.withLock { state in
            if state.closed { throw Self.closed }
            while let worker = state.idle.popLast() {
                if worker.child.isRunning {
                    state.busy += 1
                    state.handoffs += 1
                    return worker
                }
                worker.child.retire()
            }
            state.waiters.append(waiter)
            progress = state.handoffs
            starts = startsNeeded(&state)
            return nil
        }
        if let taken { return taken }
        for _ in 0..<starts { startWorker() }
        context.onCancel { [self] in cancelWait(waiter, reason: context.cancelReason ?? .cancelled) }
        while true {
            if waiter.signal.wait(timeout: .now() + patience.seconds) == .success {
                switch waiter.outcome.withLock({ $0 }) {
                case .worker(let worker): return worker
                case .failed(let error): throw error
                case nil: continue
                }
            }
            let start = state.withLock { state -> Bool in
                guard waiter.outcome.withLock({ $0 == nil }), state.total < settings.maxWorkers ?? .max else {
                    return false
                }
                let wanted: Int
                if state.handoffs != progress {
                    // Workers come free but this call still waits (a flood of short calls, whose
                    // round trips bound the rate): one more at a time, pool-wide, up to a few per
                    // core (past that the CPU, not the round trips, bounds the rate).
                    progress = state.handoffs
                    progressAt = .now
                    wanted = state.total < floodLimit ? 1 : 0
                } else if state.busy > 0, ContinuousClock.now - progressAt >= patience * Self.stuckPatience {
                    // None came free for a while: all are in long calls, so each waiting call has
                    // one started (a few at a time: a busy machine's stall must not start dozens).
                    // With none busy, the ones starting will take the calls (`startsNeeded`).
                    wanted = min(state.waiters.count, Self.startsAtOnce)
                } else {
                    return false
                }
                guard state.starting < wanted else { return false }
                state.starting += 1
                return true
            }
            if start { startWorker() }
        }
    }

    /// Gives a worker back after its call: it serves the next call, or, when it must not (it was
    /// stopped, died, or served `max_calls`), it is let go and replaced if fewer than `workers`
    /// remain.
    func release(_ worker: Worker, reusable: Bool) {
        let keep = reusable && worker.calls < settings.maxCalls
        var starts = 0
        let (next, kept, scheduleIdleCheck) = state.withLock { state -> (Waiter?, Bool, Bool) in
            state.busy -= 1
            if keep && !state.closed {
                let next = handOver(worker, &state)
                let check = state.total > settings.workers && !state.idleCheckScheduled
                if check { state.idleCheckScheduled = true }
                return (next, true, check)
            }
            starts = state.closed ? 0 : startsNeeded(&state)
            return (nil, false, false)
        }
        if !kept { worker.child.retire() }
        next?.signal.signal()
        for _ in 0..<starts { startWorker() }
        if scheduleIdleCheck { scheduleIdleExit() }
    }

    /// Ends the pool: idle workers end, waiting calls fail, busy workers end after their call.
    func shutdown() {
        let (idle, waiters) = state.withLock { state in
            state.closed = true
            defer {
                state.idle = []
                state.waiters = []
            }
            for waiter in state.waiters { waiter.outcome.withLock { $0 = .failed(Self.closed) } }
            return (state.idle, state.waiters)
        }
        for worker in idle { worker.child.retire() }
        for waiter in waiters { waiter.signal.signal() }
    }

    /// Workers running now, idle or busy (for tests and metrics).
    var count: (idle: Int, busy: Int, starting: Int) {
        state.withLock { ($0.idle.count, $0.busy, $0.starting) }
    }

    private static let closed = PrefabError(.shuttingDown, "the gateway is shutting down")
    /// How many patience periods without any worker coming free mean every worker is in a long call.
    private static let stuckPatience = 10
    /// Workers started at once for calls that wait on long calls; each imports the prefab on its own.
    private static let startsAtOnce = 16
    /// The most workers a flood of short calls grows a pool to, per core.
    private static let floodWorkersPerCore = 4
    private static let cores = ProcessInfo.processInfo.activeProcessorCount

    /// Gives `worker` to the call that has waited longest, or keeps it idle; the waiter to wake.
    private func handOver(_ worker: Worker, _ state: inout State) -> Waiter? {
        guard !state.waiters.isEmpty else {
            worker.idleSince = .now
            state.idle.append(worker)
            return nil
        }
        let waiter = state.waiters.removeFirst()
        waiter.outcome.withLock { $0 = .worker(worker) }
        state.busy += 1
        state.handoffs += 1
        return waiter
    }

    /// The most workers the pool grows to before it knows its calls are long: four per core, or
    /// `workers` if more.
    private var floodLimit: Int { max(settings.workers, Self.floodWorkersPerCore * Self.cores) }

    /// How many workers to start now, counted as starting: up to `workers`, and, when no worker is
    /// busy (none will come free), one for each waiting call up to `floodLimit`, within
    /// `max_workers`. Not one per call: 64 calls that found the pool empty (its workers all
    /// replaced after `max_calls` at once, or a cold pool) started 58 interpreters, 1 GB.
    private func startsNeeded(_ state: inout State) -> Int {
        var wanted = settings.workers - state.total
        if state.busy == 0 {
            wanted = max(wanted, min(state.waiters.count - state.starting, floodLimit - state.total))
        }
        wanted = min(wanted, (settings.maxWorkers ?? .max) - state.total)
        guard wanted > 0 else { return 0 }
        state.starting += wanted
        return wanted
    }

    private func cancelWait(_ waiter: Waiter, reason: PrefabError) {
        let removed = state.withLock { state -> Bool in
            guard let index = state.waiters.firstIndex(where: { $0 === waiter }) else { return false }
            state.waiters.remove(at: index)
            waiter.outcome.withLock { $0 = .failed(reason) }
            return true
        }
        if removed { waiter.signal.signal() }
    }

    /// Starts a worker on a thread of its own, which waits until the prefab is imported; the
    /// worker then goes to a waiting call or joins the idle ones. Counted as starting already.
    private func startWorker() {
        Thread.detachNewThread { [self] in
            ThreadName.setCurrent("prefab-starter")
            var outcome: Outcome
            var ready = false
            do {
                let child = try ChildProcess.start(launch, runtime: runtime, invocation: nil)
                var reader = LineReader(fileDescriptor: child.stdout, maxLineBytes: runtime.options.maxLineBytes)
                if case .line(let line) = reader.next(), line == Worker.readyLine { ready = true }
                outcome = .worker(Worker(child: child, reader: reader))
            } catch {
                outcome = .failed(PrefabError(describing: error))
            }
            var starts = 0
            let (waiter, retire) = state.withLock { state -> (Waiter?, Worker?) in
                state.starting -= 1
                // Calls still waiting when none is busy need the next starts (a failed start
                // with no call waiting is not retried: it would fail again).
                defer { starts = state.closed || state.waiters.isEmpty ? 0 : startsNeeded(&state) }
                switch outcome {
                case .worker(let worker) where ready && !state.closed:
                    return (handOver(worker, &state), nil)
                case .worker(let worker):
                    // It ended before it was ready (the import killed it): a waiting call gets it
                    // and reports how it ended, as a process of its own would have.
                    guard !state.closed, !state.waiters.isEmpty else { return (nil, worker) }
                    return (handOver(worker, &state), nil)
                case .failed:
                    guard !state.waiters.isEmpty else { return (nil, nil) }
                    let waiter = state.waiters.removeFirst()
                    waiter.outcome.withLock { $0 = outcome }
                    return (waiter, nil)
                }
            }
            retire?.child.retire()
            waiter?.signal.signal()
            for _ in 0..<starts { startWorker() }
        }
    }

    /// Ends idle workers beyond `workers` once they have been idle for `idleExit`; checks again
    /// when the next one would be due while any remain.
    private func scheduleIdleExit(after delay: Duration? = nil) {
        let idleExit = runtime.options.workerIdleExit
        DispatchQueue.gatewayTimers.asyncAfter(deadline: .now() + (delay ?? idleExit).seconds) { [self] in
            let (retired, next) = state.withLock { state -> ([Worker], Duration?) in
                var retired: [Worker] = []
                let now = ContinuousClock.now
                while state.total > settings.workers, let oldest = state.idle.first, now - oldest.idleSince >= idleExit
                {
                    retired.append(state.idle.removeFirst())
                }
                guard state.total > settings.workers, !state.closed else {
                    state.idleCheckScheduled = false
                    return (retired, nil)
                }
                // The least recently used idle worker is due first; busy ones come free later.
                let due = state.idle.first.map { $0.idleSince + idleExit - now } ?? idleExit
                return (retired, max(due, .milliseconds(10)))
            }
            for worker in retired { worker.child.retire() }
            if let next { scheduleIdleExit(after: next) }
        }
    }
}
