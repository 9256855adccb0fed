import Foundation
import Logging
import PrefabKit
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// One invocation of a process prefab: starts the child in its own process group, sends the call,
/// relays stdout line by line while stderr is drained and logged, and stops the whole group
/// (close stdin, SIGTERM, SIGKILL after a grace period) when cancelled, timed out or done.
final class ProcessCall: Sendable {
    private let launch: ProcessLaunch
    private let function: String
    private let streaming: Bool
    private let runtime: ProcessRuntime
    private let context: PrefabContext
    private let process = Process()
    private let stdinPipe = Pipe()
    private let stdoutPipe = Pipe()
    private let stderrPipe = Pipe()
    private let exited = DispatchSemaphore(value: 0)
    private let stopped = Atomic<Bool>(false)

    init(launch: ProcessLaunch, function: String, streaming: Bool, runtime: ProcessRuntime, context: PrefabContext) {
        self.launch = launch
        self.function = function
        self.streaming = streaming
        self.runtime = runtime
        self.context = context
    }

    /// Runs the child to its end. Streaming: yields its events and returns nil. Non-streaming:
    /// returns its result.
    func run(inputs: PrefabInputs) throws -> JSONValue? {
        let outputDirectory = try context.outputDirectory
        try start(outputDirectory: outputDirectory)
        let stderrTail = StderrTail(
            fileDescriptor: stderrPipe.fileHandleForReading.fileDescriptor,
            keep: runtime.options.stderrTailLines,
            logger: runtime.logger,
            invocationId: context.invocationId
        )
        defer {
            stop(graceful: false)
            try? stdoutPipe.fileHandleForReading.close()
        }
        context.onCancel { [self] in stop(graceful: true) }
        let call: JSONValue = [
            "function": .string(function), "inputs": inputs.jsonValue, "invocation_id": .string(context.invocationId),
            "output_dir": .string(outputDirectory.path), "streaming": .bool(streaming),
        ]
        sendLine(call)

        let outcome = relayOutput()
        exited.wait()
        stderrTail.waitForEnd(timeout: .milliseconds(500))
        if let reason = context.cancelReason { throw reason }
        let result = try outcome.get()
        if let crash = crashError(stderr: stderrTail.lines) { throw crash }
        if !streaming && result == nil {
            throw PrefabError(.protocolError, "the prefab process ended without a result line")
        }
        return result
    }

    private func start(outputDirectory: URL) throws {
        guard let executable = Self.resolveExecutable(launch.executable) else {
            throw PrefabError(.prefabStartFailed, "'\(launch.executable)' was not found or is not executable")
        }
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = launch.arguments
        process.currentDirectoryURL = launch.directory
        process.environment = environment(outputDirectory: outputDirectory)
        process.standardInput = stdinPipe
        process.standardOutput = stdoutPipe
        process.standardError = stderrPipe
        process.terminationHandler = { [exited] _ in exited.signal() }
        do {
            try process.run()
        } catch {
            throw PrefabError(.prefabStartFailed, "cannot start '\(executable)': \(error)")
        }
    }

    /// The child's environment: PATH, HOME and LANG, what the manifest lists, and the invocation's
    /// own variables. Nothing else of the gateway's environment (its secrets) reaches a prefab.
    private func environment(outputDirectory: URL) -> [String: String] {
        let parent = ProcessInfo.processInfo.environment
        var environment = [
            "PATH": parent["PATH"] ?? "/usr/local/bin:/usr/bin:/bin",
            "HOME": parent["HOME"] ?? "/tmp",
            "LANG": parent["LANG"] ?? "C.UTF-8",
        ]
        environment.merge(launch.environment) { _, manifest in manifest }
        environment["PREFAB_INVOCATION_ID"] = context.invocationId
        environment["PREFAB_OUTPUT_DIR"] = outputDirectory.path
        environment["PREFAB_FUNCTION"] = function
        if launch.kind == .python {
            environment["PYTHONUNBUFFERED"] = "1"
            environment["PYTHONDONTWRITEBYTECODE"] = "1"
            environment["PYTHONIOENCODING"] = "utf-8"
        }
        return environment
    }

    /// Reads stdout to its end: events are yielded as they come; a non-streaming call's result is
    /// returned. A line that breaks the protocol stops the child.
    private func relayOutput() -> Result<JSONValue?, PrefabError> {
        var reader = LineReader(
            fileDescriptor: stdoutPipe.fileHandleForReading.fileDescriptor,
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
                stop(graceful: false)
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
                stop(graceful: false)
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
                stop(graceful: false)
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
                    stop(graceful: true)
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

    /// `PREFAB_CRASHED` when the child exited non-zero or died by a signal.
    private func crashError(stderr: [String]) -> PrefabError? {
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

    private func sendLine(_ value: JSONValue) {
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
    private func stop(graceful: Bool) {
        guard !stopped.exchange(true, ordering: .acquiringAndReleasing) else { return }
        try? stdinPipe.fileHandleForWriting.close()
        let group = -process.processIdentifier
        guard process.processIdentifier > 0 else { return }
        if graceful {
            kill(group, SIGTERM)
            let grace = runtime.options.terminationGrace
            DispatchQueue.global().asyncAfter(deadline: .now() + grace.seconds) { kill(group, SIGKILL) }
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

/// Drains a child's stderr on a thread of its own, logging each line with the invocation id and
/// keeping the last few for the error event of a crash.
final class StderrTail: Sendable {
    private let tail = Mutex<[String]>([])
    private let ended = DispatchSemaphore(value: 0)

    init(fileDescriptor: Int32, keep: Int, logger: Logger, invocationId: String) {
        let thread = Thread { [self] in
            var reader = LineReader(fileDescriptor: fileDescriptor, maxLineBytes: 64 * 1024)
            reading: while true {
                let text: String
                switch reader.next() {
                case .end: break reading
                case .tooLong: text = "(a line of over 64 KiB was dropped)"
                case .line(let bytes): text = String(decoding: bytes.prefix(2000), as: UTF8.self)
                }
                logger.info("prefab stderr", metadata: ["invocation": "\(invocationId)", "line": "\(text)"])
                tail.withLock { lines in
                    lines.append(text)
                    if lines.count > keep { lines.removeFirst(lines.count - keep) }
                }
            }
            ended.signal()
        }
        thread.start()
    }

    var lines: [String] { tail.withLock { $0 } }

    func waitForEnd(timeout: Duration) {
        _ = ended.wait(timeout: .now() + timeout.seconds)
    }
}
