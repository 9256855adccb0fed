/// Writes Server-Sent Events in the `text/event-stream` format.
public enum SSEEncoder {
    /// A comment-only event that keeps idle connections (and proxies in between) from timing out.
    public static let heartbeat: [UInt8] = Array(": ping\n\n".utf8)

    /// Appends one event: optional `id` and `event` fields, one `data:` line per line of `data`, and a blank line.
    ///
    /// CRLF, CR and LF in `data` all start a new `data:` line, so the client receives them as LF.
    /// CR, LF and NUL are removed from `id`, and CR and LF from `event`, since they would break the framing.
    public static func appendMessage(
        data: some Collection<UInt8>,
        id: String?,
        event: String? = nil,
        to bytes: inout [UInt8]
    ) {
        if let id {
            appendField("id: ", value: id, droppingNUL: true, to: &bytes)
        }
        if let event {
            appendField("event: ", value: event, droppingNUL: false, to: &bytes)
        }
        appendLines(prefix: "data: ", of: data, to: &bytes)
        bytes.append(lf)
    }

    /// The event for `data`, as text.
    public static func message(data: String, id: String? = nil, event: String? = nil) -> String {
        var bytes: [UInt8] = []
        appendMessage(data: data.utf8, id: id, event: event, to: &bytes)
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Appends `text` as comment lines, which clients ignore, followed by a blank line.
    public static func appendComment(_ text: String, to bytes: inout [UInt8]) {
        appendLines(prefix: ": ", of: text.utf8, to: &bytes)
        bytes.append(lf)
    }

    /// Appends a `retry` field, which sets the client's reconnection delay; negative values are sent as 0.
    public static func appendRetry(_ milliseconds: Int, to bytes: inout [UInt8]) {
        // Clients ignore a retry value that is not all digits, so a minus sign would be lost anyway.
        bytes.append(contentsOf: "retry: \(max(0, milliseconds))\n\n".utf8)
    }

    private static let lf: UInt8 = 0x0A
    private static let cr: UInt8 = 0x0D

    private static func appendField(_ prefix: String, value: String, droppingNUL: Bool, to bytes: inout [UInt8]) {
        bytes.append(contentsOf: prefix.utf8)
        for byte in value.utf8 where byte != lf && byte != cr && !(droppingNUL && byte == 0) {
            bytes.append(byte)
        }
        bytes.append(lf)
    }

    /// Writes `prefix` + line + LF for each line of `text`, treating CRLF, CR and LF as line ends.
    private static func appendLines(prefix: String, of text: some Collection<UInt8>, to bytes: inout [UInt8]) {
        bytes.append(contentsOf: prefix.utf8)
        // The gateway's data is one-line JSON: copy it in one go when there is nothing to split.
        guard text.contains(where: { $0 == lf || $0 == cr }) else {
            bytes.append(contentsOf: text)
            bytes.append(lf)
            return
        }
        var afterCR = false
        for byte in text {
            switch byte {
            case lf where afterCR:
                afterCR = false  // The LF of a CRLF: the line already ended at the CR.
            case lf, cr:
                afterCR = byte == cr
                bytes.append(lf)
                bytes.append(contentsOf: prefix.utf8)
            default:
                afterCR = false
                bytes.append(byte)
            }
        }
        bytes.append(lf)
    }
}
