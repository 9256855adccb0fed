import ArgumentParser
import Hummingbird
import Logging
import PrefabGateway
import ServiceLifecycle

/// `prefab-gateway mcp`: every function as an MCP tool over stdin and stdout, for a desktop MCP
/// client that starts the gateway as a command. The HTTP listener runs too, on 127.0.0.1 and a
/// free port unless `--host`/`--port` say otherwise: the tools' output files are links to it.
struct MCPStdio: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mcp",
        abstract:
            "Serve every function as an MCP tool over stdio (stdout carries only JSON-RPC, logs go to stderr). The HTTP listener that serves the output files' links runs beside it, on 127.0.0.1 and a free port unless --port says otherwise. Ends when stdin closes or on SIGTERM."
    )

    @OptionGroup var options: GatewayOptions

    func run() async throws {
        let made = try options.make()
        let (logger, grace) = (made.logger, made.shutdownGrace)
        var configuration = made.configuration
        // Not PREFAB_GATEWAY_PORT: a variable meant for `serve` would make this one collide.
        configuration.port = options.port ?? 0
        let gateway = try GatewayOptions.loadGateway(configuration, logger: logger)
        let host = configuration.host
        let (ports, portInput) = AsyncStream.makeStream(of: Int.self)
        let app = gateway.makeApplication { port in
            ResidentCode.trim()
            logger.notice("prefab-gateway mcp: MCP over stdio; output files served on http://\(host):\(port)")
            portInput.yield(port)
            portInput.finish()
        } onShutdown: {
            ProcessEnd.exit(after: grace, logger: logger)
        }
        ProcessEnd.onFatalSignalEndAtOnce()
        let stdio = StdioSession(gateway: gateway, host: host, ports: ports)
        let group = ServiceGroup(
            configuration: ServiceGroupConfiguration(
                services: [
                    .init(service: app),
                    // stdin closed: the whole gateway shuts down gracefully.
                    .init(service: stdio, successTerminationBehavior: .gracefullyShutdownGroup),
                ],
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger
            ))
        try await group.run()
    }
}

/// The stdio session as a service: starts once the HTTP listener has its port (the base of the
/// file links), and ends at EOF on stdin or when the gateway shuts down.
private struct StdioSession: Service {
    let gateway: Gateway
    let host: String
    let ports: AsyncStream<Int>

    func run() async throws {
        guard let port = await ports.first(where: { _ in true }) else { return }
        let hostPart = host.contains(":") ? "[\(host)]" : host
        try await cancelWhenGracefulShutdown {
            try await gateway.serveMCPOverStdio(fileBaseURL: "http://\(hostPart):\(port)")
        }
    }
}
