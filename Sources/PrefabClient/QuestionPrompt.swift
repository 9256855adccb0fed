import PrefabKit

/// A `question` event as the terminal client shows it, and the reading of a typed answer.
public struct QuestionPrompt: Sendable, Equatable {
    public var id: String
    public var text: String
    public var options: [JSONValue]

    /// Nil when the event has no `data.questionId` (nothing could answer it).
    public init?(_ event: PrefabEvent) {
        guard let id = event.data?["questionId"]?.stringValue else { return nil }
        self.id = id
        text = event["text"]?.stringValue ?? event.data?["text"]?.stringValue ?? "(question \(id))"
        options = event.data?["options"]?.arrayValue ?? []
    }

    /// The question and its numbered options.
    public var lines: [String] {
        var lines = ["? " + text]
        for (index, option) in options.enumerated() {
            lines.append("  \(index + 1)) \(Self.label(option))")
        }
        return lines
    }

    /// The answer for what was typed: an option's number or text when there are options (nil if
    /// it is neither), else the text itself.
    public func answer(for typed: String) -> JSONValue? {
        let typed = typed.trimmingWhitespace
        guard !options.isEmpty else { return .string(typed) }
        if let number = Int(typed), options.indices.contains(number - 1) { return options[number - 1] }
        return options.first { Self.label($0) == typed }
    }

    static func label(_ option: JSONValue) -> String {
        option.stringValue ?? option.jsonString
    }
}

extension String {
    var trimmingWhitespace: String {
        String(drop(while: \.isWhitespace).reversed().drop(while: \.isWhitespace).reversed())
    }
}
