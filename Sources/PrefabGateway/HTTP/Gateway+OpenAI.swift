import Foundation
import HTTPTypes
import Hummingbird
import PrefabKit

extension Gateway {
    /// The OpenAI-compatible routes: `GET /v1/models` lists the chat-capable functions, and
    /// `POST /v1/chat/completions` calls one (`model` names it) as a normal invocation. Errors on
    /// `/v1/` have OpenAI's shape (see `GatewayError.response`).
    func addOpenAIRoutes(to router: Router<GatewayRequestContext>) {
        router.get("/v1/models") { _, _ in self.openAIModels() }
        router.post("/v1/chat/completions") { request, context in
            try await self.openAIChatCompletion(request, context: context)
        }
    }

    func openAIModels() -> Response {
        let models = catalog.functions.values.filter { $0.manifest.chatInput != nil }.map(\.manifest.name).sorted()
        return .json([
            "object": "list",
            "data": .array(
                models.map { ["id": .string($0), "object": "model", "created": 0, "owned_by": "prefab-gateway"] }),
        ])
    }

    /// `{model, messages, stream?, stream_options?, ...}`: the conversation reaches the function
    /// by its chat input, other members that name a declared parameter are its inputs, the rest
    /// (`temperature`, `max_tokens`, ...) is ignored.
    func openAIChatCompletion(_ request: Request, context: GatewayRequestContext) async throws -> Response {
        var request = request
        let body = try await chatRequestBody(&request)
        guard let model = body["model"]?.stringValue else {
            throw GatewayError(.badRequest, .invalidRequest, "'model' must be a string: the function's name")
        }
        let stream: Bool
        switch body["stream"] ?? .null {
        case .null: stream = false
        case .bool(let flag): stream = flag
        default: throw GatewayError(.badRequest, .invalidRequest, "'stream' must be a boolean")
        }
        var includeUsage = false
        switch body["stream_options"] ?? .null {
        case .null: break
        case .object(let options):
            switch options["include_usage"] ?? .null {
            case .null: break
            case .bool(let flag): includeUsage = flag
            default:
                throw GatewayError(.badRequest, .invalidRequest, "'stream_options.include_usage' must be a boolean")
            }
        default: throw GatewayError(.badRequest, .invalidRequest, "'stream_options' must be an object")
        }
        let conversation = try Conversation(openAI: body["messages"])
        let (function, input) = try chatFunction(named: model)
        var extra: [String: JSONValue] = [:]
        for parameter in function.manifest.parameters where !Self.openAIMembers.contains(parameter.name) {
            if let value = body[parameter.name] { extra[parameter.name] = value }
        }
        let inputs = try chatInputs(
            function, try conversation.inputs(for: input, extra: extra), invalidStatus: .badRequest)
        let (invocation, reader) = try await startViewedCall(
            function, inputs, format: .openAI, request: request, context: context)
        let id = "chatcmpl-\(invocation.id)"
        let created = Int(Date().timeIntervalSince1970)
        guard stream else {
            return try await openAICompletion(
                invocation, reader: reader, id: id, created: created, request: request, context: context)
        }
        let headers = Self.eventStreamHeaders
        let format = OpenAIChunkFormat(id: id, model: model, created: created, includeUsage: includeUsage)
        return eventViewResponse(
            invocation, reader: reader, format: format, headers: headers, request: request, context: context)
    }

    /// Request members of OpenAI's own, never passed to a function as inputs.
    private static let openAIMembers: Set<String> = ["model", "messages", "stream", "stream_options"]

    /// The `chat.completion` object once the call has ended, or, when it failed, OpenAI's error
    /// with `x-should-retry: false`: the call ran, and a client's retry would run it again.
    private func openAICompletion(
        _ invocation: Invocation,
        reader: EventLog.Reader,
        id: String,
        created: Int,
        request: Request,
        context: GatewayRequestContext
    ) async throws -> Response {
        var text = ""
        var contentEvents = 0
        var terminal: PrefabEvent?
        let maxBytes = configuration.maxCollectedBytes
        let watched = try await readAllEvents(invocation, reader: reader, request: request, context: context) {
            event in
            switch event.type {
            case PrefabEvent.content:
                guard let chunk = event.data?.stringValue, terminal == nil else { return }
                contentEvents += 1
                text += chunk
                if text.utf8.count > maxBytes {
                    invocation.context.cancel(
                        PrefabError(
                            .responseTooLarge,
                            "the content exceeds \(maxBytes) bytes: call with \"stream\": true to stream it"))
                }
            case PrefabEvent.done:
                if contentEvents == 0, let result = event.data?.stringValue { text = result }
                terminal = event
            case PrefabEvent.error:
                terminal = event
            default:
                break
            }
        }
        var response: Response
        if let terminal, terminal.type == PrefabEvent.done {
            response = .json([
                "id": .string(id),
                "object": "chat.completion",
                "created": .int(created),
                "model": .string(invocation.function.manifest.name),
                "choices": [
                    [
                        "index": 0, "message": ["role": "assistant", "content": .string(text)],
                        "finish_reason": "stop",
                    ]
                ],
                "usage": Self.usage(completion: contentEvents),
            ])
        } else {
            let code = terminal?.errorCode ?? PrefabError.Code.cancelled.rawValue
            let message = terminal?.data?.stringValue ?? "the call ended without a result"
            let status: HTTPResponse.Status =
                switch code {
                case PrefabError.Code.invalidInputs.rawValue: .badRequest
                case PrefabError.Code.timeout.rawValue: .gatewayTimeout
                case PrefabError.Code.shuttingDown.rawValue: .serviceUnavailable
                default: .internalServerError
                }
            response = .json(OpenAIError.body(message: message, status: status, code: code), status: status)
            response.headers[.shouldRetry] = "false"
        }
        response.headers[.invocationId] = invocation.id
        if watched { response.headers[.connection] = "close" }
        return response
    }

