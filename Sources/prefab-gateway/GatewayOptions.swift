import ArgumentParser
import Foundation
import Hummingbird
import Logging
import PrefabGateway

/// The flags of `serve` that configure a gateway, shared with `mcp`.
struct GatewayOptions: ParsableArguments {
    @OptionGroup var prefabs: PrefabsOptions

    @Option(help: "Address to listen on (env PREFAB_GATEWAY_HOST; default 127.0.0.1).")
    var host: String?

    @Option(
        help: "Port to listen on, 0 for any free one (serve: env PREFAB_GATEWAY_PORT, default 8080; mcp: default 0)."
    )
    var port: Int?

    @Option(
        name: .customLong("data"),
        help: "Runtime data directory; output files go under outputs/ (env PREFAB_GATEWAY_DATA; default ./data).")
    var dataDirectory: String?

    @Option(
        name: .customLong("public-url"),
        help:
            "Scheme, host and port of file URLs, e.g. https://gw.example.com (env PREFAB_GATEWAY_PUBLIC_URL; default: the request's Host)."
    )
    var publicURL: String?

    @Flag(help: "Refuse to start when any prefab fails to load (env PREFAB_GATEWAY_STRICT=1).")
    var strict = false

    @Option(help: "Seconds between heartbeat comments on an idle stream (env PREFAB_GATEWAY_HEARTBEAT; default 15).")
    var heartbeat: Double?

    @Option(
        help:
            "Seconds a connection may wait for a request or the rest of its headers before it is closed, 0 for no limit (env PREFAB_GATEWAY_IDLE_TIMEOUT; default 60)."
    )
    var idleTimeout: Double?

    @Option(help: "Largest request body in bytes (env PREFAB_GATEWAY_MAX_BODY; default 1048576).")
    var maxBodyBytes: Int?

    @Option(
        help: "Most calls running at once; more wait in the queue (env PREFAB_GATEWAY_MAX_CONCURRENT; default 4096).")
    var maxConcurrent: Int?

    @Option(
        help:
            "Most bytes a call may write into its output folder; past it the call fails with OUTPUT_TOO_LARGE (env PREFAB_GATEWAY_MAX_OUTPUT_BYTES; default 268435456)."
    )
    var maxOutputBytes: Int?

    @Option(
        help:
            "Seconds output files are kept after their call ended, never while it runs (env PREFAB_GATEWAY_OUTPUT_RETENTION; default 3600)."
    )
    var outputRetention: Double?

    @Option(
        help:
            "Seconds a call may run when its manifest gives no timeout_seconds, 0 for no limit (env PREFAB_GATEWAY_TIMEOUT; default 600)."
    )
    var timeout: Double?

    @Option(help: "The Python for Python prefabs without a .venv (env PREFAB_GATEWAY_PYTHON; default python3).")
    var python: String?

    @Option(
        help:
            "Children started ahead of time per process prefab, each used once: skips Python's start-up (env PREFAB_GATEWAY_WARM_PROCESSES; default 0)."
    )
    var warmProcesses: Int?

    @Option(
        help:
            "Seconds between SIGTERM and SIGKILL when a process prefab is stopped (env PREFAB_GATEWAY_TERMINATION_GRACE; default 2)."
    )
    var terminationGrace: Double?

    @Option(
        help:
            "Seconds a running call waits for a client to resume after its last one disconnected, 0 to cancel at once (env PREFAB_GATEWAY_RESUME_GRACE; default 10)."
    )
    var resumeGrace: Double?

    @Option(
        help:
            "Seconds a question waits for its answer when the function gives no timeout, 0 for no limit (env PREFAB_GATEWAY_QUESTION_TIMEOUT; default 300)."
    )
    var questionTimeout: Double?

    @Option(
        help:
            "Seconds from SIGTERM or SIGINT to the process's end: running calls end with SHUTTING_DOWN at once, and whatever is still open then is cut (env PREFAB_GATEWAY_SHUTDOWN_GRACE; default 5)."
    )
    var shutdownGrace: Double?

    @Option(
        help:
            "Seconds a finished invocation stays reachable at /invocations/<id> (env PREFAB_GATEWAY_INVOCATION_RETENTION; default 300)."
    )
    var invocationRetention: Double?

