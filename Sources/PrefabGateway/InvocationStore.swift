import PrefabKit
import Synchronization

/// Every running invocation, and the recently finished ones, by id: what `/invocations/<id>`
/// finds. A finished invocation is kept for `retention`, and only the most recent ones are kept
/// (`maxFinished`, `maxFinishedBytes` of events in all), so memory stays bounded under any load.
final class InvocationStore: Sendable {
    private struct Finished {
        let invocation: Invocation
        let bytes: Int
        let at: ContinuousClock.Instant
    }

    private struct Storage {
        var byId: [String: Invocation] = [:]
        /// Finished invocations, oldest first, from `start` on.
        var finished: [Finished] = []
        var start = 0
        var finishedBytes = 0
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
        storage.withLock { storage in
            forgetExpired(&storage, now: .now)
            return storage.byId[id]
        }
    }

    /// Moves a finished invocation to the kept-for-a-while list, forgetting the oldest past the bounds.
    func finished(_ invocation: Invocation) {
        let entry = Finished(invocation: invocation, bytes: invocation.events.keptBytes, at: .now)
        storage.withLock { storage in
            storage.finished.append(entry)
            storage.finishedBytes += entry.bytes
            forgetExpired(&storage, now: entry.at)
        }
    }

    /// Invocations known now: running, and finished but kept.
    var count: Int { storage.withLock { $0.byId.count } }

    private func forgetExpired(_ storage: inout Storage, now: ContinuousClock.Instant) {
        while storage.start < storage.finished.count {
            let oldest = storage.finished[storage.start]
            let kept = storage.finished.count - storage.start
            guard
                kept > maxFinished || storage.finishedBytes > maxFinishedBytes || now - oldest.at >= retention
            else { break }
            storage.byId[oldest.invocation.id] = nil
            storage.finishedBytes -= oldest.bytes
            storage.start += 1
        }
        if storage.start >= 1024 && storage.start * 2 >= storage.finished.count {
            storage.finished.removeFirst(storage.start)
            storage.start = 0
        }
    }
}
