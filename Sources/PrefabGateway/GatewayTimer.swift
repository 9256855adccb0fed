import Dispatch
import Synchronization

/// A one-shot timer of the gateway (call timeouts, quick-answer waits, resume grace, queue
/// waits). Its action runs on `DispatchQueue.gatewayTimers` at the deadline unless cancelled
/// first.
///
/// A cancelled `DispatchWorkItem` keeps its closure, and all it captured, until its deadline: an
/// invocation's events and a JSON call's collected answer stayed in memory for the whole timeout
/// (600 s by default) after a call ended in milliseconds. Cancelling this timer lets go of its
/// action at once.
struct GatewayTimer: Sendable {
    private let id: UInt64

    /// Runs `action` once `delay` has passed, unless the timer is cancelled before.
    @discardableResult
    static func schedule(after delay: Duration, _ action: @escaping @Sendable () -> Void) -> GatewayTimer {
        GatewayTimer(id: TimerScheduler.shared.schedule(after: delay, action))
    }

    /// The action will not run (unless it has already started), and is released now.
    func cancel() {
        TimerScheduler.shared.cancel(id)
    }

    /// Timers scheduled and not yet fired or cancelled, in the whole process.
    static var pendingCount: Int { TimerScheduler.shared.pendingCount }
}

/// All gateway timers in one deadline heap, served by one dispatch timer source that is armed
/// for the earliest deadline.
private final class TimerScheduler: @unchecked Sendable {  // `source` is set once, in init
    static let shared = TimerScheduler()

    private struct Entry {
        var deadline: UInt64
        var id: UInt64
    }

    private struct State {
        /// The actions of live timers; a cancelled timer's action is removed here at once.
        var actions: [UInt64: @Sendable () -> Void] = [:]
        /// Deadlines by id, earliest first (a binary min-heap). Cancelled timers leave their
        /// entry here, 16 bytes, until it comes up or the heap is rebuilt.
        var heap: [Entry] = []
        var nextId: UInt64 = 0
        /// The deadline the dispatch source is armed for; nil when it is idle.
        var armed: UInt64?
    }

    private let state = Mutex(State())
    private let source: any DispatchSourceTimer

    private init() {
        source = DispatchSource.makeTimerSource(queue: .gatewayTimers)
        source.setEventHandler { TimerScheduler.shared.fire() }
        source.schedule(deadline: .distantFuture)
        source.activate()
    }

    var pendingCount: Int { state.withLock { $0.actions.count } }

    func schedule(after delay: Duration, _ action: @escaping @Sendable () -> Void) -> UInt64 {
        let now = DispatchTime.now().uptimeNanoseconds
        // Clamped to [0, 100 years]: "no limit" callers pass huge durations.
        let (seconds, attoseconds) = delay.components
        let clamped = UInt64(min(max(seconds, 0), 100 * 365 * 86_400))
        let deadline = now + clamped * 1_000_000_000 + UInt64(max(attoseconds, 0) / 1_000_000_000)
        return state.withLock { state in
            state.nextId += 1
            let id = state.nextId
            state.actions[id] = action
            Self.push(Entry(deadline: deadline, id: id), into: &state.heap)
            if state.armed.map({ deadline < $0 }) ?? true {
                state.armed = deadline
                source.schedule(deadline: DispatchTime(uptimeNanoseconds: deadline))
            }
            return id
        }
    }

    func cancel(_ id: UInt64) {
        // Released outside the lock: its captures' deinits may schedule or cancel timers.
        let action = state.withLock { state -> (@Sendable () -> Void)? in
            let action = state.actions.removeValue(forKey: id)
            // Stale entries are dropped once they outnumber the live ones, so the heap stays
            // within a small multiple of the timers really pending.
            if state.heap.count > 64 && state.heap.count > 2 * state.actions.count {
                state.heap = state.heap.filter { state.actions[$0.id] != nil }
                Self.heapify(&state.heap)
            }
            return action
        }
        _ = action
    }

    /// Runs every action whose deadline has come, and arms the source for the next one.
    private func fire() {
        let due = state.withLock { state -> [@Sendable () -> Void] in
            let now = DispatchTime.now().uptimeNanoseconds
            var due: [@Sendable () -> Void] = []
            while let first = state.heap.first, first.deadline <= now {
                Self.popFirst(from: &state.heap)
                if let action = state.actions.removeValue(forKey: first.id) { due.append(action) }
            }
            state.armed = state.heap.first?.deadline
            source.schedule(deadline: state.armed.map { DispatchTime(uptimeNanoseconds: $0) } ?? .distantFuture)
            return due
        }
        for action in due { action() }
    }

    // MARK: Binary heap on `deadline`

    private static func push(_ entry: Entry, into heap: inout [Entry]) {
        heap.append(entry)
        var child = heap.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard heap[child].deadline < heap[parent].deadline else { break }
            heap.swapAt(child, parent)
            child = parent
        }
    }

    private static func popFirst(from heap: inout [Entry]) {
        heap.swapAt(0, heap.count - 1)
        heap.removeLast()
        siftDown(0, in: &heap)
    }

    private static func heapify(_ heap: inout [Entry]) {
        var index = heap.count / 2
        while index > 0 {
            index -= 1
            siftDown(index, in: &heap)
        }
    }

    private static func siftDown(_ start: Int, in heap: inout [Entry]) {
        var parent = start
        while true {
            var smallest = parent
            let left = 2 * parent + 1
            let right = left + 1
            if left < heap.count && heap[left].deadline < heap[smallest].deadline { smallest = left }
            if right < heap.count && heap[right].deadline < heap[smallest].deadline { smallest = right }
            guard smallest != parent else { return }
            heap.swapAt(parent, smallest)
            parent = smallest
        }
    }
}
