/// A `prefab-manifest.json`: the prefab and the functions it offers.
///
/// Read as prefab authors write it today. Unknown members are ignored (and kept in ``json``), so
/// manifests written for other tools still load; every problem found is reported with its JSON path.
public struct PrefabManifest: Sendable, Hashable {
    /// The prefab's name.
    public var name: String?
    /// The prefab's version, as written.
    public var version: String?
    /// What the prefab is for.
    public var description: String?
    /// How to start a prefab that is not compiled Swift (read by the process runtime).
    public var runtime: JSONValue?
    /// The functions the prefab offers.
    public var functions: [FunctionManifest]
    /// The whole manifest as written.
    public var json: JSONValue

    public init(
        name: String? = nil,
        version: String? = nil,
        description: String? = nil,
        runtime: JSONValue? = nil,
        functions: [FunctionManifest],
        json: JSONValue? = nil
    ) {
        self.name = name
        self.version = version
        self.description = description
        self.runtime = runtime
        self.functions = functions
        self.json = json ?? .object(["functions": .array(functions.map(\.json))])
    }
}

/// One function of a manifest.
public struct FunctionManifest: Sendable, Hashable {
    /// The function's name, unique across all prefabs (see ``isValidName(_:)``).
    public var name: String
    /// What the function does.
    public var description: String?
    /// Whether the function streams events (`"streaming": true`) or returns one result.
    public var streaming: Bool
    /// The function's parameters, in the manifest's order.
    public var parameters: [ParameterManifest]
    /// What the function returns, as the manifest describes it.
    public var returns: JSONValue?
    /// How long a call may run before it ends with `TIMEOUT`; nil: the gateway's default.
    public var timeoutSeconds: Double?
    /// Most calls of this function running at once; more wait in the gateway's queue. Nil: only
    /// the gateway's total limit applies.
    public var maxConcurrency: Int?
    /// How a conversation reaches the function, as its manifest's `chat` block says; nil when it
    /// has none (``chatInput`` then applies the naming rule).
    public var chat: ChatInput?
    /// The function never waits and returns within moments (`"runs_on_event_loop": true`): the
    /// gateway may run its calls on the event loop of the connection that asked, without handing
    /// them to a thread and back. It cannot `ask`, `sleep` or wait for a message or for its
    /// client there (``PrefabError/Code/cannotWaitOnEventLoop``).
    public var runsOnEventLoop: Bool
    /// The function's entry as written, served by `GET /manifest`.
    public var json: JSONValue

    /// The boolean hints a function's `annotations` may give MCP clients, besides its `title`.
    public static let annotationKeys = ["readOnlyHint", "destructiveHint", "idempotentHint", "openWorldHint"]

    public init(
        name: String,
        description: String? = nil,
        streaming: Bool = false,
        parameters: [ParameterManifest] = [],
        returns: JSONValue? = nil,
        timeoutSeconds: Double? = nil,
        maxConcurrency: Int? = nil,
        chat: ChatInput? = nil,
        runsOnEventLoop: Bool = false,
        json: JSONValue? = nil
    ) {
        self.name = name
        self.description = description
        self.streaming = streaming
        self.parameters = parameters
        self.returns = returns
        self.timeoutSeconds = timeoutSeconds
        self.maxConcurrency = maxConcurrency
        self.chat = chat
        self.runsOnEventLoop = runsOnEventLoop
        self.json = json ?? Self.synthesizedJSON(name, description, streaming, parameters, returns)
        if json == nil, var object = self.json.objectValue {
            if let timeoutSeconds { object["timeout_seconds"] = .double(timeoutSeconds) }
            if let maxConcurrency { object["max_concurrency"] = .int(maxConcurrency) }
            if let chat { object["chat"] = chat.jsonValue }
            if runsOnEventLoop { object["runs_on_event_loop"] = .bool(true) }
            self.json = .object(object)
        }
    }

    private static func synthesizedJSON(
        _ name: String,
        _ description: String?,
        _ streaming: Bool,
        _ parameters: [ParameterManifest],
        _ returns: JSONValue?
    ) -> JSONValue {
        var object: [String: JSONValue] = [
            "name": .string(name), "streaming": .bool(streaming), "parameters": .array(parameters.map(\.jsonValue)),
        ]
        if let description { object["description"] = .string(description) }
        if let returns { object["returns"] = returns }
        return .object(object)
    }
}

