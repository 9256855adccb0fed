import Foundation

/// Swift identifiers derived from prefab folder and function names: the type a Swift prefab's
/// folder must define and the static function for each manifest function (the registry plugin
/// and `prefab-gateway new` both use them).
public enum SwiftName {
    /// `batch_process` and `batch-process` become `BatchProcess`.
    public static func type(_ name: String) -> String {
        words(name).map { $0.prefix(1).uppercased() + $0.dropFirst() }.joined()
    }

    /// `batch_process` becomes `batchProcess`.
    public static func member(_ name: String) -> String {
        let parts = words(name)
        guard let first = parts.first else { return name }
        return first.prefix(1).lowercased() + first.dropFirst() + parts.dropFirst().map(type).joined()
    }

    /// A Swift string literal.
    public static func literal(_ text: String) -> String {
        "\"" + text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\""
    }

    private static func words(_ name: String) -> [String] {
        name.split(whereSeparator: { !$0.isLetter && !$0.isNumber }).map(String.init)
    }
}
