import Foundation

/// Everything the gateway can be told, with the defaults it runs with. Filled from flags and
/// environment variables in one place: the `serve` command.
public struct GatewayConfiguration: Sendable {
    public var host = "127.0.0.1"
    /// 0 picks a free port (tests).
    public var port = 8080
    public var prefabsDirectory = URL(fileURLWithPath: "prefabs")
    /// Runtime data; output files go to `outputs/` inside it.
    public var dataDirectory = URL(fileURLWithPath: "data")
    /// The scheme, host and port that file URLs start with, e.g. `https://gw.example.com`.
    /// Nil: taken from the request's Host header.
    public var publicBaseURL: String?
    /// A broken manifest stops start-up instead of being skipped.
    public var strict = false
    /// Comment lines sent on a stream with no event for this long, to keep proxies from closing it.
    public var heartbeatInterval: Duration = .seconds(15)
    /// How long a connection may wait for a request, or for the rest of a request's headers,
    /// before it is closed: bounds idle keep-alive connections and clients that send slowly
    /// (slowloris). A running response is never cut. Nil: no limit.
    public var idleTimeout: Duration? = .seconds(60)
    /// How long the gateway must go without a call before it gives back the memory a busy spell
    /// brought in (the code it ran, free heap); the first call after pays for mapping its code
    /// again. Nil: never.
    public var idleTrimAfter: Duration? = .seconds(5)
    /// Largest request body accepted (413 beyond).
    public var maxBodyBytes = 1 << 20
    /// Deepest nesting of arrays and objects inside one input value (422 beyond).
    public var maxInputDepth = 32
    /// Longest string or object key inside the inputs, in UTF-8 bytes (422 beyond).
    public var maxInputStringBytes = 256 << 10
    /// Longest request target (path and query), in bytes (414 beyond).
    public var maxURLBytes = 8 << 10
    /// Most bytes in a request's header fields together (431 beyond).
    public var maxHeaderBytes = 32 << 10
    /// How long a stream waits for its function to finish before answering as a stream: a call
    /// done by then is answered whole on a kept-alive connection. The first events of a longer
    /// function are held back this long at most.
    public var quickAnswerWindow: Duration = .milliseconds(2)
    /// How long a call of a function that runs on the event loop (`runs_on_event_loop`) may take
    /// before the function is sent to function threads for good.
    public var eventLoopOverrunLimit: Duration = .milliseconds(10)
    /// Events held between a function and a slow client before `yield` blocks.
    public var streamBufferEvents = 16384
    /// Bytes held between a function and a slow client before `yield` blocks.
    public var streamBufferBytes = 256 << 10
    /// Largest response collected for a streaming function called with `Accept: application/json`.
    public var maxCollectedBytes = 16 << 20
    /// Most functions running at once, each on its own thread; beyond it calls wait in the queue.
    public var maxConcurrentInvocations = 4096
    /// Most calls waiting for a slot (past the total above or a function's `max_concurrency`);
    /// beyond it, and after `queueTimeout` in it, a call gets 429.
    public var maxQueuedInvocations = 64
    /// How long a call waits in the queue for a slot before it gets 429.
    public var queueTimeout: Duration = .seconds(10)
    /// Calls of functions that have proven short which may run at once on the threads that serve
    /// requests (Swift's cooperative pool, one thread per core) instead of on function threads:
    /// one fewer than the cores, so that a call that turns out long never holds them all. Zero
    /// runs every call on a function thread.
    public var shortCallSlots = ProcessInfo.processInfo.activeProcessorCount - 1
    /// Stack size of the threads that run functions.
    public var functionThreadStackBytes = 512 << 10
    /// How long a call may run when its manifest gives no `timeout_seconds`; nil: no limit.
    public var defaultTimeout: Duration? = .seconds(600)
    /// Longest any call may run, whatever its manifest's `timeout_seconds` says.
    public var maxStreamDuration: Duration = .seconds(3600)
    /// How long a cancelled Swift function (timed out, its client gone, cancelled, shutting
    /// down) may take to return before the gateway ends its call itself and counts its thread as
    /// stuck; a process prefab gets its termination grace on top.
    public var stuckFunctionGrace: Duration = .seconds(1)
    /// How long a stream may wait on a client that reads nothing before the client is
    /// disconnected and its call cancelled.
    public var clientIdleTimeout: Duration = .seconds(60)
    /// Bearer tokens that may call the gateway; empty: no authentication.
    public var apiKeys: [String] = []
    /// Origins whose pages may call the gateway from a browser (CORS); empty: CORS is off. A
    /// request with any other `Origin` (but the gateway's own) is refused.
    public var corsOrigins: [String] = []
    /// Host names the gateway answers for besides IP addresses, `localhost` (and `*.localhost`),
    /// the name it listens on and the `publicBaseURL` host: `gw.example.com`, `*.example.com`
    /// for any name under it, or `*` for any host at all. Other `Host` headers get 421 (DNS rebinding).
    public var allowedHosts: [String] = []
    /// How process prefabs (Python and commands) are run.
    public var processes = ProcessRuntime.Options()
    /// The most bytes a call may write into its output folder; past it the call ends with
    /// `OUTPUT_TOO_LARGE` and the folder is deleted. Kept in `processes`, which stops children early.
    public var maxOutputBytes: Int {
        get { processes.maxOutputBytes }
        set { processes.maxOutputBytes = newValue }
    }
    /// How long output files are kept after their invocation.
    public var outputRetention: Duration = .seconds(3600)
    /// Events of an invocation kept after its clients have taken them, so that a client whose
    /// connection dropped can resume (`Last-Event-ID`) without gaps.
    public var eventHistoryBytes = 1 << 20
    /// How long a running call whose last client disconnected waits for one to resume before it
    /// is cancelled; zero cancels at once.
    public var resumeGrace: Duration = .seconds(10)
    /// How long `ask` waits for an answer when the function gives no timeout; nil: no limit.
    public var questionTimeout: Duration? = .seconds(300)
    /// How long a finished invocation stays reachable at `/invocations/<id>`.
    public var invocationRetention: Duration = .seconds(300)
    /// Most finished invocations kept reachable; the oldest are forgotten first.
    public var maxFinishedInvocations = 10_000
    /// Most bytes of events kept for finished invocations in all.
    public var maxFinishedInvocationBytes = 64 << 20
    /// Most MCP sessions open at once on `/mcp`; past it `initialize` is refused until one ends.
    public var maxMCPSessions = 64
    /// How long an MCP session with no request and no running call is kept.
    public var mcpSessionIdleTimeout: Duration = .seconds(600)

    /// The shared invocation store of a cluster of replicas (`--store postgres://…`); nil: every
    /// invocation lives in this process's memory only.
    public var store: StoreLocation?
    /// With a store: how long a replica may go without renewing its lease before another one
    /// ends its running calls with `REPLICA_LOST`. Renewed every quarter of it (0.5–2 s).
    public var replicaLease: Duration = .seconds(5)
    /// This replica's name for the balancer (`--route-id`): MCP session ids start with it and a
    /// dot, so that a balancer can send a session's requests to the replica that holds it.
    public var routeID: String?

    public init() {}

    public var outputsDirectory: URL { dataDirectory.appendingPathComponent("outputs") }
}
