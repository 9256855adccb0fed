import Foundation
import PrefabKit
import Synchronization

/// The events of one invocation, each encoded once as an SSE message (`id: n`, `data: json`),
/// kept for every reader: the stream that started the call, a client resuming with
/// `Last-Event-ID`, a WebSocket.
///
/// What is kept: every event no reader has taken yet, and the most recent `historyBytes` of
/// those taken, so a client that lost its connection can resume without gaps. Older events are
/// dropped; a reader that asks for them is told which ones it missed.
///
/// With flow control (streams), the function blocks in `yield` while `maxEvents`/`maxBytes`
/// events wait untaken by the furthest reader, so a slow client slows the function instead of
/// growing memory, and a run nobody reads pauses. Without it (JSON answers), nothing waits.
final class EventLog: @unchecked Sendable {
    /// What a reader gets from `next`.
    enum Batch: Equatable {
        /// SSE messages, to be written in one go. Events the reader asked for that are no longer
        /// kept come as one `gap` message (without an id) saying which were dropped.
        case events
        /// Nothing arrived for a heartbeat interval.
        case idle
        /// The invocation ended and the reader has everything (or the reader was detached).
        case finished
    }

    /// One reader's position, guarded by the log's lock.
    final class Reader: @unchecked Sendable {
        fileprivate var after: Int
        fileprivate var waiter: ReaderWaiter? {
            didSet { log.parkedReaders += (waiter == nil ? 0 : 1) - (oldValue == nil ? 0 : 1) }
        }
        fileprivate var detached = false
        fileprivate var wakeRequested = false
        fileprivate var activeSinceHeartbeat = false
        fileprivate let log: EventLog

        fileprivate init(log: EventLog, after: Int) {
            self.log = log
            self.after = after
        }

        /// Waits for events after the last ones taken and moves all of them into `bytes`
        /// (emptied first, keeping its capacity).
        func next(into bytes: inout [UInt8]) async -> Batch { await log.next(self, into: &bytes) }

        /// What `next` would return now, without waiting; nil when it would wait.
        func poll(into bytes: inout [UInt8]) -> Batch? {
            bytes.removeAll(keepingCapacity: true)
            return log.poll(self, into: &bytes)
        }

        /// Calls `wake` once, when `poll` has something to return (at once if it has now): for a
        /// writer that waits on an event loop instead of in a task.
        func whenReady(_ wake: @escaping @Sendable () -> Void) { log.park(self, .callback(wake)) }

        /// Like `next`, as one JSON object per event (for a WebSocket).
        func nextEvents() async -> ([ArraySlice<UInt8>], Batch) {
            var bytes: [UInt8] = []
            let batch = await log.next(self, into: &bytes)
            guard batch == .events else { return ([], batch) }
            return (EventLog.jsonObjects(inSSE: bytes), batch)
        }

        /// Moves what is there now into `bytes`, without waiting; true when the reader has
        /// everything of a finished invocation.
        func takeAvailable(into bytes: inout [UInt8]) -> Bool { log.takeAvailable(self, into: &bytes) }

        /// Called every heartbeat interval: wakes the reader with `.idle` if no event came since.
        func heartbeat() { log.heartbeat(self) }

        /// The reader stops: its `next` returns `.finished`. Returns the readers left.
        @discardableResult
        func detach() -> Int { log.detach(self) }
    }

    /// A function may yield from several threads (its context is `Sendable`): producers take
    /// turns here, so each event gets the next number and is appended whole.
    private let producer = Mutex(Producer())

    private struct Producer {
        /// The number of the last event a producer appended (`last` until the log is closed).
        var sequence = 0
        /// Where an event is encoded, outside the readers' lock.
        var scratch: [UInt8] = []
    }

