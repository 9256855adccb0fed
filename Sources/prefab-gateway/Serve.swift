import ArgumentParser
import Foundation
import Hummingbird
import Logging
import PrefabGateway

/// `prefab-gateway serve`: runs the HTTP server.
struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the gateway. Every flag can also be set by its PREFAB_GATEWAY_* environment variable."
    )

    @OptionGroup var options: GatewayOptions

    func run() async throws {
        let (configuration, logger, grace) = try options.make()
        let gateway = try GatewayOptions.loadGateway(configuration, logger: logger)
        let host = configuration.host
        let startupLogger = logger
        let app = gateway.makeApplication { port in
            // Start-up code (flags, loading, bootstrap) has run: give back its pages, and once
            // more when the Python workers started ahead are up (starting them runs code too).
            ResidentCode.trim()
            Task {
                await gateway.workersStarted()
                ResidentCode.trim()
                if let quiet = configuration.idleTrimAfter { await ResidentCode.trimWhenQuiet(gateway, quiet: quiet) }
            }
            startupLogger.notice(
                "prefab-gateway listening on http://\(host):\(port) (GET /manifest lists the functions)")
        } onShutdown: {
            ProcessEnd.exit(after: grace, logger: startupLogger)
        }
        ProcessEnd.onFatalSignalEndAtOnce()
        try await app.runService()
    }
}
