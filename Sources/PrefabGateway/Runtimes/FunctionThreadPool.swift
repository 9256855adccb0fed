import Foundation
import NIOCore
import Synchronization

/// Threads for synchronous prefab functions, kept off the server's event loops.
///
/// A function that sleeps holds its thread, so the pool is elastic: it starts a thread when none
/// is idle, up to `maxThreads`, and lets idle threads end after a while. Past the limit `submit`
/// refuses, and the caller answers 429 instead of piling up work.
///
/// Work is handed to one idle thread, the one that became idle last (it may still be looking for
/// work, and its memory is warm). A shared queue and a condition variable woke a thread that then
/// waited for the lock, or found its work taken by the thread still looking and slept again
/// (`echo_py` at 64 connections: 3.83 sleeps a call on function threads, now 2.63).
final class FunctionThreadPool: Sendable {
    typealias Work = @Sendable () -> Void

    private struct State {
        /// Threads waiting for work, the one that became idle last at the end: the first is the
        /// one whose idle time runs out first.
        var idle = CircularBuffer<IdleThread>()
        var threads = 0
        var busy = 0
    }

    private let state = Mutex(State())
    /// Whether a thread is already looking for work without sleeping.
    private let spinning = Atomic<Bool>(false)
    private let maxThreads: Int
    private let stackSize: Int
    private let idleTimeout: TimeInterval

    init(maxThreads: Int, stackSize: Int, idleTimeout: TimeInterval = 30) {
        self.maxThreads = max(1, maxThreads)
        self.stackSize = stackSize
        self.idleTimeout = idleTimeout
    }

    /// Functions running or about to run.
    var running: Int { state.withLock { $0.busy } }

    /// Threads alive now, idle or busy.
    var threads: Int { state.withLock { $0.threads } }

    /// Runs `work` on a pool thread; false when `maxThreads` functions are already running.
    func submit(_ work: @escaping Work) -> Bool {
        enum Placement {
            case refused
            case handed(IdleThread)
            case newThread
        }
        let placement = state.withLock { state -> Placement in
            guard state.busy < maxThreads else { return .refused }
            state.busy += 1
            if let thread = state.idle.popLast() {
                thread.hand(work)
                return .handed(thread)
            }
            state.threads += 1
            return .newThread
        }
        switch placement {
        case .refused:
            return false
        case .handed(let thread):
            thread.wake.signal()
        case .newThread:
            // The thread object keeps its closure until the thread ends: it gets a box it empties,
            // not the work itself, or the thread's first call (its invocation, all its events)
            // would be kept for as long as the thread lives.
            let first = WorkBox(work)
            let thread = Thread { [self] in
                ThreadName.setCurrent("prefab-function")
                self.runLoop(first: first)
            }
            thread.stackSize = stackSize
            thread.start()
        }
        return true
    }

    private func runLoop(first: WorkBox) {
        let me = IdleThread()
        var work = first.take()
        while work != nil {
            Self.runAndRelease(&work)
            state.withLock { state in
                state.busy -= 1
                state.idle.append(me)
            }
            // Calls often come back to back: one thread at a time looks for the next call briefly
            // before sleeping, which saves a futex sleep and wake-up per call. One, so that
            // thousands of threads finishing together do not all spin.
            if spinning.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged {
                for _ in 0..<64 where !me.hasWork.load(ordering: .relaxed) { sched_yield() }
                spinning.store(false, ordering: .releasing)
            }
            if me.wake.wait(timeout: .now() + idleTimeout) == .timedOut {
                let leaving = state.withLock { state -> Bool in
                    if state.idle.first === me {
                        state.idle.removeFirst()
                    } else if let index = state.idle.firstIndex(where: { $0 === me }) {
                        state.idle.remove(at: index)
                    } else {
                        return false
                    }
                    state.threads -= 1
                    return true
                }
                if leaving { return }
                me.wake.wait()  // handed work as the wait ended: its signal is on its way
            }
            work = me.take()
        }
    }

    /// Runs the work and lets go of it before returning: a binding of it in the loop would keep
    /// it (and what it captured) while the thread waits for the next call.
    private static func runAndRelease(_ work: inout Work?) {
        guard let current = work else { return }
        work = nil
        current()
    }

    /// A thread waiting for work: what it is handed, and the semaphore that wakes it.
    private final class IdleThread: Sendable {
        let wake = DispatchSemaphore(value: 0)
        /// Set with the work, read while the thread looks for work without sleeping.
        let hasWork = Atomic<Bool>(false)
        private let work = Mutex<Work?>(nil)

        func hand(_ work: @escaping Work) {
            self.work.withLock { $0 = work }
            hasWork.store(true, ordering: .releasing)
        }

        func take() -> Work? {
            hasWork.store(false, ordering: .relaxed)
            return work.withLock { work in
                defer { work = nil }
                return work
            }
        }
    }

    private final class WorkBox: @unchecked Sendable {  // written once, taken once by its thread
        private var work: Work?
        init(_ work: @escaping Work) { self.work = work }
        func take() -> Work? {
            defer { work = nil }
            return work
        }
    }
}