    // All state below is guarded by `condition`'s lock; the producer waits on it under flow control.
    private let condition = AdaptiveCondition()
    private var kept: KeptEvents
    private var finished = false
    private var producerStopped = false
    /// The gateway has sent its closing events (or the invocation finished): a function's event
    /// after them is refused, so nothing ever follows the terminal event.
    private var closed = false
    private var readers: [ObjectIdentifier: Reader] = [:]
    /// Readers with a `waiter`: an event appended while none waits looks at no reader.
    fileprivate var parkedReaders = 0
    /// Who waits for a quick answer (`whenFinished`), and the timer that ends its wait.
    private var completionWaiter: CompletionWaiter?
    /// Async producers waiting for room under flow control.
    private var roomWaiters: [CheckedContinuation<Void, Never>] = []

    private let flowControl: Bool
    /// Set when the producer runs on an event loop, where it must not wait for room: a `send`
    /// that would wait throws it instead (the loop it would wait on serves its reader).
    private let waitRefusal: PrefabError?
    private let maxEvents: Int
    private let maxBytes: Int
    /// Sees each message as it is appended, with its number (the shared store's copy).
    private let mirror: (@Sendable (_ sequence: Int, _ message: [UInt8]) -> Void)?
    /// Untaken bytes that end the wait for a quick answer.
    private static let streamWithoutWaitingBytes = 32 * 1024
    /// The most bytes a reader takes at once: what a stream holds in its write path (the batch, its
    /// copy for the socket, the write waiting for a slow client) is a few times this.
    static let batchBytes = 64 * 1024
    /// What an invocation holds besides its events (itself, its context, this log, its locks),
    /// counted with the events so that the bound on finished invocations' bytes covers it. A
    /// kept `echo` call measured about 2.1 KB of RSS in all, its events included.
    static let overheadBytes = 2048
    /// The largest scratch buffer kept between events.
    private static let scratchKeptBytes = 64 * 1024
    /// Room for a usual message (a call's first event, a progress event: under 100 bytes),
    /// reserved before one is encoded: grown from empty, the buffer was allocated five times for
    /// an `echo` call's first event (callgrind). Kept while the call runs, so no more than that.
    private static let messageBytes = 128
    private static let afterTheEnd = PrefabError(
        .streamEnded, "the call has already ended: an event after its terminal event is dropped")

    init(
        flowControl: Bool, maxEvents: Int, maxBytes: Int, historyBytes: Int,
        waitRefusal: PrefabError? = nil,
        mirror: (@Sendable (_ sequence: Int, _ message: [UInt8]) -> Void)? = nil
    ) {
        self.mirror = mirror
        self.waitRefusal = waitRefusal
        self.flowControl = flowControl
        self.maxEvents = max(1, maxEvents)
        self.maxBytes = max(1, maxBytes)
        self.kept = KeptEvents(flowControl: flowControl, historyBytes: historyBytes)
    }

    // MARK: Producer (a function's thread)

    /// Appends one of the function's events, numbered from 1; under flow control blocks while
    /// too much waits untaken. Throws `CANCELLED` once the producer was stopped, and
    /// `STREAM_ENDED` once the gateway has sent the closing events.
    func send(_ encode: (_ sequence: Int, _ bytes: inout [UInt8]) -> Void) throws {
        try producer.withLock { producer in
            // Encoding happens outside the readers' lock, into the producers' scratch buffer: that
            // lock is then held only for a copy, so readers rarely have to sleep on it.
            producer.scratch.removeAll(keepingCapacity: true)
            producer.scratch.reserveCapacity(Self.messageBytes)
            encode(producer.sequence + 1, &producer.scratch)
            // One huge event does not leave its buffer behind for the invocation's lifetime.
            defer { if producer.scratch.capacity > Self.scratchKeptBytes { producer.scratch = [] } }
            condition.lock()
            while flowControl && !producerStopped && !closed && isFull {
                if let waitRefusal {
                    condition.unlock()
                    throw waitRefusal
                }
                condition.wait()
            }
            if producerStopped || closed {
                let stopped = producerStopped
                condition.unlock()
                throw stopped ? PrefabError.cancelled : Self.afterTheEnd
            }
            producer.sequence += 1
            let wake = append(producer.scratch)
            condition.unlock()
            wake.resume()
        }
    }

