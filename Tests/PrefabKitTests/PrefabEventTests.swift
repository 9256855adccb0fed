import PrefabKit
import Testing

@Suite("PrefabEvent helpers")
struct PrefabEventHelperTests {
    @Test("start with and without data")
    func start() {
        #expect(PrefabEvent.start() == PrefabEvent(type: "start"))
        #expect(PrefabEvent.start().fields.isEmpty)
        #expect(PrefabEvent.start(["total": 3]) == PrefabEvent(type: "start", fields: ["data": ["total": 3]]))
        #expect(PrefabEvent.start(["total": 3]).jsonString == #"{"type":"start","data":{"total":3}}"#)
    }

    @Test(
        "progress percentage",
        arguments: [
            (1, 3, 33), (2, 3, 66), (3, 3, 100), (0, 3, 0), (1, 200, 0), (0, 0, 0), (5, 0, 0), (7, 5, 100),
            (-1, 5, 0), (5, -5, 0),
        ]
    )
    func progressPercentage(current: Int, total: Int, percentage: Int) {
        let event = PrefabEvent.progress(current: current, total: total)
        #expect(event.type == "progress")
        #expect(
            event.fields == [
                "data": ["current": .int(current), "total": .int(total), "percentage": .int(percentage)]
            ]
        )
    }

    @Test("progress with a message and extra fields; extras cannot override the computed ones")
    func progressExtras() {
        let event = PrefabEvent.progress(
            current: 1,
            total: 4,
            message: "one down",
            extra: ["item": "a", "percentage": 999, "current": 7]
        )
        #expect(
            event.data == ["current": 1, "total": 4, "percentage": 25, "message": "one down", "item": "a"]
        )
        #expect(
            event.jsonString
                == #"{"type":"progress","data":{"current":1,"item":"a","message":"one down","percentage":25,"total":4}}"#
        )
    }

    @Test("content carries its text as data")
    func content() {
        let event = PrefabEvent.content("Hello, ")
        #expect(event == PrefabEvent(type: "content", fields: ["data": "Hello, "]))
        #expect(event.jsonString == #"{"type":"content","data":"Hello, "}"#)
    }

    @Test("done with and without data")
    func done() {
        #expect(PrefabEvent.done() == PrefabEvent(type: "done"))
        #expect(PrefabEvent.done().jsonString == #"{"type":"done"}"#)
        #expect(PrefabEvent.done(["ok": true]).fields == ["data": ["ok": true]])
        #expect(PrefabEvent.done(nil).data == nil)
    }

    @Test("error with a message and code")
    func errorWithCode() {
        let event = PrefabEvent.error("it broke", code: "BROKEN")
        #expect(event.type == "error")
        #expect(event.fields == ["data": "it broke", "error_code": "BROKEN"])
        #expect(event.errorCode == "BROKEN")
        #expect(event.jsonString == #"{"type":"error","data":"it broke","error_code":"BROKEN"}"#)
    }

    @Test("error from a PrefabError keeps its code and details")
    func errorFromPrefabError() {
        let details: [JSONValue] = [["parameter": "a", "reason": "is required"]]
        let event = PrefabEvent.error(PrefabError(.invalidInputs, "1 input is invalid", details: details))
        #expect(
            event.fields == [
                "data": "1 input is invalid", "error_code": "INVALID_INPUTS", "details": .array(details),
            ]
        )
        let plain = PrefabEvent.error(PrefabError.cancelled)
        #expect(plain.fields == ["data": "the invocation was cancelled", "error_code": "CANCELLED"])
        #expect(plain.fields["details"] == nil)
    }

    @Test("files lists its entries as data")
    func files() {
        let entry: JSONValue = ["name": "a.txt", "url": "file:///tmp/a.txt", "size": 3, "content_type": "text/plain"]
        let event = PrefabEvent.files([entry])
        #expect(event.type == "files")
        #expect(event.fields == ["data": [entry]])
        #expect(!event.isTerminal)
    }

    @Test(
        "only done and error are terminal",
        arguments: [
            (PrefabEvent.start(), false), (.progress(current: 1, total: 2), false), (.content("x"), false),
            (.files([]), false), (PrefabEvent("question", data: "?"), false), (PrefabEvent(type: "Done"), false),
            (.done(), true), (.done(1), true), (.error("x", code: "X"), true), (PrefabEvent(type: "error"), true),
        ]
    )
    func terminal(event: PrefabEvent, isTerminal: Bool) {
        #expect(event.isTerminal == isTerminal)
    }

    @Test("the type subscript reads the type and cannot be overwritten")
    func typeSubscript() {
        var event = PrefabEvent("thought", data: "hmm")
        #expect(event["type"] == "thought")
        #expect(event["data"] == "hmm")
        event["type"] = "other"
        event["step"] = 2
        #expect(event.type == "thought")
        #expect(event.fields == ["data": "hmm", "step": 2])
        event["step"] = nil
        #expect(event.fields == ["data": "hmm"])
    }
}

