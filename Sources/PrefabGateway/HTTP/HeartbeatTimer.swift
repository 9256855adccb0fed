import Foundation
import NIOCore
import PrefabKit
import Synchronization

/// One timer for every open stream: each interval it tells each reader to send a `: ping` if no
/// event went out since the last tick, drops clients whose writes have waited too long, and sends
/// a `: ping` into each stream of bytes (MCP's). A task per stream would cost its own allocations
/// and wake-ups (a cancelled `Task.sleep` even keeps them until its deadline); with thousands of
/// idle streams, one timer is cheaper.
final class HeartbeatTimer: @unchecked Sendable {  // the timer is set up once, in init
    private let streams = StreamSet()
    private let timer: any DispatchSourceTimer

    init(interval: Duration, clientIdleTimeout: Duration) {
        timer = DispatchSource.makeTimerSource(queue: .gatewayTimers)
        let nanoseconds = max(1, Int(interval.seconds * 1e9))
        let idleLimit = UInt64(max(0, clientIdleTimeout.seconds) * 1e9)
        timer.schedule(deadline: .now() + .nanoseconds(nanoseconds), repeating: .nanoseconds(nanoseconds))
        timer.setEventHandler { [streams] in
            let now = DispatchTime.now().uptimeNanoseconds
            let (readers, pinged) = streams.all
            for (reader, watch) in readers {
                reader.heartbeat()
                watch.check(now: now, limit: idleLimit)
            }
            for stream in pinged { stream.yield(ByteBuffer(bytes: SSEEncoder.heartbeat)) }
        }
        timer.resume()
    }

    deinit { timer.cancel() }

    func add(_ reader: EventLog.Reader, watch: WriteWatch) {
        streams.state.withLock { $0.readers[ObjectIdentifier(reader)] = (reader, watch) }
    }

    /// Streams of events open now (the bytes streams are not counted).
    var count: Int { streams.state.withLock { $0.readers.count } }

    func remove(_ reader: EventLog.Reader) {
        _ = streams.state.withLock { $0.readers.removeValue(forKey: ObjectIdentifier(reader)) }
    }

    /// Pings `stream` from now on; the number to remove it with.
    func add(_ stream: AsyncStream<ByteBuffer>.Continuation) -> Int {
        streams.state.withLock { state in
            state.nextPinged += 1
            state.pinged[state.nextPinged] = stream
            return state.nextPinged
        }
    }

    func remove(pinged number: Int) {
        _ = streams.state.withLock { $0.pinged.removeValue(forKey: number) }
    }

    private final class StreamSet: Sendable {
        struct State {
            var readers: [ObjectIdentifier: (EventLog.Reader, WriteWatch)] = [:]
            var pinged: [Int: AsyncStream<ByteBuffer>.Continuation] = [:]
            var nextPinged = 0
        }
        let state = Mutex(State())
        var all: ([(EventLog.Reader, WriteWatch)], [AsyncStream<ByteBuffer>.Continuation]) {
            state.withLock { (Array($0.readers.values), Array($0.pinged.values)) }
        }
    }
}

/// How long a stream's current write has waited for its client. A client that reads nothing
/// makes the write wait once the socket buffers are full; past the limit `onStuck` runs, once.
final class WriteWatch: Sendable {
    /// Uptime in nanoseconds when the waiting write began; 0: no write is waiting.
    private let startedAt = Atomic<UInt64>(0)
    private let fired = Atomic<Bool>(false)
    private let onStuck: @Sendable () -> Void

    init(onStuck: @escaping @Sendable () -> Void) {
        self.onStuck = onStuck
    }

    func writing(_ write: () async throws -> Void) async throws {
        writeBegan()
        defer { writeEnded() }
        try await write()
    }

    func writeBegan() {
        startedAt.store(DispatchTime.now().uptimeNanoseconds, ordering: .relaxed)
    }

    func writeEnded() {
        startedAt.store(0, ordering: .relaxed)
    }

    func check(now: UInt64, limit: UInt64) {
        let started = startedAt.load(ordering: .relaxed)
        guard started != 0, now > started, now - started >= limit else { return }
        guard !fired.exchange(true, ordering: .relaxed) else { return }
        onStuck()
    }
}
