/// The SSE messages an ``EventLog`` keeps, numbered from 1, with where each one ends, and how far
/// its readers have taken them.
///
/// A value the log changes under its lock, one call per operation: as properties of the log (a
/// class), every access was a runtime exclusivity check, about ten for each event appended.
struct KeptEvents {
    /// SSE messages, by their offset among all bytes ever appended; those before `head` were dropped.
    private var bytes = ChunkedBytes()
    private var head = 0
    /// The end offset in `bytes` of each kept event, oldest first, from index `headIndex`.
    private var ends: [Int] = []
    private var headIndex = 0
    /// The sequence number of the oldest kept event.
    private(set) var firstKept = 1
    /// The number of the last event appended.
    private(set) var last = 0
    /// The furthest any reader has taken: flow control and history count from here.
    private(set) var taken = 0

    /// Whether readers take events (streams): untaken events are then kept whatever their size.
    /// Without it (JSON answers) every event counts as taken once appended.
    private let flowControl: Bool
    /// How many bytes of taken events are kept for readers that resume.
    private let historyBytes: Int
    /// The index entry (end offset) kept per event, counted with the event's bytes in the bounds.
    static let indexBytes = MemoryLayout<Int>.stride

    init(flowControl: Bool, historyBytes: Int) {
        self.flowControl = flowControl
        self.historyBytes = max(0, historyBytes)
    }

    /// The bytes of the events kept.
    var byteCount: Int { bytes.end - head }

    /// Memory held, roughly.
    var capacity: Int { bytes.capacity + ends.capacity * MemoryLayout<Int>.stride }

    /// At least `maxEvents` events, or `maxBytes` bytes with their index, wait untaken.
    func isFull(maxEvents: Int, maxBytes: Int) -> Bool {
        let untaken = last - max(taken, firstKept - 1)
        return last - taken >= maxEvents
            || bytes.end - endOffset(of: max(taken, firstKept - 1)) + untaken * Self.indexBytes >= maxBytes
    }

    /// Appends `message` as event `last + 1`.
    mutating func append(_ message: [UInt8]) {
        bytes.append(message)
        // Room for a short call's events at once (grown from one, twice for `echo`'s three).
        if ends.isEmpty { ends.reserveCapacity(8) }
        ends.append(bytes.end)
        last += 1
        if !flowControl { taken = last }
        trimHistory(keepingUntaken: flowControl)
    }

    /// Appends to `out` the events after `after` (still kept), at most `limit` bytes of them but
    /// at least one, and counts them as taken; returns the number of the last one.
    mutating func take(after: Int, limit: Int, into out: inout [UInt8]) -> Int {
        let from = endOffset(of: after)
        let upTo = bytes.end - from <= limit ? last : lastEvent(endingWithin: limit, after: after)
        bytes.copy(from: from, to: endOffset(of: upTo), into: &out)
        if upTo > taken {
            taken = upTo
            trimHistory(keepingUntaken: flowControl)
        }
        return upTo
    }

    /// For a log that is kept after its end: drops what history does not keep, and gives back
    /// spare capacity.
    mutating func shrinkFinished() {
        trimHistory(keepingUntaken: true)
        compact(force: true)
    }

    /// Where the event `sequence` ends in `bytes` (`head` for the one before the oldest kept).
    private func endOffset(of sequence: Int) -> Int {
        sequence < firstKept ? head : ends[headIndex + sequence - firstKept]
    }

    /// Drops the oldest taken events beyond `historyBytes` (and, unless `keepingUntaken`, the
    /// untaken ones too).
    private mutating func trimHistory(keepingUntaken: Bool) {
        let protected = keepingUntaken ? min(taken, last) : last
        let oldest = firstKept
        while firstKept <= protected,
            endOffset(of: protected) - head + (protected - firstKept + 1) * Self.indexBytes > historyBytes
        {
            head = ends[headIndex]
            headIndex += 1
            firstKept += 1
        }
        // Nothing dropped, nothing to free (the usual case: called for every event).
        if firstKept != oldest { compact(force: false) }
    }

    /// The last event after `after` that ends within `limit` bytes of it (at least the next one).
    private func lastEvent(endingWithin limit: Int, after: Int) -> Int {
        let from = endOffset(of: after)
        var low = after + 1
        var high = last
        while low < high {
            let middle = (low + high + 1) / 2
            if endOffset(of: middle) - from <= limit { low = middle } else { high = middle - 1 }
        }
        return low
    }

    /// Frees the chunks of dropped events, and the dropped events' offsets once they are many, so
    /// that trimming stays linear overall; `force` (a finished log) also gives back spare capacity.
    private mutating func compact(force: Bool) {
        bytes.drop(before: head)
        if !force {
            // In place, once an eighth is dropped: the index then stays within its live entries'
            // next power of two (it was up to four times their size, 400 KB of a stalled stream).
            guard headIndex >= 1024 && headIndex * 8 >= ends.count else { return }
            ends.removeFirst(headIndex)
            headIndex = 0
            return
        }
        bytes.shrink()
        guard headIndex > 0 || ends.capacity > ends.count + 16 else { return }
        var kept: [Int] = []
        kept.reserveCapacity(ends.count - headIndex)
        kept.append(contentsOf: ends[headIndex...])
        ends = kept
        headIndex = 0
    }
}
