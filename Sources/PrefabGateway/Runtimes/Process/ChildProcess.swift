import CProcessSpawn
import Foundation
import PrefabKit
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// A started child process of a process prefab: its pipes, its stderr drain, and how to stop it and
/// everything it started. Started per invocation, or ahead of time as a warm child.
///
/// Whatever the child starts ends with it: when the child exits, or is stopped, its process group
/// is killed, and so is any descendant that left the group (`setsid`) — found among the gateway's
/// adopted orphans (it is a child subreaper) by the mark in its environment, or below the child.
final class ChildProcess: Sendable {
    let pid: pid_t
    /// The read end of the child's stdout, read by the call's relay; closed by `closeStdout`.
    let stdout: Int32
    let stderrTail: StderrTail
    private let input: ChildInput
    private let life: ChildLife
    private let runtime: ProcessRuntime
    private let stdoutClosed = Atomic<Bool>(false)
    private let stopped = Atomic<Bool>(false)

    /// The environment variable that marks a call's processes, and what they start, for the sweep
    /// of escaped descendants.
    static let markVariable = "PREFAB_GATEWAY_CHILD"
    private static let marks = Atomic<Int>(0)

    private init(pid: pid_t, stdout: Int32, input: ChildInput, life: ChildLife, runtime: ProcessRuntime) {
        self.pid = pid
        self.stdout = stdout
        self.input = input
        self.life = life
        self.runtime = runtime
        self.stderrTail = StderrTail(keep: runtime.options.stderrTailLines, logger: runtime.logger)
    }

    var isRunning: Bool { !life.hasExited && !stopped.load(ordering: .relaxed) }

    /// Once the child has exited, ends what it started that escaped its process group (adopted
    /// orphans carrying its mark).
    func endEscapedIfExited() {
        if life.hasExited { ChildLife.endEscaped(mark: life.mark) }
    }

    /// Starts the child in the prefab's folder; `invocation` nil starts a warm child that waits
    /// for its call.
    static func start(
        _ launch: ProcessLaunch,
        runtime: ProcessRuntime,
        invocation: (id: String, outputDirectory: String, function: String)?
    ) throws -> ChildProcess {
        guard let executable = resolveExecutable(launch.executable) else {
            throw PrefabError(.prefabStartFailed, "'\(launch.executable)' was not found or is not executable")
        }
        // Close-on-exec pipes: a child started at the same time on another thread inherits none of
        // them (the spawn also closes every descriptor but the three in the child).
        var pipes: [[Int32]] = []
        for _ in 0..<3 {
            var pipe: [Int32] = [-1, -1]
            guard prefab_pipe(&pipe) == 0 else {
                let reason = String(cString: strerror(errno))
                for pipe in pipes { pipe.forEach { _ = Glibc.close($0) } }
                throw PrefabError(.prefabStartFailed, "cannot start '\(executable)': no pipe: \(reason)")
            }
            pipes.append(pipe)
        }
        let (stdinPipe, stdoutPipe, stderrPipe) = (pipes[0], pipes[1], pipes[2])
        let input = ChildInput(descriptor: stdinPipe[1], capacity: PrefabContext.messageCapacity)
        let mark = "\(getpid())-\(marks.add(1, ordering: .relaxed).newValue)"
        let life = ChildLife(mark: mark)
        var environment = environment(launch, invocation: invocation)
        environment[markVariable] = mark
        let started: ProcessSpawner.Started
        do {
            started = try ProcessSpawner.shared.spawn(
                executable,
                arguments: launch.arguments,
                environment: environment,
                directory: launch.directory.path,
                stdin: stdinPipe[0],
                stdout: stdoutPipe[1],
                stderr: stderrPipe[1],
                watch: .init(
                    started: { [life] pid in life.pid = pid },
                    beforeReap: { [life, input] in
                        input.close()
                        life.exited()
                    },
                    reaped: { [life] status in life.reaped(WaitStatus(raw: status)) }
                )
            )
        } catch {
            input.close()
            for descriptor in [stdinPipe[0], stdoutPipe[0], stdoutPipe[1], stderrPipe[0], stderrPipe[1]] {
                _ = Glibc.close(descriptor)
            }
            throw PrefabError(.prefabStartFailed, "cannot start '\(executable)': \(error)")
        }
        for descriptor in [stdinPipe[0], stdoutPipe[1], stderrPipe[1]] { _ = Glibc.close(descriptor) }
        runtime.onSpawn?(started.duration)
        let child = ChildProcess(
            pid: started.pid, stdout: stdoutPipe[0], input: input, life: life, runtime: runtime)
        child.stderrTail.drain(stderrPipe[0])
        return child
    }

