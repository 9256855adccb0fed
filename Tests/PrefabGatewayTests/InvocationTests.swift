import Foundation
import HTTPTypes
import PrefabGateway
import PrefabKit
import Testing

@testable import Prefabs

/// Invocations as resources: looking one up, answering its questions, cancelling it, resuming
/// its events after a dropped connection.
@Suite(.timeLimit(.minutes(1))) struct InvocationTests {
    static let lastEventID = HTTPField.Name("Last-Event-ID")!
    static let invocationID = HTTPField.Name("X-Invocation-Id")!

    /// The repository's example wizards: the Swift one, and the Python one from its folder.
    static func withWizards(
        configure: (inout GatewayConfiguration) -> Void = { _ in },
        _ test: @Sendable (LiveGateway) async throws -> Void
    ) async throws {
        let examples = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../../prefabs").standardizedFileURL
        let swiftWizard = try PrefabManifest(
            parsing: Array(Data(contentsOf: examples.appendingPathComponent("wizard/prefab-manifest.json")))
        )
        let pythonManifest = try String(
            contentsOf: examples.appendingPathComponent("python_wizard/prefab-manifest.json"),
            encoding: .utf8
        )
        let pythonCode = try String(
            contentsOf: examples.appendingPathComponent("python_wizard/main.py"), encoding: .utf8)
        try await LiveGateway.run(
            [
                TestPrefab(
                    folder: "wizard", manifest: swiftWizard.functions[0], implementation: .streaming(Wizard.wizard))
            ],
            rawManifests: ["python_wizard": pythonManifest],
            files: ["python_wizard/main.py": pythonCode],
            configure: configure,
            test
        )
    }

    static func answer(_ questionId: String, _ answer: String) -> String {
        #"{"type": "answer", "data": {"questionId": "\#(questionId)", "answer": "\#(answer)"}}"#
    }

    @Test func theFirstEventAndTheHeaderCarryTheIdAndTheInvocationCanBeLookedUp() async throws {
        let twice = TestPrefab.streaming("twice") { _, context in
            try context.yield(.start())
            try context.yield(.content("a"))
            try context.yield(.content("b"))
        }
        try await LiveGateway.run([twice]) { gateway in
            let reply = try await gateway.invoke("twice")
            let id = try #require(reply.headers[Self.invocationID])
            #expect(id.count == 32 && id.allSatisfy(\.isHexDigit))
            var parser = SSEParser()
            let first = try #require(parser.feed(reply.body.readableBytesView).first)
            #expect(try JSONValue(parsing: first.data)["invocation_id"] == .string(id))

            let status = try await gateway.request(.get, "/invocations/\(id)")
            #expect(status.status == .ok)
            let json = try #require(status.json)
            #expect(json["id"] == .string(id))
            #expect(json["function"] == "twice")
            #expect(json["state"] == "done")
            #expect(json["events"] == 4)
            #expect(json["finished_at"]?.stringValue?.hasSuffix("Z") == true)

            let unknown = try await gateway.request(.get, "/invocations/0123456789abcdef0123456789abcdef")
            #expect(unknown.status == .notFound)
            #expect(unknown.errorCode == "INVOCATION_NOT_FOUND")
        }
    }

    @Test(arguments: ["wizard", "wizard_py"])
    func theWizardIsAnsweredOverPostedMessages(function: String) async throws {
        try await Self.withWizards { gateway in
            var stream = try await gateway.openStream(function)
            let id = try #require(stream.response.headers.first(name: "X-Invocation-Id"))
            let messages = "/invocations/\(id)/messages"
            #expect(try await stream.nextEvent()?.type == "start")

            let name = try #require(try await stream.nextEvent())
            #expect(name.type == "question")
            #expect(name["text"] == "What is the project called?")
            #expect(name.data?["questionId"] == "name")
            let early = try await gateway.request(.post, messages, body: Self.answer("template", "web"))
            #expect(early.status == .conflict)
            #expect(early.errorCode == "QUESTION_NOT_PENDING")
            #expect(try await gateway.request(.post, messages, body: Self.answer("name", "demo")).status == .accepted)

            let template = try #require(try await stream.nextEvent())
            #expect(template["text"] == "Which template for demo?")
            #expect(template.data?["options"] == ["cli", "web", "library"])
            let wrong = try await gateway.request(.post, messages, body: Self.answer("template", "java"))
            #expect(wrong.status == .unprocessableContent)
            #expect(wrong.errorCode == "INVALID_ANSWER")
            #expect(
                try await gateway.request(.post, messages, body: Self.answer("template", "web")).status == .accepted)

            #expect(try await stream.nextEvent() == .done(["name": "demo", "template": "web"]))
            #expect(try await stream.next() == nil)

            let late = try await gateway.request(.post, messages, body: Self.answer("name", "again"))
            #expect(late.status == .conflict)
            #expect(late.errorCode == "INVOCATION_FINISHED")
            let nowhere = try await gateway.request(
                .post,
                "/invocations/ffffffffffffffffffffffffffffffff/messages",
                body: Self.answer("name", "x")
            )
            #expect(nowhere.status == .notFound)
            #expect(nowhere.errorCode == "INVOCATION_NOT_FOUND")
            let status = try await gateway.request(.get, "/invocations/\(id)")
            #expect(status.json?["state"] == "done")
        }
    }

    @Test func aMessageThatIsNotAnEventIsRefused() async throws {
        try await Self.withWizards { gateway in
            var stream = try await gateway.openStream("wizard")
            let id = try #require(stream.response.headers.first(name: "X-Invocation-Id"))
            _ = try await stream.nextEvent()
            for body in ["[1, 2]", #"{"data": 1}"#, #"{"type": "answer", "data": "demo"}"#] {
                let reply = try await gateway.request(.post, "/invocations/\(id)/messages", body: body)
                #expect(reply.status == .badRequest, "\(body)")
                #expect(reply.errorCode == "INVALID_MESSAGE", "\(body)")
            }
            let broken = try await gateway.request(.post, "/invocations/\(id)/messages", body: "{")
            #expect(broken.errorCode == "INVALID_JSON")
            #expect(try await gateway.request(.delete, "/invocations/\(id)").status == .accepted)
        }
    }

    @Test(arguments: ["wizard", "wizard_py"])
    func aQuestionNobodyAnswersTimesOut(function: String) async throws {
        try await Self.withWizards(configure: { $0.questionTimeout = .milliseconds(300) }) { gateway in
            let reply = try await gateway.invoke(function)
            #expect(reply.events.map(\.type) == ["start", "question", "error"])
            #expect(reply.events.last?.errorCode == "QUESTION_TIMEOUT")
            let id = try #require(reply.headers[Self.invocationID])
            let status = try await gateway.request(.get, "/invocations/\(id)")
            #expect(status.json?["state"] == "failed")
            #expect(status.json?["error"]?["code"] == "QUESTION_TIMEOUT")
        }
    }

    @Test func cancellingASwiftFunctionEndsItsStreamWithCANCELLED() async throws {
        let probe = Probe()
        let looping = Self.looping(probe, pause: .milliseconds(20))
        try await LiveGateway.run([looping]) { gateway in
            var stream = try await gateway.openStream("looping")
            let id = try #require(stream.response.headers.first(name: "X-Invocation-Id"))
            #expect(try await stream.nextEvent() == .content("."))
            let cancel = try await gateway.request(.delete, "/invocations/\(id)")
            #expect(cancel.status == .accepted)
            #expect(cancel.json?["state"] == "cancelling")
            let rest = try await stream.rest().compactMap(\.prefabEvent)
            #expect(rest.last?.errorCode == "CANCELLED")
            #expect(rest.dropLast().allSatisfy { $0 == .content(".") })
            #expect(probe.stoppedWith == "CANCELLED")
            #expect(try await gateway.request(.get, "/invocations/\(id)").json?["state"] == "cancelled")
            let again = try await gateway.request(.post, "/invocations/\(id)/cancel")
            #expect(again.status == .conflict)
            #expect(again.errorCode == "INVOCATION_FINISHED")
        }
    }

    @Test(arguments: Isolation.allCases) func cancellingAPythonFunctionStopsItsProcess(_ isolation: Isolation)
        async throws
    {
        let code = """
            import os, time
            def looping():
                yield {"type": "start", "data": {"pid": os.getpid()}}
                while True:
                    time.sleep(0.02)
                    yield {"type": "content", "data": "."}
            """
        try await ProcessRuntimeTests.run(ProcessRuntimeTests.python(isolation, "looping", code)) { gateway in
            var stream = try await gateway.openStream("looping")
            let id = try #require(stream.response.headers.first(name: "X-Invocation-Id"))
            let start = try #require(try await stream.nextEvent())
            let pid = try #require(start.data?["pid"]?.intValue.map(Int32.init))
            #expect(try await gateway.request(.post, "/invocations/\(id)/cancel").status == .accepted)
            let rest = try await stream.rest().compactMap(\.prefabEvent)
            #expect(rest.last?.errorCode == "CANCELLED")
            #expect(await Probe.eventually { ProcessRuntimeTests.isGone(pid) })
            #expect(try await gateway.request(.get, "/invocations/\(id)").json?["state"] == "cancelled")
        }
    }

    /// Yields `.` every `pause` (a sleep a cancel interrupts) until stopped, and tells `probe` why.
    static func looping(_ probe: Probe, pause: Duration) -> TestPrefab {
        .streaming("looping") { _, context in
            do {
                while true {
                    try context.yield(.content("."))
                    probe.countYield()
                    try context.sleep(for: pause)
                }
            } catch let error as PrefabError {
                probe.stop(with: error.code.rawValue)
                throw error
            }
        }
    }

    /// `start`, four events, a pause until the test says go, four more; then `done`: ten events.
    static func gatedCounter(_ probe: Probe) -> TestPrefab {
        .streaming("counter") { _, context in
            try context.yield(.start())
            for index in 1...4 { try context.yield(.content("a\(index)")) }
            guard probe.proceed.wait(timeout: .now() + 10) == .success else {
                throw PrefabError("NOT_RELEASED", "the test never let the function go on")
            }
            for index in 5...8 { try context.yield(.content("b\(index)")) }
        }
    }

    @Test func aClientThatDropsAfterEventKAndResumesGetsExactlyTheRest() async throws {
        let probe = Probe()
        try await LiveGateway.run([Self.gatedCounter(probe)], configure: { $0.resumeGrace = .seconds(10) }) { gateway in
            let connection = try RawConnection(port: gateway.port)
            try connection.sendPost("/invoke/counter", json: "{}")
            let seen = try await connection.readOffPool(until: "id: 3\n")
            let id = try #require(seen.firstMatch(of: /"invocation_id":"([0-9a-f]+)"/).map { String($0.1) })
            connection.hangUp()
            // Give the gateway time to notice the close before the run goes on.
            #expect(try await Self.readersLeft(gateway, id) == 0)
            probe.proceed.signal()

            let resumed = try await gateway.request(.get, "/invocations/\(id)/events", headers: [Self.lastEventID: "3"])
            #expect(resumed.status == .ok)
            var parser = SSEParser()
            let messages = parser.feed(resumed.body.readableBytesView)
            #expect(messages.map(\.lastEventId) == (4...10).map(String.init))
            #expect(
                messages.compactMap(\.prefabEvent)
                    == ["a3", "a4", "b5", "b6", "b7", "b8"].map(PrefabEvent.content) + [.done()]
            )

            let again = try await gateway.request(.get, "/invocations/\(id)/events?after=8")
            #expect(SSEParserMessages(again).map(\.lastEventId) == ["9", "10"])
            // Nothing after the last event: 204, which stops a browser's EventSource reconnecting.
            let end = try await gateway.request(.get, "/invocations/\(id)/events", headers: [Self.lastEventID: "10"])
            #expect(end.status == .noContent)
            let bad = try await gateway.request(.get, "/invocations/\(id)/events?after=minus-one")
            #expect(bad.status == .badRequest)
        }
    }

    @Test func aResumedStreamFollowsTheLiveEventsToTheEnd() async throws {
        let probe = Probe()
        try await LiveGateway.run([Self.gatedCounter(probe)], configure: { $0.resumeGrace = .seconds(10) }) { gateway in
            var original = try await gateway.openStream("counter")
            let id = try #require(original.response.headers.first(name: "X-Invocation-Id"))
            #expect(try await original.nextEvent()?.type == "start")
            // A second reader attaches while the run waits, then sees the rest live.
            var follower = try await gateway.openEvents(id, after: 1)
            #expect(try await follower.nextEvent() == .content("a1"))
            probe.proceed.signal()
            let rest = try await follower.rest()
            #expect(rest.map(\.lastEventId) == (3...10).map(String.init))
            #expect(try await original.rest().map(\.lastEventId) == (2...10).map(String.init))
        }
    }

    @Test func aRunNobodyResumesIsCancelledAfterTheGracePeriod() async throws {
        let probe = Probe()
        let looping = Self.looping(probe, pause: .milliseconds(10))
        try await LiveGateway.run([looping], configure: { $0.resumeGrace = .milliseconds(500) }) { gateway in
            let connection = try RawConnection(port: gateway.port)
            try connection.sendPost("/invoke/looping", json: "{}")
            let seen = try await connection.readOffPool(until: "id: 2\n")
            let id = try #require(seen.firstMatch(of: /"invocation_id":"([0-9a-f]+)"/).map { String($0.1) })
            let left = ContinuousClock.now
            connection.hangUp()
            #expect(await Probe.eventually { probe.stoppedWith != nil })
            let waited = ContinuousClock.now - left
            #expect(waited >= .milliseconds(400), "cancelled after \(waited), before the grace period ended")
            #expect(probe.stoppedWith == "CANCELLED")
            let status = try await Self.status(gateway, id)
            #expect(status["state"] == "cancelled")
            #expect(status["error"]?["message"]?.stringValue?.contains("did not resume") == true)
        }
    }

    @Test func eventsKeptPerInvocationAreBoundedAndAResumeFromTooFarBackIsToldWhatWasDropped() async throws {
        let count = 20_000
        let chatty = TestPrefab.streaming("chatty") { _, context in
            for index in 1...count {
                try context.yield(.content("event \(index) " + String(repeating: "x", count: 80)))
            }
        }
        try await LiveGateway.run([chatty], configure: { $0.eventHistoryBytes = 64 << 10 }) { gateway in
            let reply = try await gateway.invoke("chatty")
            #expect(reply.events.count == count + 1)
            let id = try #require(reply.headers[Self.invocationID])
            let status = try await Self.status(gateway, id)
            #expect(status["events"] == .int(count + 1))
            let oldest = try #require(status["oldest_kept_event"]?.intValue)
            // About 100 bytes per event: 64 KiB keeps the last ~650 of 20,001.
            #expect(oldest > count - 1000 && oldest < count)

            let replay = try await gateway.request(.get, "/invocations/\(id)/events?after=0")
            #expect(replay.body.readableBytes < 80 << 10)
            let messages = SSEParserMessages(replay)
            let gap = try #require(messages.first?.prefabEvent)
            #expect(gap.type == "gap")
            #expect(gap.data?["first"] == 1)
            #expect(gap.data?["last"] == .int(oldest - 1))
            #expect(messages.first?.lastEventId == "")
            #expect(messages.dropFirst().map(\.lastEventId) == (oldest...(count + 1)).map(String.init))
        }
    }

    static func status(_ gateway: LiveGateway, _ id: String) async throws -> JSONValue {
        try #require(try await gateway.request(.get, "/invocations/\(id)").json)
    }

    /// The invocation's reader count once it is 0, or what it still is after 5 s.
    static func readersLeft(_ gateway: LiveGateway, _ id: String) async throws -> JSONValue? {
        var readers: JSONValue?
        for _ in 0..<250 {
            readers = try await status(gateway, id)["readers"]
            if readers == 0 { break }
            try await Task.sleep(for: .milliseconds(20))
        }
        return readers
    }
}

/// The SSE messages of a whole reply.
func SSEParserMessages(_ reply: TestReply) -> [SSEMessage] {
    var parser = SSEParser()
    return parser.feed(reply.body.readableBytesView)
}
