import Foundation
import Synchronization

/// Runs a streaming function without any server and returns its events in order, ending with
/// exactly one terminal event, as a client of the gateway would see them (without SSE ids).
///
/// When the function wrote output files, a `files` event listing them (name, a `file://` url,
/// size and content type) comes before the terminal event, as from the gateway.
///
///     let events = try collect(BatchProcess.batchProcess, inputs: ["items": ["a", "b"]])
///     #expect(events.first?.type == "start")
///
/// See <doc:TestingAPrefabWithCollectedEvents>.
///
/// - Parameters:
///   - function: The function to run, such as `BatchProcess.batchProcess`.
///   - inputs: Its inputs, passed as they are: the manifest's defaults are not applied.
///   - invocationId: What the function reads as ``PrefabContext/invocationId``.
///   - outputDirectory: Where the function's output files go; nil: a fresh folder under the
///     temporary directory, made only if the function asks for it.
///   - answering: Plays the caller of a function that asks questions: it gets each `question`
///     event and returns the answer (nil leaves the question unanswered). An answer outside the
///     question's options is refused, as by the gateway.
/// - Returns: The events in order, the one terminal event last.
/// - Throws: Only when the output files cannot be listed; the function's own errors end the
///   events with an `error` event.
public func collect(
    _ function: StreamingFunction,
    inputs: PrefabInputs = [:],
    invocationId: String = "test-invocation",
    outputDirectory: URL? = nil,
    answering: (@Sendable (PrefabEvent) -> JSONValue?)? = nil
) throws -> [PrefabEvent] {
    let (context, events) = collectingContext(invocationId, outputDirectory, answering)
    let terminal = context.run(function, inputs: inputs)
    return try events.closed(by: terminal, of: context)
}

/// Runs an async streaming function without any server, like `collect` for a synchronous one:
///
///     let events = try await collect(Ticker.ticker, inputs: ["n": 3])
///
/// The function runs in a task of its own, cancelled with its context (and when the calling task
/// is cancelled), as in the gateway.
///
/// - Parameters:
///   - function: The async function to run.
///   - inputs: Its inputs, passed as they are: the manifest's defaults are not applied.
///   - invocationId: What the function reads as ``PrefabContext/invocationId``.
///   - outputDirectory: Where the function's output files go; nil: a fresh folder under the
///     temporary directory, made only if the function asks for it.
///   - answering: Plays the caller of a function that asks questions: it gets each `question`
///     event and returns the answer (nil leaves the question unanswered).
/// - Returns: The events in order, the one terminal event last.
/// - Throws: Only when the output files cannot be listed.
public func collect(
    _ function: AsyncStreamingFunction,
    inputs: PrefabInputs = [:],
    invocationId: String = "test-invocation",
    outputDirectory: URL? = nil,
    answering: (@Sendable (PrefabEvent) -> JSONValue?)? = nil
) async throws -> [PrefabEvent] {
    let (context, events) = collectingContext(invocationId, outputDirectory, answering)
    // The task ends before this returns: the function does not really escape. (A non-escaping
    // parameter keeps `collect(f)` with a synchronous `f` unambiguous in async code.)
    let terminal = await withoutActuallyEscaping(function) { function in
        let task = Task { await context.run(function, inputs: inputs) }
        context.onCancel { task.cancel() }
        return await withTaskCancellationHandler {
            await task.value
        } onCancel: {
            context.cancel()
        }
    }
    return try events.closed(by: terminal, of: context)
}

/// A context whose events are collected, and answered with `answering`.
private func collectingContext(
    _ invocationId: String,
    _ outputDirectory: URL?,
    _ answering: (@Sendable (PrefabEvent) -> JSONValue?)?
) -> (PrefabContext, CollectedEvents) {
    let directory = outputDirectory ?? temporaryOutputDirectory()
    let events = CollectedEvents()
    let context = PrefabContext(invocationId: invocationId, outputDirectory: directory) { event in
        events.append(event)
    }
    if let answering {
        events.onQuestion = { [unowned context] question in
            guard let id = question.data?.objectValue?["questionId"]?.stringValue,
                let answer = answering(question)
            else { return }
            try? context.deliver(.answer(answer, to: id))
        }
    }
    return (context, events)
}

/// Runs a non-streaming function without any server and returns its result, or throws its error.
///
///     #expect(try call(Echo.echo, inputs: ["text": "hello"]) == ["text": "hello", "length": 5])
///
/// - Parameters:
///   - function: The function to run.
///   - inputs: Its inputs, passed as they are: the manifest's defaults are not applied.
///   - invocationId: What the function reads as ``PrefabContext/invocationId``.
///   - outputDirectory: Where the function's output files go; nil: a fresh folder under the
///     temporary directory, made only if the function asks for it.
/// - Returns: The function's result.
/// - Throws: The function's error as a ``PrefabError``: `UNEXPECTED_ERROR` for an error that is
///   not one, `CANCELLED` when the function cancelled its context.
public func call(
    _ function: ResultFunction,
    inputs: PrefabInputs = [:],
    invocationId: String = "test-invocation",
    outputDirectory: URL? = nil
) throws -> JSONValue {
    let directory = outputDirectory ?? temporaryOutputDirectory()
    let context = PrefabContext(invocationId: invocationId, outputDirectory: directory) { _ in }
    return try context.run(function, inputs: inputs).get()
}

/// A fresh directory name for a test run's output files (created only if the function uses it).
private func temporaryOutputDirectory() -> URL {
    FileManager.default.temporaryDirectory.appendingPathComponent("prefab-outputs-\(UUID().uuidString)")
}

/// Events appended from the function's thread.
private final class CollectedEvents: @unchecked Sendable {
    private let events = Mutex<[PrefabEvent]>([])
    /// Set before the function runs; called after a question is recorded.
    var onQuestion: ((PrefabEvent) -> Void)?

    func append(_ event: PrefabEvent) {
        events.withLock { $0.append(event) }
        if event.isQuestion { onQuestion?(event) }
    }

    var all: [PrefabEvent] { events.withLock { $0 } }

    /// Every event, with the `files` event (when the function wrote files) and `terminal` last.
    func closed(by terminal: PrefabEvent, of context: PrefabContext) throws -> [PrefabEvent] {
        if let used = context.usedOutputDirectory {
            let files = try OutputFile.list(in: used)
            if !files.isEmpty {
                append(.files(files.map { $0.jsonValue(url: $0.url.absoluteString) }))
            }
        }
        append(terminal)
        return all
    }
}
