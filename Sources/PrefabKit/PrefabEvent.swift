/// One event of a stream: a JSON object with a string `type` and any other fields.
///
/// The standard five (`start`, `progress`, `content`, `done`, `error`) have typed helpers; any
/// other type (`question`, `thought`, `tool_call`, ...) passes through with all its fields.
public struct PrefabEvent: Sendable, Hashable {
    /// The event's type: `start`, `progress`, `content`, `done`, `error`, or any other.
    public var type: String
    /// The `data` member, kept apart from the others: most events carry only `data`, and then
    /// need no dictionary at all (the hot path of a fast stream).
    public var data: JSONValue?
    /// The members other than `type` and `data`.
    private var otherFields: [String: JSONValue]

    /// An event with any members besides `type`; a `data` member is kept in ``data``.
    public init(type: String, fields: [String: JSONValue] = [:]) {
        self.type = type
        var fields = fields
        self.data = fields.removeValue(forKey: "data")
        self.otherFields = fields
    }

    /// An event of any type with a `data` member, e.g. `PrefabEvent("thought", data: "...")`.
    public init(_ type: String, data: JSONValue) {
        self.type = type
        self.data = data
        self.otherFields = [:]
    }

    /// Every member of the event object except `type`.
    public var fields: [String: JSONValue] {
        get {
            var all = otherFields
            if let data { all["data"] = data }
            return all
        }
        set {
            var rest = newValue
            data = rest.removeValue(forKey: "data")
            otherFields = rest
        }
    }

    /// One member by name, `type` and `data` included; setting `type` this way changes nothing.
    public subscript(field: String) -> JSONValue? {
        get {
            switch field {
            case "type": return .string(type)
            case "data": return data
            default: return otherFields[field]
            }
        }
        set {
            switch field {
            case "type": return
            case "data": data = newValue
            default: otherFields[field] = newValue
            }
        }
    }

    /// `error_code` of an `error` event.
    public var errorCode: String? { otherFields["error_code"]?.stringValue }

    /// `done` and `error` end a stream.
    public var isTerminal: Bool {
        // Lengths first: this runs for every event, and comparing two short strings that differ
        // took about 33 instructions.
        switch type.utf8.count {
        case 4: type == Self.done
        case 5: type == Self.error
        default: false
        }
    }

    /// A `question` event (checked for every event, so lengths first, as `isTerminal` does).
    var isQuestion: Bool { type.utf8.count == 8 && type == Self.question }
}

extension PrefabEvent {
    /// The type of the event that opens a stream.
    public static let start = "start"
    /// The type of an event that says how far the function has got.
    public static let progress = "progress"
    /// The type of an event that carries a chunk of streamed text.
    public static let content = "content"
    /// The type of the terminal event that ends a stream with its result.
    public static let done = "done"
    /// The type of the terminal event that ends a stream with an error code.
    public static let error = "error"
    /// Sent by the gateway after the function's last event when it wrote output files.
    public static let files = "files"
    /// A function asks its caller something: `text`, `data.questionId`, optional `data.options`.
    public static let question = "question"
    /// The caller's reply: `data.questionId` and `data.answer`.
    public static let answer = "answer"

    /// A `start` event, with optional `data`.
    public static func start(_ data: JSONValue? = nil) -> PrefabEvent {
        var event = PrefabEvent(type: start)
        event.data = data
        return event
    }

    /// Progress with `current`, `total` and an integer `percentage` computed from them.
    public static func progress(
        current: Int,
        total: Int,
        message: String? = nil,
        extra: [String: JSONValue] = [:]
    ) -> PrefabEvent {
        var data = extra
        data["current"] = .int(current)
        data["total"] = .int(total)
        data["percentage"] = .int(total > 0 ? min(100, max(0, current * 100 / total)) : 0)
        if let message { data["message"] = .string(message) }
        return PrefabEvent(progress, data: .object(data))
    }

    /// A chunk of streamed text.
    public static func content(_ text: String) -> PrefabEvent {
        PrefabEvent(content, data: .string(text))
    }

    /// The `done` event that ends a stream, with the result as optional `data`.
    public static func done(_ data: JSONValue? = nil) -> PrefabEvent {
        var event = PrefabEvent(type: done)
        event.data = data
        return event
    }

    /// An error event: `data` is the message, `error_code` the stable code.
    public static func error(_ message: String, code: String) -> PrefabEvent {
        PrefabEvent(type: error, fields: ["data": .string(message), "error_code": .string(code)])
    }

    /// The gateway's list of output files: `data` holds one entry per file.
    public static func files(_ entries: [JSONValue]) -> PrefabEvent {
        PrefabEvent(files, data: .array(entries))
    }

    /// A question for the caller; `ask` sends one and waits for its answer.
    public static func question(_ text: String, id: String, options: [JSONValue] = []) -> PrefabEvent {
        var data: [String: JSONValue] = ["questionId": .string(id)]
        if !options.isEmpty { data["options"] = .array(options) }
        return PrefabEvent(type: question, fields: ["text": .string(text), "data": .object(data)])
    }

    /// The answer to the question `questionId`.
    public static func answer(_ value: JSONValue, to questionId: String) -> PrefabEvent {
        PrefabEvent(answer, data: ["questionId": .string(questionId), "answer": value])
    }

    /// The `error` event for `error`: its message, its code, and its details when it has any.
    public static func error(_ error: PrefabError) -> PrefabEvent {
        var event = PrefabEvent.error(error.message, code: error.code.rawValue)
        if !error.details.isEmpty { event["details"] = .array(error.details) }
        return event
    }
}

