import Foundation
import Synchronization

/// What a test function reports back to its test from the gateway's threads.
final class Probe: Sendable {
    private let state = Mutex(State())
    /// Signalled by the test to let a waiting function go on.
    let proceed = DispatchSemaphore(value: 0)

    private struct State {
        var yields = 0
        var stoppedWith: String?
    }

    func countYield() { state.withLock { $0.yields += 1 } }
    var yields: Int { state.withLock { $0.yields } }

    func stop(with reason: String) { state.withLock { $0.stoppedWith = reason } }
    var stoppedWith: String? { state.withLock { $0.stoppedWith } }

    /// Polls `condition` until it holds or `timeout` passes; returns whether it held.
    static func eventually(within timeout: Duration = .seconds(5), _ condition: () -> Bool) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if condition() { return true }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return condition()
    }
}
