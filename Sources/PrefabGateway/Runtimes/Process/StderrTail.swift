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
        /// The invocation the lines read now belong to.
        var current = "(warm)"
        /// Calls begun whose lines follow a fence not read yet, in order.
        var upcoming: [String] = []
        /// Calls begun whose fence has not been read (a worker's; a process per call has none).
        var unfenced = 0
    }

    private let state = Mutex(State())
    private let ended = DispatchSemaphore(value: 0)
    private let keep: Int
    private let logger: Logger

    init(keep: Int, logger: Logger) {
        self.keep = keep
        self.logger = logger
    }

    /// A call begins on the child: its lines are those after the fence of the call before (read
    /// late, the previous call's last lines are still logged with its own id).
    func callBegan(_ invocationId: String) {
        state.withLock { state in
            state.unfenced += 1
            if state.unfenced == 1 {
                state.current = invocationId
            } else {
                state.upcoming.append(invocationId)
            }
        }
    }

    var lines: [String] { state.withLock { $0.lines } }

    /// The line the Python runner's worker mode writes on stderr after each call (never logged).
    static let fence = Array("\u{1e}prefab-runner: end of call".utf8)

    /// Reads `descriptor` to its end on a thread of its own, then closes it. After a short read it
    /// waits `pause` before the next: a worker writes the fence after every call, and waking this
    /// thread for each was one more context switch per call.
    func drain(_ descriptor: Int32) {
        let thread = Thread { [self] in
            ThreadName.setCurrent("prefab-stderr")
            defer { close(descriptor) }
            var reader = LineReader(
                fileDescriptor: descriptor, maxLineBytes: 64 * 1024, pauseAfterShortRead: Self.pause)
            reading: while true {
                let text: String
                switch reader.next() {
                case .end: break reading
                case .tooLong: text = "(a line of over 64 KiB was dropped)"
                case .line(let bytes):
                    if bytes == Self.fence {
                        state.withLock { state in
                            state.lines = []
                            state.unfenced = max(0, state.unfenced - 1)
                            if !state.upcoming.isEmpty { state.current = state.upcoming.removeFirst() }
                        }
                        continue
                    }
                    text = String(decoding: bytes.prefix(2000), as: UTF8.self)
                }
                let invocation = state.withLock { state in
                    state.lines.append(text)
                    if state.lines.count > keep { state.lines.removeFirst(state.lines.count - keep) }
                    return state.current
                }
                logger.info("prefab stderr", metadata: ["invocation": "\(invocation)", "line": "\(text)"])
            }
            ended.signal()
        }
        thread.start()
    }

    /// How long the drain may lag behind the child's writes (a crash's report waits for the end).
    static let pause = Duration.milliseconds(20)

    func waitForEnd(timeout: Duration) {
        _ = ended.wait(timeout: .now() + timeout.seconds)
    }
}
