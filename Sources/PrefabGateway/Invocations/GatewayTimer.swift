import Dispatch
import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A one-shot timer of the gateway (call timeouts, quick-answer waits, resume grace, queue
/// waits). Its action runs on `DispatchQueue.gatewayTimers` at the deadline unless cancelled
/// first; a cancelled timer lets go of its action at once.
struct GatewayTimer: Sendable {
    private let entry: TimerHeap.Entry

    /// Runs `action` once `delay` has passed, unless the timer is cancelled before.
    @discardableResult
    static func schedule(after delay: Duration, _ action: @escaping @Sendable () -> Void) -> GatewayTimer {
        GatewayTimer(entry: TimerHeap.shared.schedule(after: delay, action))
    }

    /// The action will not run (unless it has already started), and is released now.
    func cancel() {
        TimerHeap.shared.cancel(entry)
    }
}

/// The deadlines of every `GatewayTimer`, earliest first, and the one thread that waits for them.
///
/// Every call arms two timers (its time limit, its quick-answer wait) and cancels both
/// within microseconds. NIO's scheduled tasks cost a promise, a wake-up of an event loop per
/// task scheduled from another thread, and a linear search of the loop's deadlines per cancel
/// (3% of a short call's instructions, plus the wake-ups). Here a timer is a heap entry: the
/// thread is woken only when a new deadline comes before the one it waits for, and a cancel
/// removes the entry.
final class TimerHeap: @unchecked Sendable {  // all state is guarded by `mutex`
    /// One timer; its `index` in the heap is -1 once it has fired or was cancelled.
    final class Entry: @unchecked Sendable {
        fileprivate let deadline: UInt64
        fileprivate var action: (@Sendable () -> Void)?
        fileprivate var index = -1

        fileprivate init(deadline: UInt64, action: @escaping @Sendable () -> Void) {
            self.deadline = deadline
            self.action = action
        }
    }

    static let shared = TimerHeap()

    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let condition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private var entries: [Entry] = []
    /// When the thread wakes by itself next (`UInt64.max`: never); 0 while it is not waiting. A new
    /// deadline before it must wake the thread, a later one need not.
    private var waitingUntil: UInt64 = 0
    /// How long the thread keeps waking by itself once the heap is empty, as if it held a deadline:
    /// calls that come one at a time each arm their timers into an empty heap, and the wake-up
    /// for each first deadline was a context switch per call (`echo_py`, one connection). The
    /// output watch's 250 ms, the shortest common delay, so that no such call wakes the thread.
    private static let linger: UInt64 = 250_000_000

    private init() {
        pthread_mutex_init(mutex, nil)
        var attributes = pthread_condattr_t()
        pthread_condattr_init(&attributes)
        #if canImport(Glibc)
            // Deadlines are on the monotonic clock: a change of the wall clock moves none of them.
            pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC)
        #endif
        pthread_cond_init(condition, &attributes)
        pthread_condattr_destroy(&attributes)
        let thread = Thread { [self] in
            ThreadName.setCurrent("prefab-timers")
            run()
        }
        thread.stackSize = 256 << 10
        thread.start()
    }

    func schedule(after delay: Duration, _ action: @escaping @Sendable () -> Void) -> Entry {
        let entry = Entry(deadline: Self.now() + delay.clampedNanoseconds, action: action)
        pthread_mutex_lock(mutex)
        entry.index = entries.count
        entries.append(entry)
        siftUp(entry.index)
        let wake = entry.deadline < waitingUntil
        pthread_mutex_unlock(mutex)
        if wake { pthread_cond_signal(condition) }
        return entry
    }

    func cancel(_ entry: Entry) {
        pthread_mutex_lock(mutex)
        if entry.index >= 0 { remove(at: entry.index) }
        let action = entry.action
        entry.action = nil
        pthread_mutex_unlock(mutex)
        // Released here, outside the lock: it may hold an invocation, whose release may arm a timer.
        withExtendedLifetime(action) {}
    }

    private func run() {
        pthread_mutex_lock(mutex)
        /// Until when the thread lingers while the heap is empty; 0: it does not (any more).
        var lingerUntil: UInt64 = 0
        while true {
            let now = Self.now()
            guard let first = entries.first else {
                if lingerUntil == 0 {
                    lingerUntil = now + Self.linger
                } else if now >= lingerUntil {
                    waitingUntil = .max
                    pthread_cond_wait(condition, mutex)
                    waitingUntil = 0
                    lingerUntil = 0
                    continue
                }
                wait(until: lingerUntil)
                continue
            }
            lingerUntil = 0
            if first.deadline <= now {
                remove(at: 0)
                let action = first.action
                first.action = nil
                pthread_mutex_unlock(mutex)
                // On the timer queue, as before: an action may cancel calls and signal processes,
                // and must not hold up the deadlines after it.
                if let action { DispatchQueue.gatewayTimers.async(execute: action) }
                pthread_mutex_lock(mutex)
            } else {
                wait(until: first.deadline)
            }
        }
    }

    /// Waits (the mutex held) until `deadline`, or until a signal for an earlier one.
    private func wait(until deadline: UInt64) {
        waitingUntil = deadline
        var until = timespec(tv_sec: Int(deadline / 1_000_000_000), tv_nsec: Int(deadline % 1_000_000_000))
        pthread_cond_timedwait(condition, mutex, &until)
        waitingUntil = 0
    }

    /// Nanoseconds on the monotonic clock.
    private static func now() -> UInt64 {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_nsec)
    }

    // MARK: The heap, earliest deadline at index 0

    private func remove(at index: Int) {
        let removed = entries[index]
        let last = entries.removeLast()
        removed.index = -1
        guard index < entries.count else { return }
        entries[index] = last
        last.index = index
        siftUp(index)
        siftDown(last.index)
    }

    private func siftUp(_ start: Int) {
        var index = start
        while index > 0 {
            let parent = (index - 1) / 2
            guard entries[index].deadline < entries[parent].deadline else { return }
            swapAt(index, parent)
            index = parent
        }
    }

    private func siftDown(_ start: Int) {
        var index = start
        while true {
            let left = 2 * index + 1
            let right = left + 1
            var earliest = index
            if left < entries.count, entries[left].deadline < entries[earliest].deadline { earliest = left }
            if right < entries.count, entries[right].deadline < entries[earliest].deadline { earliest = right }
            guard earliest != index else { return }
            swapAt(index, earliest)
            index = earliest
        }
    }

    private func swapAt(_ first: Int, _ second: Int) {
        entries.swapAt(first, second)
        entries[first].index = first
        entries[second].index = second
    }
}

extension Duration {
    /// Nanoseconds, clamped to [0, 100 years]: "no limit" callers pass huge durations, whose
    /// nanoseconds would overflow.
    var clampedNanoseconds: UInt64 {
        let (seconds, attoseconds) = components
        return UInt64(min(max(seconds, 0), 100 * 365 * 86_400)) * 1_000_000_000
            + UInt64(max(attoseconds, 0) / 1_000_000_000)
    }
}
