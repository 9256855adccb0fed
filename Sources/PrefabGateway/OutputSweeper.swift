import Logging
import ServiceLifecycle

/// Removes output directories older than the retention period, at start-up and then regularly.
struct OutputSweeper: Service {
    let outputs: OutputStore
    let owners: OutputOwners
    let retention: Duration
    let logger: Logger

    func run() async throws {
        let interval = min(max(retention / 4, .seconds(1)), .seconds(60))
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                let removed = outputs.removeExpired(retention: retention)
                owners.removeExpired(retention: retention)
                if removed > 0 { logger.info("removed \(removed) expired output directories") }
                try? await Task.sleep(for: interval)
            }
        }
    }
}
