import Foundation
import Prometheus
import Synchronization

/// What `GET /metrics` reports, in Prometheus's text format: calls by function and outcome,
/// their durations, events sent, process start-up times, and — read when scraped — running and
/// queued calls, open streams and stuck functions.
final class GatewayMetrics: Sendable {
    private let registry = PrometheusCollectorRegistry()
    private let running: Gauge
    private let queued: Gauge
    private let streams: Gauge
    private let stuck: Gauge
    private let spawnSeconds: DurationHistogram
    private let made = Mutex(MadeCollectors())

    private struct OutcomeKey: Hashable {
        var function: String
        var outcome: String
    }

    private struct MadeCollectors {
        var calls: [OutcomeKey: Counter] = [:]
        var formats: [String: Counter] = [:]
        var functions: [String: (Counter, DurationHistogram)] = [:]
    }

    private static let durationBuckets: [Duration] = [
        .milliseconds(1), .milliseconds(5), .milliseconds(25), .milliseconds(100), .milliseconds(500),
        .seconds(1), .seconds(5), .seconds(30), .seconds(120), .seconds(600),
    ]

    init() {
        running = registry.makeGauge(
            descriptor: .init(metricName: "prefab_invocations_running", unitName: "", helpText: "Calls running now."))
        queued = registry.makeGauge(
            descriptor: .init(
                metricName: "prefab_invocations_queued", unitName: "", helpText: "Calls waiting for a slot now."))
        streams = registry.makeGauge(
            descriptor: .init(
                metricName: "prefab_streams_active", unitName: "",
                helpText: "Streams (SSE, NDJSON, chat and WebSocket) open to clients now."))
        stuck = registry.makeGauge(
            descriptor: .init(
                metricName: "prefab_functions_stuck", unitName: "",
                helpText: "Function threads still running a call that was ended: cancelled, and not stopped."))
        spawnSeconds = registry.makeDurationHistogram(
            descriptor: .init(
                metricName: "prefab_process_spawn",
                unitName: "seconds",
                helpText: "Time to start a process prefab's child."
            ),
            buckets: [
                .milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10), .milliseconds(25),
                .milliseconds(50), .milliseconds(100), .milliseconds(500),
            ]
        )
    }

    /// One call ended: `outcome` is `done`, `error` or `cancelled`.
    func invocationEnded(function: String, outcome: String, duration: Duration, events: Int) {
        let (calls, functionMetrics) = made.withLock { made in
            (made.calls[OutcomeKey(function: function, outcome: outcome)], made.functions[function])
        }
        (calls ?? makeCalls(function: function, outcome: outcome)).increment()
        let (eventsSent, durations) = functionMetrics ?? makeFunctionMetrics(function)
        eventsSent.increment(by: Int64(events))
        durations.record(duration)
    }

    /// One call started, answered in `format` (`sse`, `json`, `ndjson`, `websocket`, `mcp`,
    /// `openai`, `ai-sdk`).
    func invocationStarted(format: String) {
        let counter = made.withLock { $0.formats[format] }
        (counter ?? makeFormatCounter(format)).increment()
    }

    private func makeFormatCounter(_ format: String) -> Counter {
        let counter = registry.makeCounter(
            descriptor: .init(
                metricName: "prefab_invocations_started", unitName: "total",
                helpText: "Calls started, by the wire format they are answered in."),
            labels: [("format", format)]
        )
        made.withLock { $0.formats[format] = counter }
        return counter
    }

    // The registry checks names and hashes labels on every `make`, which cost a short call more
    // than the rest of its end: each collector is made once and kept here.
    private func makeCalls(function: String, outcome: String) -> Counter {
        let counter = registry.makeCounter(
            descriptor: .init(
                metricName: "prefab_invocations", unitName: "total", helpText: "Calls ended, by outcome."),
            labels: [("function", function), ("outcome", outcome)]
        )
        made.withLock { $0.calls[OutcomeKey(function: function, outcome: outcome)] = counter }
        return counter
    }

    private func makeFunctionMetrics(_ function: String) -> (Counter, DurationHistogram) {
        let metrics = (
            registry.makeCounter(
                descriptor: .init(
                    metricName: "prefab_events_sent", unitName: "total", helpText: "Events of ended calls."),
                labels: [("function", function)]
            ),
            registry.makeDurationHistogram(
                descriptor: .init(
                    metricName: "prefab_invocation_duration", unitName: "seconds", helpText: "Call durations."),
                labels: [("function", function)],
                buckets: Self.durationBuckets
            )
        )
        made.withLock { $0.functions[function] = metrics }
        return metrics
    }

    func processSpawned(in duration: Duration) {
        spawnSeconds.record(duration)
    }

    /// The exposition text, with the gauges read now.
    func render(running: Int, queued: Int, streams: Int, stuck: Int) -> [UInt8] {
        self.stuck.set(Double(stuck))
        self.running.set(Double(running))
        self.queued.set(Double(queued))
        self.streams.set(Double(streams))
        return registry.emitToBuffer()
    }
}
