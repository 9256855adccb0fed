import Foundation
import Synchronization

/// Which calls run as a task on Swift's cooperative threads, where the request is served,
/// instead of on a function thread.
///
/// Handing a call to a function thread and back costs two thread wake-ups (perf, `echo` at 64
/// connections: a third of the gateway's time was the scheduler). A call run as a task costs none
/// when the cooperative threads are busy, and none for a lone client either (the thread that
/// suspends the request runs the call next). But a synchronous function blocks the thread it runs
/// on, and the cooperative pool has one thread per core. So a call runs there only when:
/// - its function has proven short: each of its last `provenAfter` calls ran within
///   `shortEnough` (a call that runs longer sends the function back to function threads until it
///   has proven short again); and
/// - fewer than `slots` calls run there now, one fewer than the cores: however long such a call
///   turns out to be (a function that sometimes sleeps), one cooperative thread is always left
///   for every other request. On one core, no call runs there.
final class ShortCalls: Sendable {
    /// A function's record of recent calls.
    private final class History: Sendable {
        /// Its consecutive calls that ran within `shortEnough`, up to `provenAfter`.
        let shortStreak = Atomic<Int>(0)
    }

    static let shortEnough = Duration.milliseconds(1)
    static let provenAfter = 16

    let slots: Int
    private let inUse = Atomic<Int>(0)
    private let histories: [String: History]

    init(functions: some Sequence<String>, slots: Int) {
        self.slots = max(0, slots)
        histories = Dictionary(functions.map { ($0, History()) }, uniquingKeysWith: { first, _ in first })
    }

    /// True when a call of `function` may run as a task now: the caller then runs it and calls
    /// `end` after.
    func begin(_ function: String) -> Bool {
        guard let history = histories[function], history.shortStreak.load(ordering: .relaxed) >= Self.provenAfter
        else { return false }
        var current = inUse.load(ordering: .relaxed)
        while current < slots {
            let (exchanged, original) = inUse.compareExchange(
                expected: current, desired: current + 1, ordering: .acquiringAndReleasing)
            if exchanged { return true }
            current = original
        }
        return false
    }

    func end() {
        inUse.subtract(1, ordering: .acquiringAndReleasing)
    }

    /// Calls running as tasks now.
    var running: Int { inUse.load(ordering: .relaxed) }

    /// Records how long a call of `function` ran, wherever it ran.
    func record(_ function: String, ran duration: Duration) {
        guard let history = histories[function] else { return }
        if duration <= Self.shortEnough {
            if history.shortStreak.load(ordering: .relaxed) < Self.provenAfter {
                history.shortStreak.add(1, ordering: .relaxed)
            }
        } else {
            history.shortStreak.store(0, ordering: .relaxed)
        }
    }
}
