import CProcessSpawn
import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// Whether a child process still runs, its exit status, and the ending of everything it started.
/// Signals go to the child's pid and process group only while it is not yet reaped (running, or a
/// zombie): until then the pid cannot be reused by an unrelated process.
final class ChildLife: Sendable {
    private struct State {
        var pid: pid_t = 0
        var exited = false
        var status: WaitStatus?
    }

    /// The value of `ChildProcess.markVariable` in the environment of the child and what it starts.
    let mark: String
    private let state = Mutex(State())
    private let reapedSignal = DispatchSemaphore(value: 0)

    init(mark: String) {
        self.mark = mark
    }

    var pid: pid_t {
        get { state.withLock { $0.pid } }
        set { state.withLock { $0.pid = newValue } }
    }

    var hasExited: Bool { state.withLock { $0.exited } }
    var status: WaitStatus? { state.withLock { $0.status } }

    /// Runs `body` with the pid unless the child has exited; the child is not reaped meanwhile.
    func whileRunning(_ body: (pid_t) -> Void) {
        state.withLock { state in
            if !state.exited && state.pid > 0 { body(state.pid) }
        }
    }

    /// The child has exited and is a zombie: nothing it started may outlive it.
    func exited() {
        state.withLock { state in
            guard !state.exited else { return }
            state.exited = true
            Self.end(state.pid, mark: mark)
        }
    }

    func reaped(_ status: WaitStatus) {
        state.withLock { $0.status = status }
        reapedSignal.signal()
    }

    func waitUntilReaped() {
        reapedSignal.wait()
        reapedSignal.signal()
    }

    /// Kills the process group of `pid`, every descendant below it (also those in other groups),
    /// and every adopted orphan marked with `mark` together with its descendants.
    static func end(_ pid: pid_t, mark: String) {
        _ = kill(-pid, SIGKILL)
        for descendant in descendants(of: pid) { _ = kill(descendant, SIGKILL) }
        endEscaped(mark: mark)
    }

    /// Kills the gateway's adopted orphans marked with `mark`, and what is below them, and reaps
    /// the adopted orphans that have already ended (zombies nobody else waits for).
    static func endEscaped(mark: String) {
        for orphan in adopted() where !ChildReaper.shared.isWatched(orphan) {
            guard let status = ProcessStatus(orphan) else { continue }  // gone
            if status.state == UInt8(ascii: "Z") {
                var exitStatus: Int32 = 0
                _ = waitpid(orphan, &exitStatus, WNOHANG)
                continue
            }
            // A child the gateway had before any call (a shell's `2> >(tee log)` that exec'd it)
            // carries no mark, and never will: read once, not at every call's end, where reading
            // it cost a Python call about 180 µs of gateway CPU (`echo_py`, 64 connections: 395
            // against 217 µs a call, 3,505 against 5,739 requests/s).
            let identity = ProcessIdentity(pid: orphan, start: status.start)
            if foreign.withLock({ $0.contains(identity) }) { continue }
            guard let environment = FileManager.default.contents(atPath: "/proc/\(orphan)/environ") else { continue }
            switch Self.mark(in: environment) {
            case nil:
                foreign.withLock { known in
                    if known.count >= Self.foreignLimit { known.removeAll() }
                    known.insert(identity)
                }
                continue
            case let found? where found != mark:
                continue  // another call's
            default:
                break
            }
            let below = descendants(of: orphan)
            _ = kill(orphan, SIGKILL)
            for descendant in below { _ = kill(descendant, SIGKILL) }
            ChildReaper.shared.watch(orphan)
        }
    }

    /// Every process below `pid`, from /proc (each thread lists the children it started).
    static func descendants(of pid: pid_t) -> [pid_t] {
        var found: [pid_t] = []
        var queue = [pid]
        while let next = queue.popLast(), found.count < 100_000 {
            let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(next)/task")) ?? []
            for task in tasks {
                guard let text = try? String(contentsOfFile: "/proc/\(next)/task/\(task)/children", encoding: .utf8)
                else { continue }
                let children = text.split(separator: " ").compactMap {
                    pid_t($0.trimmingCharacters(in: .whitespacesAndNewlines))
                }
                found += children
                queue += children
            }
        }
        return found
    }

    /// The orphans the gateway adopted (they go to its main thread).
    private static func adopted() -> [pid_t] {
        // A short list first: a 256 KB buffer, zeroed, on every call's end cost more than the read.
        let few = adopted(atMost: 256)
        return few.count < 256 ? few : adopted(atMost: 65_536)
    }

    private static func adopted(atMost capacity: Int) -> [pid_t] {
        [pid_t](unsafeUninitializedCapacity: capacity) { buffer, initialized in
            initialized = max(0, Int(prefab_list_adopted(buffer.baseAddress, Int32(capacity))))
        }
    }

    /// A process, told apart from a later one given the same pid by its start time.
    private struct ProcessIdentity: Hashable {
        let pid: pid_t
        let start: UInt64
    }

    /// Adopted children found without a mark; forgotten all at once past `foreignLimit`.
    private static let foreign = Mutex(Set<ProcessIdentity>())
    private static let foreignLimit = 4096

    /// The value of `ChildProcess.markVariable` in an environment as /proc gives it (NUL-separated
    /// `NAME=value` entries); nil when it has none.
    static func mark(in environment: Data) -> String? {
        let prefix = Array("\(ChildProcess.markVariable)=".utf8)
        for entry in environment.split(separator: 0, omittingEmptySubsequences: true)
        where entry.starts(with: prefix) {
            return String(decoding: entry.dropFirst(prefix.count), as: UTF8.self)
        }
        return nil
    }
}

/// A process's state letter and start time, from /proc/<pid>/stat: one read into a buffer, where
/// Foundation's string reading and trimming took most of a call's check of the gateway's children.
struct ProcessStatus: Equatable {
    /// `R`, `S`, `Z` (ended, not yet reaped), ...
    let state: UInt8
    /// Clock ticks after boot.
    let start: UInt64

    /// Nil when the process is gone (or /proc says something else than expected).
    init?(_ pid: pid_t) {
        let descriptor = open("/proc/\(pid)/stat", O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { return nil }
        defer { close(descriptor) }
        var buffer = [UInt8](repeating: 0, count: 1024)
        let count = buffer.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
        guard count > 0 else { return nil }
        let line = buffer[..<count]
        // The name, in brackets, may hold spaces and brackets: the fields follow the last `)`.
        guard let close = line.lastIndex(of: UInt8(ascii: ")")) else { return nil }
        let fields = line[(close + 1)...].split(separator: UInt8(ascii: " "))
        // The state is the line's 3rd field, the start time its 22nd.
        guard fields.count > 19, let state = fields[0].first,
            let start = UInt64(String(decoding: fields[19], as: UTF8.self))
        else { return nil }
        self.state = state
        self.start = start
    }
}
