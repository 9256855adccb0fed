import Dispatch
import Foundation
import HTTPTypes
import PrefabGateway
import PrefabKit
import Testing

/// A call refused because no function thread is free answers like every other refusal for load:
/// 429 `OVERLOADED` with `Retry-After` (the README's promise; it was 503).
@Suite(.timeLimit(.minutes(1))) struct ThreadPoolRefusalTests {
    @Test func aFullThreadPoolAnswers429() async throws {
        // Blocks in a wait no cancel reaches, until the test lets it go.
        let release = DispatchSemaphore(value: 0)
        defer { for _ in 0..<2 { release.signal() } }
        let stuck = TestPrefab.streaming("stuck") { _, _ in release.wait() }
        try await LiveGateway.run(
            [stuck],
            configure: {
                // One call at a time, so two function threads: both taken by calls that timed out,
                // were ended by the gateway (their slots given back), and still hold their thread.
                $0.maxConcurrentInvocations = 1
                $0.defaultTimeout = .milliseconds(300)
            }
        ) { gateway in
            for _ in 0..<2 {
                let ended = try await gateway.invoke("stuck")
                #expect(ended.events.last?.errorCode == "TIMEOUT")
            }
            let refused = try await gateway.invoke("stuck")
            #expect(refused.status == .tooManyRequests, "\(refused.text)")
            #expect(refused.errorCode == "OVERLOADED")
            #expect(refused.headers[.retryAfter] == "1")
        }
    }
}
