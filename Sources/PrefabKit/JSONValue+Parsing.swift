/// Why a JSON document was rejected, and where.
public struct JSONParseError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What was wrong, in words meant for the person who wrote the document.
    public var reason: String
    /// 1-based line of the offending character.
    public var line: Int
    /// 1-based column of the offending character, counted in Unicode scalars.
    public var column: Int
    /// 0-based byte offset of the offending character in the UTF-8 input.
    public var offset: Int
    /// The document nests deeper than ``JSONParseOptions/maxDepth``; it may be well-formed.
    public var isTooDeep = false

    public init(reason: String, line: Int, column: Int, offset: Int) {
        self.reason = reason
        self.line = line
        self.column = column
        self.offset = offset
    }

    public var description: String { "line \(line), column \(column): \(reason)" }
}

/// Knobs for `JSONValue(parsing:options:)`; the defaults are strict RFC 8259.
public struct JSONParseOptions: Sendable {
    /// Accept `//` line comments and `/* */` block comments wherever whitespace may appear,
    /// because people paste manifests that carry them.
    public var allowComments: Bool
    /// The deepest nesting of arrays and objects accepted; bounds work on hostile input.
    public var maxDepth: Int

    public init(allowComments: Bool = false, maxDepth: Int = 256) {
        self.allowComments = allowComments
        self.maxDepth = maxDepth
    }
}

extension JSONValue {
    /// Parses one JSON document from UTF-8 bytes.
    public init(parsing bytes: some Collection<UInt8>, options: JSONParseOptions = .init()) throws(JSONParseError) {
        // Result carries the typed error through the rethrowing buffer accessors.
        let result =
            bytes.withContiguousStorageIfAvailable { buffer in
                Result { () throws(JSONParseError) in try JSONValue.parse(buffer, options: options) }
            }
            ?? Array(bytes).withUnsafeBufferPointer { buffer in
                Result { () throws(JSONParseError) in try JSONValue.parse(buffer, options: options) }
            }
        self = try result.get()
    }

    /// Parses one JSON document from text.
    public init(parsing text: String, options: JSONParseOptions = .init()) throws(JSONParseError) {
        var text = text
        let result = text.withUTF8 { buffer in
            Result { () throws(JSONParseError) in try JSONValue.parse(buffer, options: options) }
        }
        self = try result.get()
    }

    private static func parse(
        _ buffer: UnsafeBufferPointer<UInt8>,
        options: JSONParseOptions
    ) throws(JSONParseError) -> JSONValue {
        var parser = JSONParser(input: buffer, options: options)
        return try parser.parseDocument()
    }
}

/// A single-pass recursive-descent parser made iterative, so nesting depth costs heap, not stack.
private struct JSONParser {
    /// An array or object still being filled while its children are parsed.
    private enum OpenContainer {
        case array([JSONValue])
        case object([String: JSONValue], pendingKey: String)
    }

    private let input: UnsafeBufferPointer<UInt8>
    private let end: Int
    private let allowComments: Bool
    private let maxDepth: Int
    private var index = 0
    /// Length of a skipped byte order mark, so columns on line 1 ignore it.
    private var bomLength = 0
    /// Reused buffer for strings with escapes, to avoid an allocation per string.
    private var scratch: [UInt8] = []

    init(input: UnsafeBufferPointer<UInt8>, options: JSONParseOptions) {
        self.input = input
        self.end = input.count
        self.allowComments = options.allowComments
        self.maxDepth = options.maxDepth
    }

    mutating func parseDocument() throws(JSONParseError) -> JSONValue {
        if end >= 3, input[0] == 0xEF, input[1] == 0xBB, input[2] == 0xBF {
            index = 3
            bomLength = 3
        }
        try skipWhitespace()
        guard index < end else { throw error("empty input: expected a JSON value", at: index) }
        let value = try parseValue()
        try skipWhitespace()
        guard index == end else {
            throw error("unexpected \(try describeCharacter(at: index)) after the JSON value", at: index)
        }
        return value
    }

    // MARK: - Values

    /// Room for a few levels at the first container: grown one by one, the stack of a body like
    /// `{"inputs": {...}}` was allocated twice.
    private static func makeRoom(in stack: inout [OpenContainer]) {
        if stack.capacity == 0 { stack.reserveCapacity(8) }
    }

