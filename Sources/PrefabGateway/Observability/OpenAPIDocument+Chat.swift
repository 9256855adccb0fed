import PrefabKit

/// The chat front ends in the OpenAPI document: `GET /v1/models`, `POST /v1/chat/completions`
/// (whose errors have OpenAI's shape) and `POST /ai-sdk/<name>` per chat-capable function.
extension OpenAPIDocument {
    var chatPaths: [String: JSONValue] {
        let functions = catalog.functions.values.filter { $0.manifest.chatInput != nil }
        let models = functions.map(\.manifest.name).sorted()
        var paths: [String: JSONValue] = [
            "/v1/models": ["get": modelsOperation, "head": Self.headOperation(of: modelsOperation)],
            "/v1/chat/completions": ["post": chatCompletionOperation(models: models)],
        ]
        for function in functions {
            paths["/ai-sdk/\(function.manifest.name)"] = ["post": aiSDKOperation(function)]
        }
        return paths
    }

    /// One SSE or NDJSON body: a string to the schema, described in words.
    static let ndjsonContent: JSONValue = [
        "schema": [
            "type": "string",
            "description": .string(
                "One event per line, each the JSON of an Event (as the SSE stream's data), in order: the first carries invocation_id; a files event when the function wrote files; exactly one done or error event last."
            ),
        ]
    ]

    private var modelsOperation: JSONValue {
        [
            "operationId": "listModels",
            "summary": "The chat-capable functions, as OpenAI models",
            "tags": ["chat"],
            "responses": openAICommon([
                "200": Self.jsonResponse("Every chat-capable function, by name.", Self.reference("ModelList"))
            ]),
        ]
    }

    private func chatCompletionOperation(models: [String]) -> JSONValue {
        let part: JSONValue = [
            "type": "object", "required": ["type"],
            "properties": ["type": ["type": "string"], "text": ["type": "string"]],
        ]
        let message: JSONValue = [
            "type": "object", "required": ["role"],
            "properties": [
                "role": ["type": "string", "enum": ["system", "developer", "user", "assistant", "tool"]],
                "content": ["anyOf": [["type": "string"], ["type": "array", "items": part], ["type": "null"]]],
            ],
        ]
        let body: JSONValue = [
            "type": "object",
            "required": ["model", "messages"],
            "description": .string(
                "The conversation reaches the function by its chat input; other members that name one of its parameters are its inputs; any other member (temperature, max_tokens, ...) is ignored."
            ),
            "properties": [
                "model": [
                    "type": "string", "enum": .array(models.map(JSONValue.string)), "description": "The function.",
                ],
                "messages": ["type": "array", "minItems": 1, "items": message],
                "stream": ["type": ["boolean", "null"]],
                "stream_options": [
                    "type": ["object", "null"], "properties": ["include_usage": ["type": ["boolean", "null"]]],
                ],
            ],
        ]
        let chunks: JSONValue = [
            "schema": Self.sseMessage(
                description:
                    "With \"stream\": true: data: <chat.completion.chunk JSON> per content event (the first delta with role assistant), a last chunk with an empty delta and finish_reason stop (then one with usage when stream_options.include_usage), then data: [DONE]. An error after the stream opened is data: {\"error\": {\"message\", \"type\", \"param\", \"code\"}}. : ping comments keep it open."
            )
        ]
        return [
            "operationId": "createChatCompletion",
            "summary": "Call a chat-capable function the way OpenAI's chat completions are called",
            "tags": ["chat"],
            "requestBody": ["required": true, "content": ["application/json": ["schema": body]]],
            "responses": openAICommon([
                "200": [
                    "description": "The reply: one chat.completion, or with \"stream\": true a stream of chunks.",
                    "headers": Self.invocationIdHeader,
                    "links": Self.invocationLinks,
                    "content": [
                        "application/json": ["schema": Self.reference("ChatCompletion")],
                        "text/event-stream": chunks,
                    ],
                ],
                "400": Self.openAIError("A body that is not the shape asked for, or inputs that fail the manifest."),
                "404": Self.openAIError("FUNCTION_NOT_FOUND: no chat-capable function is named model."),
                "413": Self.openAIError("PAYLOAD_TOO_LARGE: the body is over the gateway's limit."),
                "429": Self.openAIError("OVERLOADED: the gateway or the function runs all the calls it may."),
                "500": Self.openAIError(
                    "Without stream: the function ended with an error event (its code); x-should-retry: false."),
                "503": Self.openAIError("SHUTTING_DOWN: the gateway is shutting down."),
                "504": Self.openAIError("Without stream: TIMEOUT, the call ran past its time limit."),
            ]),
        ]
    }