    @Option(
        help:
            "Seconds without a call after which the gateway gives back the memory a busy spell brought in (the code it ran, free heap), 0 for never (env PREFAB_GATEWAY_IDLE_TRIM; default 5)."
    )
    var idleTrim: Double?

    @Option(
        help:
            "Bytes of already-sent events kept per invocation for clients that resume (env PREFAB_GATEWAY_EVENT_HISTORY; default 1048576)."
    )
    var eventHistoryBytes: Int?

    @Option(
        help:
            "A PostgreSQL URL (postgres://user:password@host:port/database) shared by the replicas of a cluster: invocations, their events, messages and cancels live there, so any replica serves any call (env PREFAB_GATEWAY_STORE; default: none, all in memory)."
    )
    var store: String?

    @Option(
        help:
            "With --store: seconds a replica may go without renewing its lease before another ends its running calls with REPLICA_LOST (env PREFAB_GATEWAY_REPLICA_LEASE; default 5)."
    )
    var replicaLease: Double?

    @Option(
        help:
            "This replica's name for the balancer (letters, digits, - and _): MCP session ids start with it and a dot, so the balancer can route a session to the replica that holds it (env PREFAB_GATEWAY_ROUTE_ID; default: none)."
    )
    var routeID: String?

    @OptionGroup(title: "Limits") var limits: LimitOptions

    @OptionGroup(title: "Access") var access: AccessOptions

    @Option(
        help: "trace, debug, info, notice, warning, error or critical (env PREFAB_GATEWAY_LOG_LEVEL; default info).")
    var logLevel: String?

