import Foundation
import Synchronization

/// Threads for synchronous prefab functions, kept off the server's event loops.
///
/// A function that sleeps holds its thread, so the pool is elastic: it starts a thread when none
/// is idle, up to `maxThreads`, and lets idle threads end after a while. Past the limit `submit`
/// refuses, and the caller answers 429 instead of piling up work.
final class FunctionThreadPool: @unchecked Sendable {
    typealias Work = @Sendable () -> Void

    private let condition = NSCondition()
    private var pending: [Work] = []
    /// `pending.count`, readable without the lock by a thread looking for work.
    private let pendingCount = Atomic<Int>(0)
    /// Whether a thread is already looking for work without sleeping.
    private let spinning = Atomic<Bool>(false)
    private var idleThreads = 0
    private var threads = 0
    private var busy = 0
    private let maxThreads: Int
    private let stackSize: Int
    private let idleTimeout: TimeInterval

    init(maxThreads: Int, stackSize: Int, idleTimeout: TimeInterval = 30) {
        self.maxThreads = max(1, maxThreads)
        self.stackSize = stackSize
        self.idleTimeout = idleTimeout
    }

    /// Functions running or about to run.
    var running: Int {
        condition.lock()
        defer { condition.unlock() }
        return busy
    }

    /// Runs `work` on a pool thread; false when `maxThreads` functions are already running.
    func submit(_ work: @escaping Work) -> Bool {
        condition.lock()
        guard busy < maxThreads else {
            condition.unlock()
            return false
        }
        busy += 1
        if pending.count < idleThreads {
            pending.append(work)
            pendingCount.store(pending.count, ordering: .relaxed)
            condition.signal()
            condition.unlock()
            return true
        }
        threads += 1
        condition.unlock()
        // The thread object keeps its closure until the thread ends: it gets a box it empties,
        // not the work itself, or the thread's first call (its invocation, all its events) would
        // be kept for as long as the thread lives.
        let first = WorkBox(work)
        let thread = Thread { [self] in
            ThreadName.setCurrent("prefab-function")
            self.runLoop(first: first)
        }
        thread.stackSize = stackSize
        thread.start()
        return true
    }

    private func runLoop(first: WorkBox) {
        var work = first.take()
        while work != nil {
            Self.runAndRelease(&work)
            condition.lock()
            busy -= 1
            idleThreads += 1
            // Calls often come back to back: one thread at a time looks for the next call briefly
            // before sleeping, which saves a futex sleep and wake-up per call. One, so that
            // thousands of threads finishing together do not all spin.
            if pending.isEmpty, spinning.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged
            {
                condition.unlock()
                for _ in 0..<64 where pendingCount.load(ordering: .relaxed) == 0 { sched_yield() }
                spinning.store(false, ordering: .releasing)
                condition.lock()
            }
            let deadline = Date(timeIntervalSinceNow: idleTimeout)
            while pending.isEmpty {
                if !condition.wait(until: deadline) { break }
            }
            idleThreads -= 1
            if !pending.isEmpty {
                work = pending.removeFirst()
                pendingCount.store(pending.count, ordering: .relaxed)
            } else {
                threads -= 1
            }
            condition.unlock()
        }
    }

    /// Runs the work and lets go of it before returning: a binding of it in the loop would keep
    /// it (and what it captured) while the thread waits for the next call.
    private static func runAndRelease(_ work: inout Work?) {
        guard let current = work else { return }
        work = nil
        current()
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