    /// Waits for the child to exit and for its stderr to be read, then closes its stdout.
    func waitForExit() {
        life.waitUntilReaped()
        stderrTail.waitForEnd(timeout: .milliseconds(500))
        closeStdout()
    }

    /// Closes the read end of stdout, once; the relay has stopped reading it.
    func closeStdout() {
        guard !stdoutClosed.exchange(true, ordering: .acquiringAndReleasing) else { return }
        _ = Glibc.close(stdout)
    }

    /// The child's environment: PATH, HOME and LANG, what the manifest lists, and the invocation's
    /// own variables. Nothing else of the gateway's environment (its secrets) reaches a prefab.
    private static func environment(
        _ launch: ProcessLaunch,
        invocation: (id: String, outputDirectory: String, function: String)?
    ) -> [String: String] {
        let parent = ProcessInfo.processInfo.environment
        var environment = [
            "PATH": parent["PATH"] ?? "/usr/local/bin:/usr/bin:/bin",
            "HOME": parent["HOME"] ?? "/tmp",
            "LANG": parent["LANG"] ?? "C.UTF-8",
        ]
        environment.merge(launch.environment) { _, manifest in manifest }
        // A warm child starts before its invocation; the runner sets these from the call.
        if let invocation {
            environment["PREFAB_INVOCATION_ID"] = invocation.id
            environment["PREFAB_OUTPUT_DIR"] = invocation.outputDirectory
            environment["PREFAB_FUNCTION"] = invocation.function
        }
        if launch.kind == .python {
            environment["PYTHONUNBUFFERED"] = "1"
            environment["PYTHONDONTWRITEBYTECODE"] = "1"
            environment["PYTHONIOENCODING"] = "utf-8"
        }
        return environment
    }

    /// `PREFAB_CRASHED` when the child exited non-zero or died by a signal.
    func crashError() -> PrefabError? {
        let stderr = stderrTail.lines
        let how: String
        guard let status = life.status else { return nil }
        if let signal = status.signal {
            how = "was killed by signal \(signal)"
        } else if let code = status.exitCode, code != 0 {
            how = "exited with status \(code)"
        } else {
            return nil
        }
        let tail = stderr.isEmpty ? "" : "; last lines of stderr:\n" + stderr.joined(separator: "\n")
        return PrefabError(.prefabCrashed, "the prefab process \(how)\(tail)", details: stderr.map { .string($0) })
    }

    /// Sends the call line.
    func sendCall(_ value: JSONValue) {
        input.send(call: Self.line(value))
    }

    /// Sends a message line without blocking the caller; false when the child has not taken the
    /// last `PrefabContext.messageCapacity` messages (it is not reading its stdin).
    func sendMessage(_ value: JSONValue) -> Bool {
        input.send(message: Self.line(value))
    }

    private static func line(_ value: JSONValue) -> [UInt8] {
        var bytes: [UInt8] = []
        value.appendJSON(to: &bytes)
        bytes.append(UInt8(ascii: "\n"))
        return bytes
    }

    /// Stops the child once: closes its stdin, sends SIGTERM to its process group, and after the
    /// grace period (at once when not graceful) kills the group and every descendant.
    func stop(graceful: Bool) {
        guard !stopped.exchange(true, ordering: .acquiringAndReleasing) else { return }
        input.close()
        if graceful {
            life.whileRunning { pid in _ = kill(-pid, SIGTERM) }
            let grace = runtime.options.terminationGrace
            DispatchQueue.gatewayTimers.asyncAfter(deadline: .now() + grace.seconds) { [life] in
                life.whileRunning { pid in ChildLife.end(pid, mark: life.mark) }
            }
        } else {
            life.whileRunning { pid in ChildLife.end(pid, mark: life.mark) }
        }
    }

    /// Lets a worker go: closes its stdin, which ends the runner, and its stdout; a worker that has
    /// not exited after the termination grace (a thread of the prefab keeps it alive) is killed.
    func retire() {
        input.close()
        closeStdout()
        DispatchQueue.gatewayTimers.asyncAfter(deadline: .now() + runtime.options.terminationGrace.seconds) {
            [self] in
            stop(graceful: false)
        }
    }

    /// What a worker's call started and left (its parent gone, adopted by the gateway) ends with
    /// the call; the runner itself ends what is still below it.
    func endEscaped() {
        ChildLife.endEscaped(mark: life.mark)
    }

    /// An executable path, searching PATH for a bare name.
    static func resolveExecutable(_ name: String) -> String? {
        if name.contains("/") { return FileManager.default.isExecutableFile(atPath: name) ? name : nil }
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        for directory in path.split(separator: ":") {
            let candidate = "\(directory)/\(name)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }
}
