import Dispatch
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// The write end of a child's stdin, and its only owner: lines are written on one serial queue as
/// the pipe takes them (the descriptor is non-blocking, so a child that does not read holds up no
/// thread), and the descriptor is closed on that queue after the last write. Nothing else writes
/// to it or closes it, so a write can never reach a descriptor number reused after the close.
final class ChildInput: Sendable {
    private struct State {
        /// Lines not yet wholly written; the first may be partly written.
        var pending: [(bytes: [UInt8], isMessage: Bool)] = []
        var written = 0
        /// Messages among `pending`: the bound of `send(message:)`.
        var messages = 0
        var closed = false
        var sourceResumed = false
    }

    private let descriptor: Int32
    private let capacity: Int
    private let queue = DispatchQueue(label: "prefab-gateway.child-stdin")
    /// Resumed, suspended and cancelled on `queue` only.
    nonisolated(unsafe) private let source: any DispatchSourceWrite
    private let state = Mutex(State())

    /// Takes ownership of `descriptor`; `capacity` is the most messages that wait unwritten.
    init(descriptor: Int32, capacity: Int) {
        self.descriptor = descriptor
        self.capacity = capacity
        _ = fcntl(descriptor, F_SETFL, fcntl(descriptor, F_GETFL) | O_NONBLOCK)
        source = DispatchSource.makeWriteSource(fileDescriptor: descriptor, queue: queue)
        source.setCancelHandler { Glibc.close(descriptor) }
        source.setEventHandler { [unowned self] in flush() }
    }

    /// Queues the call line: always accepted.
    func send(call bytes: [UInt8]) {
        _ = enqueue(bytes, isMessage: false)
    }

    /// Queues a message line; false when `capacity` messages already wait unwritten (the child is
    /// not reading). After `close` messages are dropped: the child is being stopped.
    func send(message bytes: [UInt8]) -> Bool {
        enqueue(bytes, isMessage: true)
    }

    private func enqueue(_ bytes: [UInt8], isMessage: Bool) -> Bool {
        var scheduled = false
        let accepted = state.withLock { state in
            if state.closed { return true }
            if isMessage && state.messages >= capacity { return false }
            // Nothing waits: write at once, on the caller's thread, what the pipe takes (a call line
            // to a worker then costs no hop to the queue). Under the lock: the descriptor is closed
            // only after `closed` is set, on the queue, so this write cannot reach a reused number.
            var written = 0
            let first = state.pending.isEmpty
            if first {
                while written < bytes.count {
                    let count = bytes.withUnsafeBytes {
                        write(descriptor, $0.baseAddress! + written, bytes.count - written)
                    }
                    if count > 0 {
                        written += count
                    } else if count < 0 && errno == EINTR {
                        continue
                    } else {
                        break  // full (EAGAIN): the queue writes the rest; closed: its status tells why
                    }
                }
                if written == bytes.count { return true }
            }
            state.pending.append((bytes, isMessage))
            if first { state.written = written }
            if isMessage { state.messages += 1 }
            scheduled = true
            return true
        }
        if scheduled { queue.async { [self] in flush() } }
        return accepted
    }

    /// Closes stdin after what is being written now: what still waits is dropped.
    func close() {
        queue.async { [self] in
            let resume = state.withLock { state in
                guard !state.closed else { return false }
                state.closed = true
                state.pending = []
                state.messages = 0
                defer { state.sourceResumed = true }
                return !state.sourceResumed
            }
            // A suspended source never runs its cancel handler, which closes the descriptor.
            if resume { source.resume() }
            source.cancel()
        }
    }

    /// Writes what the pipe takes; on the queue only.
    private func flush() {
        var suspend = false
        var resume = false
        state.withLock { state in
            guard !state.closed else { return }
            while let first = state.pending.first {
                let left = first.bytes.count - state.written
                let count = first.bytes.withUnsafeBytes { write(descriptor, $0.baseAddress! + state.written, left) }
                if count < 0 && errno == EINTR { continue }
                if count < 0 && errno == EAGAIN {
                    // The pipe is full: go on when it takes more.
                    resume = !state.sourceResumed
                    state.sourceResumed = true
                    return
                }
                guard count > 0 else {
                    // The child closed its stdin or exited; its status tells why.
                    state.pending = []
                    state.messages = 0
                    break
                }
                state.written += count
                if state.written == first.bytes.count {
                    state.pending.removeFirst()
                    state.written = 0
                    if first.isMessage { state.messages -= 1 }
                }
            }
            suspend = state.sourceResumed
            state.sourceResumed = false
        }
        if resume { source.resume() }
        if suspend { source.suspend() }
    }
}
