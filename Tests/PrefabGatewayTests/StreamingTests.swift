import Foundation
import HTTPTypes
import PrefabGateway
import PrefabKit
import Testing

/// `POST /invoke` of streaming functions: framing, headers, order, flushing and the terminal event.
@Suite(.timeLimit(.minutes(1))) struct StreamingTests {
    /// Yields `start`, then waits (up to 10 s) until the probe's `proceed` is signalled.
    static func startThenWait(_ name: String, for probe: Probe) -> TestPrefab {
        TestPrefab.streaming(name) { _, context in
            try context.yield(.start())
            _ = probe.proceed.wait(timeout: DispatchTime.now() + 10.0)
        }
    }

    static let count = TestPrefab.streaming(
        "count",
        parameters: [ParameterManifest(name: "n", type: .integer, defaultValue: 3)]
    ) { inputs, context in
        let n = try inputs.int("n")
        try context.yield(.start(["total": .int(n)]))
        for i in 1...n { try context.yield(.progress(current: i, total: n)) }
        try context.yield(.done(["total": .int(n)]))
    }

    @Test func answersServerSentEventsWithTheStreamHeaders() async throws {
        try await LiveGateway.run([Self.count]) { gateway in
            let response = try await gateway.invoke("count")
            #expect(response.status == .ok)
            #expect(response.headers[.contentType] == "text/event-stream; charset=utf-8")
            #expect(response.headers[.cacheControl] == "no-cache")
            #expect(response.headers[HTTPField.Name("X-Accel-Buffering")!] == "no")
            let id = try #require(response.headers[HTTPField.Name("X-Invocation-Id")!])
            #expect(id.count == 32 && id.allSatisfy(\.isHexDigit))
        }
    }

    @Test func aQuickFunctionKeepsTheConnectionForTheNextRequest() async throws {
        // A wide window, so that a loaded test machine still counts `count` as quick.
        try await LiveGateway.run([Self.count], configure: { $0.quickAnswerWindow = .seconds(2) }) { gateway in
            let response = try await gateway.invoke("count")
            #expect(response.headers[.connection] == nil)
            // Two calls, one after the other, on one connection.
            let connection = try RawConnection(port: gateway.port)
            for _ in 0..<2 {
                try connection.sendPost("/invoke/count", json: #"{"inputs": {"n": 1}}"#)
                let answer = try await connection.readOffPool(until: #""type":"done""#)
                #expect(answer.hasPrefix("HTTP/1.1 200 OK"))
            }
        }
    }

    @Test func aLongerStreamClosesItsConnectionWhenTheRequestSaysClose() async throws {
        let probe = Probe()
        let gated = Self.startThenWait("gated", for: probe)
        try await LiveGateway.run([gated]) { gateway in
            var stream = try await gateway.openStream("gated", headers: [.connection: "close"])
            #expect(stream.response.headers["Connection"] == ["close"])
            probe.proceed.signal()
            #expect(try await stream.rest().compactMap(\.prefabEvent).map(\.type) == ["start", "done"])
        }
    }

    /// HTTP/1.1 keeps a connection unless the request says `close`, a streamed answer's too: a
    /// client that sends no `Connection` header (Go's, Rust's, curl) must not pay a new
    /// connection per stream.
    @Test(arguments: ["", "Connection: keep-alive\r\n"])
    func aLongerStreamKeepsItsConnection(header: String) async throws {
        let probe = Probe()
        let gated = Self.startThenWait("gated", for: probe)
        try await LiveGateway.run([gated, Self.count]) { gateway in
            let connection = try RawConnection(port: gateway.port)
            try connection.sendPost("/invoke/gated", json: #"{"inputs": {}}"#, headers: header)
            let head = try await connection.readOffPool(until: #""type":"start""#).lowercased()
            #expect(head.hasPrefix("http/1.1 200 ok"))
            #expect(head.contains("transfer-encoding: chunked"))
            #expect(!head.contains("connection: close"))
            probe.proceed.signal()
            // The stream's end: its last event, then the chunked body's last chunk.
            #expect(try await connection.readOffPool(until: "\r\n0\r\n\r\n").contains(#""type":"done""#))
            try connection.sendPost("/invoke/count", json: #"{"inputs": {"n": 1}}"#)
            let next = try await connection.readOffPool(until: #""type":"done""#)
            #expect(next.hasPrefix("HTTP/1.1 200 OK"))
        }
    }

    /// An HTTP/1.0 client that did not ask for `keep-alive` reads the answer to the connection's
    /// end: the stream says `Connection: close` and the connection closes after it. One that asked
    /// keeps it.
    @Test func anHTTP10StreamEndsWithItsConnectionUnlessTheClientAskedToKeepIt() async throws {
        let probe = Probe()
        let gated = Self.startThenWait("gated", for: probe)
        try await LiveGateway.run([gated, Self.count]) { gateway in
            let body = #"{"inputs": {}}"#
            let request = { (path: String, extra: String) in
                Array(
                    "POST \(path) HTTP/1.0\r\nHost: 127.0.0.1\r\n\(extra)Content-Length: \(body.utf8.count)\r\n\r\n\(body)"
                        .utf8)
            }
            let closing = try RawConnection(port: gateway.port)
            try closing.sendRaw(request("/invoke/gated", ""))
            let head = try await closing.readOffPool(until: #""type":"start""#)
            probe.proceed.signal()
            let answer = try await (head + closing.readToEnd()).lowercased()
            #expect(answer.contains("connection: close"), "\(answer)")
            #expect(answer.contains(#""type":"done""#), "\(answer)")

            let keeping = try RawConnection(port: gateway.port)
            try keeping.sendRaw(request("/invoke/count", "Connection: keep-alive\r\n"))
            #expect(try await keeping.readOffPool(until: #""type":"done""#).hasPrefix("HTTP/1.1 200 OK"))
            try keeping.sendRaw(request("/invoke/count", "Connection: keep-alive\r\n"))
            #expect(try await keeping.readOffPool(until: #""type":"done""#).hasPrefix("HTTP/1.1 200 OK"))
        }
    }

    @Test func eventsArriveInOrderNumberedAsDataLines() async throws {
        try await LiveGateway.run([Self.count]) { gateway in
            let response = try await gateway.invoke("count", #"{"inputs": {"n": 4}}"#)
            var parser = SSEParser()
            let messages = parser.feed(response.body.readableBytesView)
            #expect(messages.map(\.lastEventId) == ["1", "2", "3", "4", "5", "6"])
            #expect(messages.allSatisfy { $0.event == "message" })
            let events = messages.compactMap(\.prefabEvent)
            #expect(events.map(\.type) == ["start", "progress", "progress", "progress", "progress", "done"])
            #expect(events.dropFirst().prefix(4).map { $0.data?["percentage"] } == [25, 50, 75, 100])
            // The raw framing: `id:` then one `data:` line of one-line JSON, then a blank line.
            // The first event also carries the invocation's id.
            let id = try #require(response.headers[.init("X-Invocation-Id")!])
            #expect(
                response.text.hasPrefix(
                    "id: 1\ndata: {\"type\":\"start\",\"data\":{\"total\":4},\"invocation_id\":\"\(id)\"}\n\n"
                )
            )
        }
    }

    @Test func eachEventIsFlushedBeforeTheNextIsProduced() async throws {
        let probe = Probe()
        let gated = TestPrefab.streaming("gated") { _, context in
            try context.yield(.start())
            // Waits for the test to have received `start`: only a flushed event lets it go on.
            guard probe.proceed.wait(timeout: DispatchTime.now() + 5.0) == .success else {
                throw PrefabError("NOT_FLUSHED", "the client never saw the first event")
            }
            try context.yield(.content("after"))
        }
        try await LiveGateway.run([gated]) { gateway in
            var stream = try await gateway.openStream("gated")
            #expect(try await stream.nextEvent()?.type == "start")
            probe.proceed.signal()
            #expect(try await stream.nextEvent() == .content("after"))
            #expect(try await stream.nextEvent()?.type == "done")
            #expect(try await stream.next() == nil)
        }
    }

    @Test func aFunctionThatReturnsWithoutATerminalEventGetsDone() async throws {
        let silent = TestPrefab.streaming("silent") { _, context in try context.yield(.content("hi")) }
        try await LiveGateway.run([silent]) { gateway in
            let events = try await gateway.invoke("silent").events
            #expect(events == [.content("hi"), .done()])
        }
    }

    @Test func aThrownErrorBecomesOneErrorEventWithItsCode() async throws {
        let failing = TestPrefab.streaming("failing") { _, context in
            try context.yield(.start())
            throw PrefabError("DISK_FULL", "no space left")
        }
        try await LiveGateway.run([failing]) { gateway in
            let events = try await gateway.invoke("failing").events
            #expect(events == [.start(), .error("no space left", code: "DISK_FULL")])
        }
    }

    @Test func eventsAfterTheTerminalOneAreNeverSent() async throws {
        let probe = Probe()
        let chatty = TestPrefab.streaming("chatty") { _, context in
            try context.yield(.done(["ok": true]))
            do {
                try context.yield(.content("too late"))
            } catch let error as PrefabError {
                probe.stop(with: error.code.rawValue)
            }
        }
        try await LiveGateway.run([chatty]) { gateway in
            let events = try await gateway.invoke("chatty").events
            #expect(events == [.done(["ok": true])])
            #expect(probe.stoppedWith == "STREAM_ENDED")
        }
    }

    @Test func otherEventTypesPassThroughWithAllTheirFields() async throws {
        let agent = TestPrefab.streaming("agent") { _, context in
            try context.yield(
                PrefabEvent(type: "tool_call", fields: ["tool_name": "search", "step": 2, "text": "a\nb"]))
            try context.yield(PrefabEvent("thought", data: ["why": "because"]))
        }
        try await LiveGateway.run([agent]) { gateway in
            let events = try await gateway.invoke("agent").events
            #expect(
                events.first
                    == PrefabEvent(type: "tool_call", fields: ["tool_name": "search", "step": 2, "text": "a\nb"]))
            #expect(events.dropFirst().first == PrefabEvent("thought", data: ["why": "because"]))
            #expect(events.last?.type == "done")
        }
    }

    @Test func acceptJSONCollectsTheEventsIntoOneDocument() async throws {
        try await LiveGateway.run([Self.count]) { gateway in
            let response = try await gateway.invoke(
                "count",
                #"{"inputs": {"n": 2}}"#,
                headers: [.accept: "application/json"]
            )
            #expect(response.status == .ok)
            #expect(response.headers[.contentType] == "application/json; charset=utf-8")
            let json = try #require(response.json)
            #expect(json["success"] == true)
            #expect(json["files"] == [])
            #expect(json["invocation_id"]?.stringValue?.count == 32)
            let types = json["events"]?.arrayValue?.compactMap { $0["type"]?.stringValue }
            #expect(types == ["start", "progress", "progress", "done"])
        }
    }

    @Test func idleStreamsGetHeartbeatComments() async throws {
        let probe = Probe()
        let idle = TestPrefab.streaming("idle") { _, context in
            try context.yield(.start())
            // Idle until the test has seen a heartbeat.
            _ = probe.proceed.wait(timeout: DispatchTime.now() + 10.0)
        }
        try await LiveGateway.run([idle], configure: { $0.heartbeatInterval = .milliseconds(100) }) { gateway in
            var stream = try await gateway.openStream("idle")
            #expect(try await stream.readRaw(until: "\n\n: ping\n\n"))
            probe.proceed.signal()
            let messages = try await stream.rest()
            #expect(messages.compactMap(\.prefabEvent).map(\.type) == ["start", "done"])
        }
    }

    @Test func aBusyFunctionDoesNotStallOtherRequests() async throws {
        let probe = Probe()
        let busy = Self.startThenWait("busy", for: probe)
        try await LiveGateway.run([busy, Self.count]) { gateway in
            var streams: [EventStream] = []
            for _ in 0..<4 {
                var stream = try await gateway.openStream("busy")
                #expect(try await stream.nextEvent()?.type == "start")
                streams.append(stream)
            }
            // Four blocked functions on two cores: other calls are still answered. A stall would
            // last until the blocked functions give up (10 s); 5 s leaves room for a loaded machine
            // (2.2 s was seen with the whole suite running).
            let started = ContinuousClock.now
            #expect(try await gateway.invoke("count").events.last?.type == "done")
            #expect(try await gateway.request(.get, "/health").status == .ok)
            #expect(ContinuousClock.now - started < .seconds(5))
            for _ in streams { probe.proceed.signal() }
            for index in streams.indices { #expect(try await streams[index].rest().last?.prefabEvent?.type == "done") }
        }
    }
}

@Suite(.timeLimit(.minutes(1))) struct ResultFunctionTests {
    @Test func answersSuccessAndResult() async throws {
        let add = TestPrefab.result(
            "add",
            parameters: [
                ParameterManifest(name: "a", type: .number, required: true),
                ParameterManifest(name: "b", type: .number, defaultValue: 10),
            ]
        ) { inputs, _ in .double(try inputs.double("a") + inputs.double("b")) }
        try await LiveGateway.run([add]) { gateway in
            let response = try await gateway.invoke("add", #"{"inputs": {"a": 1.5}}"#)
            #expect(response.status == .ok)
            #expect(response.json?["success"] == true)
            #expect(response.json?["result"] == 11.5)
            #expect(response.json?["files"] == [])
        }
    }

    @Test func aThrownErrorIs500WithItsCode() async throws {
        let broken = TestPrefab.result("broken") { _, _ in throw PrefabError("UPSTREAM_DOWN", "the service is down") }
        try await LiveGateway.run([broken]) { gateway in
            let response = try await gateway.invoke("broken")
            #expect(response.status == .internalServerError)
            #expect(response.json?["success"] == false)
            #expect(response.errorCode == "UPSTREAM_DOWN")
            #expect(response.json?["error"]?["message"] == "the service is down")
        }
    }
}
