import HTTPTypes
import Hummingbird
import PrefabKit

/// A chat conversation as the chat front ends receive it (OpenAI messages, AI SDK UI messages),
/// reduced to roles and text, and how it reaches a function: the whole conversation for a
/// `messages` input, the last user message's text for a `prompt` input.
struct Conversation: Sendable {
    struct Message: Sendable {
        var role: String
        var text: String
    }

    var messages: [Message]

    /// `extra` (other declared inputs the request gave) with the conversation at `input`.
    func inputs(for input: ChatInput, extra: [String: JSONValue]) throws(GatewayError) -> [String: JSONValue] {
        var inputs = extra
        switch input {
        case .messages(let name):
            inputs[name] = .array(
                messages.map { ["role": .string($0.role), "content": .string($0.text)] })
        case .prompt(let name):
            guard let last = messages.last(where: { $0.role == "user" }) else {
                throw GatewayError(.badRequest, .invalidRequest, "the conversation has no user message")
            }
            inputs[name] = .string(last.text)
        }
        return inputs
    }

    /// OpenAI's `messages`: `[{"role", "content": string | [{"type": "text", "text"}] | null}]`;
    /// parts of other types (images, audio) carry no text and are left out.
    init(openAI json: JSONValue?) throws(GatewayError) {
        guard let list = json?.arrayValue, !list.isEmpty else {
            throw Self.invalid("'messages' must be a non-empty array of {\"role\", \"content\"} objects")
        }
        var messages: [Message] = []
        for (index, item) in list.enumerated() {
            guard let object = item.objectValue, let role = object["role"]?.stringValue else {
                throw Self.invalid("messages[\(index)] must be an object with a string 'role'")
            }
            let text: String
            switch object["content"] ?? .null {
            case .null: text = ""
            case .string(let content): text = content
            case .array(let parts): text = try Self.text(of: parts, at: "messages[\(index)].content")
            default: throw Self.invalid("messages[\(index)].content must be a string or an array of parts")
            }
            messages.append(Message(role: role, text: text))
        }
        self.messages = messages
    }

    /// The AI SDK's `UIMessage[]`: `[{"id", "role", "parts": [{"type": "text", "text"}, ...]}]`
    /// (a `content` string, as older clients send, is taken too); parts that are not text (files,
    /// tools, reasoning, data) are left out.
    init(aiSDK json: JSONValue?) throws(GatewayError) {
        guard let list = json?.arrayValue, !list.isEmpty else {
            throw Self.invalid("'messages' must be a non-empty array of UI messages {\"id\", \"role\", \"parts\"}")
        }
        var messages: [Message] = []
        for (index, item) in list.enumerated() {
            guard let object = item.objectValue, let role = object["role"]?.stringValue else {
                throw Self.invalid("messages[\(index)] must be an object with a string 'role'")
            }
            let text: String
            if let parts = object["parts"] {
                guard let list = parts.arrayValue else {
                    throw Self.invalid("messages[\(index)].parts must be an array")
                }
                text = try Self.text(of: list, at: "messages[\(index)].parts")
            } else if let content = object["content"]?.stringValue {
                text = content
            } else {
                throw Self.invalid("messages[\(index)] must have 'parts'")
            }
            messages.append(Message(role: role, text: text))
        }
        self.messages = messages
    }

    /// The text of the `text` parts in `parts`, joined.
    private static func text(of parts: [JSONValue], at path: String) throws(GatewayError) -> String {
        var text = ""
        for (index, part) in parts.enumerated() {
            guard let object = part.objectValue, let type = object["type"]?.stringValue else {
                throw invalid("\(path)[\(index)] must be an object with a string 'type'")
            }
            guard type == "text" else { continue }
            guard let chunk = object["text"]?.stringValue else {
                throw invalid("\(path)[\(index)].text must be a string")
            }
            text += chunk
        }
        return text
    }

    private static func invalid(_ message: String) -> GatewayError {
        GatewayError(.badRequest, .invalidRequest, message)
    }
}

extension Gateway {
    /// A chat-capable function by name: 404 `FUNCTION_NOT_FOUND` for none, or one that takes no
    /// conversation (`/v1/models` does not list it either).
    func chatFunction(named name: String) throws(GatewayError) -> (LoadedFunction, ChatInput) {
        guard let function = catalog.functions[name], let input = function.manifest.chatInput else {
            throw GatewayError(
                .notFound, .functionNotFound,
                "no chat-capable function named '\(name)'; GET /v1/models lists them")
        }
        return (function, input)
    }

    /// The function's inputs for a chat call, checked as `POST /invoke` checks them (string
    /// lengths, the manifest's parameters); refused with `invalidStatus`.
    func chatInputs(
        _ function: LoadedFunction,
        _ inputs: [String: JSONValue],
        invalidStatus: HTTPResponse.Status
    ) throws(GatewayError) -> PrefabInputs {
        do {
            try inputLimits.check(inputs)
        } catch {
            throw GatewayError(invalidStatus, error.code, error.message, details: error.details)
        }
        switch function.manifest.validate(PrefabInputs(inputs)) {
        case .success(let value): return value
        case .failure(let error): throw GatewayError(invalidStatus, error.code, error.message, details: error.details)
        }
    }

    /// A chat request's body as a JSON object, parsed with the gateway's depth limit.
    func chatRequestBody(_ request: inout Request) async throws -> [String: JSONValue] {
        let body = try await collectBody(&request)
        let json: JSONValue
        do {
            json = try body.withUnsafeReadableBytes { try JSONValue(parsing: $0, options: inputLimits.parseOptions) }
        } catch {
            throw GatewayError(.badRequest, .invalidJSON, "the body is not valid JSON: \(error)")
        }
        guard let object = json.objectValue else {
            throw GatewayError(.badRequest, .invalidRequest, "the body must be a JSON object")
        }
        return object
    }
}