@Suite("PrefabEvent JSON")
struct PrefabEventJSONTests {
    @Test("type comes first, the other members sorted")
    func typeFirstThenSorted() {
        let event = PrefabEvent(
            type: "x",
            fields: ["zeta": 1, "alpha": "a", "mid": [true, nil], "aaa": ["b": 2, "a": 1]]
        )
        #expect(event.jsonString == #"{"type":"x","aaa":{"a":1,"b":2},"alpha":"a","mid":[true,null],"zeta":1}"#)
    }

    @Test("appendJSON appends after existing bytes")
    func appendJSON() {
        var bytes = Array("data: ".utf8)
        PrefabEvent.content("a\nb").appendJSON(to: &bytes)
        #expect(String(decoding: bytes, as: UTF8.self) == #"data: {"type":"content","data":"a\nb"}"#)
    }

    @Test(
        "appendJSON(adding:) writes what the event with that member set writes",
        arguments: [
            PrefabEvent.start(), .start(["total": 3]), .content("hi"), .done(), .done(["ok": true]),
            .error("it broke", code: "BROKEN"), PrefabEvent(type: "tool_call", fields: ["step": 2]),
            PrefabEvent(type: "x", fields: ["invocation_id": "theirs", "data": 1]), PrefabEvent(type: ""),
        ]
    )
    func appendJSONAdding(event: PrefabEvent) {
        // Keys before "data", between "data" and the others, after them all, and the two it must not take.
        for key in ["aaa", "invocation_id", "zzz", "type", "data"] {
            var set = event
            set[key] = "added"
            var bytes = Array("data: ".utf8)
            event.appendJSON(to: &bytes, adding: key, "added")
            #expect(String(decoding: bytes, as: UTF8.self) == "data: " + set.jsonString, "adding \(key)")
        }
    }

    @Test("other event types pass through with all their fields")
    func passThrough() throws {
        let json = try JSONValue(parsing: #"{"type":"tool_call","tool_name":"x","step":2}"#)
        let event = try #require(PrefabEvent(json: json))
        #expect(event.type == "tool_call")
        #expect(event.fields == ["tool_name": "x", "step": 2])
        #expect(event.data == nil)
        #expect(event.jsonString == #"{"type":"tool_call","step":2,"tool_name":"x"}"#)
        #expect(event.jsonValue == json)
        #expect(PrefabEvent(json: event.jsonValue) == event)
    }

    @Test(
        "init(json:) refuses non-objects and a missing or non-string type",
        arguments: [
            [] as JSONValue, "start", 1, 1.5, true, nil, [:], ["data": "x"], ["type": 1], ["type": nil],
            ["type": ["done"]], ["Type": "done"],
        ]
    )
    func refuses(json: JSONValue) {
        #expect(PrefabEvent(json: json) == nil)
    }

    @Test("an empty string type is still a type")
    func emptyType() {
        #expect(PrefabEvent(json: ["type": ""]) == PrefabEvent(type: ""))
    }
}

@Suite("PrefabEvent over SSE")
struct PrefabEventSSETests {
    static let events: [PrefabEvent] = [
        .start(["total": 3]),
        .progress(current: 1, total: 3, message: "processed \"a\"", extra: ["item": "a"]),
        .content("line one\nline two\r\n"),
        .content("é 🎉 \u{2028} \u{0}"),
        PrefabEvent(type: "tool_call", fields: ["tool_name": "search", "step": 2, "args": ["q": "x: y"]]),
        .files([["name": "r.csv", "url": "file:///tmp/r.csv", "size": 48, "content_type": "text/csv"]]),
        .error(PrefabError(.invalidInputs, "bad", details: [["parameter": "a", "reason": "is required"]])),
        .done(["ratio": 0.25, "none": nil, "list": [1, 2.5, "three"]]),
    ]

