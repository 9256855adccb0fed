import Testing

@testable import PrefabGateway

/// `ChunkedBytes` keeps an event log's bytes: what is copied out must be exactly what went in,
/// whether an append fits in the last chunk (the fast path), fills it to the byte, or spans
/// several chunks.
@Suite struct ChunkedBytesTests {
    @Test func copiesGiveBackWhatWasAppendedAcrossChunkBoundaries() {
        let chunk = ChunkedBytes.chunkSize
        // Sizes chosen to land on every case: small events, one that ends a chunk exactly, one
        // that starts at a chunk's first byte, one larger than two chunks, one that straddles.
        let sizes = [45, 45, chunk - 90, 1, 45, 2 * chunk + 7, chunk - 52, 100, chunk, 3]
        var bytes = ChunkedBytes()
        var expected: [UInt8] = []
        var generator = SystemRandomNumberGenerator()
        for size in sizes {
            let piece = (0..<size).map { _ in UInt8.random(in: 0...255, using: &generator) }
            bytes.append(piece)
            expected += piece
            #expect(bytes.end == expected.count)
        }
        var all: [UInt8] = []
        bytes.copy(from: 0, to: bytes.end, into: &all)
        #expect(all == expected)

        // Every range that starts or ends near a chunk boundary.
        for boundary in stride(from: 0, through: expected.count, by: chunk) {
            for from in [boundary - 1, boundary, boundary + 1] where from >= 0 && from <= expected.count {
                for to in [from, from + 1, from + chunk, expected.count] where to <= expected.count {
                    var out: [UInt8] = []
                    bytes.copy(from: from, to: to, into: &out)
                    #expect(out[...] == expected[from..<to], "bytes \(from)..<\(to)")
                }
            }
        }

        // Dropping whole chunks keeps the rest where it was.
        bytes.drop(before: 2 * chunk + 10)
        var rest: [UInt8] = []
        bytes.copy(from: 2 * chunk, to: bytes.end, into: &rest)
        #expect(rest[...] == expected[(2 * chunk)...])
    }
}
