import PrefabKit
import Testing

/// Parses `input` in one chunk, then finishes the stream.
private func parse(_ input: String) -> [SSEMessage] {
    var parser = SSEParser()
    return parser.feed(input) + parser.finish()
}

/// Parses `bytes` one byte at a time, then finishes the stream.
private func parseByteByByte(_ bytes: [UInt8]) -> [SSEMessage] {
    var parser = SSEParser()
    var messages: [SSEMessage] = []
    for byte in bytes {
        messages += parser.feed([byte])
    }
    return messages + parser.finish()
}

@Suite("SSEEncoder")
struct SSEEncoderTests {
    @Test func heartbeatBytes() {
        #expect(SSEEncoder.heartbeat == [0x3A, 0x20, 0x70, 0x69, 0x6E, 0x67, 0x0A, 0x0A])
        #expect(String(decoding: SSEEncoder.heartbeat, as: UTF8.self) == ": ping\n\n")
    }

    @Test func oneLineMessage() {
        var bytes: [UInt8] = []
        SSEEncoder.appendMessage(data: Array(#"{"a":1}"#.utf8), id: "7", event: "tick", to: &bytes)
        #expect(String(decoding: bytes, as: UTF8.self) == "id: 7\nevent: tick\ndata: {\"a\":1}\n\n")
    }

    @Test func appendsToExistingBytes() {
        var bytes = SSEEncoder.heartbeat
        SSEEncoder.appendMessage(data: "x".utf8, id: nil, to: &bytes)
        #expect(String(decoding: bytes, as: UTF8.self) == ": ping\n\ndata: x\n\n")
    }

    @Test(arguments: [
        ("", "data: \n\n"),
        ("a\nb", "data: a\ndata: b\n\n"),
        ("a\r\nb", "data: a\ndata: b\n\n"),
        ("a\rb", "data: a\ndata: b\n\n"),
        ("a\n\nb", "data: a\ndata: \ndata: b\n\n"),
        ("a\r\rb", "data: a\ndata: \ndata: b\n\n"),
        ("a\n", "data: a\ndata: \n\n"),
    ])
    func multiLineData(data: String, expected: String) {
        #expect(SSEEncoder.message(data: data) == expected)
    }

    @Test func idAndEventCannotBreakFraming() {
        let text = SSEEncoder.message(data: "x", id: "1\r\n2\u{0}3\n", event: "a\nb\r")
        #expect(text == "id: 123\nevent: ab\ndata: x\n\n")
    }

    @Test func emptyIdIsWritten() {
        // An empty id resets the client's last event ID, so it must not be dropped.
        #expect(SSEEncoder.message(data: "x", id: "") == "id: \ndata: x\n\n")
    }

    @Test func comment() {
        var bytes: [UInt8] = []
        SSEEncoder.appendComment("hello", to: &bytes)
        SSEEncoder.appendComment("a\r\nb", to: &bytes)
        #expect(String(decoding: bytes, as: UTF8.self) == ": hello\n\n: a\n: b\n\n")
    }

    @Test func retry() {
        var bytes: [UInt8] = []
        SSEEncoder.appendRetry(1500, to: &bytes)
        SSEEncoder.appendRetry(-3, to: &bytes)
        #expect(String(decoding: bytes, as: UTF8.self) == "retry: 1500\n\nretry: 0\n\n")
    }
}

@Suite("SSE round trips")
struct SSERoundTripTests {
    /// Data, id and event to encode, and the data the client should receive (line ends become LF).
    static let cases: [(String, String?, String?, String)] = [
        (#"{"type":"progress","value":0.5}"#, nil, nil, #"{"type":"progress","value":0.5}"#),
        ("", nil, nil, ""),
        ("a\nb", "1", nil, "a\nb"),
        ("a\r\nb\r\n", "2", "update", "a\nb\n"),
        ("a\rb\r\rc", nil, "update", "a\nb\n\nc"),
        ("\n", "x y", nil, "\n"),
        (": not a comment\ndata: nor a field", nil, nil, ": not a comment\ndata: nor a field"),
        ("é 🎉", "é", "ü", "é 🎉"),
    ]

    @Test(arguments: cases)
    func encodeThenParse(data: String, id: String?, event: String?, expected: String) throws {
        let text = SSEEncoder.message(data: data, id: id, event: event)
        let messages = parse(text)
        try #require(messages.count == 1)
        #expect(messages[0] == SSEMessage(event: event ?? "message", data: expected, lastEventId: id ?? ""))
        #expect(parseByteByByte(Array(text.utf8)) == messages)
    }

    @Test func severalMessagesWithHeartbeats() {
        var bytes: [UInt8] = []
        SSEEncoder.appendRetry(2000, to: &bytes)
        SSEEncoder.appendMessage(data: "one".utf8, id: "1", to: &bytes)
        bytes += SSEEncoder.heartbeat
        SSEEncoder.appendMessage(data: "two".utf8, id: nil, event: "done", to: &bytes)
        var parser = SSEParser()
        #expect(
            parser.feed(bytes) == [
                SSEMessage(data: "one", lastEventId: "1"),
                SSEMessage(event: "done", data: "two", lastEventId: "1"),
            ])
        #expect(parser.reconnectionTime == 2000)
    }
}

@Suite("SSEParser")
struct SSEParserTests {
    /// Streams covering the parsing rules; each must parse the same whether fed whole, byte by byte or in two parts.
    static let streams: [String] = [
        "data: a\n\n",
        "data: a\r\n\r\n",
        "data: a\r\rdata: b\r\r",
        "id: 1\r\nevent: e\r\ndata: x\r\ndata: y\r\n\r\n",
        "data: é\r\n\r\ndata: 🎉\n\n",
        "\u{FEFF}data: bom\n\n",
        ": comment\ndata\ndata:\ndata:  two spaces\n\n",
        "retry: 10\nid: a\u{0}b\nfoo: bar\ndata: x\n\ndata: tail",
        "data: \u{1F1EB}\u{1F1F7} flags\r\n\r",
    ]

    @Test(arguments: streams)
    func chunkSplitInvariance(stream: String) {
        let bytes = Array(stream.utf8)
        let whole = parse(stream)
        #expect(!whole.isEmpty || stream.isEmpty)
        #expect(parseByteByByte(bytes) == whole)
        for split in 0...bytes.count {
            var parser = SSEParser()
            let messages = parser.feed(bytes[..<split]) + parser.feed(bytes[split...]) + parser.finish()
            #expect(messages == whole, "split at \(split)")
        }
    }

    @Test(arguments: [
        "data: a\nevent: e\ndata: b\n\n", "data: a\r\nevent: e\r\ndata: b\r\n\r\n",
        "data: a\revent: e\rdata: b\r\r", "data: a\r\nevent: e\rdata: b\n\r\n",
    ])
    func lineEndings(stream: String) {
        #expect(parse(stream) == [SSEMessage(event: "e", data: "a\nb")])
    }

    @Test func crThenLFAcrossChunksIsOneLineEnding() {
        var parser = SSEParser()
        #expect(parser.feed("data: a\r").isEmpty)
        // Were the LF a second line ending, this would be the blank line that dispatches.
        #expect(parser.feed("\n").isEmpty)
        #expect(parser.feed("\r\n") == [SSEMessage(data: "a")])
    }

    @Test func multiByteCharacterSplitAcrossChunks() {
        let bytes = Array("data: é😀\n\n".utf8)
        var parser = SSEParser()
        #expect(parser.feed(bytes[..<7]).isEmpty)  // Ends in the middle of "é".
        #expect(parser.feed(bytes[7..<10]).isEmpty)  // Ends in the middle of the emoji.
        #expect(parser.feed(bytes[10...]) == [SSEMessage(data: "é😀")])
    }

    @Test func invalidUTF8BecomesReplacementCharacter() {
        var parser = SSEParser()
        let bytes: [UInt8] = Array("data: ".utf8) + [0xFF, 0x61, 0xE2, 0x82] + Array("\n\n".utf8)
        #expect(parser.feed(bytes) == [SSEMessage(data: "\u{FFFD}a\u{FFFD}")])
    }

    @Test func commentsAreIgnored() {
        #expect(parse(":\n: hi\n:data: no\ndata: yes\n: between\n\n") == [SSEMessage(data: "yes")])
    }

    @Test(arguments: [
        ("data:x\n\n", "x"),
        ("data: x\n\n", "x"),
        ("data:  x\n\n", " x"),
        ("data: x \n\n", "x "),
        ("data:x:y\n\n", "x:y"),
        ("data\n\n", ""),
        ("data:\n\n", ""),
        ("data\ndata\n\n", "\n"),
        ("data: a\ndata\n\n", "a\n"),
    ])
    func dataValues(stream: String, expected: String) {
        #expect(parse(stream) == [SSEMessage(data: expected)])
    }

    @Test func fieldNameIsExact() {
        #expect(parse("data : x\nData: y\n\n").isEmpty)
    }

    @Test func emptyDataDispatchesNothingAndResetsEventType() {
        #expect(parse("\n\n\nevent: lost\n\ndata: x\n\n") == [SSEMessage(data: "x")])
    }

    @Test func eventType() {
        #expect(
            parse("event: add\ndata: 1\n\nevent\ndata: 2\n\n") == [
                SSEMessage(event: "add", data: "1"), SSEMessage(data: "2"),
            ])
    }

    @Test func idPersistsAcrossMessagesUntilChanged() {
        var parser = SSEParser()
        let messages = parser.feed("id: 7\ndata: a\n\ndata: b\n\nid\ndata: c\n\n")
        #expect(
            messages == [
                SSEMessage(data: "a", lastEventId: "7"),
                SSEMessage(data: "b", lastEventId: "7"),
                SSEMessage(data: "c", lastEventId: ""),
            ])
        #expect(parser.lastEventId == "")
    }

