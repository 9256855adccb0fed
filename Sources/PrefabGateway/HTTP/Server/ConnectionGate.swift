import NIOCore
import Synchronization

/// Holds back Hummingbird's handling of a connection until a request needs it. Hummingbird runs a
/// task per connection, and once the first request arrives that task goes on into its request
/// loop, whose frames (~7 KB) it keeps for the connection's life; a connection that only carries
/// calls `InvokeFastPath` serves never needs them. The gate opens for the first request
/// `InvokeFastPath` hands on, or a WebSocket upgrade; a connection closed before either never
/// runs that loop.
///
/// In the pipeline so that the handlers that decide can find it; it passes everything on.
final class ConnectionGate: ChannelInboundHandler, RemovableChannelHandler, Sendable {
    typealias InboundIn = NIOAny

    private enum State {
        case waiting(CheckedContinuation<Bool, Never>?)
        case open
        case closed
    }

    private let state = Mutex(State.waiting(nil))

    /// Waits until Hummingbird is needed (true) or the connection closed first (false).
    func wait() async -> Bool {
        await withCheckedContinuation { continuation in
            let settled: Bool? = state.withLock { state in
                switch state {
                case .open: return true
                case .closed: return false
                case .waiting:
                    state = .waiting(continuation)
                    return nil
                }
            }
            if let settled { continuation.resume(returning: settled) }
        }
    }

    /// Hummingbird serves the connection from now on.
    func open() { settle(.open) }

    /// The connection closed.
    func close() { settle(.closed) }

    private func settle(_ outcome: State) {
        let waiter: CheckedContinuation<Bool, Never>? = state.withLock { state in
            guard case .waiting(let waiter) = state else { return nil }
            state = outcome
            return waiter
        }
        if case .open = outcome { waiter?.resume(returning: true) } else { waiter?.resume(returning: false) }
    }
}
