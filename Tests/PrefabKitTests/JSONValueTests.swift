import Foundation
import PrefabKit
import Testing

/// Parses `text` and returns the error it must produce.
private func parseError(_ text: String, options: JSONParseOptions = .init()) -> JSONParseError? {
    do {
        _ = try JSONValue(parsing: text, options: options)
        return nil
    } catch {
        return error
    }
}

private func parseError(bytes: [UInt8], options: JSONParseOptions = .init()) -> JSONParseError? {
    do {
        _ = try JSONValue(parsing: bytes, options: options)
        return nil
    } catch {
        return error
    }
}

/// A deliberately naive escaper, one scalar at a time, to check the bulk-copying one against.
private func referenceEscaped(_ string: String) -> String {
    var out = "\""
    for scalar in string.unicodeScalars {
        switch scalar {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        case "\u{08}": out += "\\b"
        case "\u{0C}": out += "\\f"
        case "\u{2028}": out += "\\u2028"
        case "\u{2029}": out += "\\u2029"
        case _ where scalar.value < 0x20:
            let hex = String(scalar.value, radix: 16)
            out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
        default: out.unicodeScalars.append(scalar)
        }
    }
    return out + "\""
}

private func nested(_ depth: Int) -> String {
    String(repeating: "[", count: depth) + String(repeating: "]", count: depth)
}

@Suite("JSONValue parsing")
struct JSONValueParsingTests {
    @Test(
        "scalars and containers parse to the expected case",
        arguments: [
            ("null", JSONValue.null),
            ("true", .bool(true)),
            ("false", .bool(false)),
            ("0", .int(0)),
            ("-0", .int(0)),
            ("42", .int(42)),
            ("-17", .int(-17)),
            ("3.0", .double(3.0)),
            ("1.5", .double(1.5)),
            ("-2.25e2", .double(-225)),
            ("1e2", .double(100)),
            ("1E+2", .double(100)),
            ("5e-1", .double(0.5)),
            ("1e-400", .double(0)),
            ("\"\"", .string("")),
            ("\"héllo 😀\"", .string("héllo 😀")),
            ("[]", .array([])),
            ("{}", .object([:])),
            (" [1, \"a\", null] ", .array([1, "a", nil])),
            ("{\"a\": {\"b\": [true, false]}}", .object(["a": .object(["b": .array([true, false])])])),
            ("\t\r\n 7 \n", .int(7)),
        ] as [(String, JSONValue)]
    )
    func parsesValue(text: String, expected: JSONValue) throws {
        let value = try JSONValue(parsing: text)
        #expect(value == expected)
    }

    @Test("integers that fit in Int stay integers; larger ones become doubles")
    func integerRange() throws {
        #expect(try JSONValue(parsing: "9223372036854775807") == .int(Int.max))
        #expect(try JSONValue(parsing: "-9223372036854775808") == .int(Int.min))
        #expect(try JSONValue(parsing: "9223372036854775808") == .double(9_223_372_036_854_775_808.0))
        #expect(try JSONValue(parsing: "-9223372036854775809") == .double(-9_223_372_036_854_775_809.0))
        let huge = try JSONValue(parsing: "123456789012345678901234567890")
        #expect(huge == .double(1.2345678901234568e29))
        #expect(huge.typeName == "number")
    }

