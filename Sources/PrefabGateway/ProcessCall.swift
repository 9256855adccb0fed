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
        defer {
            child.stop(graceful: false)
            child.closeStdout()
        }
        context.onCancel { child.stop(graceful: true) }
        let call: JSONValue = [
            "function": .string(function), "inputs": inputs.jsonValue, "invocation_id": .string(context.invocationId),
            "output_dir": .string(outputDirectory.path), "streaming": .bool(streaming),
            "question_timeout_seconds": context.questionTimeout.map { .double($0.seconds) } ?? .null,
            "max_output_bytes": .int(runtime.options.maxOutputBytes),
        ]
        child.sendCall(call)
        // Answers and other messages follow the call on stdin, one JSON line each; a child that
        // does not read them gets no more than the inbox's bound (then TOO_MANY_MESSAGES).
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
            // The sweep at the child's exit reads /proc's children lists, which can miss a child
            // while others are being started (seen once in CI: a `setsid` daemon held stdout until
            // the call's timeout); while the relay still waits, sweep again.
            child.endEscapedIfExited()
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
