import ArgumentParser
import PrefabGateway

/// The `serve` flags that bound what one request or one call may take.
struct LimitOptions: ParsableArguments {
    @Option(
        help:
            "Deepest nesting of arrays and objects in an input value; deeper gets 422 (env PREFAB_GATEWAY_MAX_INPUT_DEPTH; default 32)."
    )
    var maxInputDepth: Int?

    @Option(
        help:
            "Longest string in the inputs, in bytes; longer gets 422 (env PREFAB_GATEWAY_MAX_INPUT_STRING; default 262144)."
    )
    var maxInputStringBytes: Int?

    @Option(help: "Longest URL (path and query) in bytes; longer gets 414 (env PREFAB_GATEWAY_MAX_URL; default 8192).")
    var maxURLBytes: Int?

    @Option(help: "Most bytes of request headers; more gets 431 (env PREFAB_GATEWAY_MAX_HEADERS; default 32768).")
    var maxHeaderBytes: Int?

    @Option(
        help:
            "Calls waiting for a slot when the gateway or a function is at its limit; more get 429 (env PREFAB_GATEWAY_MAX_QUEUED; default 64)."
    )
    var maxQueued: Int?

    @Option(
        help:
            "Seconds a call waits in the queue for a slot before it gets 429 (env PREFAB_GATEWAY_QUEUE_TIMEOUT; default 10)."
    )
    var queueTimeout: Double?

    @Option(
        help: "Seconds any call may run, whatever its manifest says (env PREFAB_GATEWAY_MAX_DURATION; default 3600).")
    var maxDuration: Double?

    @Option(
        help:
            "Seconds a stream waits on a client that reads nothing before dropping it and cancelling its call (env PREFAB_GATEWAY_CLIENT_IDLE_TIMEOUT; default 60)."
    )
    var clientIdleTimeout: Double?

    @Option(
        name: .customLong("max-mcp-sessions"),
        help:
            "MCP sessions open at once on /mcp; past it initialize is refused until one ends (env PREFAB_GATEWAY_MAX_MCP_SESSIONS; default 64)."
    )
    var maxMCPSessions: Int?

    @Option(
        name: .customLong("mcp-session-idle"),
        help:
            "Seconds an MCP session with no request and no running call is kept (env PREFAB_GATEWAY_MCP_SESSION_IDLE; default 600)."
    )
    var mcpSessionIdle: Double?

    func apply(to configuration: inout GatewayConfiguration) throws {
        configuration.maxInputDepth =
            try positive(maxInputDepth, "PREFAB_GATEWAY_MAX_INPUT_DEPTH") ?? configuration.maxInputDepth
        configuration.maxInputStringBytes =
            try positive(maxInputStringBytes, "PREFAB_GATEWAY_MAX_INPUT_STRING") ?? configuration.maxInputStringBytes
        configuration.maxURLBytes = try positive(maxURLBytes, "PREFAB_GATEWAY_MAX_URL") ?? configuration.maxURLBytes
        configuration.maxHeaderBytes =
            try positive(maxHeaderBytes, "PREFAB_GATEWAY_MAX_HEADERS") ?? configuration.maxHeaderBytes
        if let queued = try maxQueued ?? Environment.parse("PREFAB_GATEWAY_MAX_QUEUED") as Int? {
            guard queued >= 0 else { throw ValidationError("--max-queued must be 0 or more") }
            configuration.maxQueuedInvocations = queued
        }
        configuration.queueTimeout =
            try duration(queueTimeout, "PREFAB_GATEWAY_QUEUE_TIMEOUT") ?? configuration.queueTimeout
        configuration.maxStreamDuration =
            try duration(maxDuration, "PREFAB_GATEWAY_MAX_DURATION") ?? configuration.maxStreamDuration
        configuration.clientIdleTimeout =
            try duration(clientIdleTimeout, "PREFAB_GATEWAY_CLIENT_IDLE_TIMEOUT") ?? configuration.clientIdleTimeout
        configuration.maxMCPSessions =
            try positive(maxMCPSessions, "PREFAB_GATEWAY_MAX_MCP_SESSIONS") ?? configuration.maxMCPSessions
        configuration.mcpSessionIdleTimeout =
            try duration(mcpSessionIdle, "PREFAB_GATEWAY_MCP_SESSION_IDLE") ?? configuration.mcpSessionIdleTimeout
    }

    private func positive(_ flag: Int?, _ variable: String) throws -> Int? {
        guard let value = try flag ?? Environment.parse(variable) as Int? else { return nil }
        guard value > 0 else { throw ValidationError("\(variable) (or its flag) must be positive, not \(value)") }
        return value
    }

    private func duration(_ flag: Double?, _ variable: String) throws -> Duration? {
        guard let seconds = try flag ?? Environment.parse(variable) as Double? else { return nil }
        guard seconds > 0 else { throw ValidationError("\(variable) (or its flag) must be positive, not \(seconds)") }
        return .milliseconds(Int(seconds * 1000))
    }
}