    /// OpenAI's usage object: a `content` event counts as one completion token (a function's
    /// tokens are what it yields); the prompt is not counted.
    static func usage(completion: Int) -> JSONValue {
        ["prompt_tokens": 0, "completion_tokens": .int(completion), "total_tokens": .int(completion)]
    }
}

/// The OpenAI error body `{"error": {"message", "type", "param", "code"}}`, which the OpenAI
/// clients read on any failed request.
enum OpenAIError {
    static func body(message: String, status: HTTPResponse.Status, code: String, param: JSONValue = .null)
        -> JSONValue
    {
        [
            "error": [
                "message": .string(message), "type": .string(type(for: status)), "param": param,
                "code": .string(code),
            ]
        ]
    }

    /// OpenAI's error types by status.
    static func type(for status: HTTPResponse.Status) -> String {
        switch status.code {
        case 401: "authentication_error"
        case 403: "permission_error"
        case 404: "not_found_error"
        case 429: "rate_limit_error"
        case 500...: "server_error"
        default: "invalid_request_error"
        }
    }
}

/// `chat.completion.chunk` events: the first content with `"role": "assistant"`, each `content`
/// event as a delta, a last chunk with an empty delta and `"finish_reason": "stop"` (and the usage
/// when `stream_options.include_usage` asked for it), then `data: [DONE]`. An `error` event
/// becomes `data: {"error": {...}}`, which the OpenAI clients raise. Nothing else goes on the
/// stream: those clients parse every `data:` as a chunk. Comments (`: ping`) keep it open.
struct OpenAIChunkFormat: EventFormat {
    let id: String
    let model: String
    let created: Int
    let includeUsage: Bool
    private var roleSent = false
    private var contentEvents = 0

    init(id: String, model: String, created: Int, includeUsage: Bool) {
        self.id = id
        self.model = model
        self.created = created
        self.includeUsage = includeUsage
    }

    var heartbeat: [UInt8]? { SSEEncoder.heartbeat }

    mutating func append(_ event: PrefabEvent, json: ArraySlice<UInt8>, to bytes: inout [UInt8]) {
        switch event.type {
        case PrefabEvent.content:
            contentEvents += 1
            appendContent(event.data?.stringValue ?? "", to: &bytes)
        case PrefabEvent.done:
            // A non-streaming function's text result is its reply.
            if contentEvents == 0, let result = event.data?.stringValue { appendContent(result, to: &bytes) }
            if !roleSent { appendContent("", to: &bytes) }
            appendChunk(delta: [:], finishReason: "stop", to: &bytes)
            if includeUsage {
                SSEEncoder.appendJSONData(
                    [
                        "id": .string(id), "object": "chat.completion.chunk", "created": .int(created),
                        "model": .string(model), "choices": [], "usage": Gateway.usage(completion: contentEvents),
                    ], to: &bytes)
            }
            bytes += "data: [DONE]\n\n".utf8
        case PrefabEvent.error:
            let body = OpenAIError.body(
                message: event.data?.stringValue ?? "the call failed", status: .internalServerError,
                code: event.errorCode ?? PrefabError.Code.unexpectedError.rawValue)
            SSEEncoder.appendJSONData(body, to: &bytes)
        default:
            break
        }
    }

    private mutating func appendContent(_ text: String, to bytes: inout [UInt8]) {
        var delta: [String: JSONValue] = ["content": .string(text)]
        if !roleSent {
            delta["role"] = "assistant"
            roleSent = true
        }
        appendChunk(delta: delta, finishReason: nil, to: &bytes)
    }

    private func appendChunk(delta: [String: JSONValue], finishReason: String?, to bytes: inout [UInt8]) {
        let choice: JSONValue = [
            "index": 0, "delta": .object(delta), "finish_reason": finishReason.map(JSONValue.string) ?? .null,
        ]
        SSEEncoder.appendJSONData(
            [
                "id": .string(id), "object": "chat.completion.chunk", "created": .int(created),
                "model": .string(model), "choices": [choice],
            ], to: &bytes)
    }
}

extension HTTPField.Name {
    /// Tells the OpenAI clients not to retry a failed call that has already run.
    static let shouldRetry = HTTPField.Name("x-should-retry")!
}