    /// The events encoded as the gateway sends them, with ids 1, 2, ...
    static var stream: [UInt8] {
        var bytes: [UInt8] = []
        for (index, event) in events.enumerated() {
            SSEEncoder.appendEvent(event, id: index + 1, to: &bytes)
        }
        return bytes
    }

    private func decode(_ messages: [SSEMessage]) throws -> [PrefabEvent] {
        try messages.map { message in
            try #require(PrefabEvent(json: JSONValue(parsing: message.data)))
        }
    }

    @Test("one frame is an id line and a one-line data line")
    func frame() {
        var bytes: [UInt8] = []
        SSEEncoder.appendEvent(.content("a\nb"), id: 7, to: &bytes)
        #expect(String(decoding: bytes, as: UTF8.self) == "id: 7\ndata: {\"type\":\"content\",\"data\":\"a\\nb\"}\n\n")
    }

    /// The usual events (a `data` that is a string, a number, a boolean or null, or none) are
    /// written through a stack buffer in one go; every other through `appendJSON`. Both must
    /// give the same frame, at the sizes either side of the stack buffer's (1,024 bytes).
    @Test(
        "a small event's frame is its JSON, as appendJSON writes it, between its id and a blank line",
        arguments: [
            PrefabEvent(type: "start"), .content(""), .content("x"), .content("quote \" \\ \n \u{1} \u{2028} é 😀"),
            // 154 bytes of text is the longest whose worst case fits the buffer, with `content`'s
            // framing (1,020 of 1,024 bytes); escaped whole, it is written at its worst case.
            .content(String(repeating: "a", count: 154)), .content(String(repeating: "a", count: 155)),
            .content(String(repeating: "\u{1}", count: 154)), .content(String(repeating: "\u{1}", count: 155)),
            .content(String(repeating: "a", count: 5000)), .done(0), .done(9), .done(10), .done(-7),
            .done(.int(.max)), .done(.int(.min)), .done(true), .done(false), .done(.null), .done(2.5),
            PrefabEvent("type \"with\" quotes\n", data: "x"), PrefabEvent(String(repeating: "t", count: 70), data: 1),
            PrefabEvent(type: "tool_call", fields: ["data": "x", "step": 2]),
        ]
    )
    func smallEventFrame(event: PrefabEvent) throws {
        for id in [1, 9, 10, 123_456_789, Int.max] {
            var bytes = Array("before".utf8)
            SSEEncoder.appendEvent(event, id: id, to: &bytes)
            #expect(String(decoding: bytes, as: UTF8.self) == "beforeid: \(id)\ndata: \(event.jsonString)\n\n")
            // And read back by the parser, which shares no code with either writer.
            var parser = SSEParser()
            let message = try #require(parser.feed(bytes.dropFirst(6)).first)
            #expect(message.lastEventId == String(id))
            #expect(PrefabEvent(json: try JSONValue(parsing: message.data)) == event)
        }
    }

    @Test("events survive encode, parse in one chunk, and decode")
    func roundTripOneChunk() throws {
        var parser = SSEParser()
        let messages = parser.feed(Self.stream)
        try #require(messages.count == Self.events.count)
        #expect(messages.map(\.lastEventId) == (1...Self.events.count).map(String.init))
        #expect(messages.allSatisfy { $0.event == "message" })
        #expect(messages.map(\.data) == Self.events.map(\.jsonString))
        #expect(try decode(messages) == Self.events)
        #expect(parser.lastEventId == String(Self.events.count))
    }

    @Test("events survive being fed one byte at a time")
    func roundTripByteByByte() throws {
        var parser = SSEParser()
        var messages: [SSEMessage] = []
        for byte in Self.stream {
            messages += parser.feed([byte])
        }
        #expect(try decode(messages) == Self.events)
        #expect(messages.last?.lastEventId == "8")
    }
}
