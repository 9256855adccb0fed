import NIOCore
import NIOPosix
import Testing

@testable import PrefabGateway

/// `context.sleep` on an event loop (`EventLoopExecutor.sleep`): sleeps end on the loop's timers,
/// none early, and a cancelled one is forgotten at once.
@Suite(.timeLimit(.minutes(1))) struct EventLoopExecutorTests {
    /// A loop of its own: the gateway's tests share the singleton's loops, whose sleeps would be
    /// counted too.
    static let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)

    /// 40 tasks on one loop sleep: 20 for an hour and more, cancelled; 20 for 200 ms, kept. The
    /// kept ones end, none early, and then the loop holds no sleep. Before, a cancelled sleep stayed
    /// in its millisecond (and the loop kept a scheduled task for it) until its end: an hour here,
    /// so 20 were left.
    @Test func aCancelledSleepIsForgottenAtOnceAndTheOthersStillEnd() async throws {
        let loop = Self.group.next()
        let executor = EventLoopExecutor.of(loop)
        let started = ContinuousClock.now
        let cancelled = (0..<20).map { index in
            Task(executorPreference: executor) {
                try await EventLoopExecutor.sleep(for: .seconds(3600 + index % 3))
            }
        }
        let kept = (0..<20).map { _ in
            Task(executorPreference: executor) {
                try await EventLoopExecutor.sleep(for: .milliseconds(200))
                return ContinuousClock.now
            }
        }
        // Until all 40 wait (a loaded machine starts them late).
        let deadline = ContinuousClock.now + .seconds(20)
        while try await loop.submit({ executor.pendingSleeps }).get() < 40, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(5))
        }
        for task in cancelled { task.cancel() }
        for task in cancelled {
            await #expect(throws: CancellationError.self) { try await task.value }
        }
        for task in kept {
            #expect(try await task.value - started >= .milliseconds(200))
        }
        // Each cancel queued its removal on the loop before this job.
        #expect(try await loop.submit { executor.pendingSleeps }.get() == 0)
    }
}
