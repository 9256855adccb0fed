import Foundation
import Logging
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// Drains a child's stderr on a thread of its own, logging each line with the invocation id and
/// keeping the last few for the error event of a crash. A worker writes `fence` after each call:
/// the lines kept start again after it, so a crash reports its own call's lines only.
final class StderrTail: Sendable {
    private struct State {
        var lines: [String] = []
        var invocationId = "(warm)"
    }

    private let state = Mutex(State())
    private let ended = DispatchSemaphore(value: 0)
    private let keep: Int
    private let logger: Logger

    init(keep: Int, logger: Logger) {
        self.keep = keep
        self.logger = logger
    }

    /// The invocation the lines belong to; a warm child learns it when it is taken.
    var invocationId: String {
        get { state.withLock { $0.invocationId } }
        set { state.withLock { $0.invocationId = newValue } }
    }

    var lines: [String] { state.withLock { $0.lines } }

    /// The line the Python runner's worker mode writes on stderr after each call (never logged).
    static let fence = Array("\u{1e}prefab-runner: end of call".utf8)

    /// Reads `descriptor` to its end on a thread of its own, then closes it.
    func drain(_ descriptor: Int32) {
        let thread = Thread { [self] in
            defer { close(descriptor) }
            var reader = LineReader(fileDescriptor: descriptor, maxLineBytes: 64 * 1024)
            reading: while true {
                let text: String
                switch reader.next() {
                case .end: break reading
                case .tooLong: text = "(a line of over 64 KiB was dropped)"
                case .line(let bytes):
                    if bytes == Self.fence {
                        state.withLock { $0.lines = [] }
                        continue
                    }
                    text = String(decoding: bytes.prefix(2000), as: UTF8.self)
                }
                let invocation = state.withLock { state in
                    state.lines.append(text)
                    if state.lines.count > keep { state.lines.removeFirst(state.lines.count - keep) }
                    return state.invocationId
                }
                logger.info("prefab stderr", metadata: ["invocation": "\(invocation)", "line": "\(text)"])
            }
            ended.signal()
        }
        thread.start()
    }

    func waitForEnd(timeout: Duration) {
        _ = ended.wait(timeout: .now() + timeout.seconds)
    }
}