/// How a chat conversation reaches a function: the parameter that gets the whole conversation
/// (an array of `{"role", "content"}` messages), or the one that gets the last user message's
/// text. The manifest says it as `"chat": {"messages": "<param>"}` or `"chat": {"prompt": "<param>"}`.
public enum ChatInput: Sendable, Hashable {
    /// The named `array` parameter gets every message as `{"role": ..., "content": text}`.
    case messages(String)
    /// The named `string` parameter gets the text of the last user message.
    case prompt(String)

    /// The parameter the conversation goes to.
    public var parameter: String {
        switch self {
        case .messages(let name), .prompt(let name): name
        }
    }

    /// The manifest's spelling: `{"messages": name}` or `{"prompt": name}`.
    public var jsonValue: JSONValue {
        switch self {
        case .messages(let name): ["messages": .string(name)]
        case .prompt(let name): ["prompt": .string(name)]
        }
    }
}

extension FunctionManifest {
    /// How a conversation reaches the function, if it is chat-capable: its `chat` block, or
    /// without one, a `string` parameter named `prompt` or `message` (the last user message's
    /// text), or an `array` parameter named `messages` (the whole conversation).
    public var chatInput: ChatInput? {
        if let chat { return chat }
        for parameter in parameters {
            switch (parameter.name, parameter.type) {
            case ("prompt", .string), ("message", .string): return .prompt(parameter.name)
            case ("messages", .array): return .messages(parameter.name)
            default: continue
            }
        }
        return nil
    }
}

/// One parameter of a function.
public struct ParameterManifest: Sendable, Hashable {
    /// A parameter's JSON type.
    public enum Kind: String, Sendable, Hashable, CaseIterable {
        case string, number, integer, boolean, array, object

        /// Also accepts the Python spellings people put in manifests (`str`, `int`, `list`, ...).
        public init?(manifestName: String) {
            switch manifestName {
            case "str": self = .string
            case "int": self = .integer
            case "float": self = .number
            case "bool": self = .boolean
            case "list": self = .array
            case "dict": self = .object
            default: self.init(rawValue: manifestName)
            }
        }

        /// Whether `value` has this type; an integral number counts as an integer.
        public func accepts(_ value: JSONValue) -> Bool {
            switch (self, value) {
            case (.string, .string), (.boolean, .bool), (.array, .array), (.object, .object): return true
            case (.number, .int), (.number, .double): return true
            case (.integer, _): return value.intValue != nil
            default: return false
            }
        }

        /// `value` in its canonical form: an integral number given for an integer becomes `.int`,
        /// so `3.0` and `3` compare equal against defaults and enums.
        public func normalized(_ value: JSONValue) -> JSONValue {
            guard self == .integer, let integer = value.intValue else { return value }
            return .int(integer)
        }
    }

    /// The parameter's name: the input's key.
    public var name: String
    /// The type an input must have.
    public var type: Kind
    /// Whether a call must give the input (a default counts as given).
    public var required: Bool
    /// What the parameter means.
    public var description: String?
    /// The value used when the input is absent or `null`.
    public var defaultValue: JSONValue?
    /// The allowed values, when the manifest lists an `enum`.
    public var allowedValues: [JSONValue]?

    public init(
        name: String,
        type: Kind,
        required: Bool = false,
        description: String? = nil,
        defaultValue: JSONValue? = nil,
        allowedValues: [JSONValue]? = nil
    ) {
        self.name = name
        self.type = type
        self.required = required
        self.description = description
        self.defaultValue = defaultValue
        self.allowedValues = allowedValues
    }

    var jsonValue: JSONValue {
        var object: [String: JSONValue] = [
            "name": .string(name), "type": .string(type.rawValue), "required": .bool(required),
        ]
        if let description { object["description"] = .string(description) }
        if let defaultValue { object["default"] = defaultValue }
        if let allowedValues { object["enum"] = .array(allowedValues) }
        return .object(object)
    }
}
