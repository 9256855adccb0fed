import PrefabKit

/// Bounds on a call's inputs, checked before the function sees them: how deep values nest and how
/// long a string may be. Both bound the work a hostile body can cause in every function.
struct InputLimits: Sendable {
    var maxDepth: Int
    var maxStringBytes: Int

    /// The parser stops at the limit; the body object and `inputs` add two levels.
    var parseOptions: JSONParseOptions { JSONParseOptions(maxDepth: maxDepth + 2) }

    var tooDeep: GatewayError {
        GatewayError(
            .unprocessableContent,
            .inputTooDeep,
            "the inputs nest arrays and objects deeper than the limit of \(maxDepth) levels"
        )
    }

    /// Refuses the inputs when a string or an object key is longer than the limit.
    func check(_ inputs: [String: JSONValue]) throws(GatewayError) {
        for (name, value) in inputs {
            if let path = longString(in: value, path: "inputs.\(name)") {
                throw GatewayError(
                    .unprocessableContent,
                    .inputTooLong,
                    "\(path) is longer than the limit of \(maxStringBytes) bytes",
                    details: [["path": .string(path), "max_bytes": .int(maxStringBytes)]]
                )
            }
        }
    }

    /// The path of the first string or key in `value` past the limit. Depth is already bounded.
    private func longString(in value: JSONValue, path: String) -> String? {
        switch value {
        case .string(let text):
            return text.utf8.count > maxStringBytes ? path : nil
        case .array(let items):
            for (index, item) in items.enumerated() {
                if let found = longString(in: item, path: "\(path)[\(index)]") { return found }
            }
            return nil
        case .object(let members):
            for (key, member) in members {
                if key.utf8.count > maxStringBytes { return "\(path) (a key)" }
                if let found = longString(in: member, path: "\(path).\(key)") { return found }
            }
            return nil
        default:
            return nil
        }
    }
}

extension PrefabError.Code {
    public static let inputTooDeep: Self = "INPUT_TOO_DEEP"
    public static let inputTooLong: Self = "INPUT_TOO_LONG"
}
