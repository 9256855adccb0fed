import Foundation
import Synchronization

/// Which API key made each invocation's output files, kept as long as the files are, so that
/// `/files/...` serves them to that key only. Kept in memory: after a restart, files made before
/// it are served to no key until they expire.
final class OutputOwners: Sendable {
    private let owners = Mutex<[String: (key: Int, recorded: Date)]>([:])

    func record(_ invocationId: String, owner: Int?) {
        guard let owner else { return }
        owners.withLock { $0[invocationId] = (owner, Date()) }
    }

    /// The key that made the invocation's files; nil when keys are off or it is not known.
    func owner(of invocationId: String) -> Int? {
        owners.withLock { $0[invocationId]?.key }
    }

    /// Forgets owners recorded more than `retention` ago, when their files are removed too.
    func removeExpired(retention: Duration, now: Date = Date()) {
        let cutoff = now.addingTimeInterval(-retention.seconds)
        owners.withLock { $0 = $0.filter { $0.value.recorded >= cutoff } }
    }
}
