import Dispatch
import Foundation
import HTTPTypes
import PrefabGateway
import PrefabKit
import Synchronization
import Testing

/// Async streaming functions (`try await context.yield`, `context.sleep`): they hold no function
/// thread, a slow client suspends them without blocking a thread, and a cancel ends their awaits.
@Suite(.timeLimit(.minutes(1))) struct AsyncFunctionTests {
    static let ticker = TestPrefab.asyncStreaming(
        "ticker",
        parameters: [ParameterManifest(name: "n", type: .integer, defaultValue: 3)]
    ) { inputs, context in
        let n = try inputs.int("n")
        for i in 1...n {
            if i > 1 { try await context.sleep(for: .milliseconds(20)) }
            try await context.yield(.progress(current: i, total: n))
        }
    }

    @Test func anAsyncFunctionStreamsItsEventsAndEndsWithDone() async throws {
        try await LiveGateway.run([Self.ticker]) { gateway in
            var stream = try await gateway.openStream("ticker", #"{"inputs": {"n": 3}}"#)
            let events = try await stream.rest().compactMap(\.prefabEvent)
            #expect(events.map(\.type) == ["progress", "progress", "progress", "done"])
            #expect(events.prefix(3).map { $0.data?["current"] } == [1, 2, 3])
            // Collected as one JSON answer too.
            let collected = try await gateway.invoke(
                "ticker", #"{"inputs": {"n": 2}}"#, headers: [.accept: "application/json"])
            #expect(collected.json?["success"] == true)
            #expect(collected.json?["events"]?.arrayValue?.count == 3)
        }
    }

    /// Two stuck synchronous calls take both function threads of a gateway that runs one call at
    /// a time (as in `ThreadPoolRefusalTests`): a synchronous call is then refused, an async one
    /// still runs, sleeps and streams — it needs no thread.
    @Test func anAsyncFunctionRunsWhenEveryFunctionThreadIsTaken() async throws {
        // Its own time limit, far from the 0.3 s that ends the stuck calls. Made by the manifest's
        // init, which writes `timeout_seconds` into the JSON the gateway reads (setting the property
        // afterwards did not: the ticker ran with 0.3 s, and failed with TIMEOUT on a loaded machine).
        var ticker = Self.ticker
        ticker.manifest = FunctionManifest(
            name: "ticker", streaming: true, parameters: ticker.manifest.parameters, timeoutSeconds: 30)
        try await ThreadPoolRefusalTests.withEveryFunctionThreadTaken(others: [ticker]) { gateway in
            #expect(try await gateway.invoke("stuck").status == .tooManyRequests)
            let reply = try await gateway.invoke("ticker", #"{"inputs": {"n": 3}}"#)
            #expect(reply.status == .ok, "\(reply.text)")
            #expect(reply.events.map(\.type) == ["progress", "progress", "progress", "done"], "\(reply.text)")
        }
    }

    /// Records why its wait ended: `context.sleep`, or a plain `Task.sleep`, which only the task's
    /// cancellation reaches.
    static func sleeper(_ probe: Probe, plainTaskSleep: Bool) -> TestPrefab {
        .asyncStreaming("sleeper") { _, context in
            try await context.yield(.content("waiting"))
            probe.countYield()
            do {
                if plainTaskSleep {
                    try await Task.sleep(for: .seconds(60))
                } else {
                    try await context.sleep(for: .seconds(60))
                }
            } catch {
                probe.stop(with: (error as? PrefabError)?.code.rawValue ?? "\(type(of: error))")
                throw error
            }
        }
    }

    /// A cancel (`DELETE`) reaches the function's await — also a `Task.sleep` of its own, whose
    /// task is cancelled with the call — and the call ends `CANCELLED` without the function being
    /// counted stuck.
    @Test(arguments: [false, true])
    func aCancelEndsTheAwaitOfAnAsyncFunction(plainTaskSleep: Bool) async throws {
        let probe = Probe()
        try await LiveGateway.run([Self.sleeper(probe, plainTaskSleep: plainTaskSleep)]) { gateway in
            var stream = try await gateway.openStream("sleeper")
            #expect(try await stream.nextEvent() == .content("waiting"))
            #expect(await Probe.eventually { probe.yields == 1 })
            let id = try #require(stream.response.headers.first(name: "X-Invocation-Id"))
            #expect(try await gateway.request(.delete, "/invocations/\(id)").status == .accepted)
            let last = try await stream.rest().compactMap(\.prefabEvent).last
            #expect(last?.errorCode == "CANCELLED")
            #expect(await Probe.eventually { probe.stoppedWith != nil })
            #expect(probe.stoppedWith == (plainTaskSleep ? "CancellationError" : "CANCELLED"))
            // The function stopped itself: one whose await the cancel missed would still sleep,
            // counted stuck.
            let health = try await gateway.request(.get, "/health").json
            #expect(health?["stuck_functions"] == 0)
        }
    }

    /// The shortest sleep any call measured.
    final class ShortestSleep: Sendable {
        private let shortest = Mutex(Duration.seconds(3600))
        func record(_ slept: Duration) { shortest.withLock { $0 = min($0, slept) } }
        var value: Duration { shortest.withLock { $0 } }
    }

    /// Sleeps `n` times for `sleep_ms` and records the shortest sleep it measured.
    static func napper(shortest: ShortestSleep) -> TestPrefab {
        .asyncStreaming(
            "napper",
            parameters: [
                ParameterManifest(name: "n", type: .integer, defaultValue: 3),
                ParameterManifest(name: "sleep_ms", type: .integer, defaultValue: 15),
            ]
        ) { inputs, context in
            let n = try inputs.int("n")
            let sleep = Duration.milliseconds(try inputs.int("sleep_ms"))
            for i in 1...n {
                let before = ContinuousClock.now
                try await context.sleep(for: sleep)
                let slept = ContinuousClock.now - before
                shortest.record(slept)
                try await context.yield(.progress(current: i, total: n))
            }
        }
    }

    /// Many streams' sleeps end in the same milliseconds (the gateway wakes them together from
    /// one timer of their connection's event loop): every one of them wakes, every stream ends
    /// with `done`, and no sleep ends early. The bound is the sleep itself, exactly: timers
    /// grouped by the millisecond they end in, rounded down instead of up, wake about half of
    /// these sleeps up to 1 ms early.
    @Test func manyAsyncSleepsEndingTogetherAllWakeAndNoneEarly() async throws {
        let shortest = ShortestSleep()
        // 50 at once: with 200, under the whole suite's load, one connection in a few runs was not
        // served within the client's 10 s (before this change too: the suite's tests crowd the
        // cooperative threads that accept connections).
        let streams = 50
        try await LiveGateway.run([Self.napper(shortest: shortest)]) { gateway in
            var connections: [RawConnection] = []
            for _ in 0..<streams {
                let connection = try RawConnection(port: gateway.port)
                try connection.sendPost(
                    "/invoke/napper", json: #"{"inputs": {"n": 3, "sleep_ms": 15}}"#, headers: "Connection: close\r\n")
                connections.append(connection)
            }
            let answers = try await withThrowingTaskGroup(of: String.self) { group in
                for connection in connections { group.addTask { try await connection.readToEnd() } }
                return try await group.reduce(into: [String]()) { $0.append($1) }
            }
            #expect(answers.count == streams)
            for answer in answers {
                #expect(answer.components(separatedBy: #""type":"progress""#).count - 1 == 3, "\(answer)")
                #expect(answer.contains(#"{"type":"done"}"#), "\(answer)")
            }
            let measured = shortest.value
            #expect(measured >= .milliseconds(15), "a sleep of 15 ms ended after \(measured)")
        }
    }

    /// A sleep far past any real deadline (a prefab's "wait until cancelled") is a wait, not a
    /// crash: its nanoseconds would overflow, so the timer clamps them, and a cancel ends it.
    @Test func aSleepOfCenturiesWaitsUntilTheCancel() async throws {
        let prefab = TestPrefab.asyncStreaming("forever") { _, context in
            try await context.yield(.content("waiting"))
            try await context.sleep(for: .seconds(Int64.max))
        }
        try await LiveGateway.run([prefab]) { gateway in
            var stream = try await gateway.openStream("forever")
            #expect(try await stream.nextEvent() == .content("waiting"))
            let id = try #require(stream.response.headers.first(name: "X-Invocation-Id"))
            #expect(try await gateway.request(.delete, "/invocations/\(id)").status == .accepted)
            let last = try await stream.rest().compactMap(\.prefabEvent).last
            #expect(last?.errorCode == "CANCELLED")
            #expect(try await gateway.request(.get, "/health").status == .ok)
        }
    }

    /// Yields until `yield` throws.
    static func endless(_ probe: Probe, name: String, payload: String) -> TestPrefab {
        .asyncStreaming(name) { _, context in
            do {
                while true {
                    try await context.yield(.content(payload))
                    probe.countYield()
                }
            } catch let error as PrefabError {
                probe.stop(with: error.code.rawValue)
                throw error
            }
        }
    }

    /// Clients that read nothing make their async functions wait in `yield` with bounded memory,
    /// suspended rather than blocking: more of them than the concurrency pool has threads (one
    /// per core), and the gateway, which runs on that pool, still answers other calls.
    @Test func aClientThatStopsReadingSuspendsTheAsyncFunctionWithoutBlockingAThread() async throws {
        let stalled = ProcessInfo.processInfo.activeProcessorCount + 1
        let probes = (0..<stalled).map { _ in Probe() }
        let payload = String(repeating: "x", count: 64 * 1024)
        let buffered = 16
        let prefabs = probes.enumerated().map { Self.endless($1, name: "endless\($0)", payload: payload) }
        try await LiveGateway.run(
            prefabs + [Self.ticker],
            configure: {
                $0.streamBufferEvents = buffered
                $0.streamBufferBytes = 1 << 20
            }
        ) { gateway in
            var connections: [RawConnection] = []
            for index in 0..<stalled {
                let connection = try RawConnection(port: gateway.port, receiveBuffer: 64 * 1024)
                try connection.sendPost("/invoke/endless\(index)", json: #"{"inputs": {}}"#)
                _ = try await connection.readOffPool(until: "\r\n\r\n")
                connections.append(connection)
            }
            for probe in probes { #expect(await Probe.eventually { probe.yields > buffered }) }
            // Wait until the counts have not moved for 2 s. Half a second was too short: with the
            // suite's other tests running beside it, a producer still filling the socket buffers
            // was once kept off the CPU that long (74 yields, then 80 in the next second).
            var settled: [Int] = []
            var quietSamples = 0
            for _ in 0..<60 where quietSamples < 4 {
                try await Task.sleep(for: .milliseconds(500))
                let now = probes.map(\.yields)
                quietSamples = now == settled ? quietSamples + 1 : 0
                settled = now
            }
            try await Task.sleep(for: .seconds(1))
            #expect(probes.map(\.yields) == settled)
            // 16 buffered events plus kernel socket buffers: a few MB each, not the gigabytes an
            // unbounded queue would reach in this time.
            for count in settled { #expect(count < 200, "\(count) events of 64 KiB produced") }
            // Every pool thread would be blocked by now if the functions blocked in `yield`.
            let reply = try await gateway.invoke("ticker", #"{"inputs": {"n": 2}}"#)
            #expect(reply.events.map(\.type) == ["progress", "progress", "done"])
            for connection in connections { connection.hangUp() }
            for probe in probes { #expect(await Probe.eventually { probe.stoppedWith == "CANCELLED" }) }
        }
    }
}
