import Foundation
import PrefabKit
import Testing

@testable import PrefabGateway

/// What one invocation's event log holds when its client stops reading: the bound in
/// docs/interactive-invocations.md ("What is kept") is the stream buffer (256 KiB) plus the
/// history (1 MiB).
@Suite struct EventLogMemoryTests {
    /// A client that read 4 MiB of a fast stream, then stopped reading; the function blocks
    /// once the buffer is full. Events of 45 bytes, like `burst`'s.
    @Test func aStalledStreamKeepsItsBufferAndHistoryAndLittleMore() async throws {
        let log = EventLog(flowControl: true, maxEvents: 16384, maxBytes: 256 << 10, historyBytes: 1 << 20)
        let reader = log.attach()
        let event = PrefabEvent.content("x")
        Thread.detachNewThread {
            while true {
                do {
                    try log.send { sequence, bytes in SSEEncoder.appendEvent(event, id: sequence, to: &bytes) }
                } catch {
                    return
                }
            }
        }
        var read = 0
        var batch: [UInt8] = []
        while read < 4 << 20 {
            _ = await reader.next(into: &batch)
            read += batch.count
        }
        // Stopped reading: wait until the function is blocked (no event for 100 ms).
        var count = log.count
        while true {
            try await Task.sleep(for: .milliseconds(100))
            if log.count == count { break }
            count = log.count
        }
        let kept = log.keptBytes
        log.stopProducer()
        // The bound (1.25 MiB, events and their index entries) plus the two chunks at either end,
        // partly used (2 × 64 KiB), plus the index's spare capacity (at most what it uses: 8 bytes
        // an event of 45, under 256 KiB). Measured: 1,513,816 bytes in eight quiet runs, and
        // 1,575,352 once in three on a fresh clone under the whole suite's load (one chunk more
        // at an end), past the 1.5 MiB this bound was before; the single array this replaced
        // kept 2,454,160 bytes, which this still fails.
        #expect(kept <= (256 << 10) + (1 << 20) + 2 * ChunkedBytes.chunkSize + (256 << 10))
    }
}
