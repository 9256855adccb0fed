import Foundation
import MCP
import NIOCore
import PrefabKit
import Synchronization

/// One `tools/call`: the function runs as an invocation like a `POST /invoke` (admission
/// control, time limits, the caller's API key, metrics, logs, `/invocations/<id>`), and its
/// events become the tool's result:
///
/// - `progress` → `notifications/progress`, when the client sent a progress token;
/// - `content` → the result's text;
/// - `done` data (a non-streaming function's result) → `structuredContent`, and its JSON as text;
/// - output files → `resource_link` items with their URLs;
/// - `error` → `isError: true`, the text starting with the error code;
/// - `question` → `elicitation/create`, its answer delivered to the function (`MCPQuestion`).
///
/// `notifications/cancelled` cancels the handler's task, which cancels the invocation; the
/// result then says `CANCELLED` (the SDK would otherwise leave the call's stream open).
struct MCPToolCall {
    let gateway: Gateway
    let session: MCPSession
    let parameters: CallTool.Parameters
    let baseURL: String

    func run() async throws -> CallTool.Result {
        guard let function = gateway.catalog.functions[parameters.name] else {
            throw MCPError.invalidParams("no tool named '\(parameters.name)'; tools/list lists them")
        }
        let inputs: PrefabInputs
        do {
            inputs = try gateway.validatedInputs(of: function, call: Self.callBody(parameters.arguments ?? [:]))
        } catch {
            return Self.failure(error.code, error.message, details: error.details)
        }
        do {
            try await gateway.admit(function)
        } catch {
            throw MCPError.serverError(code: -32000, message: "\(error.code.rawValue): \(error.message)")
        }
        let output = MCPCallOutput(maxBytes: gateway.configuration.maxCollectedBytes)
        let (progress, progressInput) = AsyncStream.makeStream(
            of: PrefabEvent.self, bufferingPolicy: .bufferingNewest(Self.progressBuffer))
        let token = parameters._meta?.progressToken
        let questions = MCPQuestions(session: session)
        let invocation: Invocation
        do {
            invocation = try gateway.makeInvocation(
                function, inputs, baseURL: baseURL, owner: session.owner, flowControl: false, format: .mcp
            ) { event in
                switch event.type {
                case PrefabEvent.content: try output.append(event.data?.stringValue ?? "")
                case PrefabEvent.progress where token != nil: progressInput.yield(event)
                case PrefabEvent.question: questions.ask(event)
                default: break
                }
            }
        } catch {
            throw MCPError.serverError(code: -32000, message: "\(error.code.rawValue): \(error.message)")
        }
        questions.attach(invocation)
        guard session.add(invocation) else {
            gateway.abandon(invocation)
            throw MCPError.invalidRequest("the MCP session has ended")
        }
        defer { session.remove(invocation) }
        // Progress is sent in order, by one task. The SDK keeps every message of a session until
        // it ends, and a function may report progress in a tight loop: past a burst of
        // `progressBurst`, at most `progressRate` notifications a second are sent (the latest
        // that came meanwhile, and the last one, always). When the client reads slowly, the
        // oldest notifications not yet sent are dropped (the newest progress says the most).
        let server = session.server
        let notifier = Task {
            guard let token else { return }
            var held: PrefabEvent?
            var allowance = Double(Self.progressBurst)
            var checked = ContinuousClock.now
            for await event in progress {
                let now = ContinuousClock.now
                allowance = min(Double(Self.progressBurst), allowance + (now - checked).seconds * Self.progressRate)
                checked = now
                guard allowance >= 1 else {
                    held = event
                    continue
                }
                allowance -= 1
                held = nil
                if let notification = Self.notification(event, token: token) { try? await server.notify(notification) }
            }
            if let held, let notification = Self.notification(held, token: token) {
                try? await server.notify(notification)
            }
        }
        let end = await withTaskCancellationHandler {
            await gateway.callToEnd(invocation)
        } onCancel: {
            invocation.context.cancel(
                PrefabError(.cancelled, "the MCP client cancelled the call (notifications/cancelled)"))
        }
        progressInput.finish()
        await notifier.value
        guard let end else {
            let error = gateway.overloaded
            throw MCPError.serverError(code: -32000, message: "\(error.code.rawValue): \(error.message)")
        }
        return Self.result(end, text: output.text, invocation: invocation.id)
    }

    /// Progress notifications waiting to be sent, at most, per call.
    static let progressBuffer = 1024
    /// Progress notifications a call sends at once before `progressRate` applies.
    static let progressBurst = 100
    /// Progress notifications a second past the burst.
    static let progressRate = 100.0

