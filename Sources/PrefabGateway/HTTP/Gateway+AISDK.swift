import HTTPTypes
import Hummingbird
import PrefabKit

extension Gateway {
    /// `POST /ai-sdk/<name>`: the body the AI SDK's `useChat` sends (`{id, messages: UIMessage[],
    /// trigger, messageId?}`, plus an optional `inputs` object for the function's other
    /// parameters; other members are ignored), answered as the AI SDK's UI message stream v1.
    /// Errors before the stream are the gateway's usual JSON errors, which `useChat` reports.
    func aiSDKChat(_ request: Request, context: GatewayRequestContext) async throws -> Response {
        let (function, input) = try chatFunction(named: context.parameters.get("name") ?? "")
        var request = request
        let body = try await chatRequestBody(&request)
        let conversation = try Conversation(aiSDK: body["messages"])
        var extra: [String: JSONValue] = [:]
        switch body["inputs"] ?? .null {
        case .null: break
        case .object(let values): extra = values
        default: throw GatewayError(.badRequest, .invalidRequest, "'inputs' must be a JSON object")
        }
        let inputs = try chatInputs(
            function, try conversation.inputs(for: input, extra: extra), invalidStatus: .unprocessableContent)
        let (invocation, reader) = try await startViewedCall(
            function, inputs, format: .aiSDK, request: request, context: context)
        var headers: HTTPFields = [.contentType: "text/event-stream", .cacheControl: "no-cache"]
        headers[.accelBuffering] = "no"
        headers[.uiMessageStream] = "v1"
        return eventViewResponse(
            invocation, reader: reader, format: AISDKFormat(messageId: "msg-\(invocation.id)"), headers: headers,
            request: request, context: context)
    }
}

/// The AI SDK's UI message stream v1, as `data: <part>` messages: `start` (with `messageId`) first;
/// `text-start`, `text-delta` per `content` event, `text-end`; a `file` part per output file; an
/// `error` part (`errorText`, the code first) for an `error` event; `data-<type>` for any other
/// event, its `data` the whole event; `finish` last, then `data: [DONE]`. Each part has exactly
/// the members the SDK's schema allows (it validates them strictly). The native `start` event
/// needs no part of its own.
struct AISDKFormat: EventFormat {
    let messageId: String
    private var started = false
    private var textOpen = false
    private var textSent = false
    private static let textId = "text-1"

    init(messageId: String) {
        self.messageId = messageId
    }

    var heartbeat: [UInt8]? { SSEEncoder.heartbeat }

    mutating func append(_ event: PrefabEvent, json: ArraySlice<UInt8>, to bytes: inout [UInt8]) {
        if !started {
            started = true
            SSEEncoder.appendJSONData(["type": "start", "messageId": .string(messageId)], to: &bytes)
        }
        switch event.type {
        case PrefabEvent.start:
            break
        case PrefabEvent.content:
            appendText(event.data?.stringValue ?? "", to: &bytes)
        case "files":
            for file in event.data?.arrayValue ?? [] {
                guard let url = file["url"]?.stringValue else { continue }
                let mediaType = file["content_type"]?.stringValue ?? "application/octet-stream"
                SSEEncoder.appendJSONData(
                    ["type": "file", "url": .string(url), "mediaType": .string(mediaType)], to: &bytes)
            }
        case PrefabEvent.done:
            // A non-streaming function's text result is its reply.
            if !textSent, let result = event.data?.stringValue { appendText(result, to: &bytes) }
            finish(to: &bytes)
        case PrefabEvent.error:
            closeText(to: &bytes)
            let code = event.errorCode ?? PrefabError.Code.unexpectedError.rawValue
            let message = event.data?.stringValue ?? "the call failed"
            SSEEncoder.appendJSONData(["type": "error", "errorText": .string("\(code): \(message)")], to: &bytes)
            finish(to: &bytes)
        default:
            SSEEncoder.appendJSONData(["type": .string("data-\(event.type)"), "data": event.jsonValue], to: &bytes)
        }
    }

    private mutating func appendText(_ text: String, to bytes: inout [UInt8]) {
        if !textOpen {
            textOpen = true
            textSent = true
            SSEEncoder.appendJSONData(["type": "text-start", "id": .string(Self.textId)], to: &bytes)
        }
        SSEEncoder.appendJSONData(
            ["type": "text-delta", "id": .string(Self.textId), "delta": .string(text)], to: &bytes)
    }

    private mutating func closeText(to bytes: inout [UInt8]) {
        guard textOpen else { return }
        textOpen = false
        SSEEncoder.appendJSONData(["type": "text-end", "id": .string(Self.textId)], to: &bytes)
    }

    private mutating func finish(to bytes: inout [UInt8]) {
        closeText(to: &bytes)
        SSEEncoder.appendJSONData(["type": "finish"], to: &bytes)
        bytes += "data: [DONE]\n\n".utf8
    }
}

extension HTTPField.Name {
    /// Tells the AI SDK's client which stream protocol the answer speaks.
    static let uiMessageStream = HTTPField.Name("x-vercel-ai-ui-message-stream")!
}