    @Test func idWithNULIsIgnored() {
        var parser = SSEParser()
        #expect(parser.feed("id: 1\n\nid: 2\u{0}3\ndata: x\n\n") == [SSEMessage(data: "x", lastEventId: "1")])
        #expect(parser.lastEventId == "1")
    }

    @Test func idTakesEffectOnDispatchEvenWithoutData() {
        var parser = SSEParser()
        #expect(parser.feed("id: 5\n").isEmpty)
        #expect(parser.lastEventId == "")
        #expect(parser.feed("\n").isEmpty)
        #expect(parser.lastEventId == "5")
    }

    @Test(
        arguments: [
            ("retry: 1500\n", 1500),
            ("retry:0\n", 0),
            ("retry: 99999999999999999999999\n", Int.max),
            ("retry: 15x\n", nil),
            ("retry: -1\n", nil),
            ("retry: 1.5\n", nil),
            ("retry:  10\n", nil),
            ("retry: 10 \n", nil),
            ("retry\n", nil),
            ("retry: ٣\n", nil),
            ("retry: 10\nretry: x\n", 10),
        ] as [(String, Int?)])
    func retry(stream: String, expected: Int?) {
        var parser = SSEParser()
        #expect(parser.feed(stream).isEmpty)
        #expect(parser.reconnectionTime == expected)
    }

