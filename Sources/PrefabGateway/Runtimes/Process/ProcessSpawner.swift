import CProcessSpawn
import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// Starts every child process of the gateway from one thread that lives as long as the process:
/// a child is killed (PR_SET_PDEATHSIG) when the thread that started it ends, so it must not be a
/// function thread, which ends after a while idle. The children get no descriptor of the gateway's
/// but their three pipes, start in a process group of their own, and die with the gateway even
/// when it is killed with SIGKILL.
final class ProcessSpawner: Sendable {
    static let shared = ProcessSpawner()

    private let jobs = Mutex<[@Sendable () -> Void]>([])
    private let jobCount = DispatchSemaphore(value: 0)
    /// The write end of the guardian's pipe (-1 without one): see `prefab_start_guardian`.
    private let guardian: Int32

    private init() {
        // PR_SET_PDEATHSIG ends a call's child with the gateway; the guardian ends what the child
        // started in its process group too.
        guardian = prefab_start_guardian()
        // Orphans of a call's processes (a `setsid` daemon whose parent exited) become the
        // gateway's children instead of init's, so a call's end can find and stop them.
        _ = prefab_become_subreaper()
        let thread = Thread { [self] in
            ThreadName.setCurrent("prefab-spawner")
            while true {
                jobCount.wait()
                let job = jobs.withLock { $0.removeFirst() }
                job()
            }
        }
        thread.start()
    }

    /// A started child: its pid, and how long the start took.
    struct Started {
        var pid: pid_t
        var duration: Duration
    }

    /// Starts `executable` on the spawner thread; the child's stdin, stdout and stderr are the given
    /// descriptors (the caller closes its copies of them afterwards). `watch` is registered with
    /// the reaper before anything can reap the child.
    func spawn(
        _ executable: String,
        arguments: [String],
        environment: [String: String],
        directory: String,
        stdin: Int32,
        stdout: Int32,
        stderr: Int32,
        watch: ChildReaper.Watch
    ) throws(SpawnError) -> Started {
        let result = Mutex<Result<Started, SpawnError>?>(nil)
        let done = DispatchSemaphore(value: 0)
        let argv = [executable] + arguments
        let envp = environment.map { "\($0.key)=\($0.value)" }.sorted()
        jobs.withLock { jobs in
            jobs.append { [self] in
                let began = ContinuousClock.now
                var pid: pid_t = 0
                let code = withCStrings(argv) { argv in
                    withCStrings(envp) { envp in
                        prefab_spawn(executable, argv, envp, directory, stdin, stdout, stderr, &pid)
                    }
                }
                if code == 0 {
                    watch.started(pid)
                    tellGuardian(pid)
                    var watch = watch
                    watch.reaped = { [reaped = watch.reaped, pid] status in
                        self.tellGuardian(-pid)
                        reaped(status)
                    }
                    ChildReaper.shared.watch(pid, watch)
                    result.withLock { $0 = .success(Started(pid: pid, duration: ContinuousClock.now - began)) }
                } else {
                    result.withLock { $0 = .failure(SpawnError(code: code)) }
                }
                done.signal()
            }
        }
        jobCount.signal()
        done.wait()
        return try result.withLock { $0! }.get()
    }

    /// Records a call's process group with the guardian (a negative id: the group has ended).
    private func tellGuardian(_ group: pid_t) {
        guard guardian >= 0 else { return }
        var id = Int32(group)
        _ = write(guardian, &id, 4)
    }

    /// Runs `executable` with `arguments` to its end and returns what it printed on stdout, or nil
    /// when it could not start or exited non-zero.
    func output(of executable: String, arguments: [String]) -> String? {
        var pipe: [Int32] = [-1, -1]
        guard prefab_pipe(&pipe) == 0 else { return nil }
        let null = open("/dev/null", O_RDWR | O_CLOEXEC)
        defer { close(null) }
        let exit = Mutex<Int32?>(nil)
        let exited = DispatchSemaphore(value: 0)
        let started = try? spawn(
            executable, arguments: arguments, environment: ProcessInfo.processInfo.environment, directory: "/",
            stdin: null, stdout: pipe[1], stderr: null,
            watch: .init(reaped: { status in
                exit.withLock { $0 = status }
                exited.signal()
            })
        )
        close(pipe[1])
        defer { close(pipe[0]) }
        guard started != nil else { return nil }
        var output: [UInt8] = []
        var reader = LineReader(fileDescriptor: pipe[0], maxLineBytes: 1 << 16)
        while case .line(let line) = reader.next() { output += line + [10] }
        exited.wait()
        guard exit.withLock({ $0 }) == 0 else { return nil }
        return String(decoding: output, as: UTF8.self)
    }
}

/// A child that could not be started, with the system's reason.
struct SpawnError: Error, CustomStringConvertible {
    var code: Int32
    var description: String { String(cString: strerror(code)) }
}

/// `body` with `strings` as a NULL-terminated array of C strings.
private func withCStrings<R>(_ strings: [String], _ body: (UnsafePointer<UnsafeMutablePointer<CChar>?>) -> R) -> R {
    let pointers = strings.map { strdup($0) } + [nil]
    defer { for pointer in pointers { free(pointer) } }
    return pointers.withUnsafeBufferPointer { body($0.baseAddress!) }
}
