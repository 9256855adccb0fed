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
        // The bound (1.25 MiB, events and their index entries) plus 256 KiB for the chunks at
        // either end, partly used, and the index's spare capacity. Measured: about 1.49 MB; the
        // single array this replaced kept 2,454,160 bytes.
        #expect(kept <= (256 << 10) + (1 << 20) + (256 << 10))
    }
}
