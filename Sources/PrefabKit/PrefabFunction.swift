/// A streaming function: synchronous and generator-style, it calls `context.yield` for each event.
public typealias StreamingFunction = @Sendable (PrefabInputs, PrefabContext) throws -> Void

/// A non-streaming function: returns one JSON value.
public typealias ResultFunction = @Sendable (PrefabInputs, PrefabContext) throws -> JSONValue

/// The implementation behind one manifest function.
public enum PrefabFunction: Sendable {
    case streaming(StreamingFunction)
    case result(ResultFunction)

    public var isStreaming: Bool {
        if case .streaming = self { return true }
        return false
    }
}
