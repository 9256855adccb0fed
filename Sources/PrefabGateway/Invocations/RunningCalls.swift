import PrefabKit
import Synchronization

/// The calls that have started and not ended yet, so that a shutdown can end every one of them
/// (once it began, no call starts any more); and the function threads still running a call that
/// the gateway has ended (stuck functions).
final class RunningCalls: Sendable {
    private struct State {
        var calls: [ObjectIdentifier: Invocation] = [:]
        var shuttingDown = false
        var stuck = 0
        var started = 0
    }

    private let state = Mutex(State())

    /// Records a call that is about to start; false once the gateway is shutting down.
    func add(_ invocation: Invocation) -> Bool {
        state.withLock { state in
            guard !state.shuttingDown else { return false }
            state.calls[ObjectIdentifier(invocation)] = invocation
            state.started &+= 1
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

    /// Calls started so far, and those running now.
    var activity: QuietSpell.Activity {
        state.withLock { QuietSpell.Activity(started: $0.started, running: $0.calls.count) }
    }

    /// A function did not stop after its call was cancelled: the gateway ended the call, and its
    /// thread is counted until it returns.
    func functionStuck() { state.withLock { $0.stuck += 1 } }

    /// A stuck function returned at last; what it produced was dropped.
    func stuckFunctionReturned() { state.withLock { $0.stuck -= 1 } }

    /// Function threads still held by calls that have ended.
    var stuck: Int { state.withLock { $0.stuck } }
}

extension PrefabError.Code {
    public static let shuttingDown: Self = "SHUTTING_DOWN"
}
