/// The validated inputs of one call, by parameter name.
///
/// The typed accessors throw a ``PrefabError`` with the code ``PrefabError/Code/invalidInputs``
/// naming the parameter, so a prefab can read what it needs in one line and still fail clearly
/// when called without validation.
public struct PrefabInputs: Sendable, Hashable, ExpressibleByDictionaryLiteral {
    /// The inputs by parameter name.
    public var values: [String: JSONValue]

    /// Inputs from a dictionary of values by parameter name.
    public init(_ values: [String: JSONValue] = [:]) {
        self.values = values
    }

    public init(dictionaryLiteral elements: (String, JSONValue)...) {
        self.values = Dictionary(elements, uniquingKeysWith: { _, last in last })
    }

    /// The input `name` as given, or nil when it is absent.
    public subscript(name: String) -> JSONValue? {
        get { values[name] }
        set { values[name] = newValue }
    }

    /// The inputs as a JSON object.
    public var jsonValue: JSONValue { .object(values) }

    /// The input `name`, which must be a string.
    public func string(_ name: String) throws -> String {
        try typed(name, "string") { $0.stringValue }
    }

    /// The input `name`, which must be an integer (an integral number such as `3.0` counts).
    public func int(_ name: String) throws -> Int {
        try typed(name, "integer") { $0.intValue }
    }

    /// The input `name`, which must be a number, integer or not.
    public func double(_ name: String) throws -> Double {
        try typed(name, "number") { $0.doubleValue }
    }

    /// The input `name`, which must be a boolean.
    public func bool(_ name: String) throws -> Bool {
        try typed(name, "boolean") { $0.boolValue }
    }

    /// The input `name`, which must be an array.
    public func array(_ name: String) throws -> [JSONValue] {
        try typed(name, "array") { $0.arrayValue }
    }

    /// The input `name`, which must be an object.
    public func object(_ name: String) throws -> [String: JSONValue] {
        try typed(name, "object") { $0.objectValue }
    }

    /// An array of strings; non-string items are an error.
    public func strings(_ name: String) throws -> [String] {
        let items = try array(name)
        return try items.enumerated().map { index, item in
            guard let text = item.stringValue else {
                throw PrefabError(.invalidInputs, "input '\(name)[\(index)]' must be a string, got \(item.typeName)")
            }
            return text
        }
    }

    private func typed<T>(_ name: String, _ typeName: String, _ read: (JSONValue) -> T?) throws -> T {
        guard let value = values[name], !value.isNull else {
            throw PrefabError(.invalidInputs, "input '\(name)' is missing")
        }
        guard let typed = read(value) else {
            throw PrefabError(.invalidInputs, "input '\(name)' must be \(typeName), got \(value.typeName)")
        }
        return typed
    }
}
