import Foundation
import NIOCore
import Synchronization

/// One timer for every open MCP stream: each interval, every stream gets a `: ping` comment. A
/// sleeping task per stream cost more: a cancelled `Task.sleep` keeps its allocations until its
/// deadline, so each ended stream left them behind for a whole interval.
final class MCPPings: @unchecked Sendable {  // the timer is set up once, in init
    private let streams = StreamSet()
    private let timer: any DispatchSourceTimer

    init(interval: Duration) {
        timer = DispatchSource.makeTimerSource(queue: .gatewayTimers)
        let nanoseconds = max(1, Int(interval.seconds * 1e9))
        timer.schedule(deadline: .now() + .nanoseconds(nanoseconds), repeating: .nanoseconds(nanoseconds))
        timer.setEventHandler { [streams] in
            for stream in streams.all { stream.yield(ByteBuffer(string: ": ping\n\n")) }
        }
        timer.resume()
    }

    deinit { timer.cancel() }

    /// Pings `stream` from now on; the number to remove it with.
    func add(_ stream: AsyncStream<ByteBuffer>.Continuation) -> Int {
        streams.state.withLock { state in
            state.next += 1
            state.open[state.next] = stream
            return state.next
        }
    }

    func remove(_ number: Int) {
        _ = streams.state.withLock { $0.open.removeValue(forKey: number) }
    }

    /// Streams pinged now.
    var count: Int { streams.state.withLock { $0.open.count } }

    private final class StreamSet: Sendable {
        struct State {
            var open: [Int: AsyncStream<ByteBuffer>.Continuation] = [:]
            var next = 0
        }
        let state = Mutex(State())
        var all: [AsyncStream<ByteBuffer>.Continuation] { state.withLock { Array($0.open.values) } }
    }
}
