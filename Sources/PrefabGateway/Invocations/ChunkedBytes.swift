/// Bytes appended at the end and dropped at the start, addressed by a running offset, kept in
/// chunks of `chunkSize`: dropping the oldest bytes frees whole chunks, so memory follows what is
/// kept. (One array, trimmed by copying the rest once half of it was dropped, held up to twice the
/// kept bytes, rounded up to a power of two: ~4 MB for an event log's 1.25 MiB.)
struct ChunkedBytes {
    static let chunkSize = 64 * 1024
    /// The first chunk's room: an `echo` call's three events (about 150 bytes) without growing.
    static let firstChunkBytes = 256

    /// Every chunk but the last is full; `chunks[0]` starts at offset `start`.
    private var chunks: [[UInt8]] = []
    private var start = 0
    /// The offset after the last byte appended: every byte ever appended counts.
    private(set) var end = 0

    /// Memory held, roughly.
    var capacity: Int { chunks.reduce(0) { $0 + $1.capacity } + chunks.capacity * MemoryLayout<[UInt8]>.stride }

    mutating func append(_ bytes: [UInt8]) {
        end += bytes.count
        // The common case, an event that fits in the last chunk: no slices of it.
        if let last = chunks.indices.last, chunks[last].count + bytes.count <= Self.chunkSize {
            chunks[last].append(contentsOf: bytes)
            return
        }
        var rest = bytes[...]
        while !rest.isEmpty {
            if chunks.isEmpty || chunks[chunks.count - 1].count == Self.chunkSize {
                var chunk: [UInt8] = []
                // A small log's only chunk grows as it fills, from room for a short call's
                // events; later ones are needed whole.
                chunk.reserveCapacity(chunks.isEmpty ? Self.firstChunkBytes : Self.chunkSize)
                chunks.append(chunk)
            }
            let room = Self.chunkSize - chunks[chunks.count - 1].count
            let piece = rest.prefix(room)
            chunks[chunks.count - 1].append(contentsOf: piece)
            rest = rest.dropFirst(piece.count)
        }
    }

    /// Appends the bytes from offset `from` (not yet dropped) to `to` to `out`.
    func copy(from: Int, to: Int, into out: inout [UInt8]) {
        precondition(from >= start && to <= end && from <= to, "a range outside the kept bytes")
        var position = from
        while position < to {
            let index = (position - start) / Self.chunkSize
            let within = (position - start) % Self.chunkSize
            let count = min(to - position, Self.chunkSize - within)
            out.append(contentsOf: chunks[index][within..<within + count])
            position += count
        }
    }

    /// Frees the chunks that hold only bytes before `offset`.
    mutating func drop(before offset: Int) {
        var full = 0
        while full < chunks.count, start + (full + 1) * Self.chunkSize <= offset,
            chunks[full].count == Self.chunkSize
        {
            full += 1
        }
        guard full > 0 else { return }
        chunks.removeFirst(full)
        start += full * Self.chunkSize
    }

    /// Gives back the unused capacity of the last chunk (for a log that will not grow again).
    mutating func shrink() {
        guard let last = chunks.last, last.capacity > last.count + 256 else { return }
        // A copy of exactly its size (an Array made from a slice of a whole array shares its buffer).
        var exact: [UInt8] = []
        exact.reserveCapacity(last.count)
        exact.append(contentsOf: last)
        chunks[chunks.count - 1] = exact
    }
}
