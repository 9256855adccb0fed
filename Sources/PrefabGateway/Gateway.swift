import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdWebSocket
import Logging
import PrefabKit

/// The gateway: the loaded prefabs, the threads that run them, and the HTTP application that
/// serves them.
public struct Gateway: Sendable {
    public let configuration: GatewayConfiguration
    public let catalog: PrefabCatalog
    let outputs: OutputStore
    let pool: FunctionThreadPool
    let invocations: InvocationStore
    let playground = Playground()
    let heartbeats: HeartbeatTimer
    let logger: Logger

    public init(configuration: GatewayConfiguration, catalog: PrefabCatalog, logger: Logger? = nil) {
        self.configuration = configuration
        self.catalog = catalog
        self.outputs = OutputStore(root: configuration.outputsDirectory)
        self.pool = FunctionThreadPool(
            maxThreads: configuration.maxConcurrentInvocations,
            stackSize: configuration.functionThreadStackBytes
        )
        self.invocations = InvocationStore(
            retention: configuration.invocationRetention,
            maxFinished: configuration.maxFinishedInvocations,
            maxFinishedBytes: configuration.maxFinishedInvocationBytes
        )
        self.heartbeats = HeartbeatTimer(interval: configuration.heartbeatInterval)
        self.logger = logger ?? Logger(label: "prefab-gateway")
    }

    /// Loads the prefabs directory, logging every problem; in strict mode a problem is fatal.
    public static func load(
        configuration: GatewayConfiguration,
        compiled: [String: [String: PrefabFunction]],
        logger: Logger? = nil
    ) throws -> Gateway {
        let logger = logger ?? Logger(label: "prefab-gateway")
        let processes = ProcessRuntime(options: configuration.processes, logger: logger)
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
        return Gateway(configuration: configuration, catalog: catalog, logger: logger)
    }

    /// The HTTP application, ready to run (or to test with HummingbirdTesting).
    public func makeApplication(
        onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }
    ) -> some ApplicationProtocol {
        let router = Router()
        router.middlewares.add(ErrorMiddleware())
        router.get("/") { _, _ in try playground.response(for: "index.html") }
        router.get("/playground/:file") { _, context in
            try playground.response(for: context.parameters.get("file") ?? "")
        }
        router.get("/manifest") { _, _ in manifestResponse() }
        router.get("/health") { _, _ in healthResponse() }
        router.post("/invoke/:name") { request, context in try await invoke(request, context: context) }
        router.get("/invoke/:name/ws") { _, context in try webSocketWithoutUpgrade(context: context) }
        router.get("/files/:invocation/**") { request, context in try await file(request, context: context) }
        router.get("/invocations/:id") { _, context in try invocationStatus(context: context) }
        router.delete("/invocations/:id") { _, context in try cancelInvocation(context: context) }
        router.post("/invocations/:id/cancel") { _, context in try cancelInvocation(context: context) }
        router.post("/invocations/:id/messages") { request, context in
            try await deliverMessage(request, context: context)
        }
        router.get("/invocations/:id/events") { request, context in
            try await invocationEvents(request, context: context)
        }
        var logger = logger
        logger.logLevel = .warning  // Hummingbird's own request lines; invocations log on ours.
        return Application(
            router: router,
            server: .http1WebSocketUpgradeQuiescing(
                webSocketRouter: makeWebSocketRouter(),
                idleTimeout: configuration.idleTimeout
            ),
            configuration: ApplicationConfiguration(
                address: .hostname(configuration.host, port: configuration.port),
                serverName: "prefab-gateway"
            ),
            services: [OutputSweeper(outputs: outputs, retention: configuration.outputRetention, logger: self.logger)],
            onServerRunning: { channel in await onServerRunning(channel.localAddress?.port ?? 0) },
            logger: logger
        )
    }

    func manifestResponse() -> Response {
        let functions = catalog.functions.values.sorted { $0.manifest.name < $1.manifest.name }.map { function in
            var entry = function.manifest.json.objectValue ?? [:]
            entry["streaming"] = .bool(function.manifest.streaming)
            entry["prefab"] = .string(function.prefab)
            entry["runtime"] = .string(function.runtime)
            return JSONValue.object(entry)
        }
        return .json(["functions": .array(functions)])
    }

    func healthResponse() -> Response {
        .json([
            "status": catalog.problems.isEmpty ? "ok" : "degraded",
            "functions": .int(catalog.functions.count),
            "running": .int(pool.running),
            "load_errors": .array(catalog.problems.map(\.jsonValue)),
        ])
    }
}

/// Start-up refused in strict mode: the problems found while loading.
public struct GatewayStartError: Error, CustomStringConvertible {
    public var problems: [LoadProblem]
    public var description: String {
        "\(problems.count) prefab problems (strict mode):\n" + problems.map { "  \($0)" }.joined(separator: "\n")
    }
}