    /// `send` for an async function: while too much waits untaken it suspends (its task holds no
    /// thread) instead of blocking.
    func send(_ encode: (_ sequence: Int, _ bytes: inout [UInt8]) -> Void) async throws {
        while try !trySend(encode) {
            await withCheckedContinuation { continuation in
                condition.lock()
                if producerStopped || closed || !isFull {
                    condition.unlock()
                    continuation.resume()
                } else {
                    roomWaiters.append(continuation)
                    condition.unlock()
                }
            }
        }
    }

    /// Appends an event unless the log is full (false); throws as `send` does.
    private func trySend(_ encode: (_ sequence: Int, _ bytes: inout [UInt8]) -> Void) throws -> Bool {
        try producer.withLock { producer in
            producer.scratch.removeAll(keepingCapacity: true)
            producer.scratch.reserveCapacity(Self.messageBytes)
            encode(producer.sequence + 1, &producer.scratch)
            defer { if producer.scratch.capacity > Self.scratchKeptBytes { producer.scratch = [] } }
            condition.lock()
            if producerStopped || closed {
                let stopped = producerStopped
                condition.unlock()
                throw stopped ? PrefabError.cancelled : Self.afterTheEnd
            }
            if flowControl && isFull {
                condition.unlock()
                return false
            }
            producer.sequence += 1
            let wake = append(producer.scratch)
            condition.unlock()
            wake.resume()
            return true
        }
    }

    /// Wakes every producer waiting for room (under the lock): there is room, or the log closed.
    private func wakeProducers() {
        condition.broadcast()
        let waiters = roomWaiters
        roomWaiters = []
        for waiter in waiters { waiter.resume() }
    }

    /// Appends the gateway's closing events (`files`, the terminal event): never blocks, and
    /// closes the log to the function's events.
    func sendClosing(_ encode: (_ sequence: Int, _ bytes: inout [UInt8]) -> Void) {
        var message: [UInt8] = []
        message.reserveCapacity(Self.messageBytes)
        condition.lock()
        // Encoded under the lock, as its number is only known here; a producer waiting for room
        // wakes up to find the log closed.
        encode(kept.last + 1, &message)
        closed = true
        let wake = append(message)
        wakeProducers()
        condition.unlock()
        wake.resume()
    }

    /// No more events will come.
    func finish() {
        condition.lock()
        finished = true
        closed = true
        wakeProducers()
        var wake = Wakeups(readers: takeWaiters())
        wake.completion = completionWaiter.take()
        // A finished log is kept for a while: give back what it no longer needs.
        kept.shrinkFinished()
        condition.unlock()
        wake.resume()
        // Nor the producers' scratch buffer: no event is appended after the end.
        producer.withLock { $0.scratch = [] }
    }

    /// The function was cancelled: a blocked or later `send` throws. Readers stay.
    func stopProducer() {
        condition.lock()
        producerStopped = true
        wakeProducers()
        condition.unlock()
    }

    /// The number of events sent so far.
    var count: Int {
        condition.lock()
        defer { condition.unlock() }
        return kept.last
    }

    private var isFull: Bool { kept.isFull(maxEvents: maxEvents, maxBytes: maxBytes) }

    /// Appends `message` as the next event; returns whom to wake.
    private func append(_ message: [UInt8]) -> Wakeups {
        kept.append(message)
        if let mirror { mirror(kept.last, message) }
        var wake = Wakeups(readers: takeWaiters())
        // A function that has already produced this much is no quick answer: start streaming.
        if completionWaiter != nil, kept.byteCount >= Self.streamWithoutWaitingBytes {
            wake.completion = completionWaiter.take()
        }
        return wake
    }

    // MARK: Readers

    /// A reader that starts with the events after `after` (0: all of them).
    func attach(after: Int = 0) -> Reader {
        let reader = Reader(log: self, after: max(0, after))
        condition.lock()
        readers[ObjectIdentifier(reader)] = reader
        condition.unlock()
        return reader
    }

