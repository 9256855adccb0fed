/// One Server-Sent Event as a client receives it.
public struct SSEMessage: Sendable, Equatable {
    /// The event type; "message" when the event had no `event` field.
    public var event: String
    public var data: String
    /// The last event ID in effect when the event was dispatched; "" when there is none.
    public var lastEventId: String

    public init(event: String = "message", data: String, lastEventId: String = "") {
        self.event = event
        self.data = data
        self.lastEventId = lastEventId
    }
}
