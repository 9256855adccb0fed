extension SSEEncoder {
    /// Appends `id: <id>` and `data: <event as one-line JSON>`: the gateway's frame for every event.
    ///
    /// Compact JSON escapes every line break, so the event is written straight into `bytes`.
    public static func appendEvent(_ event: PrefabEvent, id: Int, to bytes: inout [UInt8]) {
        bytes.append(contentsOf: "id: ".utf8)
        bytes.append(contentsOf: String(id).utf8)
        bytes.append(contentsOf: "\ndata: ".utf8)
        event.appendJSON(to: &bytes)
        bytes.append(contentsOf: "\n\n".utf8)
    }
}
