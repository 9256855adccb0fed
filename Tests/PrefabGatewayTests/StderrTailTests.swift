import Logging
import Synchronization
import Testing

@testable import PrefabGateway

#if canImport(Glibc)
    import Glibc
#endif

/// A worker's stderr is read in batches (the drain pauses after a short read), so the next call
/// often begins before the last one's lines are read: each line keeps the call that printed it,
/// and a crash's tail holds its own call's lines only.
@Suite struct StderrTailTests {
    @Test func linesReadAfterTheNextCallBeganKeepTheirOwnCall() throws {
        // Both calls begin before a line is read; the fence ends the first call's lines.
        let fence = String(decoding: StderrTail.fence, as: UTF8.self)
        let (records, tail) = try Self.drain(
            "printed by first\n\(fence)\nprinted by second\nand again\n", calls: ["first", "second"], keep: 20)

        #expect(
            records.lines.map { "\($0.invocation): \($0.line)" } == [
                "first: printed by first", "second: printed by second", "second: and again",
            ])
        #expect(tail.lines == ["printed by second", "and again"])
    }

    @Test func aProcessOfItsOwnLabelsEveryLineWithItsCall() throws {
        let (records, tail) = try Self.drain("one\ntwo\n", calls: ["only"], keep: 1)

        #expect(records.lines.map(\.invocation) == ["only", "only"])
        #expect(tail.lines == ["two"])
    }

    /// Begins `calls`, writes `text` to a pipe and closes it, then drains it to its end.
    private static func drain(_ text: String, calls: [String], keep: Int) throws -> (LogRecords, StderrTail) {
        let records = LogRecords()
        let tail = StderrTail(keep: keep, logger: Logger(label: "stderr-tail-test") { _ in records })
        var pipeEnds: [Int32] = [0, 0]
        try #require(pipe(&pipeEnds) == 0)
        for call in calls { tail.callBegan(call) }
        _ = text.utf8CString.withUnsafeBytes { write(pipeEnds[1], $0.baseAddress!, text.utf8.count) }
        close(pipeEnds[1])
        tail.drain(pipeEnds[0])
        tail.waitForEnd(timeout: .seconds(10))
        return (records, tail)
    }
}

/// Keeps what is logged: each line's invocation metadata and text.
private final class LogRecords: LogHandler, @unchecked Sendable {
    private let kept = Mutex<[(invocation: String, line: String)]>([])
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace

    var lines: [(invocation: String, line: String)] { kept.withLock { $0 } }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let invocation = event.metadata?["invocation"].map { "\($0)" } ?? "?"
        let line = event.metadata?["line"].map { "\($0)" } ?? "?"
        kept.withLock { $0.append((invocation, line)) }
    }
}
