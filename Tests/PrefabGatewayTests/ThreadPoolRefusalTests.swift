import Dispatch
import Foundation
import HTTPTypes
import PrefabGateway
import PrefabKit
import Testing

/// A call refused because no function thread is free answers like every other refusal for load:
/// 429 `OVERLOADED` with `Retry-After` (docs/http-api.md's promise; it was 503).
@Suite(.timeLimit(.minutes(1))) struct ThreadPoolRefusalTests {
    @Test func aFullThreadPoolAnswers429() async throws {
        try await Self.withEveryFunctionThreadTaken { gateway in
            let refused = try await gateway.invoke("stuck")
            #expect(refused.status == .tooManyRequests, "\(refused.text)")
            #expect(refused.errorCode == "OVERLOADED")
            #expect(refused.headers[.retryAfter] == "1")
        }
    }

    /// Runs `test` on a gateway whose function threads are all taken: it runs one call at a time,
    /// so it has two function threads, and two calls of `stuck` (blocked in a wait no cancel
    /// reaches, until the test ends) timed out, were ended by the gateway (their slots given
    /// back), and still hold their threads. `others` are served beside `stuck`.
    static func withEveryFunctionThreadTaken(
        others: [TestPrefab] = [],
        _ test: @Sendable (LiveGateway) async throws -> Void
    ) async throws {
        let release = DispatchSemaphore(value: 0)
        defer { for _ in 0..<2 { release.signal() } }
        let stuck = TestPrefab.streaming("stuck") { _, _ in release.wait() }
        try await LiveGateway.run(
            [stuck] + others,
            configure: {
                $0.maxConcurrentInvocations = 1
                $0.defaultTimeout = .milliseconds(300)
            }
        ) { gateway in
            for _ in 0..<2 {
                let ended = try await gateway.invoke("stuck")
                #expect(ended.events.last?.errorCode == "TIMEOUT")
            }
            try await test(gateway)
        }
    }
}
