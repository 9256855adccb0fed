import Dispatch
import NIOCore
import NIOPosix

/// A one-shot timer of the gateway (call timeouts, quick-answer waits, resume grace, queue
/// waits). Its action runs on `DispatchQueue.gatewayTimers` at the deadline unless cancelled
/// first.
///
/// A cancelled `DispatchWorkItem` keeps its closure, and all it captured, until its deadline: an
/// invocation's events and a JSON call's collected answer stayed in memory for the whole timeout
/// (600 s by default) after a call ended in milliseconds. NIO's scheduled tasks live in their event
/// loop's deadline heap, and cancelling one removes it there, letting go of its action at once.
struct GatewayTimer: Sendable {
    private let scheduled: Scheduled<Void>

    /// Runs `action` once `delay` has passed, unless the timer is cancelled before.
    @discardableResult
    static func schedule(after delay: Duration, _ action: @escaping @Sendable () -> Void) -> GatewayTimer {
        // Clamped to [0, 100 years]: "no limit" callers pass huge durations.
        let (seconds, attoseconds) = delay.components
        let clamped = min(max(seconds, 0), 100 * 365 * 86_400) * 1_000_000_000 + max(attoseconds, 0) / 1_000_000_000
        // The action runs on the timer queue, not the event loop: it may cancel calls and signal
        // processes, which must not hold up the loop's connections.
        let scheduled = MultiThreadedEventLoopGroup.singleton.any().scheduleTask(in: .nanoseconds(clamped)) {
            DispatchQueue.gatewayTimers.async(execute: action)
        }
        return GatewayTimer(scheduled: scheduled)
    }

    /// The action will not run (unless it has already started), and is released now.
    func cancel() {
        scheduled.cancel()
    }
}