    /// Parses the value starting at `index` (whitespace already skipped) including everything nested in it.
    private mutating func parseValue() throws(JSONParseError) -> JSONValue {
        var stack: [OpenContainer] = []
        var value: JSONValue
        parsing: while true {
            guard index < end else { throw error("unexpected end of input, expected a JSON value", at: index) }
            switch input[index] {
            case UInt8(ascii: "{"):
                guard stack.count < maxDepth else { throw tooDeep() }
                index += 1
                try skipWhitespace()
                if index < end, input[index] == UInt8(ascii: "}") {
                    index += 1
                    value = .object([:])
                } else {
                    let key = try parseMemberKey()
                    Self.makeRoom(in: &stack)
                    stack.append(.object([:], pendingKey: key))
                    try skipWhitespace()
                    continue parsing
                }
            case UInt8(ascii: "["):
                guard stack.count < maxDepth else { throw tooDeep() }
                index += 1
                try skipWhitespace()
                if index < end, input[index] == UInt8(ascii: "]") {
                    index += 1
                    value = .array([])
                } else {
                    Self.makeRoom(in: &stack)
                    stack.append(.array([]))
                    continue parsing
                }
            case UInt8(ascii: "\""):
                index += 1
                value = .string(try parseString())
            case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
                value = try parseNumber()
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"):
                value = try parseWord()
            case UInt8(ascii: "'"):
                throw error("strings must be enclosed in double quotes", at: index)
            case UInt8(ascii: "]"), UInt8(ascii: "}"), UInt8(ascii: ","):
                throw error("expected a JSON value, found \(try describeCharacter(at: index))", at: index)
            default:
                throw error("unexpected \(try describeCharacter(at: index)), expected a JSON value", at: index)
            }

            // Hand the finished value to its container; close every container that ends right here.
            while let container = stack.popLast() {
                try skipWhitespace()
                // `consume` hands the container over uniquely: appending to a copy of its elements
                // would make parsing quadratic in the length of an array or object.
                switch consume container {
                case .array(var elements):
                    elements.append(value)
                    guard index < end else {
                        throw error("unexpected end of input, expected ',' or ']' after array element", at: index)
                    }
                    if input[index] == UInt8(ascii: ",") {
                        let comma = index
                        index += 1
                        try skipWhitespace()
                        if index < end, input[index] == UInt8(ascii: "]") {
                            throw error("trailing comma in array is not allowed", at: comma)
                        }
                        stack.append(.array(elements))
                        continue parsing
                    } else if input[index] == UInt8(ascii: "]") {
                        index += 1
                        value = .array(elements)
                    } else {
                        throw error("expected ',' or ']' after array element", at: index)
                    }
                case .object(var members, let key):
                    members[key] = value
                    guard index < end else {
                        throw error("unexpected end of input, expected ',' or '}' after object member", at: index)
                    }
                    if input[index] == UInt8(ascii: ",") {
                        let comma = index
                        index += 1
                        try skipWhitespace()
                        if index < end, input[index] == UInt8(ascii: "}") {
                            throw error("trailing comma in object is not allowed", at: comma)
                        }
                        let nextKey = try parseMemberKey()
                        stack.append(.object(members, pendingKey: nextKey))
                        try skipWhitespace()
                        continue parsing
                    } else if input[index] == UInt8(ascii: "}") {
                        index += 1
                        value = .object(members)
                    } else {
                        throw error("expected ',' or '}' after object member", at: index)
                    }
                }
            }
            return value
        }
    }

    /// Parses `"key" :` and leaves `index` after the colon.
    private mutating func parseMemberKey() throws(JSONParseError) -> String {
        guard index < end else { throw error("unexpected end of input, expected a string key", at: index) }
        guard input[index] == UInt8(ascii: "\"") else {
            throw error("expected a string key in double quotes, found \(try describeCharacter(at: index))", at: index)
        }
        index += 1
        let key = try parseString()
        try skipWhitespace()
        guard index < end, input[index] == UInt8(ascii: ":") else {
            throw error("expected ':' after object key", at: index)
        }
        index += 1
        return key
    }

    /// Parses `true`, `false` or `null`, and names the usual mistakes (NaN, Infinity, typos).
    private mutating func parseWord() throws(JSONParseError) -> JSONValue {
        let start = index
        while index < end, Self.isWordByte(input[index]) { index += 1 }
        let length = index - start
        if length == 4, matches("true", at: start) { return .bool(true) }
        if length == 5, matches("false", at: start) { return .bool(false) }
        if length == 4, matches("null", at: start) { return .null }
        let word = String(decoding: UnsafeBufferPointer(rebasing: input[start..<index]), as: UTF8.self)
        switch word.lowercased() {
        case "nan", "infinity", "inf":
            throw error("NaN and Infinity are not valid JSON numbers", at: start)
        default:
            let shown = word.count > 32 ? String(word.prefix(32)) + "…" : word
            throw error("unexpected word '\(shown)', expected a JSON value", at: start)
        }
    }