    @Test func bomIsSkippedOnceAtStreamStartOnly() {
        #expect(parse("\u{FEFF}data: a\n\n") == [SSEMessage(data: "a")])
        // A second BOM is part of the first field name, which then matches nothing.
        #expect(parse("\u{FEFF}\u{FEFF}data: a\n\ndata: b\n\n") == [SSEMessage(data: "b")])
        #expect(parse("data: a\n\n\u{FEFF}data: b\n\n") == [SSEMessage(data: "a")])
        #expect(parse("\u{FEFF}\n\u{FEFF}data: a\n\n").isEmpty)
    }

    @Test func partialBOMIsText() {
        var parser = SSEParser()
        let bytes: [UInt8] = [0xEF, 0xBB] + Array("\ndata: x\n\n".utf8)
        #expect(parser.feed(bytes) == [SSEMessage(data: "x")])
    }

    @Test func unknownFieldsAreIgnored() {
        #expect(parse("foo: bar\nevent2: x\nDATA: y\ndata: z\nlast-event-id: 3\n\n") == [SSEMessage(data: "z")])
    }

    @Test func finishDiscardsUnterminatedEvent() {
        var parser = SSEParser()
        #expect(parser.feed("data: kept\n\nid: 9\ndata: lost\ndata: partial").count == 1)
        #expect(parser.finish().isEmpty)
        #expect(parser.lastEventId == "")

        // The parser can read the next stream; the dispatched ID carries over, the discarded one does not.
        #expect(parser.feed("\u{FEFF}data: next\n\n") == [SSEMessage(data: "next")])
    }

    @Test func finishKeepsDispatchedState() {
        var parser = SSEParser()
        _ = parser.feed("retry: 300\nid: 4\ndata: a\n\n")
        #expect(parser.finish().isEmpty)
        #expect(parser.lastEventId == "4")
        #expect(parser.reconnectionTime == 300)
        #expect(parser.feed("data: b\n\n") == [SSEMessage(data: "b", lastEventId: "4")])
    }

    @Test func specExample() throws {
        // The example from the HTML spec: the last block has no blank line and is never dispatched.
        let messages = parse("data\n\ndata\ndata\n\ndata:")
        try #require(messages.count == 2)
        #expect(messages == [SSEMessage(data: ""), SSEMessage(data: "\n")])
    }
}
