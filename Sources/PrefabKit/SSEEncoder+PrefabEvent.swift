extension SSEEncoder {
    /// Appends `id: <id>` and `data: <event as one-line JSON>`: the gateway's frame for every event.
    ///
    /// Compact JSON escapes every line break, so the event is written straight into `bytes`.
    public static func appendEvent(_ event: PrefabEvent, id: Int, to bytes: inout [UInt8]) {
        if event.appendSmallSSEMessage(id: id, to: &bytes) { return }
        JSONValue.appendASCII("id: ", to: &bytes)
        JSONValue.appendInteger(id, to: &bytes)
        JSONValue.appendASCII("\ndata: ", to: &bytes)
        event.appendJSON(to: &bytes)
        JSONValue.appendASCII("\n\n", to: &bytes)
    }

    /// `appendEvent` of the event with one more member (``PrefabEvent/appendJSON(to:adding:_:)``).
    public static func appendEvent(
        _ event: PrefabEvent, adding key: String, _ value: JSONValue, id: Int, to bytes: inout [UInt8]
    ) {
        JSONValue.appendASCII("id: ", to: &bytes)
        JSONValue.appendInteger(id, to: &bytes)
        JSONValue.appendASCII("\ndata: ", to: &bytes)
        event.appendJSON(to: &bytes, adding: key, value)
        JSONValue.appendASCII("\n\n", to: &bytes)
    }
}
