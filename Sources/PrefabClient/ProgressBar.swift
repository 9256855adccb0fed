import PrefabKit

/// One line showing a `progress` event: a bar, the percentage, current / total and the message,
/// cut to the terminal's width.
public struct ProgressBar: Sendable, Equatable {
    public var current: Int?
    public var total: Int?
    public var percentage: Int
    public var message: String?

    /// Reads a `progress` event's data; the percentage is computed when it is missing.
    public init(data: JSONValue?) {
        let data = data?.objectValue ?? [:]
        current = data["current"]?.intValue
        total = data["total"]?.intValue
        if let percentage = data["percentage"]?.intValue {
            self.percentage = percentage
        } else if let current, let total, total > 0 {
            percentage = current * 100 / total
        } else {
            percentage = 0
        }
        percentage = min(100, max(0, percentage))
        message = data["message"]?.stringValue
    }

    /// The line, at most `width` characters.
    public func render(width: Int, barWidth: Int = 24) -> String {
        let filled = barWidth * percentage / 100
        var line = "[" + String(repeating: "█", count: filled) + String(repeating: "░", count: barWidth - filled) + "]"
        line += " " + String(percentage).leftPadded(to: 3) + "%"
        if let current, let total { line += "  \(current)/\(total)" }
        if let message, !message.isEmpty { line += "  " + message }
        return line.count > width ? String(line.prefix(max(0, width - 1))) + "…" : line
    }

    /// The line for a terminal that is not one (a pipe, a file): no bar.
    public var plain: String {
        var line = "progress \(percentage)%"
        if let current, let total { line += " \(current)/\(total)" }
        if let message, !message.isEmpty { line += " " + message }
        return line
    }
}

extension String {
    func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: " ", count: width - count) + self
    }
}