    private func matches(_ literal: StaticString, at start: Int) -> Bool {
        literal.withUTF8Buffer { expected in
            for offset in 0..<expected.count where input[start + offset] != expected[offset] { return false }
            return true
        }
    }

    private static func isWordByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "_"):
            return true
        default:
            return false
        }
    }

    // MARK: - Numbers

    private mutating func parseNumber() throws(JSONParseError) -> JSONValue {
        let start = index
        let negative = input[index] == UInt8(ascii: "-")
        if negative {
            index += 1
            guard index < end, Self.isDigit(input[index]) else {
                if index < end, input[index] == UInt8(ascii: "I") || input[index] == UInt8(ascii: "i") {
                    throw error("NaN and Infinity are not valid JSON numbers", at: start)
                }
                throw error("expected a digit after '-'", at: index)
            }
        }

        // Accumulate the integer part on the way, so plain integers need no second pass.
        var magnitude: UInt = 0
        var overflowed = false
        if input[index] == UInt8(ascii: "0") {
            index += 1
            if index < end, Self.isDigit(input[index]) {
                throw error("leading zeros are not allowed in numbers", at: start)
            }
        } else {
            while index < end, Self.isDigit(input[index]) {
                let digit = UInt(input[index] &- UInt8(ascii: "0"))
                let (shifted, overflow1) = magnitude.multipliedReportingOverflow(by: 10)
                let (sum, overflow2) = shifted.addingReportingOverflow(digit)
                overflowed = overflowed || overflow1 || overflow2
                magnitude = sum
                index += 1
            }
        }

        var isInteger = true
        if index < end, input[index] == UInt8(ascii: ".") {
            isInteger = false
            index += 1
            guard index < end, Self.isDigit(input[index]) else {
                throw error("expected a digit after the decimal point", at: index)
            }
            while index < end, Self.isDigit(input[index]) { index += 1 }
        }
        if index < end, input[index] | 0x20 == UInt8(ascii: "e") {
            isInteger = false
            index += 1
            if index < end, input[index] == UInt8(ascii: "+") || input[index] == UInt8(ascii: "-") { index += 1 }
            guard index < end, Self.isDigit(input[index]) else {
                throw error("expected a digit in the exponent", at: index)
            }
            while index < end, Self.isDigit(input[index]) { index += 1 }
        }

        if isInteger, !overflowed {
            if !negative, magnitude <= UInt(Int.max) { return .int(Int(magnitude)) }
            // Wrapping negation also yields Int.min, whose magnitude is Int.max + 1.
            if negative, magnitude <= UInt(Int.max) + 1 { return .int(Int(bitPattern: 0 &- magnitude)) }
        }
        // The grammar is already checked, so the standard library's correctly rounded conversion is safe to use.
        let text = String(decoding: UnsafeBufferPointer(rebasing: input[start..<index]), as: UTF8.self)
        guard let number = Double(text), number.isFinite else {
            let shown = text.count > 40 ? String(text.prefix(40)) + "…" : text
            throw error("number \(shown) is too large to represent", at: start)
        }
        return .double(number)
    }

    private static func isDigit(_ byte: UInt8) -> Bool {
        byte &- UInt8(ascii: "0") < 10
    }

    // MARK: - Strings

    /// Parses string contents after the opening quote and consumes the closing quote.
    private mutating func parseString() throws(JSONParseError) -> String {
        let openingQuote = index - 1
        let start = index
        var runStart = index
        var usesScratch = false
        while true {
            index = scanPlainBytes(from: index)
            guard index < end else { throw error("unterminated string", at: openingQuote) }
            let byte = input[index]
            if byte == UInt8(ascii: "\"") {
                let result: String
                if usesScratch {
                    scratch.append(contentsOf: UnsafeBufferPointer(rebasing: input[runStart..<index]))
                    result = String(decoding: scratch, as: UTF8.self)
                } else {
                    result = String(decoding: UnsafeBufferPointer(rebasing: input[start..<index]), as: UTF8.self)
                }
                index += 1
                return result
            } else if byte == UInt8(ascii: "\\") {
                if !usesScratch {
                    scratch.removeAll(keepingCapacity: true)
                    usesScratch = true
                }
                scratch.append(contentsOf: UnsafeBufferPointer(rebasing: input[runStart..<index]))
                try parseEscape()
                runStart = index
            } else if byte < 0x20 {
                throw error(
                    "unescaped control character \(Self.scalarName(UInt32(byte))) in string; use an escape such as \\n",
                    at: index
                )
            } else {
                index += try utf8SequenceLength(at: index)
            }
        }
    }

    /// Returns the first index at or after `position` holding a quote, backslash, control or non-ASCII byte.
    private func scanPlainBytes(from position: Int) -> Int {
        var position = position
        if let base = input.baseAddress {
            // Eight bytes at a time: most string content needs no attention at all.
            let raw = UnsafeRawPointer(base)
            while position &+ 8 <= end {
                let word = raw.loadUnaligned(fromByteOffset: position, as: UInt64.self)
                let ones: UInt64 = 0x0101_0101_0101_0101
                let quotes = word ^ (ones &* 0x22)
                let backslashes = word ^ (ones &* 0x5C)
                let flags =
                    ((word &- ones &* 0x20) & ~word) | ((quotes &- ones) & ~quotes)
                    | ((backslashes &- ones) & ~backslashes) | word
                if flags & 0x8080_8080_8080_8080 != 0 { break }
                position &+= 8
            }
        }
        while position < end {
            let byte = input[position]
            if byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") || byte < 0x20 || byte >= 0x80 { break }
            position += 1
        }
        return position
    }

    /// Decodes the escape at `index` into `scratch` and moves past it.
    private mutating func parseEscape() throws(JSONParseError) {
        let escapeStart = index
        index += 1
        guard index < end else { throw error("unterminated string", at: escapeStart) }
        let letter = input[index]
        index += 1
        switch letter {
        case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): scratch.append(letter)
        case UInt8(ascii: "b"): scratch.append(0x08)
        case UInt8(ascii: "f"): scratch.append(0x0C)
        case UInt8(ascii: "n"): scratch.append(0x0A)
        case UInt8(ascii: "r"): scratch.append(0x0D)
        case UInt8(ascii: "t"): scratch.append(0x09)
        case UInt8(ascii: "u"):
            let unit = try parseHex4(escapeStart: escapeStart)
            var scalar = unit
            if (0xDC00...0xDFFF).contains(unit) {
                throw error("unpaired UTF-16 surrogate \\u\(Self.hex4(unit)) in string", at: escapeStart)
            } else if (0xD800...0xDBFF).contains(unit) {
                let lowStart = index
                guard index + 1 < end, input[index] == UInt8(ascii: "\\"), input[index + 1] == UInt8(ascii: "u")
                else {
                    throw error(
                        "unpaired UTF-16 surrogate \\u\(Self.hex4(unit)) in string; "
                            + "a high surrogate must be followed by a \\u escape for a low surrogate",
                        at: escapeStart
                    )
                }
                index += 2
                let low = try parseHex4(escapeStart: lowStart)
                guard (0xDC00...0xDFFF).contains(low) else {
                    throw error(
                        "unpaired UTF-16 surrogate \\u\(Self.hex4(unit)) in string; "
                            + "\\u\(Self.hex4(low)) is not a low surrogate",
                        at: escapeStart
                    )
                }
                scalar = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00)
            }
            appendUTF8(scalar)
        default:
            let shown =
                (0x21..<0x7F).contains(letter)
                ? "'\\\(Character(Unicode.Scalar(letter)))'" : "'\\' followed by byte 0x\(Self.hex2(letter))"
            throw error("invalid escape sequence \(shown) in string", at: escapeStart)
        }
    }

    /// Reads the four hex digits of a `\u` escape that begins at `escapeStart`.
    private mutating func parseHex4(escapeStart: Int) throws(JSONParseError) -> UInt32 {
        var unit: UInt32 = 0
        for _ in 0..<4 {
            guard index < end else { throw error("invalid \\u escape: expected 4 hex digits", at: escapeStart) }
            let byte = input[index]
            let digit: UInt8
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
            default: throw error("invalid \\u escape: expected 4 hex digits", at: escapeStart)
            }
            unit = unit << 4 | UInt32(digit)
            index += 1
        }
        return unit
    }

    private mutating func appendUTF8(_ scalar: UInt32) {
        switch scalar {
        case ..<0x80:
            scratch.append(UInt8(scalar))
        case ..<0x800:
            scratch.append(UInt8(0xC0 | scalar >> 6))
            scratch.append(UInt8(0x80 | scalar & 0x3F))
        case ..<0x10000:
            scratch.append(UInt8(0xE0 | scalar >> 12))
            scratch.append(UInt8(0x80 | scalar >> 6 & 0x3F))
            scratch.append(UInt8(0x80 | scalar & 0x3F))
        default:
            scratch.append(UInt8(0xF0 | scalar >> 18))
            scratch.append(UInt8(0x80 | scalar >> 12 & 0x3F))
            scratch.append(UInt8(0x80 | scalar >> 6 & 0x3F))
            scratch.append(UInt8(0x80 | scalar & 0x3F))
        }
    }

    // MARK: - UTF-8

    /// The length of the well-formed UTF-8 sequence at `position` (Unicode table 3-7), or an error naming the bad byte.
    private func utf8SequenceLength(at position: Int) throws(JSONParseError) -> Int {
        let lead = input[position]
        if lead < 0x80 { return 1 }
        var low: UInt8 = 0x80
        var high: UInt8 = 0xBF
        let length: Int
        switch lead {
        case 0xC2...0xDF: length = 2
        case 0xE0: length = 3; low = 0xA0
        case 0xE1...0xEC, 0xEE...0xEF: length = 3
        case 0xED: length = 3; high = 0x9F
        case 0xF0: length = 4; low = 0x90
        case 0xF1...0xF3: length = 4
        case 0xF4: length = 4; high = 0x8F
        default:
            throw error("invalid UTF-8: byte 0x\(Self.hex2(lead)) cannot start a character", at: position)
        }
        guard position + length <= end else { throw malformedUTF8(at: position) }
        let second = input[position + 1]
        guard second >= low, second <= high else { throw malformedUTF8(at: position) }
        for offset in 2..<length where input[position + offset] & 0xC0 != 0x80 { throw malformedUTF8(at: position) }
        return length
    }

    private func malformedUTF8(at position: Int) -> JSONParseError {
        error(
            "invalid UTF-8: truncated or malformed sequence starting with byte 0x\(Self.hex2(input[position]))",
            at: position
        )
    }

    // MARK: - Whitespace and comments

    private mutating func skipWhitespace() throws(JSONParseError) {
        while index < end {
            switch input[index] {
            case 0x20, 0x0A, 0x0D, 0x09:
                index += 1
            case UInt8(ascii: "/"):
                guard try skipComment() else { return }
            default:
                return
            }
        }
    }

    /// Skips the comment at `index`; returns false when the `/` does not start one.
    private mutating func skipComment() throws(JSONParseError) -> Bool {
        guard index + 1 < end else { return false }
        let kind = input[index + 1]
        guard kind == UInt8(ascii: "/") || kind == UInt8(ascii: "*") else { return false }
        guard allowComments else {
            throw error("comments are not allowed in JSON (allowComments is off)", at: index)
        }
        let start = index
        index += 2
        if kind == UInt8(ascii: "/") {
            while index < end, input[index] != 0x0A { index += try utf8SequenceLength(at: index) }
            return true
        }
        while index < end {
            if input[index] == UInt8(ascii: "*"), index + 1 < end, input[index + 1] == UInt8(ascii: "/") {
                index += 2
                return true
            }
            index += try utf8SequenceLength(at: index)
        }
        throw error("unterminated /* comment", at: start)
    }

    // MARK: - Errors

    /// Builds an error for the byte at `offset`; line and column are only worked out here, off the fast path.
    private func tooDeep() -> JSONParseError {
        var error = error("nesting deeper than \(maxDepth) levels", at: index)
        error.isTooDeep = true
        return error
    }

    private func error(_ reason: String, at offset: Int) -> JSONParseError {
        var line = 1
        var lineStart = bomLength
        for position in 0..<offset where input[position] == 0x0A {
            line += 1
            lineStart = position + 1
        }
        var column = 1
        if lineStart < offset {
            // Count scalars by skipping UTF-8 continuation bytes.
            for position in lineStart..<offset where input[position] & 0xC0 != 0x80 { column += 1 }
        }
        return JSONParseError(reason: reason, line: line, column: column, offset: offset)
    }

    /// Names the character at `position` for a message, or reports it as invalid UTF-8.
    private func describeCharacter(at position: Int) throws(JSONParseError) -> String {
        let byte = input[position]
        if byte >= 0x80 {
            let length = try utf8SequenceLength(at: position)
            let scalars = UnsafeBufferPointer(rebasing: input[position..<(position + length)])
            let text = String(decoding: scalars, as: UTF8.self)
            return "character '\(text)'"
        }
        if byte < 0x20 || byte == 0x7F { return "character \(Self.scalarName(UInt32(byte)))" }
        return "character '\(Character(Unicode.Scalar(byte)))'"
    }

    private static func scalarName(_ value: UInt32) -> String { "U+" + hex4(value) }

    private static func hex4(_ value: UInt32) -> String {
        let digits = String(value, radix: 16, uppercase: true)
        return String(repeating: "0", count: max(0, 4 - digits.count)) + digits
    }

    private static func hex2(_ value: UInt8) -> String {
        let digits = String(value, radix: 16, uppercase: true)
        return digits.count < 2 ? "0" + digits : digits
    }
}
