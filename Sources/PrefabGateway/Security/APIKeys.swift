import Foundation

/// The bearer tokens that may call the gateway. A key is known by its position in the list,
/// which is what an invocation records as its owner.
public struct APIKeys: Sendable {
    private let keys: [[UInt8]]

    init(_ keys: [String]) {
        self.keys = keys.map { Array($0.utf8) }
    }

    var isEnabled: Bool { !keys.isEmpty }

    /// The position of the key `token` equals. Every byte of every key is compared whatever the
    /// token is, so the time taken tells nothing about how close a guess was.
    func match(_ token: Substring) -> Int? {
        let token = Array(token.utf8)
        var found: Int?
        for (index, key) in keys.enumerated() {
            // The whole length difference: truncated to 8 bits, a key plus 256 more characters matched.
            var difference = key.count ^ token.count
            for position in key.indices {
                let guess = position < token.count ? token[position] : 0
                difference |= Int(key[position] ^ guess)
            }
            if difference == 0 { found = index }
        }
        return found
    }

    /// Keys from a file (one per line; blank lines and `#` comments skipped) and from a
    /// comma-separated list. A key must be at least 16 characters with no spaces: a short key can
    /// be guessed.
    public static func load(file: String?, list: String?) throws -> [String] {
        var keys: [String] = []
        if let file {
            let text: String
            do {
                text = try String(contentsOfFile: file, encoding: .utf8)
            } catch {
                throw APIKeyError("cannot read the API keys file \(file): \(error.localizedDescription)")
            }
            keys += text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }
                .filter { !$0.isEmpty && !$0.hasPrefix("#") }
        }
        if let list {
            keys += list.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        }
        for key in keys where key.count < 16 || key.contains(where: \.isWhitespace) {
            throw APIKeyError(
                "an API key must be at least 16 characters with no spaces; one starting '\(key.prefix(2))' is not")
        }
        return keys
    }
}

/// An API key that cannot be used: the gateway refuses to start.
public struct APIKeyError: Error, CustomStringConvertible {
    public var description: String
    init(_ description: String) { self.description = description }
}
