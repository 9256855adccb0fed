/// A streaming function: synchronous and generator-style, it calls `context.yield` for each event.
public typealias StreamingFunction = @Sendable (PrefabInputs, PrefabContext) throws -> Void

/// A streaming function that awaits instead of blocking: `try await context.yield(...)`,
/// `try await context.sleep(for:)`. While it waits it holds no thread, only its task; use it for
/// functions that spend their time waiting (timers, network calls), never for ones that block.
public typealias AsyncStreamingFunction = @Sendable (PrefabInputs, PrefabContext) async throws -> Void

/// A non-streaming function: returns one JSON value.
public typealias ResultFunction = @Sendable (PrefabInputs, PrefabContext) throws -> JSONValue

/// The implementation behind one manifest function: the prefab registry, generated at build time
/// from the manifests, holds one for each.
public enum PrefabFunction: Sendable {
    /// A synchronous streaming function.
    case streaming(StreamingFunction)
    /// A non-streaming function.
    case result(ResultFunction)
    /// An async streaming function.
    case asyncStreaming(AsyncStreamingFunction)

    /// A streaming function, synchronous or async: what the prefab registry writes for each
    /// streaming manifest function, whichever flavour its static function has.
    public init(streaming function: @escaping StreamingFunction) {
        self = .streaming(function)
    }

    /// An async streaming function, from the same spelling as a synchronous one.
    public init(streaming function: @escaping AsyncStreamingFunction) {
        self = .asyncStreaming(function)
    }

    /// Whether the function streams events: false for a ``ResultFunction``.
    public var isStreaming: Bool {
        if case .result = self { return false }
        return true
    }
}