    @Test(
        "escapes decode",
        arguments: [
            (#""\"\\\/\b\f\n\r\t""#, "\"\\/\u{08}\u{0C}\n\r\t"),
            (#""\u0041\u00e9\u20AC""#, "Aé€"),
            (#""\uD83D\uDE00""#, "😀"),
            (#""a\ud834\udd1eb""#, "a𝄞b"),
            (#""\u0000""#, "\u{0}"),
            (#""plain then \n escape""#, "plain then \n escape"),
            (
                #""long run of plain text before an escape\tand after it""#,
                "long run of plain text before an escape\tand after it"
            ),
        ]
    )
    func escapes(text: String, expected: String) throws {
        #expect(try JSONValue(parsing: text) == .string(expected))
    }

    @Test("duplicate keys: the last one wins")
    func duplicateKeys() throws {
        #expect(try JSONValue(parsing: #"{"a": 1, "b": 2, "a": 3}"#) == ["a": 3, "b": 2])
    }

    @Test("a leading byte order mark is skipped")
    func byteOrderMark() throws {
        #expect(try JSONValue(parsing: [0xEF, 0xBB, 0xBF] + Array("[1]".utf8)) == [1])
        let error = try #require(parseError(bytes: [0xEF, 0xBB, 0xBF] + Array("[1,]".utf8)))
        #expect(error.column == 3)
    }

    @Test("non-contiguous byte collections parse too")
    func nonContiguousCollection() throws {
        let bytes = Array(#"{"k": [1, 2.5, "x"]}"#.utf8).lazy.map { $0 }
        #expect(try JSONValue(parsing: bytes) == ["k": [1, 2.5, "x"]])
    }

    @Test("long strings with non-ASCII text cross the eight-byte fast path correctly")
    func longStrings() throws {
        for length in 0..<40 {
            let base = String(repeating: "ab", count: length / 2) + (length % 2 == 1 ? "c" : "")
            for insert in ["é", "😀", "\\n", "\\u00e9"] {
                let text = "\"" + base + insert + base + "\""
                let expectedInsert = insert == "\\n" ? "\n" : insert == "\\u00e9" ? "é" : insert
                #expect(try JSONValue(parsing: text) == .string(base + expectedInsert + base))
            }
        }
    }
}

/// An input that must be refused, and a fragment of the reason it must give.
struct Rejection: Sendable, CustomTestStringConvertible {
    var bytes: [UInt8]
    var reason: String
    var testDescription: String { String(decoding: bytes, as: UTF8.self).debugDescription }

    init(_ text: String, _ reason: String) {
        self.bytes = Array(text.utf8)
        self.reason = reason
    }

    init(bytes: [UInt8], _ reason: String) {
        self.bytes = bytes
        self.reason = reason
    }
}

@Suite("JSONValue rejections")
struct JSONValueRejectionTests {
    @Test(
        "strict RFC 8259 rejections name the problem",
        arguments: [
            Rejection("", "empty input"),
            Rejection("  \n ", "empty input"),
            Rejection("[1, 2,]", "trailing comma in array"),
            Rejection(#"{"a": 1,}"#, "trailing comma in object"),
            Rejection("01", "leading zeros"),
            Rejection("-012", "leading zeros"),
            Rejection("[00]", "leading zeros"),
            Rejection("NaN", "NaN and Infinity"),
            Rejection("Infinity", "NaN and Infinity"),
            Rejection("-Infinity", "NaN and Infinity"),
            Rejection("1e999", "too large"),
            Rejection("-1e400", "too large"),
            Rejection("1.", "digit after the decimal point"),
            Rejection("1e", "digit in the exponent"),
            Rejection("1e+", "digit in the exponent"),
            Rejection("-", "digit after '-'"),
            Rejection(".5", "unexpected character '.'"),
            Rejection("+1", "unexpected character '+'"),
            Rejection("[1] x", "after the JSON value"),
            Rejection("{} {}", "after the JSON value"),
            Rejection("1 2", "after the JSON value"),
            Rejection("tru", "unexpected word 'tru'"),
            Rejection("nulls", "unexpected word 'nulls'"),
            Rejection("'a'", "double quotes"),
            Rejection("{a: 1}", "string key in double quotes"),
            Rejection(#"{"a" 1}"#, "expected ':'"),
            Rejection(#"{"a": 1 "b": 2}"#, "expected ',' or '}' after object member"),
            Rejection("[1 2]", "expected ',' or ']' after array element"),
            Rejection("[1,,2]", "expected a JSON value"),
            Rejection("[", "unexpected end of input"),
            Rejection(#"{"a":"#, "unexpected end of input"),
            Rejection("[1", "unexpected end of input"),
            Rejection(#""abc"#, "unterminated string"),
            Rejection("\"a\nb\"", "unescaped control character U+000A"),
            Rejection("\"a\tb\"", "unescaped control character U+0009"),
            Rejection("\"\u{1}\"", "unescaped control character U+0001"),
            Rejection(#""\x""#, #"invalid escape sequence '\x'"#),
            Rejection(#""\'""#, #"invalid escape sequence '\''"#),
            Rejection(#""\u12""#, "expected 4 hex digits"),
            Rejection(#""\uZZZZ""#, "expected 4 hex digits"),
            Rejection(#""\uD800""#, #"unpaired UTF-16 surrogate \uD800"#),
            Rejection(#""\uD800x""#, #"unpaired UTF-16 surrogate \uD800"#),
            Rejection(#""\uD800\u0041""#, "not a low surrogate"),
            Rejection(#""\uDC00""#, #"unpaired UTF-16 surrogate \uDC00"#),
            Rejection(#""\uDE00\uD83D""#, "unpaired UTF-16 surrogate"),
            Rejection("// c\n1", "comments are not allowed"),
            Rejection("[1 /* c */]", "comments are not allowed"),
            Rejection("[1]/", "unexpected character '/'"),
            Rejection(bytes: [0x22, 0xFF, 0x22], "invalid UTF-8: byte 0xFF"),
            Rejection(bytes: [0x22, 0x80, 0x22], "invalid UTF-8: byte 0x80"),
            Rejection(bytes: [0x22, 0xC0, 0x80, 0x22], "invalid UTF-8: byte 0xC0"),
            Rejection(bytes: [0x22, 0xC3, 0x22], "malformed sequence starting with byte 0xC3"),
            Rejection(bytes: [0x22, 0xE0, 0x80, 0x80, 0x22], "byte 0xE0"),
            Rejection(bytes: [0x22, 0xED, 0xA0, 0x80, 0x22], "byte 0xED"),
            Rejection(bytes: [0x22, 0xF4, 0x90, 0x80, 0x80, 0x22], "byte 0xF4"),
            Rejection(bytes: [0x22, 0xE2, 0x82], "byte 0xE2"),
            Rejection(bytes: [0xFE], "invalid UTF-8: byte 0xFE"),
            Rejection(bytes: [0x31, 0x20, 0xC3, 0x28], "invalid UTF-8"),
            Rejection(bytes: Array("\"abcdefghijklmnop".utf8) + [0xFF, 0x22], "invalid UTF-8"),
        ]
    )
    func rejects(rejection: Rejection) throws {
        let error = try #require(parseError(bytes: rejection.bytes))
        #expect(error.reason.contains(rejection.reason), "\(error.reason)")
    }

    @Test("errors point at the offending line and column")
    func lineAndColumn() throws {
        let missingComma = try #require(parseError("{\n  \"a\": 1\n  \"b\": 2\n}"))
        #expect(missingComma.description == "line 3, column 3: expected ',' or '}' after object member")
        #expect(missingComma.offset == 13)

        // Columns count characters, not bytes: "é" is two bytes but one column.
        let afterAccent = try #require(parseError("[\"é\", x]"))
        #expect(afterAccent.line == 1)
        #expect(afterAccent.column == 7)
        #expect(afterAccent.offset == 7)

        let trailingComma = try #require(parseError("[\n  1,\n  2,\n]"))
        #expect((trailingComma.line, trailingComma.column) == (3, 4))
        #expect(trailingComma.reason == "trailing comma in array is not allowed")

        let control = try #require(parseError("{\"a\": \"x\ty\"}"))
        #expect((control.line, control.column, control.offset) == (1, 9, 8))

        let surrogate = try #require(parseError("[\n\"ab\\uD800\"]"))
        #expect((surrogate.line, surrogate.column) == (2, 4))

        let badByte = try #require(parseError(bytes: Array("[\"ok\",\n \"".utf8) + [0xFF, 0x22, 0x5D]))
        #expect((badByte.line, badByte.column) == (2, 3))

        let garbage = try #require(parseError("{}\n\n   ]"))
        #expect(garbage.description == "line 3, column 4: unexpected character ']' after the JSON value")
    }

    @Test("errors equal by value")
    func errorEquality() {
        #expect(parseError("[1,]") == parseError("[1,]"))
        #expect(parseError("[1,]") != parseError("[10,]"))
    }
}

@Suite("JSONValue comments and depth")
struct JSONValueOptionsTests {
    static let commented = """
        // A manifest someone pasted with comments.
        {
            "name": "demo", // trailing comment
            /* block
               comment */ "tags": ["a", /* inline */ "b"],
            "note": "not // a comment /* either */"
        }
        // done
        """

    @Test("comments are refused by default and tolerated when allowed")
    func comments() throws {
        let refused = try #require(parseError(Self.commented))
        #expect(refused.reason.contains("comments are not allowed in JSON"))
        #expect((refused.line, refused.column) == (1, 1))

        let value = try JSONValue(parsing: Self.commented, options: .init(allowComments: true))
        #expect(value == ["name": "demo", "tags": ["a", "b"], "note": "not // a comment /* either */"])
    }

    @Test("comment edge cases")
    func commentEdgeCases() throws {
        let allow = JSONParseOptions(allowComments: true)
        #expect(try JSONValue(parsing: "1// no newline at end", options: allow) == 1)
        #expect(try JSONValue(parsing: "/**/[/***/]/* ** */", options: allow) == [])
        #expect(try JSONValue(parsing: "/* ünïcödé */ true", options: allow) == true)
        #expect(parseError("/* never closed", options: allow)?.reason == "unterminated /* comment")
        #expect(parseError("// only a comment", options: allow)?.reason.contains("empty input") == true)
        #expect(parseError("[1 / 2]", options: allow)?.reason == "expected ',' or ']' after array element")
        #expect(parseError(bytes: Array("// ".utf8) + [0xFF] + Array("\n1".utf8), options: allow) != nil)
    }

    @Test("nesting up to maxDepth is accepted, one more is refused")
    func maxDepth() throws {
        #expect(try JSONValue(parsing: nested(256)) != .null)
        let error = try #require(parseError(nested(257)))
        #expect(error.reason == "nesting deeper than 256 levels")
        #expect(error.offset == 256)

        let shallow = JSONParseOptions(maxDepth: 2)
        #expect(try JSONValue(parsing: #"{"a": [1]}"#, options: shallow) == ["a": [1]])
        #expect(parseError(#"{"a": [{}]}"#, options: shallow)?.reason == "nesting deeper than 2 levels")
        #expect(parseError("[[[]]]", options: shallow)?.reason == "nesting deeper than 2 levels")
        #expect(try JSONValue(parsing: "1", options: .init(maxDepth: 0)) == 1)
    }

    @Test("the parser keeps open containers on the heap, not the call stack")
    func veryDeepNesting() throws {
        // The error comes at the innermost level, so no deep JSONValue is built: destroying one recurses.
        let text = String(repeating: "[", count: 200_000) + "1,]"
        let error = try #require(parseError(text, options: .init(maxDepth: 1_000_000)))
        #expect(error.reason == "trailing comma in array is not allowed")
        #expect(error.offset == 200_001)
    }
}

@Suite("JSONValue encoding")
struct JSONValueEncodingTests {
    @Test(
        "scalars encode to their JSON text",
        arguments: [
            (JSONValue.null, "null"),
            (.bool(true), "true"),
            (.bool(false), "false"),
            (.int(0), "0"),
            (.int(7), "7"),
            (.int(-7), "-7"),
            (.int(10), "10"),
            (.int(-1234567890), "-1234567890"),
            (.int(Int.max), "9223372036854775807"),
            (.int(Int.min), "-9223372036854775808"),
            (.double(1.5), "1.5"),
            (.double(3.0), "3.0"),
            (.double(-0.0), "-0.0"),
            (.double(0.00001), "1e-05"),
            (.double(1e300), "1e+300"),
            (.double(0.1), "0.1"),
            (.double(.nan), "null"),
            (.double(.infinity), "null"),
            (.double(-.infinity), "null"),
            (.string("hi"), "\"hi\""),
            (.array([]), "[]"),
            (.object([:]), "{}"),
            ([1, "a", nil, [true]], #"[1,"a",null,[true]]"#),
        ] as [(JSONValue, String)]
    )
    func encodesScalar(value: JSONValue, expected: String) {
        #expect(value.jsonString == expected)
    }

    @Test(
        "strings are escaped per RFC 8259",
        arguments: [
            ("quote \" backslash \\ slash /", #""quote \" backslash \\ slash /""#),
            ("\n\r\t\u{08}\u{0C}", #""\n\r\t\b\f""#),
            ("\u{0}\u{1}\u{1F}\u{7F}", #""\u0000\u0001\u001f\#u{7F}""#),
            ("line\u{2028}para\u{2029}end", #""line\u2028para\u2029end""#),
            ("é€😀 \u{2027}\u{202A}", "\"é€😀 \u{2027}\u{202A}\""),
            ("", #""""#),
        ]
    )
    func escapesStrings(string: String, expected: String) {
        #expect(JSONValue.string(string).jsonString == expected)
    }

    /// Short strings are escaped through a stack buffer a byte at a time, long ones (over 170
    /// bytes: six bytes an escape, 1,024 in all) in runs found eight bytes at a time: both ways,
    /// and across the length where one gives way to the other.
    @Test("both escapers agree with a naive one at every position and length")
    func escapingMatchesReference() {
        let specials = ["\"", "\\", "\n", "\u{1}", "\u{1F}", "\u{2028}", "\u{2029}", "é", "😀", "\u{E000}", "€"]
        for length in Array(0..<24) + Array(164..<176) + [300] {
            let positions = length < 24 ? Array(0...length) : Array(0..<10) + Array(length - 10...length)
            for position in positions {
                for special in specials {
                    var characters = Array(repeating: Character("x"), count: length)
                    characters.insert(Character(special), at: position)
                    let string = String(characters)
                    var bytes: [UInt8] = []
                    JSONValue.appendJSONString(string, to: &bytes)
                    #expect(
                        String(decoding: bytes, as: UTF8.self) == referenceEscaped(string), "\(string.debugDescription)"
                    )
                }
            }
        }
    }

    @Test("appendJSONString appends after existing bytes")
    func appendsToExistingBuffer() {
        var bytes = Array("data: ".utf8)
        JSONValue.appendJSONString("a\"b", to: &bytes)
        JSONValue.string("c").appendJSON(to: &bytes)
        #expect(String(decoding: bytes, as: UTF8.self) == #"data: "a\"b""c""#)
    }

    @Test("object keys are sorted so output is stable")
    func sortedKeys() {
        let value: JSONValue = ["b": 1, "a": ["z": 1, "y": 2, "é": 3, "Z": 4], "c": nil, "": true]
        #expect(value.jsonString == #"{"":true,"a":{"Z":4,"y":2,"z":1,"é":3},"b":1,"c":null}"#)
        #expect(JSONValue.object(["only": 1]).jsonString == #"{"only":1}"#)
    }

    @Test("small and large objects sort the same way", arguments: [0, 1, 2, 3, 15, 16, 17, 40])
    func sortedKeysAtEverySize(size: Int) {
        let keys = (0..<size).map { "key\(($0 * 7919) % 1000)-\($0)" }
        let object = JSONValue.object(Dictionary(uniqueKeysWithValues: keys.map { ($0, JSONValue.string($0)) }))
        let expected = "{" + keys.sorted().map { "\"\($0)\":\"\($0)\"" }.joined(separator: ",") + "}"
        #expect(object.jsonString == expected)
    }

    @Test("compact output is a single line even when strings hold line breaks")
    func compactHasNoNewline() {
        let value: JSONValue = [
            "text": "line one\nline two\r\nline three\u{2028}\u{2029}\u{85}",
            "list": [["a\n": "b\n"]],
        ]
        let bytes = Array(value.jsonString.utf8)
        #expect(!bytes.contains(0x0A))
        #expect(!bytes.contains(0x0D))
        #expect(!value.jsonString.contains("\u{2028}"))
    }

    @Test("pretty output uses 2-space indentation and sorted keys")
    func prettyShape() {
        let value: JSONValue = ["name": "demo", "tags": ["a", 1.5], "empty": [], "meta": ["b": nil, "a": [:]]]
        let expected = """
            {
              "empty": [],
              "meta": {
                "a": {},
                "b": null
              },
              "name": "demo",
              "tags": [
                "a",
                1.5
              ]
            }
            """
        #expect(value.jsonString(pretty: true) == expected)
        #expect(JSONValue.int(3).jsonString(pretty: true) == "3")
        #expect(JSONValue.array([]).jsonString(pretty: true) == "[]")
    }
}

@Suite("JSONValue round trips")
struct JSONValueRoundTripTests {
    static let values: [JSONValue] = [
        .null, .bool(true), .bool(false),
        .int(0), .int(-1), .int(Int.max), .int(Int.min),
        .double(1.5), .double(3.0), .double(-0.0), .double(1e-5), .double(1e300), .double(-2.5e-300),
        .double(0.1 + 0.2), .double(.pi), .double(9_223_372_036_854_775_808.0), .double(.leastNonzeroMagnitude),
        .string(""), .string("plain"), .string("esc \" \\ / \n \u{0} \u{1F} \u{7F} \u{2028} é 😀 \u{10FFFF}"),
        .array([]), .array([1, 2.5, "x", nil, [[]]]),
        .object([:]), .object(["a": ["b": ["c": [1, ["d": "e"]]]], "😀": "key with emoji", "": .null]),
    ]

    @Test("every case survives encode then parse, compact and pretty", arguments: values)
    func roundTrip(value: JSONValue) throws {
        #expect(try JSONValue(parsing: value.jsonString) == value)
        #expect(try JSONValue(parsing: value.jsonString(pretty: true)) == value)
        var bytes: [UInt8] = []
        value.appendJSON(to: &bytes)
        #expect(try JSONValue(parsing: bytes) == value)
        #expect(try JSONValue(parsing: bytes).typeName == value.typeName)
    }

    @Test("parse then encode is canonical")
    func canonicalText() throws {
        let text = #"{ "b" : [ 1 , 2.50 , 1E2 ] , "a" : "\u0041\/" }"#
        #expect(try JSONValue(parsing: text).jsonString == #"{"a":"A/","b":[1,2.5,100.0]}"#)
    }

    struct Envelope: Codable, Equatable {
        var id: Int
        var payload: JSONValue
        var extra: [JSONValue]
    }

    @Test("Codable round trip through JSONEncoder and JSONDecoder")
    func codableRoundTrip() throws {
        let envelope = Envelope(
            id: 7,
            payload: ["name": "demo", "count": 3, "ratio": 0.25, "ok": true, "none": nil, "list": [1, "two", [:]]],
            extra: [.int(Int.max), .double(-1.5), .string("é\n"), .array([]), .null]
        )
        let data = try JSONEncoder().encode(envelope)
        let decoded = try JSONDecoder().decode(Envelope.self, from: data)
        #expect(decoded == envelope)
        // What JSONEncoder wrote is also something our parser reads back to the same value.
        let reparsed = try JSONValue(parsing: data)
        #expect(reparsed["payload"] == envelope.payload)
        #expect(reparsed["id"] == 7)
    }

    @Test("Codable decodes integers as .int and fractions as .double")
    func codableNumberKinds() throws {
        let data = Data(#"[1, 1.5, true, "s", null, {"k": -2}]"#.utf8)
        let decoded = try JSONDecoder().decode(JSONValue.self, from: data)
        #expect(decoded == [.int(1), .double(1.5), .bool(true), .string("s"), .null, ["k": .int(-2)]])
    }
}
