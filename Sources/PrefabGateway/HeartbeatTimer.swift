import Foundation
import Synchronization

/// One timer for every open stream: each interval it tells each reader to send a `: ping` if no
/// event went out since the last tick. A task per stream would cost its own allocations and
/// wake-ups; with thousands of idle streams, one timer is cheaper.
final class HeartbeatTimer: @unchecked Sendable {  // the timer is set up once, in init
    private let readers = ReaderSet()
    private let timer: any DispatchSourceTimer

    init(interval: Duration) {
        timer = DispatchSource.makeTimerSource(queue: .gatewayTimers)
        let nanoseconds = max(1, Int(interval.seconds * 1e9))
        timer.schedule(deadline: .now() + .nanoseconds(nanoseconds), repeating: .nanoseconds(nanoseconds))
        timer.setEventHandler { [readers] in
            for reader in readers.all { reader.heartbeat() }
        }
        timer.resume()
    }

    deinit { timer.cancel() }

    func add(_ reader: EventLog.Reader) {
        readers.state.withLock { $0[ObjectIdentifier(reader)] = reader }
    }

    func remove(_ reader: EventLog.Reader) {
        _ = readers.state.withLock { $0.removeValue(forKey: ObjectIdentifier(reader)) }
    }

    private final class ReaderSet: Sendable {
        let state = Mutex<[ObjectIdentifier: EventLog.Reader]>([:])
        var all: [EventLog.Reader] { state.withLock { Array($0.values) } }
    }
}
