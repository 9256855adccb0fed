import Foundation
import Logging
import PrefabKit
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// One invocation of a process prefab: takes a started child (a warm one, or one started now),
/// sends the call, relays stdout line by line while stderr is drained and logged, and stops the
/// child's whole process group when cancelled, timed out or done.
struct ProcessCall {
    let launch: ProcessLaunch
    let function: String
    let streaming: Bool
    let runtime: ProcessRuntime
    let context: PrefabContext

    /// Runs the child to its end. Streaming: yields its events and returns nil. Non-streaming:
    /// returns its result.
    func run(inputs: PrefabInputs, warm: ChildProcess? = nil) throws -> JSONValue? {
        let outputDirectory = try context.outputDirectory
        let child =
            try warm
            ?? ChildProcess.start(
                launch,
                runtime: runtime,
                invocation: (context.invocationId, outputDirectory, function)
            )
        child.stderrTail.invocationId = context.invocationId
        defer { child.stop(graceful: false) }
        context.onCancel { child.stop(graceful: true) }
        let call: JSONValue = [
            "function": .string(function), "inputs": inputs.jsonValue, "invocation_id": .string(context.invocationId),
            "output_dir": .string(outputDirectory.path), "streaming": .bool(streaming),
            "question_timeout_seconds": context.questionTimeout.map { .double($0.seconds) } ?? .null,
            "max_output_bytes": .int(runtime.options.maxOutputBytes),
        ]
        child.sendLine(call)
        // Answers and other messages follow the call on stdin, one JSON line each.
        context.forwardMessages { message in child.sendMessage(message.jsonValue) }

        let watch = watchOutput(outputDirectory, of: child)
        defer { watch.cancel() }
        let outcome = relayOutput(of: child)
        child.waitForExit()
        if let reason = context.cancelReason { throw reason }
        let result = try outcome.get()
        if let crash = child.crashError() { throw crash }
        if !streaming && result == nil {
            throw PrefabError(.protocolError, "the prefab process ended without a result line")
        }
        return result
    }

    /// Checks the output folder's size while the child runs and kills the child once it is over
    /// the limit: a command has no file size limit of its own, and a full disk hurts every call.
    /// The call is not cancelled: what the child printed before is still relayed, and the
    /// gateway's check of the folder at the end turns the call's end into `OUTPUT_TOO_LARGE`.
    private func watchOutput(_ directory: URL, of child: ChildProcess) -> any DispatchSourceTimer {
        let limit = runtime.options.maxOutputBytes
        let timer = DispatchSource.makeTimerSource(queue: Self.outputWatchQueue)
        timer.schedule(deadline: .now() + Self.outputWatchInterval, repeating: Self.outputWatchInterval)
        timer.setEventHandler {
            guard OutputStore.size(of: directory) > limit else { return }
            child.stop(graceful: false)
        }
        timer.resume()
        return timer
    }

    private static let outputWatchQueue = DispatchQueue(label: "prefab-gateway.output-watch")
    private static let outputWatchInterval = DispatchTimeInterval.milliseconds(250)

    /// Reads stdout to its end: events are yielded as they come; a non-streaming call's result is
    /// returned. A line that breaks the protocol stops the child.
    private func relayOutput(of child: ChildProcess) -> Result<JSONValue?, PrefabError> {
        var reader = LineReader(
            fileDescriptor: child.stdout,
            maxLineBytes: runtime.options.maxLineBytes
        )
        var lineNumber = 0
        var result: JSONValue?
        while true {
            let bytes: [UInt8]
            switch reader.next() {
            case .end:
                return .success(result)
            case .tooLong:
                child.stop(graceful: false)
                return .failure(
                    PrefabError(
                        .protocolError,
                        "line \(lineNumber + 1) of the prefab's output is longer than \(runtime.options.maxLineBytes) bytes"
                    )
                )
            case .line(let line):
                bytes = line
            }
            lineNumber += 1
            if bytes.allSatisfy({ $0 == 32 || $0 == 9 || $0 == 13 }) { continue }
            guard let json = try? JSONValue(parsing: bytes), let object = json.objectValue else {
                child.stop(graceful: false)
                let preview = String(decoding: bytes.prefix(120), as: UTF8.self)
                return .failure(
                    PrefabError(
                        .protocolError,
                        "line \(lineNumber) of the prefab's output is not a JSON object: \(preview)"
                    )
                )
            }
            if !streaming, let value = object["result"] {
                result = value
                continue
            }
            guard let event = PrefabEvent(json: json) else {
                child.stop(graceful: false)
                return .failure(
                    PrefabError(
                        .protocolError,
                        "line \(lineNumber) of the prefab's output has no string \"type\" (events) or \"result\""
                    )
                )
            }
            if streaming {
                do {
                    try context.yield(event)
                } catch {
                    child.stop(graceful: true)
                    return .failure(PrefabError(describing: error))
                }
            } else if event.type == PrefabEvent.error {
                return .failure(
                    PrefabError(
                        .init(rawValue: event.errorCode ?? PrefabError.Code.unexpectedError.rawValue),
                        event.data?.stringValue ?? "the prefab reported an error"
                    )
                )
            } else if event.type == PrefabEvent.done {
                result = event.data ?? .null
            }
        }
    }

}

/// A started child process of a process prefab: its pipes, its stderr drain, and how to stop
/// its process group. Started per invocation, or ahead of time as a warm child.
final class ChildProcess: Sendable {
    private let process = Process()
    private let stdinPipe = Pipe()
    private let stdoutPipe = Pipe()
    private let stderrPipe = Pipe()
    private let exited = DispatchSemaphore(value: 0)
    private let stopped = Atomic<Bool>(false)
    private let messageQueue = DispatchQueue(label: "prefab-gateway.child-messages")
    private let runtime: ProcessRuntime
    let stderrTail: StderrTail