    /// Readers attached now.
    var readerCount: Int {
        condition.lock()
        defer { condition.unlock() }
        return readers.count
    }

    /// The number of the last event, once the invocation has ended; nil while it runs.
    var finalCount: Int? {
        condition.lock()
        defer { condition.unlock() }
        return finished ? kept.last : nil
    }

    /// The sequence number of the oldest event still kept (1 while nothing was dropped).
    var oldestKept: Int {
        condition.lock()
        defer { condition.unlock() }
        return kept.firstKept
    }

    /// The memory the kept events take, roughly, with the invocation's own objects.
    var keptBytes: Int {
        condition.lock()
        defer { condition.unlock() }
        return kept.capacity + Self.overheadBytes
    }

    fileprivate func next(_ reader: Reader, into out: inout [UInt8]) async -> Batch {
        while true {
            out.removeAll(keepingCapacity: true)
            if let batch = poll(reader, into: &out) { return batch }
            await withTaskCancellationHandler {
                await withCheckedContinuation { continuation in
                    park(reader, .task(continuation))
                }
            } onCancel: {
                detach(reader)
            }
        }
    }

    /// What `next` can return right now, or nil when it has to wait.
    private func poll(_ reader: Reader, into out: inout [UInt8], limit: Int = EventLog.batchBytes) -> Batch? {
        condition.lock()
        defer { condition.unlock() }
        if reader.detached { return .finished }
        let firstKept = kept.firstKept
        if reader.after < firstKept - 1 {
            Self.appendGap(first: reader.after + 1, last: firstKept - 1, to: &out)
            reader.after = firstKept - 1
        }
        if reader.after < kept.last {
            let taken = kept.taken
            reader.after = kept.take(after: reader.after, limit: limit, into: &out)
            reader.activeSinceHeartbeat = true
            if kept.taken > taken { wakeProducers() }
            return .events
        }
        if !out.isEmpty { return .events }
        if finished { return .finished }
        if reader.wakeRequested {
            reader.wakeRequested = false
            return .idle
        }
        return nil
    }

    fileprivate func takeAvailable(_ reader: Reader, into out: inout [UInt8]) -> Bool {
        out.removeAll(keepingCapacity: true)
        condition.lock()
        let whole = finished
        condition.unlock()
        // A finished call is answered whole; a running one's first write is one batch, like the
        // rest (the stream keeps its first write for its whole life).
        _ = poll(reader, into: &out, limit: whole ? .max : EventLog.batchBytes)
        condition.lock()
        defer { condition.unlock() }
        return finished && reader.after == kept.last
    }

    fileprivate func park(_ reader: Reader, _ waiter: ReaderWaiter) {
        condition.lock()
        if reader.detached || reader.after < kept.last || finished || reader.wakeRequested {
            condition.unlock()
            waiter.resume()
        } else {
            reader.waiter = waiter
            condition.unlock()
        }
    }

    fileprivate func heartbeat(_ reader: Reader) {
        condition.lock()
        let wasActive = reader.activeSinceHeartbeat
        reader.activeSinceHeartbeat = false
        var waiter: ReaderWaiter?
        if !wasActive {
            reader.wakeRequested = true
            waiter = reader.waiter
            reader.waiter = nil
        }
        condition.unlock()
        waiter?.resume()
    }

    @discardableResult
    fileprivate func detach(_ reader: Reader) -> Int {
        condition.lock()
        reader.detached = true
        readers[ObjectIdentifier(reader)] = nil
        let waiter = reader.waiter
        reader.waiter = nil
        let left = readers.count
        condition.unlock()
        waiter?.resume()
        return left
    }

    // MARK: Quick answers

    /// Waits until the invocation has finished (true) or `timeout` has passed (false), without
    /// waking for each event: a quick function costs its caller a single wake-up.
    func waitUntilFinished(within timeout: Duration) async -> Bool {
        await withCheckedContinuation { continuation in
            whenFinished(within: timeout) { continuation.resume() }
        }
        return finalCount != nil
    }

