import Foundation
import HTTPTypes
import PrefabGateway
import PrefabKit
import Testing

/// `/mcp`: every function as an MCP tool over Streamable HTTP, driven with plain JSON-RPC.
@Suite(.timeLimit(.minutes(1))) struct MCPTests {
    static let steps = TestPrefab.streaming(
        "steps", parameters: [ParameterManifest(name: "n", type: .integer, defaultValue: 3)]
    ) { inputs, context in
        let n = try inputs.int("n")
        for step in 1...n {
            try context.yield(.progress(current: step, total: n, message: "step \(step)"))
            try context.yield(.content("s\(step) "))
        }
        try context.yield(.done(["steps": .int(n)]))
    }
    static let failing = TestPrefab.streaming("failing") { _, context in
        try context.yield(.content("half"))
        try context.yield(.error("step 2 broke", code: "STEP_FAILED"))
    }
    static let echo = {
        var echo = TestPrefab.result(
            "echo", parameters: [ParameterManifest(name: "text", type: .string, required: true)]
        ) { inputs, _ in
            ["text": .string(try inputs.string("text"))]
        }
        var json = echo.manifest.json.objectValue ?? [:]
        json["annotations"] = ["title": "Echo", "readOnlyHint": true, "openWorldHint": false]
        echo.manifest.json = .object(json)
        return echo
    }()
    static let writer = TestPrefab.streaming("writer") { _, context in
        try "a,b\n".write(
            to: context.outputDirectory.appendingPathComponent("t.csv"), atomically: true, encoding: .utf8)
        try context.yield(.done(nil))
    }
    static let endless = TestPrefab.streaming("endless") { _, context in
        while true {
            try context.yield(.content("."))
            try context.sleep(for: .milliseconds(20))
        }
    }
    static let asking = TestPrefab.streaming("asking") { _, context in
        let answer = try context.ask("Which one?", options: ["A", "B"], id: "pick")
        try context.yield(.done(["picked": answer]))
    }
    static let all = [steps, failing, echo, writer, endless, asking]

    @Test func initializeOpensASessionAndToolsListsEveryFunction() async throws {
        try await LiveGateway.run(Self.all) { gateway in
            var client = MCPTestClient(gateway)
            let initialized = try await client.initialize()
            #expect(initialized["serverInfo"]?["name"] == "prefab-gateway")
            #expect(initialized["capabilities"]?["tools"] != nil)
            let tools = try #require(try await client.call("tools/list")["result"]?["tools"]?.arrayValue)
            #expect(
                tools.compactMap { $0["name"]?.stringValue } == [
                    "asking", "echo", "endless", "failing", "steps", "writer",
                ])
            let echo = try #require(tools.first { $0["name"] == "echo" })
            #expect(echo["inputSchema"]?["type"] == "object")
            #expect(echo["inputSchema"]?["required"] == ["text"])
            #expect(echo["inputSchema"]?["properties"]?["text"]?["type"] == "string")
            #expect(echo["inputSchema"]?["additionalProperties"] == false)
            // The manifest's annotations, and only those (no hint is made up).
            #expect(echo["annotations"] == ["title": "Echo", "readOnlyHint": true, "openWorldHint": false])
            let steps = try #require(tools.first { $0["name"] == "steps" })
            #expect(steps["annotations"] == nil || steps["annotations"] == [:])
        }
    }

    @Test func streamingCallSendsProgressAndReturnsTextAndStructuredContent() async throws {
        try await LiveGateway.run(Self.all) { gateway in
            var client = MCPTestClient(gateway)
            try await client.initialize()
            var notifications = try await client.openStream()
            let answer = try await client.call(
                "tools/call", #"{"name": "steps", "arguments": {"n": 3}, "_meta": {"progressToken": "t1"}}"#)
            let result = try #require(answer["result"])
            #expect(result["isError"] == false)
            #expect(result["structuredContent"] == ["steps": 3])
            #expect(result["content"]?[0]?["text"] == "s1 s2 s3 ")
            #expect(result["content"]?[1]?["text"] == #"{"steps":3}"#)
            let id = try #require(result["_meta"]?["invocation_id"]?.stringValue)
            var progress: [JSONValue] = []
            while progress.count < 3, let message = try await notifications.nextMessage() {
                if message["method"] == "notifications/progress" { progress.append(message["params"] ?? .null) }
            }
            #expect(progress.map { $0["progressToken"] } == ["t1", "t1", "t1"])
            #expect(progress.map { $0["progress"]?.doubleValue } == [1, 2, 3])
            #expect(progress.last?["total"]?.doubleValue == 3)
            #expect(progress.last?["message"] == "step 3")
            // A real invocation: visible at /invocations/<id>.
            let status = try await gateway.request(.get, "/invocations/\(id)")
            #expect(status.json?["state"] == "done")
            #expect(status.json?["function"] == "steps")
        }
    }

    @Test func errorEventsNonStreamingResultsAndFilesMapToTheResult() async throws {
        try await LiveGateway.run(Self.all) { gateway in
            var client = MCPTestClient(gateway)
            try await client.initialize()
            let failed = try #require(try await client.call("tools/call", #"{"name": "failing"}"#)["result"])
            #expect(failed["isError"] == true)
            #expect(failed["content"]?[0]?["text"] == "half")
            #expect(failed["content"]?[1]?["text"] == "STEP_FAILED: step 2 broke")

            let echoed = try #require(
                try await client.call("tools/call", #"{"name": "echo", "arguments": {"text": "hi"}}"#)["result"])
            #expect(echoed["isError"] == false)
            #expect(echoed["structuredContent"] == ["text": "hi"])
            #expect(echoed["content"]?[0]?["text"] == #"{"text":"hi"}"#)

            let invalid = try #require(
                try await client.call("tools/call", #"{"name": "echo", "arguments": {"text": 5}}"#)["result"])
            #expect(invalid["isError"] == true)
            #expect(invalid["content"]?[0]?["text"]?.stringValue?.hasPrefix("INVALID_INPUTS: ") == true)

            let unknown = try await client.call("tools/call", #"{"name": "nope"}"#)
            #expect(unknown["error"]?["code"] == -32602)

            let wrote = try #require(try await client.call("tools/call", #"{"name": "writer"}"#)["result"])
            let link = try #require(wrote["content"]?.arrayValue?.first { $0["type"] == "resource_link" })
            #expect(link["name"] == "t.csv")
            #expect(link["mimeType"] == "text/csv; charset=utf-8")
            let url = try #require(link["uri"]?.stringValue)
            #expect(url.hasPrefix(gateway.baseURL + "/files/"))
            let file = try await gateway.request(.get, String(url.dropFirst(gateway.baseURL.count)))
            #expect(file.text == "a,b\n")
        }
    }

    @Test func cancelledNotificationCancelsTheInvocation() async throws {
        try await LiveGateway.run(Self.all) { gateway in
            var client = MCPTestClient(gateway)
            try await client.initialize()
            let caller = client
            async let answer = caller.post(
                #"{"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "endless"}}"#)
            try await Self.waitUntil { try await gateway.request(.get, "/health").json?["running"] == 1 }
            let cancelled = try await client.post(
                #"{"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 7}}"#)
            #expect(cancelled.status == .accepted)
            let result = try MCPTestClient.answer(in: try await answer, id: 7)["result"]
            #expect(result?["isError"] == true)
            #expect(result?["content"]?.arrayValue?.last?["text"]?.stringValue?.hasPrefix("CANCELLED: ") == true)
            #expect(try await gateway.request(.get, "/health").json?["running"] == 0)
        }
    }

    @Test func deleteEndsTheSessionAndCancelsItsCalls() async throws {
        try await LiveGateway.run(Self.all) { gateway in
            var client = MCPTestClient(gateway)
            try await client.initialize()
            let caller = client
            async let answer = caller.post(
                #"{"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {"name": "endless"}}"#)
            try await Self.waitUntil { try await gateway.request(.get, "/health").json?["running"] == 1 }
            let deleted = try await gateway.request(.delete, "/mcp", headers: client.requestHeaders)
            #expect(deleted.status == .ok)
            _ = try await answer
            try await Self.waitUntil { try await gateway.request(.get, "/health").json?["running"] == 0 }
            let after = try await client.post(#"{"jsonrpc": "2.0", "id": 10, "method": "tools/list"}"#)
            #expect(after.status == .notFound)
            #expect(
                MCPTestClient.messages(in: after).first?["error"]?["message"]?.stringValue?.contains("expired") == true)
        }
    }

    @Test func questionsBecomeElicitationsAndTheAnswerReachesTheFunction() async throws {
        try await LiveGateway.run(Self.all) { gateway in
            var client = MCPTestClient(gateway)
            try await client.initialize(elicitation: true)
            var stream = try await client.openStream()
            let caller = client
            async let answer = caller.post(
                #"{"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "asking"}}"#)
            var request: JSONValue?
            while request == nil, let message = try await stream.nextMessage() {
                if message["method"] == "elicitation/create" { request = message }
            }
            let elicitation = try #require(request)
            #expect(elicitation["params"]?["message"] == "Which one?")
            #expect(elicitation["params"]?["requestedSchema"]?["properties"]?["answer"]?["enum"] == ["A", "B"])
            let id = try #require(elicitation["id"])
            let reply = try await client.post(
                #"{"jsonrpc": "2.0", "id": \#(id.jsonString(pretty: false)), "result": {"action": "accept", "content": {"answer": "B"}}}"#
            )
            #expect(reply.status == .accepted)
            let result = try MCPTestClient.answer(in: try await answer, id: 3)["result"]
            #expect(result?["structuredContent"] == ["picked": "B"])
        }
    }

    @Test func questionsFailClearlyWithoutTheElicitationCapability() async throws {
        try await LiveGateway.run(Self.all) { gateway in
            var client = MCPTestClient(gateway)
            try await client.initialize()
            let result = try #require(try await client.call("tools/call", #"{"name": "asking"}"#)["result"])
            #expect(result["isError"] == true)
            #expect(result["content"]?[0]?["text"]?.stringValue?.hasPrefix("ELICITATION_UNSUPPORTED: ") == true)
        }
    }

    @Test func requestsOutsideASessionAndPastTheLimitGetJSONRPCErrors() async throws {
        try await LiveGateway.run(Self.all, configure: { $0.maxMCPSessions = 1 }) { gateway in
            let plain = MCPTestClient(gateway)
            let noSession = try await plain.post(#"{"jsonrpc": "2.0", "id": 1, "method": "tools/list"}"#)
            #expect(noSession.status == .badRequest)
            #expect(MCPTestClient.messages(in: noSession).first?["error"]?["code"] == -32600)

            var unknown = MCPTestClient(gateway)
            unknown.sessionId = "0123"
            #expect(try await unknown.post(#"{"jsonrpc": "2.0", "id": 1, "method": "tools/list"}"#).status == .notFound)

            var first = MCPTestClient(gateway)
            try await first.initialize()
            var second = MCPTestClient(gateway)
            await #expect(throws: RawConnectionError.self) { try await second.initialize() }
            let refused = try await second.post(
                #"{"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}"#
            )
            #expect(refused.status == .serviceUnavailable)
            let message = MCPTestClient.messages(in: refused).first?["error"]?["message"]?.stringValue
            #expect(message?.contains("TOO_MANY_SESSIONS") == true)
            // Once the first ends, a new one opens.
            #expect(try await gateway.request(.delete, "/mcp", headers: first.requestHeaders).status == .ok)
            try await second.initialize()
        }
    }

    @Test func aBodyOverTheLimitGetsAJSONRPCError() async throws {
        try await LiveGateway.run(Self.all, configure: { $0.maxBodyBytes = 1000 }) { gateway in
            var client = MCPTestClient(gateway)
            try await client.initialize()
            let text = String(repeating: "x", count: 2000)
            let reply = try await client.post(
                #"{"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": "\#(text)"}}}"#
            )
            #expect(reply.status == .contentTooLarge)
            let message = MCPTestClient.messages(in: reply).first?["error"]?["message"]?.stringValue
            #expect(message?.contains("PAYLOAD_TOO_LARGE") == true)
        }
    }

    @Test func callsAreAdmittedAndCountedLikeAnyOther() async throws {
        try await LiveGateway.run(
            Self.all,
            configure: {
                $0.maxConcurrentInvocations = 1
                $0.maxQueuedInvocations = 0
            }
        ) { gateway in
            var client = MCPTestClient(gateway)
            try await client.initialize()
            _ = try await client.call("tools/call", #"{"name": "steps", "arguments": {"n": 1}}"#)
            let metrics = try await gateway.request(.get, "/metrics").text
            #expect(
                metrics.contains(#"function="steps",outcome="done""#)
                    || metrics.contains(#"outcome="done",function="steps""#))
            // The one slot taken by a call on /invoke: an MCP call is refused like any other.
            let running = try await gateway.openStream("endless")
            try await Self.waitUntil { try await gateway.request(.get, "/health").json?["running"] == 1 }
            let refused = try await client.call("tools/call", #"{"name": "steps"}"#)
            #expect(refused["error"]?["code"] == -32000)
            #expect(refused["error"]?["message"]?.stringValue?.contains("OVERLOADED: ") == true)
            _ = running
        }
    }

    @Test func progressInATightLoopIsThinnedAndItsLastStepSent() async throws {
        try await LiveGateway.run(Self.all) { gateway in
            var client = MCPTestClient(gateway)
            try await client.initialize()
            var notifications = try await client.openStream()
            let answer = try await client.call(
                "tools/call", #"{"name": "steps", "arguments": {"n": 2000}, "_meta": {"progressToken": 5}}"#)
            #expect(answer["result"]?["structuredContent"] == ["steps": 2000])
            var count = 0
            while let message = try await notifications.nextMessage() {
                guard message["method"] == "notifications/progress" else { continue }
                count += 1
                if message["params"]?["progress"]?.doubleValue == 2000 { break }
            }
            // 2,000 steps take a fraction of a second: a burst of 100, then at most 100 a second.
            #expect(count < 1000)
        }
    }

    @Test func streamsGetHeartbeats() async throws {
        try await LiveGateway.run(Self.all, configure: { $0.heartbeatInterval = .milliseconds(100) }) { gateway in
            var client = MCPTestClient(gateway)
            try await client.initialize()
            var stream = try await client.openStream()
            #expect(try await stream.readRaw(until: ": ping\n\n"))
        }
    }

    @Test func aNewGETStreamAfterTheClientLeftTheOldOneGetsTheNotifications() async throws {
        try await LiveGateway.run(Self.all, configure: { $0.heartbeatInterval = .milliseconds(100) }) { gateway in
            var client = MCPTestClient(gateway)
            try await client.initialize()
            let first = try RawConnection(port: gateway.port)
            let headers = client.requestHeaders.map { "\($0.name.rawName): \($0.value)\r\n" }.joined()
            try first.sendRaw(Array("GET /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n\(headers)\r\n".utf8))
            _ = try await first.readOffPool(until: ": ping")
            first.hangUp()
            // Refused (409) until the gateway notices the first one is gone, at its next ping.
            var second: EventStream?
            for _ in 0..<100 where second == nil {
                second = try? await client.openStream()
                if second == nil { try await Task.sleep(for: .milliseconds(50)) }
            }
            var stream = try #require(second)
            _ = try await client.call(
                "tools/call", #"{"name": "steps", "arguments": {"n": 1}, "_meta": {"progressToken": "r"}}"#)
            var progress: JSONValue?
            while progress == nil, let message = try await stream.nextMessage() {
                if message["method"] == "notifications/progress" { progress = message["params"] }
            }
            #expect(progress?["progressToken"] == "r")
        }
    }

    @Test func idleSessionsExpire() async throws {
        try await LiveGateway.run(Self.all, configure: { $0.mcpSessionIdleTimeout = .milliseconds(300) }) { gateway in
            // initialize alone: the time a loaded machine takes between two requests does not count.
            var client = MCPTestClient(gateway)
            let opened = try await client.post(
                #"{"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}"#
            )
            let id = try #require(opened.headers[.mcpSessionId])
            client.sessionId = id
            // Each request keeps a session: one check, well after the idle time.
            try await Task.sleep(for: .seconds(2))
            #expect(try await client.post(#"{"jsonrpc": "2.0", "id": 5, "method": "ping"}"#).status == .notFound)
        }
    }

    @Test func theBrowserPolicyAndAPIKeysDecideAccess() async throws {
        try await LiveGateway.run(
            Self.all,
            configure: {
                $0.apiKeys = ["k1", "k2"]
                $0.allowedHosts = ["gateway.example"]
            }
        ) { gateway in
            var anonymous = MCPTestClient(gateway)
            await #expect(throws: RawConnectionError.self) { try await anonymous.initialize() }
            #expect(try await anonymous.post("{}").status == .unauthorized)
            // A named host the SDK's loopback-only default would refuse is served when allowed.
            var named = MCPTestClient(
                gateway, headers: [.authorization: "Bearer k1", .init("Host")!: "gateway.example"])
            try await named.initialize()
            var rebound = MCPTestClient(
                gateway, headers: [.authorization: "Bearer k1", .init("Host")!: "rebound.example"])
            await #expect(throws: RawConnectionError.self) { try await rebound.initialize() }
            // A session opened with one key is not found with another.
            var stolen = MCPTestClient(gateway, headers: [.authorization: "Bearer k2"])
            stolen.sessionId = named.sessionId
            #expect(try await stolen.post(#"{"jsonrpc": "2.0", "id": 1, "method": "tools/list"}"#).status == .notFound)
            #expect(try await named.call("tools/list")["result"]?["tools"] != nil)
        }
    }

    static func waitUntil(_ condition: () async throws -> Bool) async throws {
        for _ in 0..<200 {
            if try await condition() { return }
            try await Task.sleep(for: .milliseconds(25))
        }
        throw RawConnectionError("the condition did not hold within 5 s")
    }
}
