import CProcessSpawn
import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// Reaps the gateway's child processes, each by its own pid: one thread waits on their pidfds and
/// calls `waitpid` for exactly those, so nothing in the process calls `waitpid(-1)` (which would
/// steal another library's children). Orphaned descendants that the gateway adopts as a child
/// subreaper are reaped the same way once they are handed to it.
final class ChildReaper: Sendable {
    /// What to do when a child has exited: `beforeReap` runs while it is still a zombie (its pid and
    /// process group cannot be reused yet, so signalling them is safe), `reaped` gets its wait status.
    struct Watch: Sendable {
        /// Told the pid before the reaper watches it.
        var started: @Sendable (pid_t) -> Void = { _ in }
        var beforeReap: @Sendable () -> Void = {}
        var reaped: @Sendable (Int32) -> Void = { _ in }
    }

    static let shared = ChildReaper()

    private let epoll: Int32
    /// By pidfd: the pid and what to do at its exit.
    private let watched = Mutex<[Int32: (pid: pid_t, watch: Watch)]>([:])

    private init() {
        epoll = prefab_epoll_create()
        let thread = Thread { [self] in
            ThreadName.setCurrent("prefab-reaper")
            waitForExits()
        }
        thread.start()
    }

    /// Whether `pid` is a child being watched.
    func isWatched(_ pid: pid_t) -> Bool {
        watched.withLock { $0.values.contains { $0.pid == pid } }
    }

    /// Calls `watch` when `pid`, a child of this process, exits, and reaps it.
    func watch(_ pid: pid_t, _ watch: Watch = Watch()) {
        let pidfd = prefab_pidfd_open(pid)
        guard pidfd >= 0 else {
            // No pidfd (an old kernel): wait on a thread of its own.
            Thread.detachNewThread { Self.reap(pid, watch) }
            return
        }
        watched.withLock { $0[pidfd] = (pid, watch) }
        _ = prefab_epoll_add(epoll, pidfd)
    }

    private func waitForExits() {
        var ready = [Int32](repeating: -1, count: 64)
        while true {
            let count = prefab_epoll_wait(epoll, &ready, Int32(ready.count))
            guard count > 0 else { continue }  // EINTR
            for pidfd in ready.prefix(Int(count)) {
                guard let entry = watched.withLock({ $0.removeValue(forKey: pidfd) }) else { continue }
                prefab_epoll_remove(epoll, pidfd)
                close(pidfd)
                Self.reap(entry.pid, entry.watch)
            }
        }
    }

    private static func reap(_ pid: pid_t, _ watch: Watch) {
        // Wait without reaping first, so `beforeReap` still has the pid to itself.
        var info = siginfo_t()
        while waitid(P_PID, id_t(pid), &info, WEXITED | WNOWAIT) < 0 && errno == EINTR {}
        watch.beforeReap()
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        watch.reaped(status)
    }
}

/// A `waitpid` status, decoded.
struct WaitStatus: Sendable {
    var raw: Int32

    /// The exit code, when the process exited.
    var exitCode: Int32? { raw & 0x7f == 0 ? (raw >> 8) & 0xff : nil }

    /// The signal that killed the process, if one did.
    var signal: Int32? {
        let number = raw & 0x7f
        return number != 0 && number != 0x7f ? number : nil
    }
}
