import Foundation
import Logging
import PrefabKit
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// One invocation of a process prefab: takes a started child (a warm one, or one started now) or a
/// worker, sends the call, relays stdout line by line while stderr is drained and logged, and stops
/// the child's whole process group when cancelled, timed out or done (a worker: when cancelled or
/// timed out, or when its call breaks the protocol; otherwise it serves the next call).
struct ProcessCall {
    let launch: ProcessLaunch
    let function: String
    let streaming: Bool
    let runtime: ProcessRuntime
    let context: PrefabContext

    /// Runs the child to its end. Streaming: yields its events and returns nil. Non-streaming:
    /// returns its result.
    func run(inputs: PrefabInputs, warm: ChildProcess? = nil) throws -> JSONValue? {
        let outputDirectory = try context.outputDirectoryPath
        let child =
            try warm
            ?? ChildProcess.start(
                launch,
                runtime: runtime,
                invocation: (context.invocationId, outputDirectory, function)
            )
        child.stderrTail.callBegan(context.invocationId)
        defer {
            child.stop(graceful: false)
            child.closeStdout()
        }
        context.onCancel { child.stop(graceful: true) }
        child.sendCall(callLine(inputs, outputDirectory))
        // Answers and other messages follow the call on stdin, one JSON line each; a child that
        // does not read them gets no more than the inbox's bound (then TOO_MANY_MESSAGES).
        context.forwardMessages { message in child.sendMessage(message.jsonValue) }

        let watch = watchOutput(outputDirectory, of: child)
        defer { watch.cancel() }
        var reader = LineReader(fileDescriptor: child.stdout, maxLineBytes: runtime.options.maxLineBytes)
        let outcome = relayOutput(of: child, reader: &reader)
        child.waitForExit()
        if let reason = context.cancelReason { throw reason }
        return try value(of: outcome.get(), crash: child.crashError())
    }

    /// Runs the call on a worker of `pool`. A call that ends as it should leaves the worker to the
    /// next call; one that is cancelled, times out, breaks the protocol, or whose worker dies or is
    /// stopped for its output, ends the worker, and the pool replaces it.
    func run(inputs: PrefabInputs, on pool: WorkerPool) throws -> JSONValue? {
        let outputDirectory = try context.outputDirectoryPath
        let worker = try pool.acquire(for: context)
        let child = worker.child
        let number = worker.beginCall()
        var reusable = false
        defer {
            if reusable { child.endEscaped() }
            pool.release(worker, reusable: worker.endCall() && reusable)
        }
        child.stderrTail.callBegan(context.invocationId)
        context.onCancel { worker.stop(call: number, graceful: true) }
        if let reason = context.cancelReason { throw reason }
        child.sendCall(callLine(inputs, outputDirectory, number: number))
        // Messages carry their call's number: one that reaches the worker after its call ended
        // is dropped there, never given to the next call.
        context.forwardMessages { message in
            child.sendMessage(["call": .int(number), "message": message.jsonValue])
        }

        let watch = watchOutput(outputDirectory, of: child)
        let outcome = relayOutput(of: child, reader: &worker.reader, call: number)
        watch.cancel()
        if case .success(let relayed) = outcome, relayed.ended {
            if let reason = context.cancelReason { throw reason }
            // A worker that hit the output limit is replaced, as one stopped for it would be.
            reusable = !relayed.leaving && !relayed.outputLimitHit
            return try value(of: relayed, missing: "the prefab process ended its call without a result line")
        }
        // The worker's stdout ended (it exited or was stopped) or it broke the protocol.
        child.stop(graceful: false)
        child.waitForExit()
        if let reason = context.cancelReason { throw reason }
        return try value(of: outcome.get(), crash: child.crashError())
    }

    /// The call's value once its output is read: the error event it got, else how its process
    /// crashed, else a non-streaming call's result, which must have come.
    private func value(
        of relayed: Relayed,
        crash: PrefabError? = nil,
        missing: String = "the prefab process ended without a result line"
    ) throws -> JSONValue? {
        if let failure = relayed.failure { throw failure }
        if let crash { throw crash }
        if !streaming && relayed.result == nil { throw PrefabError(.protocolError, missing) }
        return relayed.result
    }

    /// The call's line on the child's stdin.
    private func callLine(_ inputs: PrefabInputs, _ outputDirectory: String, number: Int? = nil) -> JSONValue {
        var line: [String: JSONValue] = [
            "function": .string(function), "inputs": inputs.jsonValue, "invocation_id": .string(context.invocationId),
            "output_dir": .string(outputDirectory), "streaming": .bool(streaming),
            "question_timeout_seconds": context.questionTimeout.map { .double($0.seconds) } ?? .null,
            "max_output_bytes": .int(runtime.options.maxOutputBytes),
        ]
        if let number { line["call"] = .int(number) }
        return .object(line)
    }

