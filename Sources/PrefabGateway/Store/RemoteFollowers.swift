import Synchronization

/// Clients that follow one of this replica's calls through another replica (`--store`). Each holds
/// a local reader that takes every event as it comes, so that the call counts as read: it is not
/// cancelled for want of readers after the resume grace, nor paused by flow control, while its
/// client reads it from the store elsewhere.
final class RemoteFollowers: Sendable {
    private let leases = Mutex<[String: ReaderLease]>([:])

    /// Starts following `invocation`; the token ends it.
    func follow(_ invocation: Invocation, grace: Duration) -> String {
        let token = InvocationID.make()
        let reader = invocation.events.attach(after: invocation.events.count)
        leases.withLock { $0[token] = ReaderLease(invocation: invocation, reader: reader, grace: grace) }
        Task { [weak self] in
            var bytes: [UInt8] = []
            while await reader.next(into: &bytes) != .finished {}
            self?.unfollow(token)
        }
        return token
    }

    /// The follower left: its reader is let go, and a call with no reader left is cancelled after
    /// the resume grace, as when a local client leaves.
    func unfollow(_ token: String) {
        leases.withLock { $0.removeValue(forKey: token) }?.release()
    }

    var count: Int { leases.withLock { $0.count } }
}
