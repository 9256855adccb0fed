import PrefabKit

/// Renders a stream's events for a person or a script: in a terminal a live progress bar redrawn
/// in place, streamed text as it comes, the result and file links at the end; piped, the same as
/// plain lines; with `--json`, each event as one line of JSON, unchanged.
public struct EventPrinter: Sendable {
    public enum Style: Sendable, Equatable {
        case terminal(width: Int)
        case plain
        case json
    }

    /// How the run ended, once its terminal event came.
    public enum Outcome: Sendable, Equatable {
        case done
        case failed(code: String)
        case cancelled

        /// The client's exit status: 0 done, 1 failed, 130 cancelled (as for Ctrl-C).
        public var exitStatus: Int32 {
            switch self {
            case .done: 0
            case .failed: 1
            case .cancelled: 130
            }
        }
    }

    /// Text for standard output or standard error.
    public enum Output: Sendable, Equatable {
        case out(String)
        case err(String)
    }

    public let style: Style
    public private(set) var outcome: Outcome?
    /// The progress line is on screen (terminal only), to be erased before anything else.
    private var barShown = false
    /// Streamed text left the cursor mid-line.
    private var midLine = false

    public init(style: Style) {
        self.style = style
    }

    /// What to print for one event; `raw` is its JSON as received.
    public mutating func render(_ event: PrefabEvent, raw: String) -> [Output] {
        if event.isTerminal { outcome = Self.outcome(of: event) }
        if style == .json { return [.out(raw + "\n")] }
        switch event.type {
        case PrefabEvent.progress:
            let bar = ProgressBar(data: event.data)
            if case .terminal(let width) = style {
                var text = midLine ? "\n" : ""
                midLine = false
                text += "\r\u{1B}[2K" + bar.render(width: width)
                barShown = true
                return [.out(text)]
            }
            return [.out(lineStart() + bar.plain + "\n")]
        case PrefabEvent.content:
            let text = event.data?.stringValue ?? event.data?.jsonString ?? ""
            let start = eraseBar()
            midLine = !text.hasSuffix("\n")
            return [.out(start + text)]
        case PrefabEvent.start:
            guard let data = event.data, data != .object([:]) else { return [] }
            return [.out(lineStart() + "started " + Self.describe(data) + "\n")]
        case PrefabEvent.done:
            var text = lineStart() + (style == .plain ? "done" : "✔ done")
            if let data = event.data { text += (Self.isShort(data) ? " " : "\n") + Self.describe(data) }
            return [.out(text + "\n")]
        case PrefabEvent.error:
            let code = event.errorCode ?? "UNEXPECTED_ERROR"
            let message = event.data?.stringValue ?? event.data?.jsonString ?? ""
            return [.out(lineStart()), .err((style == .plain ? "error " : "✘ error ") + "\(code): \(message)\n")]
        case PrefabEvent.files:
            var text = lineStart() + "files:\n"
            for file in event.data?.arrayValue ?? [] {
                let name = file["name"]?.stringValue ?? "?"
                let size = file["size"]?.intValue.map { " (\($0) bytes)" } ?? ""
                text += "  \(name)\(size)  \(file["url"]?.stringValue ?? "")\n"
            }
            return [.out(text)]
        case PrefabEvent.question:
            return []  // asked by the client itself
        default:
            var fields = event.fields
            fields["invocation_id"] = nil
            let detail = fields.isEmpty ? "" : " " + JSONValue.object(fields).jsonString
            return [.out(lineStart() + event.type + detail + "\n")]
        }
    }

    /// Makes room for a prompt or a message: the bar erased, the line ended.
    public mutating func lineStart() -> String {
        let erase = eraseBar()
        if midLine {
            midLine = false
            return erase + "\n"
        }
        return erase
    }

    private mutating func eraseBar() -> String {
        guard barShown else { return "" }
        barShown = false
        return "\r\u{1B}[2K"
    }

    static func outcome(of terminal: PrefabEvent) -> Outcome {
        guard terminal.type == PrefabEvent.error else { return .done }
        let code = terminal.errorCode ?? "UNEXPECTED_ERROR"
        return code == "CANCELLED" ? .cancelled : .failed(code: code)
    }

    static func isShort(_ value: JSONValue) -> Bool {
        value.jsonString.count <= 60
    }

    /// A string as itself, anything else as JSON (indented when long).
    static func describe(_ value: JSONValue) -> String {
        if let text = value.stringValue { return text }
        return isShort(value) ? value.jsonString : value.jsonString(pretty: true)
    }
}
