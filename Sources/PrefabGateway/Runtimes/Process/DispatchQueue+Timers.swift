import Dispatch

extension DispatchQueue {
    /// The queue of the gateway's own timers (quick-answer waits, timeouts, kill deadlines). A
    /// serial queue of its own gets a thread when it needs one, so a timer fires on time even when
    /// the global queues, which Swift concurrency shares, are busy.
    static let gatewayTimers = DispatchQueue(label: "prefab-gateway.timers")
}
