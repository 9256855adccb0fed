/// Reads a `text/event-stream` incrementally, following the WHATWG HTML "event stream interpretation" rules.
///
/// Chunks may be split anywhere, including inside a CRLF pair or a multi-byte UTF-8 character.
public struct SSEParser: Sendable {
    /// The ID a client would send as `Last-Event-ID` when reconnecting.
    ///
    /// As in the spec, an `id` field takes effect here when its event is dispatched (even an event with no data),
    /// not when the field is read.
    public private(set) var lastEventId = ""
    /// The reconnection time in milliseconds from the last valid `retry` field, or nil if there was none.
    public private(set) var reconnectionTime: Int?

    /// The bytes of the current line, without its line ending.
    private var line: [UInt8] = []
    /// Whether the previous byte was a CR, so that an LF right after it does not end another line.
    private var afterCR = false
    /// How many bytes of a leading byte order mark have been seen; nil once the stream start is behind us.
    private var bomBytesSeen: Int? = 0
    /// The data buffer, kept as UTF-8 and decoded on dispatch.
    private var data: [UInt8] = []
    private var eventType = ""
    private var lastEventIdBuffer = ""

    public init() {}

    /// Reads the next chunk of the stream and returns the events it completes.
    public mutating func feed(_ bytes: some Sequence<UInt8>) -> [SSEMessage] {
        var messages: [SSEMessage] = []
        for byte in bytes {
            if let seen = bomBytesSeen {
                if byte == Self.bom[seen] {
                    bomBytesSeen = seen + 1 == Self.bom.count ? nil : seen + 1
                    continue
                }
                // Not a BOM after all: the bytes held back are ordinary text (none of them is CR or LF).
                bomBytesSeen = nil
                line.append(contentsOf: Self.bom[..<seen])
            }
            switch byte {
            case Self.lf where afterCR:
                afterCR = false
            case Self.lf, Self.cr:
                afterCR = byte == Self.cr
                if let message = processLine() {
                    messages.append(message)
                }
                line.removeAll(keepingCapacity: true)
            default:
                afterCR = false
                line.append(byte)
            }
        }
        return messages
    }

    /// Reads the next chunk of the stream as UTF-8 and returns the events it completes.
    public mutating func feed(_ text: String) -> [SSEMessage] {
        feed(text.utf8)
    }

    /// Ends the stream, discarding an unterminated line and any event not yet ended by a blank line.
    ///
    /// Always returns no events, as the spec dispatches only on a blank line. The parser can then read a new stream
    /// (a reconnection); ``lastEventId`` and ``reconnectionTime`` carry over to it.
    public mutating func finish() -> [SSEMessage] {
        line.removeAll()
        afterCR = false
        bomBytesSeen = 0
        data.removeAll()
        eventType = ""
        // An `id` field whose event was never dispatched is discarded with that event.
        lastEventIdBuffer = lastEventId
        return []
    }

    private static let lf: UInt8 = 0x0A
    private static let cr: UInt8 = 0x0D
    private static let colon: UInt8 = 0x3A
    private static let space: UInt8 = 0x20
    private static let bom: [UInt8] = [0xEF, 0xBB, 0xBF]

    /// Handles `line`; returns the event when the line is blank and completes one.
    ///
    /// Working on bytes is equivalent to decoding first: CR, LF, ':' and ' ' are ASCII and never part of a
    /// multi-byte sequence, so splitting here and decoding each piece gives the same text, U+FFFD included.
    private mutating func processLine() -> SSEMessage? {
        guard let first = line.first else { return dispatch() }
        if first == Self.colon { return nil }  // A comment.

        let field: ArraySlice<UInt8>
        var value: ArraySlice<UInt8>
        if let colon = line.firstIndex(of: Self.colon) {
            field = line[..<colon]
            value = line[(colon + 1)...]
            if value.first == Self.space {
                value = value.dropFirst()
            }
        } else {
            field = line[...]
            value = []
        }

        switch String(decoding: field, as: UTF8.self) {
        case "event":
            eventType = String(decoding: value, as: UTF8.self)
        case "data":
            data.append(contentsOf: value)
            data.append(Self.lf)
        case "id":
            if !value.contains(0) {
                lastEventIdBuffer = String(decoding: value, as: UTF8.self)
            }
        case "retry":
            if let milliseconds = Self.parseDigits(value) {
                reconnectionTime = milliseconds
            }
        default:
            break  // Unknown fields are ignored.
        }
        return nil
    }

    /// The event for the buffers so far, or nil when the data buffer is empty; resets the data and event type.
    private mutating func dispatch() -> SSEMessage? {
        lastEventId = lastEventIdBuffer
        defer {
            data.removeAll(keepingCapacity: true)
            eventType = ""
        }
        guard !data.isEmpty else { return nil }
        return SSEMessage(
            event: eventType.isEmpty ? "message" : eventType,
            data: String(decoding: data.dropLast(), as: UTF8.self),  // The data buffer always ends with an LF.
            lastEventId: lastEventId
        )
    }

    /// The value of a non-empty run of ASCII digits, saturating at `Int.max`; nil for anything else.
    private static func parseDigits(_ digits: ArraySlice<UInt8>) -> Int? {
        guard !digits.isEmpty else { return nil }
        var result = 0
        for byte in digits {
            guard (0x30...0x39).contains(byte) else { return nil }
            let (times10, overflow1) = result.multipliedReportingOverflow(by: 10)
            let (sum, overflow2) = times10.addingReportingOverflow(Int(byte - 0x30))
            // The spec puts no bound on the number; a huge delay is the closest we can get.
            result = overflow1 || overflow2 ? Int.max : sum
        }
        return result
    }
}
