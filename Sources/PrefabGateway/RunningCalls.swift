import PrefabKit
import Synchronization

/// The calls that have started and not ended yet, so that a shutdown can end every one of them;
/// once it began, no call starts any more.
final class RunningCalls: Sendable {
    private struct State {
        var calls: [ObjectIdentifier: Invocation] = [:]
        var shuttingDown = false
    }

    private let state = Mutex(State())

    /// Records a call that is about to start; false once the gateway is shutting down.
    func add(_ invocation: Invocation) -> Bool {
        state.withLock { state in
            guard !state.shuttingDown else { return false }
            state.calls[ObjectIdentifier(invocation)] = invocation
            return true
        }
    }

    /// The call has ended (or never started).
    func remove(_ invocation: Invocation) {
        _ = state.withLock { $0.calls.removeValue(forKey: ObjectIdentifier(invocation)) }
    }

    /// Refuses new calls from now on, and returns the running ones for the caller to end.
    func shutDown() -> [Invocation] {
        state.withLock { state in
            state.shuttingDown = true
            return Array(state.calls.values)
        }
    }

    var isShuttingDown: Bool { state.withLock { $0.shuttingDown } }

    /// Calls running now.
    var count: Int { state.withLock { $0.calls.count } }
}

extension PrefabError.Code {
    public static let shuttingDown: Self = "SHUTTING_DOWN"
}
