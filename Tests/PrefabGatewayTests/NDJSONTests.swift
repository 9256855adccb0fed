import Foundation
import HTTPTypes
import PrefabGateway
import PrefabKit
import Testing

/// `POST /invoke/<name>` with `Accept: application/x-ndjson`: the same events as SSE, one JSON per
/// line, as they come; the same guarantees (files, one terminal event, cancel on hang-up).
@Suite(.timeLimit(.minutes(1))) struct NDJSONTests {
    static let ndjson: HTTPFields = [.accept: "application/x-ndjson"]

    static let report = TestPrefab.streaming(
        "report", parameters: [ParameterManifest(name: "n", type: .integer, defaultValue: 3)]
    ) { inputs, context in
        let n = try inputs.int("n")
        try context.yield(.start(["n": .int(n)]))
        for step in 1...n {
            try context.yield(.progress(current: step, total: n, message: "step \(step)"))
            try context.yield(.content("line \(step)\n"))
        }
        try context.yield(PrefabEvent(type: "thought", fields: ["text": "about \"quotes\"\nand newlines"]))
        try "a,b\n".write(
            to: context.outputDirectory.appendingPathComponent("t.csv"), atomically: true, encoding: .utf8)
        try context.yield(.done(["n": .int(n)]))
    }
    static let failing = TestPrefab.streaming("failing") { _, context in
        try context.yield(.content("half"))
        throw PrefabError("STEP_FAILED", "step 2 broke")
    }
    static let echo = TestPrefab.result(
        "echo", parameters: [ParameterManifest(name: "text", type: .string, required: true)]
    ) { inputs, _ in ["text": .string(try inputs.string("text"))] }

    /// Waits for the test's signal between its first and second event.
    static func gated(_ probe: Probe) -> TestPrefab {
        .streaming("gated") { _, context in
            try context.yield(.content("first"))
            probe.proceed.wait()
            try context.yield(.content("second"))
        }
    }

    /// Parses every line as one event.
    static func events(_ lines: [String]) throws -> [PrefabEvent] {
        try lines.map { line in
            try #require(PrefabEvent(json: try JSONValue(parsing: Array(line.utf8))), "not an event: \(line)")
        }
    }

    @Test func everyLineIsOneEventAndTheyAreTheSSEEvents() async throws {
        try await LiveGateway.run([Self.report, Self.failing, Self.echo]) { gateway in
            let reply = try await gateway.invoke("report", #"{"inputs": {"n": 3}}"#, headers: Self.ndjson)
            #expect(reply.status == .ok)
            #expect(reply.headers[.contentType] == "application/x-ndjson")
            let id = try #require(reply.headers[HTTPField.Name("X-Invocation-Id")!])
            #expect(reply.text.hasSuffix("}\n"))
            let lines = reply.text.split(separator: "\n", omittingEmptySubsequences: false).dropLast().map(String.init)
            var events = try Self.events(lines)
            #expect(events.first?["invocation_id"] == .string(id))
            events[0]["invocation_id"] = nil
            // The very events of the SSE stream, files and terminal event included.
            let sse = try await gateway.invoke("report", #"{"inputs": {"n": 3}}"#)
            #expect(events.map(\.type) == sse.events.map(\.type))
            let types: [String] = [
                "start", "progress", "content", "progress", "content", "progress", "content", "thought", "files",
                "done",
            ]
            #expect(events.map(\.type) == types)
            #expect(events.filter { $0.type != "files" } == sse.events.filter { $0.type != "files" })
            let file = try #require(events.first { $0.type == "files" }?.data?[0])
            #expect(file["name"] == "t.csv")
            let url = try #require(file["url"]?.stringValue)
            #expect(try await gateway.request(.get, String(url.dropFirst(gateway.baseURL.count))).text == "a,b\n")
            // A normal invocation: its status and events at /invocations/<id>.
            #expect(try await gateway.request(.get, "/invocations/\(id)").json?["state"] == "done")
            #expect(try await gateway.request(.get, "/invocations/\(id)/events").events.last?.type == "done")

            let failed = try await gateway.invoke("failing", headers: Self.ndjson)
            let failedEvents = try Self.events(failed.text.split(separator: "\n").map(String.init))
            #expect(failedEvents.map(\.type) == ["content", "error"])
            #expect(failedEvents.last?.errorCode == "STEP_FAILED")

            // A non-streaming function's result is its done event.
            let echoed = try await gateway.invoke("echo", #"{"inputs": {"text": "hi"}}"#, headers: Self.ndjson)
            let echoedEvents = try Self.events(echoed.text.split(separator: "\n").map(String.init))
            #expect(echoedEvents.map(\.type) == ["done"])
            #expect(echoedEvents.last?.data == ["text": "hi"])

            // Refused before the stream: the gateway's JSON errors.
            let invalid = try await gateway.invoke("echo", #"{"inputs": {"text": 5}}"#, headers: Self.ndjson)
            #expect(invalid.status == .unprocessableContent)
            #expect(invalid.errorCode == "INVALID_INPUTS")
            let metrics = try await gateway.request(.get, "/metrics").text
            #expect(metrics.contains(#"prefab_invocations_started_total{format="ndjson"} 3"#))
            #expect(metrics.contains(#"prefab_invocations_started_total{format="sse"} 1"#))
        }
    }

    @Test func linesArriveAsTheFunctionYieldsThem() async throws {
        let probe = Probe()
        try await LiveGateway.run([Self.gated(probe)]) { gateway in
            var stream = try await LineStream.open(
                gateway, "/invoke/gated", body: "{}", headers: [("Accept", "application/x-ndjson")])
            #expect(stream.response.headers.first(name: "content-type") == "application/x-ndjson")
            // The first line comes while the function still waits for the test.
            let first = try #require(try await stream.next())
            #expect(first.contains(#""data":"first""#))
            probe.proceed.signal()
            let rest = try Self.events(try await stream.rest())
            #expect(rest.map(\.type) == ["content", "done"])
        }
    }

    @Test func aClientThatHangsUpCancelsTheCall() async throws {
        let probe = Probe()
        try await LiveGateway.run([DisconnectAndBackpressureTests.endless(probe, payload: "tick", pause: 0.02)]) {
            gateway in
            let connection = try RawConnection(port: gateway.port)
            try connection.sendPost(
                "/invoke/endless", json: #"{"inputs": {}}"#, headers: "Accept: application/x-ndjson\r\n")
            let head = try await connection.readOffPool(until: "\"tick\"}\n")
            #expect(head.contains("Content-Type: application/x-ndjson"))
            let id = try #require(
                head.split(separator: "\r\n").first { $0.hasPrefix("X-Invocation-Id: ") }?.split(separator: " ").last)
            await DisconnectAndBackpressureTests.hangUp(connection, stopping: probe)
            let status = try await gateway.request(.get, "/invocations/\(id)").json
            #expect(status?["state"] == "cancelled")
        }
    }
}