    private func aiSDKOperation(_ function: LoadedFunction) -> JSONValue {
        let manifest = function.manifest
        var inputs = Self.inputsSchema(manifest).objectValue ?? [:]
        if let conversation = manifest.chatInput?.parameter {
            var properties = inputs["properties"]?.objectValue ?? [:]
            properties[conversation] = nil
            inputs["properties"] = .object(properties)
            let required = (inputs["required"]?.arrayValue ?? []).filter { $0 != .string(conversation) }
            inputs["required"] = required.isEmpty ? nil : .array(required)
            inputs["type"] = required.isEmpty ? ["object", "null"] : "object"
        }
        let part: JSONValue = [
            "type": "object", "required": ["type"],
            "properties": ["type": ["type": "string"], "text": ["type": "string"]],
        ]
        let message: JSONValue = [
            "type": "object", "required": ["role", "parts"],
            "properties": [
                "id": ["type": "string"],
                "role": ["type": "string", "enum": ["system", "user", "assistant"]],
                "parts": ["type": "array", "items": part],
            ],
        ]
        var body: [String: JSONValue] = [
            "type": "object",
            "properties": [
                "id": ["type": "string", "description": "The chat's id."],
                "messages": ["type": "array", "minItems": 1, "items": message],
                "trigger": ["type": "string", "enum": ["submit-message", "regenerate-message"]],
                "messageId": ["type": "string"],
                "inputs": .object(inputs),
            ],
        ]
        body["required"] = ["messages"]
        let parts: JSONValue = [
            "schema": Self.sseMessage(
                description:
                    "data: <part JSON> per part: start (messageId), text-start / text-delta / text-end for content events, data-<type> (data: the event) for other events, file (url, mediaType) per output file, error (errorText) for an error, finish; then data: [DONE]."
            )
        ]
        return [
            "operationId": .string("aiSDK_\(manifest.name)"),
            "summary": .string("Chat with \(manifest.name) from the AI SDK's useChat (UI message stream v1)"),
            "tags": ["chat"],
            "requestBody": ["required": true, "content": ["application/json": ["schema": .object(body)]]],
            "responses": common([
                "200": [
                    "description": "The UI message stream (x-vercel-ai-ui-message-stream: v1).",
                    "headers": Self.invocationIdHeader.objectValue!.merging([
                        "x-vercel-ai-ui-message-stream": ["schema": ["type": "string", "const": "v1"]]
                    ]) { first, _ in first }.jsonObject,
                    "links": Self.invocationLinks,
                    "content": ["text/event-stream": parts],
                ],
                "400": Self.errorResponse("BadRequest"),
                "404": Self.errorResponse("NotFound"),
                "413": Self.errorResponse("ContentTooLarge"),
                "422": Self.errorResponse("UnprocessableContent"),
                "429": Self.errorResponse("Overloaded"),
            ]),
        ]
    }

    /// Each SSE message as a client's parser sees it: `data` (one-line JSON, or `[DONE]` at the end).
    private static func sseMessage(description: String) -> JSONValue {
        [
            "type": "object",
            "required": ["data"],
            "description": .string(description),
            "properties": [
                "data": ["type": "string"],
                "event": ["type": "string", "description": "Never sent: parsers report message."],
            ],
        ]
    }

    /// `responses` plus what any `/v1/` request can get, every error in OpenAI's shape.
    private func openAICommon(_ responses: [String: JSONValue]) -> JSONValue {
        var all = responses
        all["403"] = Self.openAIError("ORIGIN_NOT_ALLOWED: a browser page from an origin that is not allowed.")
        all["421"] = Self.openAIError("HOST_NOT_ALLOWED: a Host that is not allowed (DNS rebinding).")
        all["414"] = Self.openAIError("URI_TOO_LONG: the request's URL is too long.")
        all["431"] = Self.openAIError("HEADERS_TOO_LARGE: the request's headers are too large.")
        if requiresAPIKey { all["401"] = Self.openAIError("UNAUTHORIZED: the API key is missing or wrong.") }
        return .object(all)
    }

    private static func openAIError(_ description: String) -> JSONValue {
        ["description": .string(description), "content": ["application/json": ["schema": reference("OpenAIError")]]]
    }

    static let chatSchemas: [String: JSONValue] = {
        let string: JSONValue = ["type": "string"]
        let integer: JSONValue = ["type": "integer"]
        return [
            "OpenAIError": object([
                "error": object([
                    "message": string, "type": string, "param": ["type": ["string", "null"]], "code": string,
                ])
            ]),
            "ModelList": object([
                "object": ["const": "list"],
                "data": [
                    "type": "array",
                    "items": object([
                        "id": string, "object": ["const": "model"], "created": integer, "owned_by": string,
                    ]),
                ],
            ]),
            "ChatCompletion": object([
                "id": string,
                "object": ["const": "chat.completion"],
                "created": integer,
                "model": string,
                "choices": [
                    "type": "array",
                    "items": object([
                        "index": integer,
                        "message": object(["role": ["const": "assistant"], "content": string]),
                        "finish_reason": ["const": "stop"],
                    ]),
                ],
                "usage": object(["prompt_tokens": integer, "completion_tokens": integer, "total_tokens": integer]),
            ]),
        ]
    }()
}

extension Dictionary where Key == String, Value == JSONValue {
    fileprivate var jsonObject: JSONValue { .object(self) }
}
