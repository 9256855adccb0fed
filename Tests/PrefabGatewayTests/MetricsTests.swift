import Foundation
import PrefabGateway
import PrefabKit
import Testing

/// `GET /metrics` in Prometheus's text format, after real calls.
@Suite(.timeLimit(.minutes(1))) struct MetricsTests {
    static let succeed = TestPrefab.streaming("succeed") { _, context in
        try context.yield(.content("a"))
        try context.yield(.content("b"))
    }

    static let fail = TestPrefab.streaming("fail") { _, _ in
        throw PrefabError("BROKEN", "it broke")
    }

    /// The value of the sample named exactly `series` (name and labels), if present.
    static func sample(_ text: String, _ series: String) -> Double? {
        text.split(separator: "\n").first { $0.hasPrefix(series + " ") }.flatMap { Double($0.split(separator: " ")[1]) }
    }

    @Test func callsOutcomesEventsDurationsAndSpawnsAreCounted() async throws {
        // A process per call: one call, one spawn (workers are started ahead, two by default).
        let python = ProcessRuntimeTests.python(
            .processPerCall, "hello_py", "def hello_py():\n    yield {'type': 'content', 'data': 'hi'}\n")
        try await LiveGateway.run(
            [Self.succeed, Self.fail], rawManifests: python.manifests, files: python.files
        ) { gateway in
            for _ in 0..<3 { _ = try await gateway.invoke("succeed") }
            _ = try await gateway.invoke("fail")
            #expect(try await gateway.invoke("hello_py").events.last?.type == "done")
            let reply = try await gateway.request(.get, "/metrics")
            #expect(reply.status == .ok)
            #expect(reply.headers[.contentType]?.hasPrefix("text/plain; version=0.0.4") == true)
            let text = reply.text
            #expect(Self.sample(text, #"prefab_invocations_total{function="succeed",outcome="done"}"#) == 3)
            #expect(Self.sample(text, #"prefab_invocations_total{function="fail",outcome="error"}"#) == 1)
            // Two contents and the closing done, per call.
            #expect(Self.sample(text, #"prefab_events_sent_total{function="succeed"}"#) == 9)
            #expect(Self.sample(text, #"prefab_invocation_duration_seconds_count{function="succeed"}"#) == 3)
            #expect(Self.sample(text, "prefab_process_spawn_seconds_count") == 1)
            #expect(Self.sample(text, "prefab_invocations_running") == 0)
            #expect(Self.sample(text, "prefab_invocations_queued") == 0)
            #expect(Self.sample(text, "prefab_streams_active") == 0)
            #expect(text.contains("# TYPE prefab_invocation_duration_seconds histogram"))
        }
    }

    @Test func openStreamsAndRunningCallsAreGaugedWhenScraped() async throws {
        let probe = Probe()
        let waiting = TestPrefab.streaming("waiting") { _, context in
            try context.yield(.start())
            _ = probe.proceed.wait(timeout: DispatchTime.now() + 10.0)
        }
        try await LiveGateway.run([waiting]) { gateway in
            var stream = try await gateway.openStream("waiting")
            #expect(try await stream.nextEvent()?.type == "start")
            let text = try await gateway.request(.get, "/metrics").text
            #expect(Self.sample(text, "prefab_invocations_running") == 1)
            #expect(Self.sample(text, "prefab_streams_active") == 1)
            probe.proceed.signal()
            _ = try await stream.rest()
        }
    }
}