    private init(runtime: ProcessRuntime) {
        self.runtime = runtime
        self.stderrTail = StderrTail(keep: runtime.options.stderrTailLines, logger: runtime.logger)
    }

    /// The read end of the child's stdout.
    var stdout: Int32 { stdoutPipe.fileHandleForReading.fileDescriptor }

    var isRunning: Bool { process.isRunning && !stopped.load(ordering: .relaxed) }

    /// Starts the child in the prefab's folder; `invocation` nil starts a warm child that waits
    /// for its call.
    static func start(
        _ launch: ProcessLaunch,
        runtime: ProcessRuntime,
        invocation: (id: String, outputDirectory: URL, function: String)?
    ) throws -> ChildProcess {
        // One start at a time, pipes included: on Linux, Foundation's `Process` closes in the child
        // only the descriptors open when it prepared the spawn, and its pipes and exit-watching
        // socket pair are not close-on-exec. A child started meanwhile on another thread inherited
        // another call's, whose end (EOF, exit) then went unnoticed until that child exited (seen:
        // a quick call waited 15 s for slow ones beside it).
        spawnLock.lock()
        defer { spawnLock.unlock() }
        let child = ChildProcess(runtime: runtime)
        guard let executable = resolveExecutable(launch.executable) else {
            throw PrefabError(.prefabStartFailed, "'\(launch.executable)' was not found or is not executable")
        }
        let process = child.process
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = launch.arguments
        process.currentDirectoryURL = launch.directory
        process.environment = environment(launch, invocation: invocation)
        process.standardInput = child.stdinPipe
        process.standardOutput = child.stdoutPipe
        process.standardError = child.stderrPipe
        process.terminationHandler = { [exited = child.exited] _ in exited.signal() }
        let began = ContinuousClock.now
        do {
            try process.run()
            runtime.onSpawn?(ContinuousClock.now - began)
        } catch {
            throw PrefabError(.prefabStartFailed, "cannot start '\(executable)': \(error)")
        }
        child.stderrTail.drain(child.stderrPipe.fileHandleForReading)
        return child
    }

    /// Waits for the child to exit and for its stderr to be read.
    func waitForExit() {
        exited.wait()
        stderrTail.waitForEnd(timeout: .milliseconds(500))
        try? stdoutPipe.fileHandleForReading.close()
    }

    /// The child's environment: PATH, HOME and LANG, what the manifest lists, and the invocation's
    /// own variables. Nothing else of the gateway's environment (its secrets) reaches a prefab.
    private static func environment(
        _ launch: ProcessLaunch,
        invocation: (id: String, outputDirectory: URL, function: String)?
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
            environment["PREFAB_OUTPUT_DIR"] = invocation.outputDirectory.path
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
        let status = process.terminationStatus
        let how: String
        switch process.terminationReason {
        case .uncaughtSignal: how = "was killed by signal \(status)"
        case .exit where status != 0: how = "exited with status \(status)"
        default: return nil
        }
        let tail = stderr.isEmpty ? "" : "; last lines of stderr:\n" + stderr.joined(separator: "\n")
        return PrefabError(.prefabCrashed, "the prefab process \(how)\(tail)", details: stderr.map { .string($0) })
    }

    /// Sends a message line without blocking the caller: a child that does not read its stdin
    /// holds up only its own queue.
    func sendMessage(_ value: JSONValue) {
        messageQueue.async { [self] in
            if !stopped.load(ordering: .relaxed) { sendLine(value) }
        }
    }

    func sendLine(_ value: JSONValue) {
        var bytes: [UInt8] = []
        value.appendJSON(to: &bytes)
        bytes.append(UInt8(ascii: "\n"))
        let descriptor = stdinPipe.fileHandleForWriting.fileDescriptor
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeBytes { write(descriptor, $0.baseAddress! + offset, bytes.count - offset) }
            if written < 0 && errno == EINTR { continue }
            guard written > 0 else { return }  // the child already exited; its status tells why
            offset += written
        }
    }

    /// Stops the child's whole process group once: closes stdin, sends SIGTERM, and SIGKILL after
    /// the grace period (at once when not graceful).
    func stop(graceful: Bool) {
        guard !stopped.exchange(true, ordering: .acquiringAndReleasing) else { return }
        try? stdinPipe.fileHandleForWriting.close()
        let group = -process.processIdentifier
        guard process.processIdentifier > 0 else { return }
        if graceful {
            kill(group, SIGTERM)
            let grace = runtime.options.terminationGrace
            DispatchQueue.gatewayTimers.asyncAfter(deadline: .now() + grace.seconds) { kill(group, SIGKILL) }
        } else {
            // Also reached after a normal exit: nothing the prefab started may outlive it.
            kill(group, SIGKILL)
        }
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

/// Held while a child is created and started (see `ChildProcess.start`).
let spawnLock = NSLock()

/// Drains a child's stderr on a thread of its own, logging each line with the invocation id and
/// keeping the last few for the error event of a crash.
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

    /// Reads `handle` to its end on a thread of its own, then closes it (Foundation's `Pipe`
    /// does not: each call would leak a descriptor).
    func drain(_ handle: FileHandle) {
        let thread = Thread { [self] in
            defer { try? handle.close() }
            var reader = LineReader(fileDescriptor: handle.fileDescriptor, maxLineBytes: 64 * 1024)
            reading: while true {
                let text: String
                switch reader.next() {
                case .end: break reading
                case .tooLong: text = "(a line of over 64 KiB was dropped)"
                case .line(let bytes): text = String(decoding: bytes.prefix(2000), as: UTF8.self)
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
