import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdWebSocket
import Logging
import PrefabKit
import ServiceLifecycle

/// The gateway: the loaded prefabs, the threads that run them, and the HTTP application that
/// serves them.
///
/// A class: every call's closures (its task, its timers, its cancel handlers) capture it, and a
/// struct this size was copied into each of them (~650 bytes a closure, 2 KB a stream).
public final class Gateway: Sendable {
    public let configuration: GatewayConfiguration
    public let catalog: PrefabCatalog
    let outputs: OutputStore
    let outputOwners = OutputOwners()
    let pool: FunctionThreadPool
    let shortCalls: ShortCalls
    let eventLoopCalls: EventLoopCalls
    let invocations: InvocationStore
    let runningCalls = RunningCalls()
    let admissions: AdmissionControl
    let playground = Playground()
    let heartbeats: HeartbeatTimer
    let metrics: GatewayMetrics
    let logger: Logger
    /// The MCP sessions of `/mcp`.
    let mcp: MCPSessions
    /// The process runtime of the loaded prefabs, whose workers end with the gateway.
    let processes: ProcessRuntime?
    /// The shared invocation store of a cluster (`--store`); nil for one gateway alone.
    let store: SharedStore?
    /// Clients following this replica's calls through other replicas.
    let remoteFollowers = RemoteFollowers()
    /// The checks every request passes (the common middleware's, also run by `InvokeFastPath`).
    let browserAccess: BrowserAccessPolicy
    let headSizeLimits: HeadSizeLimits
    let apiKeys: APIKeys

    public convenience init(configuration: GatewayConfiguration, catalog: PrefabCatalog, logger: Logger? = nil) {
        self.init(configuration: configuration, catalog: catalog, logger: logger, metrics: GatewayMetrics())
    }

