import Logging
import ServiceLifecycle

/// Removes the output directories of calls that ended more than the retention period ago, at
/// start-up and then regularly; never a running call's.
struct OutputSweeper: Service {
    let outputs: OutputStore
    let owners: OutputOwners
    let retention: Duration
    /// Whether the invocation of this id is still running.
    let isRunning: @Sendable (String) -> Bool
    let logger: Logger

    func run() async throws {
        outputs.spares.removeLeftovers()
        let interval = min(max(retention / 4, .seconds(1)), .seconds(60))
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                let removed = outputs.removeExpired(retention: retention, isRunning: isRunning)
                owners.removeExpired(retention: retention)
                if removed > 0 { logger.info("removed \(removed) expired output directories") }
                try? await Task.sleep(for: interval)
            }
        }
    }
}
