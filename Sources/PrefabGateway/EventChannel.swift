import Foundation
import PrefabKit

/// The bounded hand-off between a function's thread and the async writer of its response.
///
/// The producer appends encoded events to one byte buffer and blocks while the buffer is full,
/// so a slow client slows the function instead of growing memory. The consumer takes everything
/// buffered at once, so a fast function is written in few, large writes.
final class EventChannel: @unchecked Sendable {
    /// What the consumer gets from `next`.
    enum Batch {
        /// Encoded events, to be written in one go.
        case events
        /// Nothing arrived for a heartbeat interval.
        case idle
        /// The producer finished (or the channel was closed) and everything was taken.
        case finished
    }

    // Touched only by the single producer thread.
    private var sequence = 0
    private var scratch: [UInt8] = []

    // All state below is guarded by `condition`'s lock; the producer waits on it while full.
    private let condition = AdaptiveCondition()
    private var buffer: [UInt8] = []
    private var bufferedEvents = 0
    private var finished = false
    private var closed = false
    private var activeSinceLastWake = false
    private var wakeRequested = false
    private var waiter: CheckedContinuation<Void, Never>?
    private var completionWaiter: CheckedContinuation<Void, Never>?
    private var completionWaitTimedOut = false

    private let maxEvents: Int
    private let maxBytes: Int
    /// Buffered bytes that end the wait for a quick answer.
    private static let streamWithoutWaitingBytes = 32 * 1024

    init(maxEvents: Int, maxBytes: Int) {
        self.maxEvents = max(1, maxEvents)
        self.maxBytes = max(1, maxBytes)
    }

    /// The number of events sent so far; read it from the producer's thread.
    var count: Int { sequence }

    // MARK: Producer (a function's thread)

    /// Appends one event, numbered from 1, blocking while the buffer is full. Throws
    /// `CANCELLED` once the consumer has gone.
    func send(_ encode: (_ sequence: Int, _ bytes: inout [UInt8]) -> Void) throws {
        // Encoding happens outside the lock, into the producer's own scratch buffer: the lock is
        // then held only for a copy, so the consumer rarely has to sleep on it.
        sequence += 1
        scratch.removeAll(keepingCapacity: true)
        encode(sequence, &scratch)
        condition.lock()
        while !closed && (bufferedEvents >= maxEvents || buffer.count >= maxBytes) {
            condition.wait()
        }
        if closed {
            condition.unlock()
            throw PrefabError.cancelled
        }
        buffer.append(contentsOf: scratch)
        bufferedEvents += 1
        activeSinceLastWake = true
        let consumer = waiter
        waiter = nil
        // A function that has already produced this much is no quick answer: start streaming.
        var completion: CheckedContinuation<Void, Never>?
        if buffer.count >= Self.streamWithoutWaitingBytes {
            completion = completionWaiter
            completionWaiter = nil
        }
        condition.unlock()
        consumer?.resume()
        completion?.resume()
    }

    /// No more events will come.
    func finish() {
        condition.lock()
        finished = true
        let consumer = waiter
        waiter = nil
        let completion = completionWaiter
        completionWaiter = nil
        condition.unlock()
        consumer?.resume()
        completion?.resume()
    }

    // MARK: Consumer (the response writer)

    /// Waits for events and moves all of them into `bytes` (which is emptied first, keeping its
    /// capacity so the two buffers are reused).
    func next(into bytes: inout [UInt8]) async -> Batch {
        bytes.removeAll(keepingCapacity: true)
        while true {
            if let batch = poll(into: &bytes) { return batch }
            await withTaskCancellationHandler {
                await withCheckedContinuation { continuation in
                    park(continuation)
                }
            } onCancel: {
                close()
            }
        }
    }

    /// What `next` can return right now, or nil when it has to wait.
    private func poll(into bytes: inout [UInt8]) -> Batch? {
        condition.lock()
        defer { condition.unlock() }
        if !buffer.isEmpty {
            swap(&buffer, &bytes)
            bufferedEvents = 0
            condition.broadcast()
            return .events
        }
        if finished || closed { return .finished }
        if wakeRequested {
            wakeRequested = false
            return .idle
        }
        return nil
    }

    /// Keeps the consumer's continuation until the producer has something, unless it already has.
    private func park(_ continuation: CheckedContinuation<Void, Never>) {
        condition.lock()
        if !buffer.isEmpty || finished || closed || wakeRequested {
            condition.unlock()
            continuation.resume()
        } else {
            waiter = continuation
            condition.unlock()
        }
    }

    /// Called every heartbeat interval: wakes the consumer with `.idle` if no event came since
    /// the last call.
    func heartbeat() {
        condition.lock()
        let active = activeSinceLastWake
        activeSinceLastWake = false
        condition.unlock()
        if !active { wake() }
    }

    /// Waits until the producer has finished (true) or `timeout` has passed (false), without
    /// waking for each event: a quick function costs its caller a single wake-up.
    func waitUntilFinished(within timeout: Duration) async -> Bool {
        // A dispatch timer, not a sleeping task: cancelled before it fires (the usual case for a
        // quick function) it costs no wake-up at all.
        let timer = DispatchWorkItem { [self] in completionTimeout() }
        DispatchQueue.gatewayTimers.asyncAfter(deadline: .now() + timeout.seconds, execute: timer)
        await withCheckedContinuation { continuation in
            condition.lock()
            if finished || closed || completionWaitTimedOut {
                condition.unlock()
                continuation.resume()
            } else {
                completionWaiter = continuation
                condition.unlock()
            }
        }
        timer.cancel()
        condition.lock()
        defer { condition.unlock() }
        completionWaitTimedOut = false
        return finished
    }

    private func completionTimeout() {
        condition.lock()
        completionWaitTimedOut = true
        let completion = completionWaiter
        completionWaiter = nil
        condition.unlock()
        completion?.resume()
    }

    /// Moves whatever is buffered now into `bytes`, without waiting.
    func takeAvailable(into bytes: inout [UInt8]) {
        bytes.removeAll(keepingCapacity: true)
        _ = poll(into: &bytes)
    }

    /// True once the producer has finished and everything was taken.
    var isComplete: Bool {
        condition.lock()
        defer { condition.unlock() }
        return finished && buffer.isEmpty
    }

    /// Makes the waiting (or next) `next` return `.idle`.
    private func wake() {
        condition.lock()
        wakeRequested = true
        let consumer = waiter
        waiter = nil
        condition.unlock()
        consumer?.resume()
    }

    /// The consumer has gone: the producer's next `send` throws, a blocked one wakes and throws.
    func close() {
        condition.lock()
        closed = true
        condition.broadcast()
        let consumer = waiter
        waiter = nil
        let completion = completionWaiter
        completionWaiter = nil
        condition.unlock()
        consumer?.resume()
        completion?.resume()
    }
}
