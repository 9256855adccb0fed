extension JSONValue {
    /// Appends this value as UTF-8 JSON text with object keys sorted, so equal values always encode the same.
    ///
    /// Compact output is a single line (strings never contain a raw newline), which makes it safe to put in an
    /// SSE `data:` field. Pretty output uses 2-space indentation and `"key": value`.
    public func appendJSON(to bytes: inout [UInt8], pretty: Bool = false) {
        if pretty {
            appendPrettyJSON(to: &bytes, indent: 0)
        } else {
            appendCompactJSON(to: &bytes)
        }
    }

    /// The value as compact, single-line JSON with sorted keys.
    public var jsonString: String { jsonString(pretty: false) }

    /// The value as JSON text with sorted keys, compact or indented.
    public func jsonString(pretty: Bool) -> String {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(64)
        appendJSON(to: &bytes, pretty: pretty)
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Appends `string` as a quoted, escaped JSON string literal.
    ///
    /// Escapes `"`, `\`, control characters, U+2028 and U+2029 (which break JavaScript consumers);
    /// everything else is copied as raw UTF-8, in bulk where possible because this is the encoder's hot path.
    public static func appendJSONString(_ string: String, to bytes: inout [UInt8]) {
        var string = string
        string.withUTF8 { utf8 in appendEscaped(utf8, to: &bytes) }
    }

    // MARK: - Compact

    private func appendCompactJSON(to bytes: inout [UInt8]) {
        switch self {
        case .null:
            Self.appendASCII("null", to: &bytes)
        case .bool(let value):
            Self.appendASCII(value ? "true" : "false", to: &bytes)
        case .int(let value):
            Self.appendInteger(value, to: &bytes)
        case .double(let value):
            Self.appendDouble(value, to: &bytes)
        case .string(let value):
            Self.appendJSONString(value, to: &bytes)
        case .array(let elements):
            bytes.append(UInt8(ascii: "["))
            var first = true
            for element in elements {
                if !first { bytes.append(UInt8(ascii: ",")) }
                first = false
                element.appendCompactJSON(to: &bytes)
            }
            bytes.append(UInt8(ascii: "]"))
        case .object(let members):
            bytes.append(UInt8(ascii: "{"))
            if members.isEmpty {
                // Nothing to write between the braces.
            } else if members.count == 1, let (key, value) = members.first {
                // Single-member objects are common in events and need no sort.
                Self.appendJSONString(key, to: &bytes)
                bytes.append(UInt8(ascii: ":"))
                value.appendCompactJSON(to: &bytes)
            } else if members.count <= 16 {
                // Small objects, the norm for events, are sorted on the stack to save an allocation.
                withUnsafeTemporaryAllocation(of: (key: String, value: JSONValue).self, capacity: members.count) {
                    sorted in
                    let base = sorted.baseAddress!
                    var count = 0
                    for member in members {
                        (base + count).initialize(to: member)
                        count += 1
                    }
                    defer { base.deinitialize(count: count) }
                    for unsorted in 1..<count {
                        var position = unsorted
                        while position > 0, sorted[position].key < sorted[position - 1].key {
                            sorted.swapAt(position, position - 1)
                            position -= 1
                        }
                    }
                    for position in 0..<count {
                        if position > 0 { bytes.append(UInt8(ascii: ",")) }
                        Self.appendJSONString(sorted[position].key, to: &bytes)
                        bytes.append(UInt8(ascii: ":"))
                        sorted[position].value.appendCompactJSON(to: &bytes)
                    }
                }
            } else {
                var first = true
                for (key, value) in Self.sortedMembers(members) {
                    if !first { bytes.append(UInt8(ascii: ",")) }
                    first = false
                    Self.appendJSONString(key, to: &bytes)
                    bytes.append(UInt8(ascii: ":"))
                    value.appendCompactJSON(to: &bytes)
                }
            }
            bytes.append(UInt8(ascii: "}"))
        }
    }

    // MARK: - Pretty

    private func appendPrettyJSON(to bytes: inout [UInt8], indent: Int) {
        switch self {
        case .array(let elements) where !elements.isEmpty:
            bytes.append(UInt8(ascii: "["))
            var first = true
            for element in elements {
                if !first { bytes.append(UInt8(ascii: ",")) }
                first = false
                Self.appendNewline(indent: indent + 2, to: &bytes)
                element.appendPrettyJSON(to: &bytes, indent: indent + 2)
            }
            Self.appendNewline(indent: indent, to: &bytes)
            bytes.append(UInt8(ascii: "]"))
        case .object(let members) where !members.isEmpty:
            bytes.append(UInt8(ascii: "{"))
            var first = true
            for (key, value) in Self.sortedMembers(members) {
                if !first { bytes.append(UInt8(ascii: ",")) }
                first = false
                Self.appendNewline(indent: indent + 2, to: &bytes)
                Self.appendJSONString(key, to: &bytes)
                bytes.append(UInt8(ascii: ":"))
                bytes.append(UInt8(ascii: " "))
                value.appendPrettyJSON(to: &bytes, indent: indent + 2)
            }
            Self.appendNewline(indent: indent, to: &bytes)
            bytes.append(UInt8(ascii: "}"))
        default:
            appendCompactJSON(to: &bytes)
        }
    }

    private static func appendNewline(indent: Int, to bytes: inout [UInt8]) {
        bytes.append(0x0A)
        bytes.append(contentsOf: repeatElement(UInt8(ascii: " "), count: indent))
    }

    // MARK: - Scalars

    /// Members in a stable order: String's `<`, which matches UTF-8 byte order for the NFC keys seen in practice.
    private static func sortedMembers(_ members: [String: JSONValue]) -> [(key: String, value: JSONValue)] {
        members.sorted { $0.key < $1.key }
    }

    /// Appends a literal's bytes: a `StaticString` is copied in one go, where a `String`'s `utf8`
    /// view goes through the generic append (perf: 3% of a `burst` stream's gateway time).
    static func appendASCII(_ text: StaticString, to bytes: inout [UInt8]) {
        text.withUTF8Buffer { bytes.append(contentsOf: $0) }
    }

    /// Writes decimal digits without going through `String`, since integers are frequent in events.
    static func appendInteger(_ value: Int, to bytes: inout [UInt8]) {
        ByteWriter.append(capacity: ByteWriter.integerBytes, to: &bytes) { $0.writeInteger(value) }
    }

    /// Shortest round-trip form (`1.5`, `3.0`, `1e-05`); JSON has no NaN or infinity, so those become `null`.
    private static func appendDouble(_ value: Double, to bytes: inout [UInt8]) {
        guard value.isFinite else {
            appendASCII("null", to: &bytes)
            return
        }
        bytes.append(contentsOf: value.description.utf8)
    }

    // MARK: - Strings

    /// A short string is written through a stack buffer in one append; a long one in runs
    /// copied straight from it, without a second copy.
    private static func appendEscaped(_ utf8: UnsafeBufferPointer<UInt8>, to bytes: inout [UInt8]) {
        let bound = ByteWriter.jsonStringBytes(count: utf8.count)
        if bound <= stackStringBytes {
            ByteWriter.append(capacity: bound, to: &bytes) { $0.writeJSONString(utf8) }
            return
        }
        bytes.append(UInt8(ascii: "\""))
        var runStart = 0
        var position = 0
        while let (at, length) = nextEscape(in: utf8, from: position) {
            bytes.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[runStart..<at]))
            if length == 3 {
                appendASCII(utf8[at + 2] == 0xA8 ? "\\u2028" : "\\u2029", to: &bytes)
            } else {
                ByteWriter.append(capacity: 6, to: &bytes) { $0.writeEscape(of: utf8[at]) }
            }
            position = at + length
            runStart = position
        }
        bytes.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[runStart...]))
        bytes.append(UInt8(ascii: "\""))
    }

    /// The largest escaped string written through a stack buffer.
    static let stackStringBytes = 1024

    /// The next byte at or after `position` that JSON text must escape, and how many bytes its
    /// escape replaces: 1, or 3 for U+2028 and U+2029 (which break JavaScript consumers); nil
    /// when there is none. Skips eight bytes at a time where none of them can need it.
    static func nextEscape(in utf8: UnsafeBufferPointer<UInt8>, from position: Int) -> (at: Int, length: Int)? {
        guard let base = utf8.baseAddress else { return nil }
        let count = utf8.count
        let raw = UnsafeRawPointer(base)
        var position = position
        while position < count {
            if position &+ 8 <= count {
                // Skip eight bytes at once unless one is a control byte, '"', '\' or 0xE2 (lead of U+2028/U+2029).
                let word = raw.loadUnaligned(fromByteOffset: position, as: UInt64.self)
                let ones: UInt64 = 0x0101_0101_0101_0101
                let quotes = word ^ (ones &* 0x22)
                let backslashes = word ^ (ones &* 0x5C)
                let separatorLeads = word ^ (ones &* 0xE2)
                let flags =
                    ((word &- ones &* 0x20) & ~word) | ((quotes &- ones) & ~quotes)
                    | ((backslashes &- ones) & ~backslashes) | ((separatorLeads &- ones) & ~separatorLeads)
                if flags & 0x8080_8080_8080_8080 == 0 {
                    position &+= 8
                    continue
                }
            }
            // Something in the next eight bytes may need escaping: look at them one by one.
            let windowEnd = min(position &+ 8, count)
            while position < windowEnd {
                switch base[position] {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), ..<0x20:
                    return (position, 1)
                case 0xE2
                where position &+ 2 < count && base[position &+ 1] == 0x80
                    && (base[position &+ 2] == 0xA8 || base[position &+ 2] == 0xA9):
                    return (position, 3)
                default:
                    position &+= 1
                }
            }
        }
        return nil
    }
}