    /// Checks the output folder's size while the child runs and kills the child once it is over
    /// the limit: a command has no file size limit of its own, and a full disk hurts every call.
    /// The call is not cancelled: what the child printed before is still relayed, and the
    /// gateway's check of the folder at the end turns the call's end into `OUTPUT_TOO_LARGE`.
    private func watchOutput(_ directory: String, of child: ChildProcess) -> OutputWatch {
        let limit = runtime.options.maxOutputBytes
        return OutputWatch {
            // The sweep at the child's exit reads /proc's children lists, which can miss a child
            // while others are being started (seen once in CI: a `setsid` daemon held stdout until
            // the call's timeout); while the relay still waits, sweep again.
            child.endEscapedIfExited()
            guard OutputStore.size(of: directory) > limit else { return }
            child.stop(graceful: false)
        }
    }

    /// What the relay read: a non-streaming call's result, or the error event it got instead, and
    /// whether a worker's end-of-call line came (false: stdout ended).
    struct Relayed {
        var result: JSONValue?
        var failure: PrefabError?
        var ended = false
        /// The worker ends after the call (its import failed).
        var leaving = false
        /// A write past the output folder's limit failed (the runner's `RLIMIT_FSIZE`).
        var outputLimitHit = false
    }

    /// Reads stdout to its end, or, for a worker's call `call`, to its end-of-call line: events are
    /// yielded as they come; a non-streaming call's result is returned. A line that breaks the
    /// protocol stops the child.
    private func relayOutput(of child: ChildProcess, reader: inout LineReader, call: Int? = nil) -> Result<
        Relayed, PrefabError
    > {
        let endLine = call.map { Array(#"{"end":\#($0)}"#.utf8) }
        let leavingLine = call.map { Array(#"{"end":\#($0),"exit":true}"#.utf8) }
        var lineNumber = 0
        var relayed = Relayed()
        while true {
            let bytes: [UInt8]
            switch reader.next() {
            case .end:
                return .success(relayed)
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
            if let endLine, bytes.starts(with: Self.endPrefix) {
                guard bytes == endLine || bytes == leavingLine else {
                    child.stop(graceful: false)
                    let preview = String(decoding: bytes.prefix(120), as: UTF8.self)
                    return .failure(
                        PrefabError(.protocolError, "the worker ended another call than \(call ?? 0): \(preview)"))
                }
                relayed.ended = true
                relayed.leaving = bytes == leavingLine
                return .success(relayed)
            }
            // After a non-streaming call's error event, a worker's lines up to its end are dropped.
            if relayed.failure != nil { continue }
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
                relayed.result = value
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
            if event.type == PrefabEvent.error, event.errorCode == PrefabError.Code.outputTooLarge.rawValue {
                relayed.outputLimitHit = true
            }
            if streaming {
                do {
                    try context.yield(event)
                } catch {
                    child.stop(graceful: true)
                    return .failure(PrefabError(describing: error))
                }
            } else if event.type == PrefabEvent.error {
                relayed.failure = PrefabError(
                    .init(rawValue: event.errorCode ?? PrefabError.Code.unexpectedError.rawValue),
                    event.data?.stringValue ?? "the prefab reported an error"
                )
                // A process of its own is not read further (it ends); a worker's call is, to its end.
                if call == nil { return .success(relayed) }
            } else if event.type == PrefabEvent.done {
                relayed.result = event.data ?? .null
            }
        }
    }

    private static let endPrefix = Array(#"{"end":"#.utf8)
}

/// Runs `check` every 250 ms until cancelled, on a queue of its own (a folder's size can take a
/// while to add up). A `GatewayTimer` rather than a dispatch timer source per call: creating and
/// cancelling a source woke dispatch's manager thread twice per call, 5% of a short Python call's
/// gateway time; a call that ends within 250 ms now costs a heap entry.
final class OutputWatch: Sendable {
    private let state = Mutex<(timer: GatewayTimer?, cancelled: Bool)>((nil, false))
    private let check: @Sendable () -> Void

    init(_ check: @escaping @Sendable () -> Void) {
        self.check = check
        scheduleNext()
    }

    func cancel() {
        let timer = state.withLock { state in
            state.cancelled = true
            defer { state.timer = nil }
            return state.timer
        }
        timer?.cancel()
    }

    private func scheduleNext() {
        let timer = GatewayTimer.schedule(after: Self.interval) { [weak self] in
            Self.queue.async { [weak self] in
                guard let self, !state.withLock({ $0.cancelled }) else { return }
                check()
                scheduleNext()
            }
        }
        let stale = state.withLock { state in
            if state.cancelled { return true }
            state.timer = timer
            return false
        }
        if stale { timer.cancel() }
    }

    private static let queue = DispatchQueue(label: "prefab-gateway.output-watch")
    private static let interval = Duration.milliseconds(250)
}
