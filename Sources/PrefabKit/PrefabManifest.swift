/// A `prefab-manifest.json`: the prefab and the functions it offers.
///
/// Read as prefab authors write it today. Unknown members are ignored (and kept in `json`), so
/// manifests written for other tools still load; every problem found is reported with its JSON path.
public struct PrefabManifest: Sendable, Hashable {
    public var name: String?
    public var version: String?
    public var description: String?
    /// How to start a prefab that is not compiled Swift (read by the process runtime).
    public var runtime: JSONValue?
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
    public var name: String
    public var description: String?
    public var streaming: Bool
    public var parameters: [ParameterManifest]
    public var returns: JSONValue?
    /// How long a call may run before it ends with `TIMEOUT`; nil: the gateway's default.
    public var timeoutSeconds: Double?
    /// Most calls of this function running at once; more wait in the gateway's queue. Nil: only
    /// the gateway's total limit applies.
    public var maxConcurrency: Int?
    /// The function's entry as written, served by `GET /manifest`.
    public var json: JSONValue

    public init(
        name: String,
        description: String? = nil,
        streaming: Bool = false,
        parameters: [ParameterManifest] = [],
        returns: JSONValue? = nil,
        timeoutSeconds: Double? = nil,
        maxConcurrency: Int? = nil,
        json: JSONValue? = nil
    ) {
        self.name = name
        self.description = description
        self.streaming = streaming
        self.parameters = parameters
        self.returns = returns
        self.timeoutSeconds = timeoutSeconds
        self.maxConcurrency = maxConcurrency
        self.json = json ?? Self.synthesizedJSON(name, description, streaming, parameters, returns)
        if json == nil, var object = self.json.objectValue {
            if let timeoutSeconds { object["timeout_seconds"] = .double(timeoutSeconds) }
            if let maxConcurrency { object["max_concurrency"] = .int(maxConcurrency) }
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

/// One parameter of a function.
public struct ParameterManifest: Sendable, Hashable {
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

    public var name: String
    public var type: Kind
    public var required: Bool
    public var description: String?
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