    init(
        configuration: GatewayConfiguration, catalog: PrefabCatalog, logger: Logger?, metrics: GatewayMetrics,
        processes: ProcessRuntime? = nil
    ) {
        self.metrics = metrics
        self.processes = processes
        self.configuration = configuration
        self.catalog = catalog
        self.browserAccess = BrowserAccessPolicy(configuration: configuration)
        self.headSizeLimits = HeadSizeLimits(
            maxURLBytes: configuration.maxURLBytes, maxHeaderBytes: configuration.maxHeaderBytes)
        self.apiKeys = APIKeys(configuration.apiKeys)
        self.outputs = OutputStore(root: configuration.outputsDirectory)
        // Admission control keeps calls to `maxConcurrentInvocations`; a call gives its slot back
        // just before its thread is free, so the pool allows for that many threads finishing.
        self.pool = FunctionThreadPool(
            maxThreads: 2 * configuration.maxConcurrentInvocations,
            stackSize: configuration.functionThreadStackBytes
        )
        // Only compiled Swift functions: a process prefab's call blocks on pipes and may wait for
        // a worker, which must not hold a thread that serves requests.
        self.shortCalls = ShortCalls(
            functions: catalog.functions.filter { $0.value.runtime == "swift" }.keys,
            slots: configuration.shortCallSlots
        )
        // Synchronous Swift functions only: an async one runs on the loop anyway, as a task.
        self.eventLoopCalls = EventLoopCalls(
            functions: catalog.functions.values.compactMap { function in
                if case .streaming = function.implementation, function.runtime == "swift" {
                    function.manifest
                } else {
                    nil
                }
            }, overrunLimit: configuration.eventLoopOverrunLimit)
        self.admissions = AdmissionControl(
            maxRunning: configuration.maxConcurrentInvocations,
            maxQueued: configuration.maxQueuedInvocations,
            queueTimeout: configuration.queueTimeout
        )
        self.invocations = InvocationStore(
            retention: configuration.invocationRetention,
            maxFinished: configuration.maxFinishedInvocations,
            maxFinishedBytes: configuration.maxFinishedInvocationBytes
        )
        self.heartbeats = HeartbeatTimer(
            interval: configuration.heartbeatInterval,
            clientIdleTimeout: configuration.clientIdleTimeout
        )
        self.logger = logger ?? Logger(label: "prefab-gateway")
        self.mcp = MCPSessions(
            catalog: catalog,
            maxSessions: configuration.maxMCPSessions,
            idleTimeout: configuration.mcpSessionIdleTimeout,
            pings: heartbeats,
            logger: self.logger
        )
        self.store = configuration.store.map { location in
            SharedStore(
                location: location, lease: configuration.replicaLease,
                retention: configuration.invocationRetention, historyBytes: configuration.eventHistoryBytes,
                logger: logger ?? Logger(label: "prefab-gateway"))
        }
        _ = TimerHeap.shared  // its thread starts with the gateway, not with the first call
        store?.onCommand { [weak self] command in
            await self?.apply(command) ?? (503, #"{"error": {"code": "SHUTTING_DOWN", "message": "gone"}}"#)
        }
    }

    /// Calls started so far and running now, for telling when the gateway has gone quiet.
    public var callActivity: QuietSpell.Activity { runningCalls.activity }

    /// Returns once the Python workers started ahead are up, or after `limit`: the last of
    /// start-up's work.
    public func workersStarted(within limit: Duration = .seconds(30)) async {
        let deadline = ContinuousClock.now + limit
        while (processes?.workersStarting ?? 0) > 0, ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(50))
        }
    }

    public static func load(
        configuration: GatewayConfiguration,
        compiled: [String: [String: PrefabFunction]],
        logger: Logger? = nil
    ) throws -> Gateway {
        let logger = logger ?? Logger(label: "prefab-gateway")
        let metrics = GatewayMetrics()
        let processes = ProcessRuntime(options: configuration.processes, logger: logger) { duration in
            metrics.processSpawned(in: duration)
        }
        let catalog = PrefabCatalog.load(from: configuration.prefabsDirectory, compiled: compiled, processes: processes)
        for problem in catalog.problems {
            logger.error(
                "prefab not loaded",
                metadata: ["file": "\(problem.file)", "path": "\(problem.path)", "reason": "\(problem.reason)"])
        }
        if configuration.strict, !catalog.problems.isEmpty {
            throw GatewayStartError(problems: catalog.problems)
        }
        logger.info("loaded \(catalog.functions.count) functions from \(configuration.prefabsDirectory.path)")
        processes.prewarm()
        return Gateway(
            configuration: configuration, catalog: catalog, logger: logger, metrics: metrics, processes: processes)
    }

    /// The HTTP application, ready to run (or to test with HummingbirdTesting). Once its server
    /// stops listening (a graceful shutdown began), every running call is ended with
    /// `SHUTTING_DOWN`, and then `onShutdown` runs.
    public func makeApplication(
        onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in },
        onShutdown: @escaping @Sendable () -> Void = {}
    ) -> some ApplicationProtocol {
        // HEAD wherever GET works: the GET's status and headers, no body.
        let router = Router(context: GatewayRequestContext.self, options: .autoGenerateHeadEndpoints)
        addCommonMiddleware(to: router)
        router.get("/") { _, _ in try self.playground.response(for: "index.html") }
        router.get("/playground/:file") { _, context in
            try self.playground.response(for: context.parameters.get("file") ?? "")
        }
        router.get("/manifest") { request, _ in self.manifestResponse(request) }
        router.get("/health") { _, _ in self.healthResponse() }
        router.get("/metrics") { _, _ in self.metricsResponse() }
        router.get("/openapi.json") { _, _ in self.openAPIResponse() }
        router.post("/invoke/:name") { request, context in try await self.invoke(request, context: context) }
        router.get("/invoke/:name/ws") { _, context in try self.webSocketWithoutUpgrade(context: context) }
        router.get("/files/:invocation/**") { request, context in try await self.file(request, context: context) }
        router.get("/invocations/:id") { _, context in try await self.invocationStatus(context: context) }
        router.delete("/invocations/:id") { _, context in try await self.cancelInvocation(context: context) }
        router.post("/invocations/:id/cancel") { _, context in try await self.cancelInvocation(context: context) }
        router.post("/invocations/:id/messages") { request, context in
            try await self.deliverMessage(request, context: context)
        }
        router.get("/invocations/:id/events") { request, context in
            try await self.invocationEvents(request, context: context)
        }
        router.head("/invocations/:id/events") { request, context in
            try self.invocationEventsHead(request, context: context)
        }
        addMCPRoutes(to: router)
        addOpenAIRoutes(to: router)
        router.post("/ai-sdk/:name") { request, context in try await self.aiSDKChat(request, context: context) }
        var services: [any Service] = [
            OutputSweeper(
                outputs: outputs, owners: outputOwners, retention: configuration.outputRetention,
                isRunning: { [invocations] in invocations.invocation($0)?.phase == .running },
                logger: self.logger)
        ]
        if let store { services.append(store) }
        var logger = logger
        logger.logLevel = .warning  // Hummingbird's own request lines; invocations log on ours.
        return Application(
            responder: ShallowResponder(inner: router.buildResponder()),
            server: .http1WebSocketUpgradeQuiescing(
                webSocketRouter: makeWebSocketRouter(),
                idleTimeout: configuration.idleTimeout,
                maxFrameBytes: configuration.maxBodyBytes,
                additionalChannelHandlers: [InvokeFastPathInstaller(gateway: self)]
            ),
            configuration: ApplicationConfiguration(
                address: .hostname(configuration.host, port: configuration.port),
                serverName: Self.serverName,
                backlog: Self.listenBacklog
            ),
            services: services,
            onServerRunning: { channel in
                ListeningSocket.closeOnExec(port: channel.localAddress?.port)
                // The listening socket closes when a graceful shutdown begins: the streams that
                // are still open would otherwise keep the server (and the process) waiting.
                channel.closeFuture.whenComplete { _ in
                    Task { await self.mcp.closeAll() }
                    self.beginShutdown()
                    self.processes?.shutdown()
                    onShutdown()
                }
                await onServerRunning(channel.localAddress?.port ?? 0)
            },
            logger: logger
        )
    }

    /// CORS, error bodies, the browser checks (`Host`, `Origin`), size limits and API keys, in
    /// that order: a preflight is answered before a key is asked for, every error gets the JSON
    /// error body and CORS headers, and a cross-site or rebound request is refused before any work.
    /// The WebSocket router has them too, so an upgrade is checked like any request.
    func addCommonMiddleware<Context: APIKeyRequestContext>(to router: Router<Context>) {
        if !configuration.corsOrigins.isEmpty {
            router.middlewares.add(CORSAllowList(origins: configuration.corsOrigins))
        }
        router.middlewares.add(ErrorMiddleware())
        router.middlewares.add(BrowserAccessMiddleware(policy: browserAccess))
        router.middlewares.add(RequestSizeLimits(limits: headSizeLimits))
        router.middlewares.add(APIKeyMiddleware(keys: apiKeys))
    }

    /// The manifest, with an `ETag` of its bytes: a client that polls it with `If-None-Match`
    /// gets 304 until the functions change.
    func manifestResponse(_ request: Request) -> Response {
        let functions = catalog.functions.values.sorted { $0.manifest.name < $1.manifest.name }.map { function in
            var entry = function.manifest.json.objectValue ?? [:]
            entry["streaming"] = .bool(function.manifest.streaming)
            entry["prefab"] = .string(function.prefab)
            entry["runtime"] = .string(function.runtime)
            return JSONValue.object(entry)
        }
        return .json(["functions": .array(functions)], conditionalOn: request)
    }

    func metricsResponse() -> Response {
        let text = metrics.render(
            running: admissions.running, queued: admissions.queued, streams: heartbeats.count,
            stuck: runningCalls.stuck)
        return Response(
            status: .ok,
            headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
            body: ResponseBody(byteBuffer: ByteBuffer(bytes: text))
        )
    }

    func openAPIResponse() -> Response {
        let requiresAPIKey = !configuration.apiKeys.isEmpty
        return .json(
            OpenAPIDocument(catalog: catalog, configuration: configuration, requiresAPIKey: requiresAPIKey).json)
    }

    func healthResponse() -> Response {
        var health: [String: JSONValue] = [
            "status": catalog.problems.isEmpty ? "ok" : "degraded",
            "functions": .int(catalog.functions.count),
            "running": .int(admissions.running),
            "queued": .int(admissions.queued),
            "stuck_functions": .int(runningCalls.stuck),
            "load_errors": .array(catalog.problems.map(\.jsonValue)),
        ]
        if let store {
            health["store"] = ["ready": .bool(store.isReady), "replica": .string(store.replica)]
        }
        return .json(.object(health))
    }
}

extension Gateway {
    /// Every answer's `Server` header.
    static let serverName = "prefab-gateway"
    /// Connections the kernel holds until they are accepted (capped by `net.core.somaxconn`).
    /// Hummingbird's 256 overflowed when thousands of clients connected at once while the event
    /// loops were busy: the dropped SYNs were retried after 1, 3, 7 and 15 s, so some streams
    /// waited 14 s for their first event and some clients gave up.
    static let listenBacklog = 4096
}

/// Start-up refused in strict mode: the problems found while loading.
public struct GatewayStartError: Error, CustomStringConvertible {
    public var problems: [LoadProblem]
    public var description: String {
        "\(problems.count) prefab problems (strict mode):\n" + problems.map { "  \($0)" }.joined(separator: "\n")
    }
}