extension PrefabEvent {
    /// The event as a JSON object.
    public var jsonValue: JSONValue {
        var object = fields
        object["type"] = .string(type)
        return .object(object)
    }

    /// Reads an event from a JSON object; nil unless it is an object with a string `type`.
    public init?(json: JSONValue) {
        guard var object = json.objectValue, let type = object.removeValue(forKey: "type")?.stringValue else {
            return nil
        }
        self.init(type: type, fields: object)
    }

    /// One-line JSON with `type` first and the other members in sorted order.
    public func appendJSON(to bytes: inout [UInt8]) {
        bytes.append(UInt8(ascii: "{"))
        JSONValue.appendASCII(#""type":"#, to: &bytes)
        JSONValue.appendJSONString(type, to: &bytes)
        if otherFields.isEmpty {
            // The common case: `data` alone, or nothing.
            if let data {
                JSONValue.appendASCII(#","data":"#, to: &bytes)
                data.appendJSON(to: &bytes)
            }
        } else {
            let all = fields
            for key in all.keys.sorted() {
                bytes.append(UInt8(ascii: ","))
                JSONValue.appendJSONString(key, to: &bytes)
                bytes.append(UInt8(ascii: ":"))
                all[key]!.appendJSON(to: &bytes)
            }
        }
        bytes.append(UInt8(ascii: "}"))
    }

    /// Appends the SSE message of the usual event (no members but `type` and a `data` that is a
    /// string, an integer, a boolean, null or absent, a few hundred bytes at most) through a stack
    /// buffer, in one append; false, with nothing written, for any other. A fast stream's events
    /// are all of this kind, and were 40% of its producer's instructions when written piece by piece.
    func appendSmallSSEMessage(id: Int, to bytes: inout [UInt8]) -> Bool {
        let type = type
        guard otherFields.isEmpty, type.utf8.count <= Self.smallTypeBytes else { return false }
        var capacity = Self.framingBytes + ByteWriter.jsonStringBytes(count: type.utf8.count)
        if let data {
            guard let dataBytes = Self.scalarBytes(data) else { return false }
            capacity += dataBytes
        }
        guard capacity <= Self.smallMessageBytes else { return false }
        // The closure captures plain values only: capturing the event copied it twice.
        let data = data
        ByteWriter.append(capacity: capacity, to: &bytes) { writer in
            writer.write("id: ")
            writer.writeInteger(id)
            writer.write("\ndata: {\"type\":")
            writer.writeJSONString(type)
            if let data {
                writer.write(#","data":"#)
                Self.writeScalar(data, to: &writer)
            }
            writer.write("}\n\n")
        }
        return true
    }

    /// `id: `, the id, `\ndata: {"type":`, `,"data":` and `}\n\n`.
    private static let framingBytes = 4 + ByteWriter.integerBytes + 15 + 8 + 3
    private static let smallTypeBytes = 64
    /// The largest message `appendSmallSSEMessage` writes through its stack buffer.
    private static let smallMessageBytes = 1024

    /// The most bytes `writeScalar` writes for `value`; nil for what it does not write (an
    /// array, an object, a double: `appendJSON` writes those).
    private static func scalarBytes(_ value: JSONValue) -> Int? {
        switch value {
        case .string(let text): ByteWriter.jsonStringBytes(count: text.utf8.count)
        case .int: ByteWriter.integerBytes
        case .bool: 5
        case .null: 4
        default: nil
        }
    }

    private static func writeScalar(_ value: JSONValue, to writer: inout ByteWriter) {
        switch value {
        case .string(let text): writer.writeJSONString(text)
        case .int(let number): writer.writeInteger(number)
        case .bool(let flag): writer.write(flag ? "true" : "false")
        default: writer.write("null")
        }
    }

    /// ``appendJSON(to:)`` of the event with one more member, `key` (not `type` or `data`), set
    /// to `value`: the gateway adds `invocation_id` to a call's first event this way. Without
    /// other members than `data`, written in place, without the copy and sort of a dictionary.
    public func appendJSON(to bytes: inout [UInt8], adding key: String, _ value: JSONValue) {
        guard otherFields.isEmpty, key != "type", key != "data" else {
            var event = self
            event[key] = value
            event.appendJSON(to: &bytes)
            return
        }
        bytes.append(UInt8(ascii: "{"))
        JSONValue.appendASCII(#""type":"#, to: &bytes)
        JSONValue.appendJSONString(type, to: &bytes)
        // Members in sorted order, as `appendJSON(to:)` writes them.
        let dataFirst = "data" < key
        if dataFirst, let data { Self.appendMember("data", data, to: &bytes) }
        Self.appendMember(key, value, to: &bytes)
        if !dataFirst, let data { Self.appendMember("data", data, to: &bytes) }
        bytes.append(UInt8(ascii: "}"))
    }

    private static func appendMember(_ key: String, _ value: JSONValue, to bytes: inout [UInt8]) {
        bytes.append(UInt8(ascii: ","))
        JSONValue.appendJSONString(key, to: &bytes)
        bytes.append(UInt8(ascii: ":"))
        value.appendJSON(to: &bytes)
    }

    /// The event as one-line JSON, as ``appendJSON(to:)`` writes it.
    public var jsonString: String {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(64)
        appendJSON(to: &bytes)
        return String(decoding: bytes, as: UTF8.self)
    }
}