    /// `{"inputs": arguments}` as bytes, so that MCP arguments pass the very checks of
    /// `POST /invoke` (depth, string length, the manifest's parameters).
    static func callBody(_ arguments: [String: Value]) -> ByteBuffer {
        var bytes: [UInt8] = []
        JSONValue.object(["inputs": .object(arguments.mapValues(JSONValue.init))]).appendJSON(to: &bytes)
        return ByteBuffer(bytes: bytes)
    }

    /// `notifications/progress` for a `progress` event: `current` of `total` (or its
    /// `percentage` of 100), and its message.
    static func notification(_ event: PrefabEvent, token: ProgressToken) -> Message<ProgressNotification>? {
        let data = event.data?.objectValue ?? [:]
        let progress: Double
        var total: Double?
        if let current = data["current"]?.doubleValue {
            progress = current
            total = data["total"]?.doubleValue
        } else if let percentage = data["percentage"]?.doubleValue {
            progress = percentage
            total = 100
        } else {
            return nil
        }
        let message = data["message"]?.stringValue ?? event["message"]?.stringValue
        return ProgressNotification.message(
            .init(progressToken: token, progress: progress, total: total, message: message))
    }

    /// The tool result for how the call ended.
    static func result(_ end: CallEnd, text: String, invocation id: String) -> CallTool.Result {
        var content: [Tool.Content] = []
        if !text.isEmpty { content.append(.text(text: text, annotations: nil, _meta: nil)) }
        var structured: Value?
        var isError = false
        let outcome: Result<JSONValue?, PrefabError> =
            switch end.result {
            case .success(let value): .success(value)
            case .failure(let error): .failure(error)
            case nil:
                end.terminal.type == PrefabEvent.done
                    ? .success(end.terminal.data)
                    : .failure(
                        PrefabError(
                            .init(rawValue: end.terminal.errorCode ?? PrefabError.Code.unexpectedError.rawValue),
                            end.terminal.data?.stringValue ?? "the call failed",
                            details: end.terminal["details"]?.arrayValue ?? []))
            }
        switch outcome {
        case .success(let value):
            if let value, !value.isNull {
                // structuredContent is an object: any other result is wrapped as {"result": ...}.
                structured = Value(value.objectValue != nil ? value : ["result": value])
                content.append(.text(text: value.jsonString(pretty: false), annotations: nil, _meta: nil))
            }
        case .failure(let error):
            isError = true
            content.append(.text(text: "\(error.code.rawValue): \(error.message)", annotations: nil, _meta: nil))
        }
        for file in end.files?.data?.arrayValue ?? [] {
            guard let entry = file.objectValue, let url = entry["url"]?.stringValue else { continue }
            content.append(
                .resourceLink(
                    uri: url, name: entry["name"]?.stringValue ?? url,
                    mimeType: entry["content_type"]?.stringValue))
        }
        if content.isEmpty { content.append(.text(text: "done", annotations: nil, _meta: nil)) }
        return CallTool.Result(
            content: content, structuredContent: structured, isError: isError,
            _meta: Metadata(additionalFields: ["invocation_id": .string(id)]))
    }

    /// A call refused before it ran (its inputs): `isError`, the code first in the text.
    static func failure(_ code: PrefabError.Code, _ message: String, details: [JSONValue] = []) -> CallTool.Result {
        var text = "\(code.rawValue): \(message)"
        if !details.isEmpty { text += "\n" + JSONValue.array(details).jsonString(pretty: false) }
        return CallTool.Result(content: [.text(text: text, annotations: nil, _meta: nil)], isError: true)
    }
}

/// The text of a call's `content` events, capped like `/invoke`'s collected answer: past the
/// cap the function's next `yield` throws `RESPONSE_TOO_LARGE`.
final class MCPCallOutput: Sendable {
    private let state = Mutex((text: "", bytes: 0))
    let maxBytes: Int

    init(maxBytes: Int) {
        self.maxBytes = maxBytes
    }

    func append(_ chunk: String) throws {
        try state.withLock { state in
            guard state.bytes + chunk.utf8.count <= maxBytes else {
                throw PrefabError(
                    .responseTooLarge, "the content events exceed \(maxBytes) bytes, the most a tool result holds")
            }
            state.text += chunk
            state.bytes += chunk.utf8.count
        }
    }

    var text: String { state.withLock { $0.text } }
}
