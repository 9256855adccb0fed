import Foundation
import PrefabGateway
import PrefabKit
import Synchronization
import Testing

/// How the server stops: promptly, whatever its connections and calls are doing.
@Suite(.timeLimit(.minutes(1))) struct ShutdownTests {
    @Test func theServerStopsEvenWithAConnectionThatNeverSentARequest() async throws {
        let silentClient = Mutex<RawConnection?>(nil)
        let stopped = Mutex(false)
        Task {
            try await LiveGateway.run([]) { gateway in
                // Connected, and nothing sent: the connection waits for its first request.
                silentClient.withLock { $0 = try? RawConnection(port: gateway.port) }
                let health = try await gateway.request(.get, "/health")
                #expect(health.status == .ok)
            }
            stopped.withLock { $0 = true }
        }
        // Without the fix it never stops; 20 s was exceeded once with the load average at 15–31
        // (the gateway's start-up counts too).
        let deadline = ContinuousClock.now + .seconds(40)
        while ContinuousClock.now < deadline, !stopped.withLock({ $0 }) {
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(stopped.withLock { $0 }, "the server did not shut down within 40 s while a connection had sent nothing")
        silentClient.withLock { $0?.hangUp() }
    }

    /// A graceful shutdown ends every running call with `SHUTTING_DOWN` — a stream waiting for an
    /// answer included — and the server stops within moments (0.1 s on an idle machine, 5 s seen
    /// with the whole suite on a busy one). Before, it waited for the question's timeout: 60 s
    /// here (300 s by default), which the 15 s bound tells apart.
    @Test func aShutdownEndsAStreamWaitingForAnAnswerWithSHUTTING_DOWN() async throws {
        let asking = TestPrefab.streaming("asking") { _, context in _ = try context.ask("anyone?") }
        let stream = Mutex<RawConnection?>(nil)
        let shutdownBegan = Mutex<ContinuousClock.Instant?>(nil)
        try await LiveGateway.run([asking], configure: { $0.questionTimeout = .seconds(60) }) { gateway in
            let connection = try RawConnection(port: gateway.port)
            try connection.sendPost("/invoke/asking", json: "{}")
            _ = try await connection.readOffPool(until: #""type":"question""#)
            stream.withLock { $0 = connection }
            shutdownBegan.withLock { $0 = .now }
        }
        let took = ContinuousClock.now - (shutdownBegan.withLock { $0 } ?? .now)
        #expect(took < .seconds(15), "the server took \(took) to shut down with a stream waiting for an answer")
        let rest = try await #require(stream.withLock { $0 }).readToEnd()
        #expect(rest.contains(#""error_code":"SHUTTING_DOWN""#), "the stream ended with: \(rest.suffix(300))")
    }

    /// A function stuck where a cancel cannot reach it does not hold the shutdown either: its
    /// stream ends with `SHUTTING_DOWN` once the stuck-function grace (1 s) has passed. Before, the
    /// server waited for the function to return (40 s here; forever for a real hang).
    @Test func aShutdownEndsAStuckFunctionsStream() async throws {
        let probe = Probe()
        let stream = Mutex<RawConnection?>(nil)
        let shutdownBegan = Mutex<ContinuousClock.Instant?>(nil)
        try await LiveGateway.run([StuckFunctionTests.stuck(probe)]) { gateway in
            let connection = try RawConnection(port: gateway.port)
            try connection.sendPost("/invoke/stuck", json: "{}")
            _ = try await connection.readOffPool(until: #""type":"start""#)
            stream.withLock { $0 = connection }
            shutdownBegan.withLock { $0 = .now }
        }
        let took = ContinuousClock.now - (shutdownBegan.withLock { $0 } ?? .now)
        probe.proceed.signal()
        #expect(took < .seconds(15), "the server took \(took) to shut down with a stuck function")
        let rest = try await #require(stream.withLock { $0 }).readToEnd()
        #expect(rest.contains(#""error_code":"SHUTTING_DOWN""#), "the stream ended with: \(rest.suffix(300))")
    }
}
