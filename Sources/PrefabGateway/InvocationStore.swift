import NIOCore
import PrefabKit
import Synchronization

/// Every running invocation, and the recently finished ones, by id: what `/invocations/<id>`
/// finds. A finished invocation is kept for `retention`, and only the most recent ones are kept
/// (`maxFinished`, `maxFinishedBytes` of events in all), so memory stays bounded under any load.
/// A forgotten invocation is let go at once (nothing else holds it), also when no request comes
/// to notice that its time is up.
final class InvocationStore: Sendable {
    private struct Finished {
        let invocation: Invocation
        let bytes: Int
        let at: ContinuousClock.Instant
    }

    private struct Storage {
        var byId: [String: Invocation] = [:]
        /// Finished invocations, oldest first.
        var finished = CircularBuffer<Finished>()
        var finishedBytes = 0
        /// The timer that forgets the oldest finished invocation when its retention is up.
        var sweep: GatewayTimer?
    }

    private let storage = Mutex(Storage())
    let retention: Duration
    let maxFinished: Int
    let maxFinishedBytes: Int

    init(retention: Duration, maxFinished: Int, maxFinishedBytes: Int) {
        self.retention = retention
        self.maxFinished = max(0, maxFinished)
        self.maxFinishedBytes = max(0, maxFinishedBytes)
    }

    func add(_ invocation: Invocation) {
        storage.withLock { $0.byId[invocation.id] = invocation }
    }

    /// Forgets an invocation that never ran (refused when too many were running).
    func remove(_ invocation: Invocation) {
        _ = storage.withLock { $0.byId.removeValue(forKey: invocation.id) }
    }

    /// The invocation with this id, running or finished within the retention period.
    func invocation(_ id: String) -> Invocation? {
        let (invocation, forgotten) = storage.withLock { storage in
            let forgotten = forgetExpired(&storage, now: .now)
            return (storage.byId[id], forgotten)
        }
        _ = forgotten  // released outside the lock
        return invocation
    }

    /// Moves a finished invocation to the kept-for-a-while list, forgetting the oldest past the bounds.
    func finished(_ invocation: Invocation) {
        let entry = Finished(invocation: invocation, bytes: invocation.events.keptBytes, at: .now)
        let forgotten = storage.withLock { storage in
            storage.finished.append(entry)
            storage.finishedBytes += entry.bytes
            let forgotten = forgetExpired(&storage, now: entry.at)
            if storage.sweep == nil { scheduleSweep(&storage) }
            return forgotten
        }
        _ = forgotten
    }

    /// Invocations known now: running, and finished but kept.
    var count: Int { storage.withLock { $0.byId.count } }

    /// Bytes of events kept for finished invocations now.
    var finishedBytes: Int { storage.withLock { $0.finishedBytes } }

    /// Drops the oldest finished invocations past the bounds. Returns them, so that the caller
    /// releases them (their event logs may be large) after unlocking.
    private func forgetExpired(_ storage: inout Storage, now: ContinuousClock.Instant) -> [Finished] {
        var forgotten: [Finished] = []
        while let oldest = storage.finished.first {
            guard
                storage.finished.count > maxFinished || storage.finishedBytes > maxFinishedBytes
                    || now - oldest.at >= retention
            else { break }
            storage.finished.removeFirst()
            storage.byId[oldest.invocation.id] = nil
            storage.finishedBytes -= oldest.bytes
            forgotten.append(oldest)
        }
        return forgotten
    }

    /// Arms the timer for the oldest finished invocation's end of retention.
    private func scheduleSweep(_ storage: inout Storage) {
        guard let oldest = storage.finished.first else {
            storage.sweep = nil
            return
        }
        let delay = max(.zero, oldest.at + retention - .now)
        storage.sweep = GatewayTimer.schedule(after: delay) { [weak self] in self?.sweep() }
    }

    private func sweep() {
        let forgotten = storage.withLock { storage in
            let forgotten = forgetExpired(&storage, now: .now)
            scheduleSweep(&storage)
            return forgotten
        }
        _ = forgotten
    }
}
