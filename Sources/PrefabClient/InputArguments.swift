import PrefabKit

/// Turns the terminal client's `-i name=value` arguments into inputs, typed by the function's
/// parameters as `GET /manifest` lists them: `n=3` is a number for an `integer`, `items=["a"]` a
/// JSON array for an `array`, and a string stays a string.
public struct InputArguments: Sendable {
    /// Parameter name to its manifest type (`string`, `integer`, ..., or a Python spelling).
    public var types: [String: String]

    public init(types: [String: String]) {
        self.types = types
    }

    /// The types of `function`'s parameters from a `GET /manifest` answer; nil when it has no such function.
    public init?(manifest: JSONValue, function: String) {
        guard
            let entry = manifest["functions"]?.arrayValue?.first(where: { $0["name"]?.stringValue == function })
        else { return nil }
        var types: [String: String] = [:]
        for parameter in entry["parameters"]?.arrayValue ?? [] {
            guard let name = parameter["name"]?.stringValue else { continue }
            types[name] = parameter["type"]?.stringValue ?? "string"
        }
        self.types = types
    }

    /// Reads every `name=value`, over `base` (from `--inputs-json`).
    public func inputs(_ assignments: [String], base: [String: JSONValue] = [:]) throws(InputError) -> [String:
        JSONValue]
    {
        var inputs = base
        for assignment in assignments {
            guard let equals = assignment.firstIndex(of: "="), equals != assignment.startIndex else {
                throw InputError("'\(assignment)' is not name=value")
            }
            let name = String(assignment[..<equals])
            let text = String(assignment[assignment.index(after: equals)...])
            guard let type = types[name] else {
                let known = types.keys.sorted().joined(separator: ", ")
                throw InputError(
                    "no parameter '\(name)'" + (known.isEmpty ? "; the function takes none" : "; parameters: \(known)"))
            }
            inputs[name] = try Self.value(text, type: type, name: name)
        }
        return inputs
    }

    static func value(_ text: String, type: String, name: String) throws(InputError) -> JSONValue {
        switch type {
        case "string", "str":
            return .string(text)
        case "integer", "int":
            guard let number = Int(text) else { throw InputError("'\(name)' must be an integer, got '\(text)'") }
            return .int(number)
        case "number", "float":
            if let number = Int(text) { return .int(number) }
            guard let number = Double(text), number.isFinite else {
                throw InputError("'\(name)' must be a number, got '\(text)'")
            }
            return .double(number)
        case "boolean", "bool":
            switch text.lowercased() {
            case "true", "yes", "1", "on": return true
            case "false", "no", "0", "off": return false
            default: throw InputError("'\(name)' must be true or false, got '\(text)'")
            }
        default:
            // array, object and anything newer: JSON, e.g. items='["a","b"]'.
            do {
                return try JSONValue(parsing: text)
            } catch {
                throw InputError("'\(name)' must be JSON (\(type)), e.g. \(name)='[\"a\",\"b\"]': \(error)")
            }
        }
    }
}

/// A problem with the client's arguments, shown as is.
public struct InputError: Error, Equatable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
