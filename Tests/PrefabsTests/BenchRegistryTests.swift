import PrefabKit
import Testing

@testable import BenchPrefabs

/// The registry generator picks up async static functions: `ticker` is async, `ticker_sync` is not.
@Suite("Generated registry of the benchmark prefabs")
struct BenchRegistryTests {
    @Test("an async static function registers as async, a synchronous one as synchronous")
    func flavours() async throws {
        let ticker = try #require(BenchPrefabs.PrefabRegistry.functions["bench_ticker"])
        guard case .asyncStreaming(let asyncTicker) = ticker["ticker"] else {
            Issue.record("ticker is not registered as an async streaming function")
            return
        }
        guard case .streaming(let syncTicker) = ticker["ticker_sync"] else {
            Issue.record("ticker_sync is not registered as a synchronous streaming function")
            return
        }
        let inputs: PrefabInputs = ["n": 3, "interval_ms": 1]
        let expected = ["progress", "progress", "progress", "done"]
        let asyncEvents = try await collect(asyncTicker, inputs: inputs)
        let syncEvents = try collect(syncTicker, inputs: inputs)
        #expect(asyncEvents.map(\.type) == expected)
        #expect(syncEvents.map(\.type) == expected)
    }
}
