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
        /// Bytes of invocations forgotten since the allocator was last asked to give memory back.
        var forgottenSinceTrim = 0
        var lastTrim = ContinuousClock.now
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
        var forgotten: [Finished] = []
        let (invocation, trim) = storage.withLock { storage in
            forgotten = forgetExpired(&storage, now: .now)
            return (storage.byId[id], shouldTrim(&storage, forgotten))
        }
        release(&forgotten, trim: trim)
        return invocation
    }

    /// Moves a finished invocation to the kept-for-a-while list, forgetting the oldest past the bounds.
    func finished(_ invocation: Invocation) {
        let entry = Finished(invocation: invocation, bytes: invocation.events.keptBytes, at: .now)
        var forgotten: [Finished] = []
        let trim = storage.withLock { storage in
            storage.finished.append(entry)
            storage.finishedBytes += entry.bytes
            forgotten = forgetExpired(&storage, now: entry.at)
            if storage.sweep == nil { scheduleSweep(&storage) }
            return shouldTrim(&storage, forgotten)
        }
        release(&forgotten, trim: trim)
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
        // At most one sweep a second: under steady traffic invocations expire continuously.
        let delay = max(Self.sweepInterval, oldest.at + retention - .now)
        storage.sweep = GatewayTimer.schedule(after: delay) { [weak self] in self?.sweep() }
    }

    private static let sweepInterval = Duration.seconds(1)
    /// Forgotten bytes after which the allocator is asked to give free memory back, at most
    /// once per `trimInterval`.
    private static let trimAfterBytes = 4 << 20
    private static let trimInterval = Duration.seconds(1)

    private func sweep() {
        var forgotten: [Finished] = []
        let trim = storage.withLock { storage in
            forgotten = forgetExpired(&storage, now: .now)
            scheduleSweep(&storage)
            return shouldTrim(&storage, forgotten)
        }
        release(&forgotten, trim: trim)
    }

    private func shouldTrim(_ storage: inout Storage, _ forgotten: [Finished]) -> Bool {
        storage.forgottenSinceTrim += forgotten.reduce(0) { $0 + $1.bytes }
        let now = ContinuousClock.now
        guard storage.forgottenSinceTrim >= Self.trimAfterBytes, now - storage.lastTrim >= Self.trimInterval else {
            return false
        }
        storage.forgottenSinceTrim = 0
        storage.lastTrim = now
        return true
    }

    /// Releases forgotten invocations outside the lock (their event logs may be large).
    private func release(_ forgotten: inout [Finished], trim: Bool) {
        forgotten = []
        // glibc keeps freed memory in its arenas: once every finished invocation of a busy
        // spell was forgotten, an idle gateway still held what they had used (measured, 600
        // bursts then idle: RSS 33 -> 111 -> 96 MB; with this, 35.8 MB). Not here: a call's end
        // may be on an event loop.
        if trim { Allocator.giveBackFreeMemorySoon() }
    }
}