    /// Runs `then` once, when the invocation has finished, `timeout` has passed, or so much waits
    /// untaken that it is no quick answer, whichever comes first. One caller at a time.
    func whenFinished(within timeout: Duration, then: @escaping @Sendable () -> Void) {
        guard whenFinished(then: then) else { return }
        // A timer, not a sleeping task: cancelled before it fires (the usual case for a quick
        // function) it costs no wake-up at all.
        let timer = GatewayTimer.schedule(after: timeout) { [self] in
            if stopWaitingForFinish() { then() }
        }
        condition.lock()
        let waiting = completionWaiter != nil
        if waiting { completionWaiter?.timer = timer }
        condition.unlock()
        if !waiting { timer.cancel() }
    }

    /// Runs `then` once, when the invocation has finished or so much waits untaken that it is no
    /// quick answer, unless `stopWaitingForFinish` comes first; at once (and false) when that is
    /// so already. One caller at a time: an event loop keeps its own deadline for the wait.
    @discardableResult
    func whenFinished(then: @escaping @Sendable () -> Void) -> Bool {
        condition.lock()
        if finished || kept.byteCount >= Self.streamWithoutWaitingBytes {
            condition.unlock()
            then()
            return false
        }
        completionWaiter = CompletionWaiter(then: then)
        condition.unlock()
        return true
    }

    /// Ends a `whenFinished` wait without running its action: true when it still waited, false
    /// when its action has run or is about to.
    func stopWaitingForFinish() -> Bool {
        condition.lock()
        let completion = completionWaiter.take()
        condition.unlock()
        completion?.timer?.cancel()
        return completion != nil
    }

    /// A reader waiting for events: a task in `next`, or a `whenReady` callback.
    fileprivate enum ReaderWaiter {
        case task(CheckedContinuation<Void, Never>)
        case callback(@Sendable () -> Void)

        func resume() {
            switch self {
            case .task(let continuation): continuation.resume()
            case .callback(let wake): wake()
            }
        }
    }

    /// A `whenFinished` waiting.
    private struct CompletionWaiter {
        var then: @Sendable () -> Void
        var timer: GatewayTimer?
    }

    /// Whom an appended or closing event wakes, once the lock is let go.
    private struct Wakeups {
        var readers: [ReaderWaiter]
        var completion: CompletionWaiter?

        func resume() {
            for reader in readers { reader.resume() }
            guard let completion else { return }
            completion.timer?.cancel()
            completion.then()
        }
    }

    private func takeWaiters() -> [ReaderWaiter] {
        guard parkedReaders > 0 else { return [] }
        var waiters: [ReaderWaiter] = []
        for reader in readers.values {
            if let waiter = reader.waiter {
                waiters.append(waiter)
                reader.waiter = nil
            }
        }
        return waiters
    }

    /// The SSE message for events a reader asked for that are no longer kept. It has no `id`,
    /// so a client's last event id stays the last event it really got.
    static func appendGap(first: Int, last: Int, to bytes: inout [UInt8]) {
        let gap = PrefabEvent(
            "gap",
            data: [
                "first": .int(first), "last": .int(last),
                "message": .string("events \(first) to \(last) are no longer kept and were skipped"),
            ]
        )
        bytes.append(contentsOf: "data: ".utf8)
        gap.appendJSON(to: &bytes)
        bytes.append(contentsOf: "\n\n".utf8)
    }

    /// The JSON object of each SSE message in `sse` (as this log writes them: one `data:` line each).
    static func jsonObjects(inSSE sse: [UInt8]) -> [ArraySlice<UInt8>] {
        var objects: [ArraySlice<UInt8>] = []
        var lineStart = sse.startIndex
        while lineStart < sse.endIndex {
            let lineEnd = sse[lineStart...].firstIndex(of: UInt8(ascii: "\n")) ?? sse.endIndex
            let line = sse[lineStart..<lineEnd]
            if line.starts(with: "data: ".utf8) { objects.append(line.dropFirst(6)) }
            lineStart = lineEnd + 1
        }
        return objects
    }
}
