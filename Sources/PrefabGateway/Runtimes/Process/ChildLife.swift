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
        let needle = Array("\(ChildProcess.markVariable)=\(mark)\0".utf8)
        for orphan in adopted() where !ChildReaper.shared.isWatched(orphan) {
            if isZombie(orphan) {
                var status: Int32 = 0
                _ = waitpid(orphan, &status, WNOHANG)
                continue
            }
            guard let environment = FileManager.default.contents(atPath: "/proc/\(orphan)/environ"),
                environment.withUnsafeBytes({ bytes in
                    needle.withUnsafeBytes { bytes.firstRange(of: $0) != nil }
                })
            else { continue }
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

    private static func isZombie(_ pid: pid_t) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { return false }
        return stat[stat.index(after: close)...].trimmingCharacters(in: .whitespaces).hasPrefix("Z")
    }
}