    /// The gateway's configuration, its logger and its shutdown grace in seconds, from the flags
    /// and their `PREFAB_GATEWAY_*` variables.
    func make() throws -> (configuration: GatewayConfiguration, logger: Logger, shutdownGrace: Double) {
        var configuration = GatewayConfiguration()
        configuration.prefabsDirectory = prefabs.url
        configuration.host = try host ?? Environment.parse("PREFAB_GATEWAY_HOST") ?? configuration.host
        configuration.port = try port ?? Environment.parse("PREFAB_GATEWAY_PORT") ?? configuration.port
        if let data = dataDirectory ?? Environment.value("PREFAB_GATEWAY_DATA") {
            configuration.dataDirectory = URL(fileURLWithPath: data)
        }
        configuration.publicBaseURL = (publicURL ?? Environment.value("PREFAB_GATEWAY_PUBLIC_URL")).map {
            $0.hasSuffix("/") ? String($0.dropLast()) : $0
        }
        configuration.strict = strict || Environment.value("PREFAB_GATEWAY_STRICT") == "1"
        if let seconds = try heartbeat ?? Environment.parse("PREFAB_GATEWAY_HEARTBEAT") as Double? {
            guard seconds > 0 else { throw ValidationError("--heartbeat must be positive") }
            configuration.heartbeatInterval = .milliseconds(Int(seconds * 1000))
        }
        if let seconds = try idleTimeout ?? Environment.parse("PREFAB_GATEWAY_IDLE_TIMEOUT") as Double? {
            configuration.idleTimeout = seconds > 0 ? .milliseconds(Int(seconds * 1000)) : nil
        }
        configuration.maxBodyBytes =
            try maxBodyBytes ?? Environment.parse("PREFAB_GATEWAY_MAX_BODY") ?? configuration.maxBodyBytes
        configuration.maxConcurrentInvocations =
            try maxConcurrent ?? Environment.parse("PREFAB_GATEWAY_MAX_CONCURRENT")
            ?? configuration.maxConcurrentInvocations
        configuration.maxOutputBytes =
            try maxOutputBytes ?? Environment.parse("PREFAB_GATEWAY_MAX_OUTPUT_BYTES") ?? configuration.maxOutputBytes
        guard configuration.maxOutputBytes >= 0 else {
            throw ValidationError("--max-output-bytes must not be negative")
        }
        if let seconds = try outputRetention ?? Environment.parse("PREFAB_GATEWAY_OUTPUT_RETENTION") as Double? {
            configuration.outputRetention = .milliseconds(Int(seconds * 1000))
        }
        if let seconds = try timeout ?? Environment.parse("PREFAB_GATEWAY_TIMEOUT") as Double? {
            configuration.defaultTimeout = seconds > 0 ? .milliseconds(Int(seconds * 1000)) : nil
        }
        configuration.processes.warmProcesses =
            try warmProcesses ?? Environment.parse("PREFAB_GATEWAY_WARM_PROCESSES") ?? 0
        configuration.processes.python = python ?? Environment.value("PREFAB_GATEWAY_PYTHON") ?? "python3"
        if let seconds = try terminationGrace ?? Environment.parse("PREFAB_GATEWAY_TERMINATION_GRACE") as Double? {
            configuration.processes.terminationGrace = .milliseconds(Int(max(0, seconds) * 1000))
        }
        if let seconds = try resumeGrace ?? Environment.parse("PREFAB_GATEWAY_RESUME_GRACE") as Double? {
            configuration.resumeGrace = .milliseconds(Int(max(0, seconds) * 1000))
        }
        if let seconds = try questionTimeout ?? Environment.parse("PREFAB_GATEWAY_QUESTION_TIMEOUT") as Double? {
            configuration.questionTimeout = seconds > 0 ? .milliseconds(Int(seconds * 1000)) : nil
        }
        if let seconds = try idleTrim ?? Environment.parse("PREFAB_GATEWAY_IDLE_TRIM") as Double? {
            configuration.idleTrimAfter = seconds > 0 ? .milliseconds(Int(seconds * 1000)) : nil
        }
        if let seconds = try invocationRetention ?? Environment.parse("PREFAB_GATEWAY_INVOCATION_RETENTION") as Double?
        {
            configuration.invocationRetention = .milliseconds(Int(max(0, seconds) * 1000))
        }
        configuration.eventHistoryBytes =
            try eventHistoryBytes ?? Environment.parse("PREFAB_GATEWAY_EVENT_HISTORY")
            ?? configuration.eventHistoryBytes
        if let url = store ?? Environment.value("PREFAB_GATEWAY_STORE"), !url.isEmpty {
            guard let location = StoreLocation(url: url) else {
                throw ValidationError(
                    "--store must be a postgres://user:password@host:port/database URL (sslmode=disable, prefer or require)"
                )
            }
            configuration.store = location
        }
        if let seconds = try replicaLease ?? Environment.parse("PREFAB_GATEWAY_REPLICA_LEASE") as Double? {
            guard seconds >= 1, seconds.isFinite else { throw ValidationError("--replica-lease must be at least 1") }
            configuration.replicaLease = .milliseconds(Int(seconds * 1000))
        }
        if let route = routeID ?? Environment.value("PREFAB_GATEWAY_ROUTE_ID"), !route.isEmpty {
            let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")
            guard route.count <= 64, route.allSatisfy({ allowed.contains($0) }) else {
                throw ValidationError("--route-id takes up to 64 letters, digits, - and _")
            }
            configuration.routeID = route
        }
        try limits.apply(to: &configuration)
        try access.apply(to: &configuration)
        let levelName = logLevel ?? Environment.value("PREFAB_GATEWAY_LOG_LEVEL") ?? "info"
        guard let level = Logger.Level(rawValue: levelName) else {
            throw ValidationError("unknown log level '\(levelName)'")
        }
        var logger = Logger(label: "prefab-gateway")
        logger.logLevel = level

        let grace = try shutdownGrace ?? Environment.parse("PREFAB_GATEWAY_SHUTDOWN_GRACE") ?? 5
        guard grace >= 0, grace.isFinite else { throw ValidationError("--shutdown-grace must not be negative") }

        return (configuration, logger, grace)
    }

    /// Loads the prefabs; a strict start that fails is reported on stderr.
    static func loadGateway(_ configuration: GatewayConfiguration, logger: Logger) throws -> Gateway {
        do {
            return try Gateway.load(configuration: configuration, compiled: CompiledPrefabs.all, logger: logger)
        } catch let error as GatewayStartError {
            FileHandle.standardError.write(Data("error: \(error)\n".utf8))
            throw ExitCode.failure
        }
    }
}
