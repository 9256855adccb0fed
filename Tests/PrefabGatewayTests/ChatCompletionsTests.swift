import Foundation
import HTTPTypes
import PrefabGateway
import PrefabKit
import Testing

/// `GET /v1/models` and `POST /v1/chat/completions`: chat-capable functions as OpenAI models, their
/// replies as chat completions (streamed or whole), every error in OpenAI's shape and status.
@Suite(.timeLimit(.minutes(1))) struct ChatCompletionsTests {
    /// Chat-capable by its `prompt` parameter; `n` (declared) can come as an extra request member.
    static let replier = TestPrefab.streaming(
        "replier",
        parameters: [
            ParameterManifest(name: "prompt", type: .string, required: true),
            ParameterManifest(name: "n", type: .integer, defaultValue: 3),
            ParameterManifest(name: "fail", type: .boolean, defaultValue: false),
        ]
    ) { inputs, context in
        let prompt = try inputs.string("prompt")
        try context.yield(.start(nil))
        try context.yield(.progress(current: 1, total: 2, message: "thinking"))
        for index in 1...(try inputs.int("n")) {
            try context.yield(.content("\(prompt)-\(index) "))
            if try inputs.bool("fail"), index == 2 { throw PrefabError("MODEL_BROKE", "the model broke") }
        }
        try context.yield(.done(nil))
    }
    /// Chat-capable by its manifest's chat block: gets the whole conversation and says what it got.
    static let historian = TestPrefab(
        folder: "historian",
        manifest: FunctionManifest(
            name: "historian", streaming: true,
            parameters: [ParameterManifest(name: "history", type: .array, required: true)],
            chat: .messages("history")),
        implementation: .streaming { inputs, context in
            for message in try inputs.array("history") {
                let role = message["role"]?.stringValue ?? "?"
                let content = message["content"]?.stringValue ?? "?"
                try context.yield(.content("\(role):\(content);"))
            }
            try context.yield(.done(nil))
        })
    /// A non-streaming function whose text result is the reply.
    static let oneShot = TestPrefab.result(
        "one_shot", parameters: [ParameterManifest(name: "message", type: .string, required: true)]
    ) { inputs, _ in .string("you wrote " + (try inputs.string("message"))) }
    /// Not chat-capable: no conversation parameter.
    static let plain = TestPrefab.streaming(
        "plain", parameters: [ParameterManifest(name: "text", type: .string)]
    ) { _, context in try context.yield(.done(nil)) }
    static let all = [replier, historian, oneShot, plain]

    static func completion(_ model: String, _ content: String = "hi", stream: Bool = false, extra: String = "")
        -> String
    {
        #"{"model": "\#(model)", "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "\#(content)"}], "stream": \#(stream)\#(extra)}"#
    }

    /// The `data:` payloads of an SSE body, in order (`[DONE]` included).
    static func dataLines(_ text: String) -> [String] {
        text.split(separator: "\n").filter { $0.hasPrefix("data: ") }.map { String($0.dropFirst(6)) }
    }

    static func json(_ text: String) throws -> JSONValue { try JSONValue(parsing: Array(text.utf8)) }

    /// `{"error": {"message", "type", "param", "code"}}` with `code`, and nothing else.
    static func expectOpenAIError(_ reply: TestReply, _ status: HTTPResponse.Status, code: String, type: String) {
        #expect(reply.status == status)
        #expect(reply.json?.objectValue?.keys.sorted() == ["error"])
        #expect(reply.json?["error"]?.objectValue?.keys.sorted() == ["code", "message", "param", "type"])
        #expect(reply.json?["error"]?["code"] == .string(code))
        #expect(reply.json?["error"]?["type"] == .string(type))
        #expect(reply.json?["error"]?["message"]?.stringValue?.isEmpty == false)
    }

    @Test func modelsListsTheChatCapableFunctions() async throws {
        try await LiveGateway.run(Self.all) { gateway in
            let reply = try await gateway.request(.get, "/v1/models")
            #expect(reply.status == .ok)
            #expect(
                reply.json
                    == [
                        "object": "list",
                        "data": [
                            ["id": "historian", "object": "model", "created": 0, "owned_by": "prefab-gateway"],
                            ["id": "one_shot", "object": "model", "created": 0, "owned_by": "prefab-gateway"],
                            ["id": "replier", "object": "model", "created": 0, "owned_by": "prefab-gateway"],
                        ],
                    ])
        }
    }

    @Test func aStreamedCompletionCarriesTheNativeContentThenStopThenDone() async throws {
        try await LiveGateway.run(Self.all) { gateway in
            let reply = try await gateway.request(
                .post, "/v1/chat/completions", body: Self.completion("replier", "yo", stream: true, extra: #", "n": 4"#)
            )
            #expect(reply.status == .ok)
            #expect(reply.headers[.contentType]?.hasPrefix("text/event-stream") == true)
            let id = try #require(reply.headers[HTTPField.Name("X-Invocation-Id")!])
            let data = Self.dataLines(reply.text)
            #expect(data.last == "[DONE]")
            let chunks = try data.dropLast().map(Self.json)
            for chunk in chunks {
                #expect(chunk.objectValue?.keys.sorted() == ["choices", "created", "id", "model", "object"])
                #expect(chunk["object"] == "chat.completion.chunk")
                #expect(chunk["id"] == .string("chatcmpl-\(id)"))
                #expect(chunk["model"] == "replier")
                #expect(chunk["choices"]?[0]?["index"] == 0)
            }
            #expect(chunks.first?["choices"]?[0]?["delta"]?["role"] == "assistant")
            #expect(chunks.dropFirst().allSatisfy { $0["choices"]?[0]?["delta"]?["role"] == nil })
            let last = try #require(chunks.last)
            #expect(last["choices"]?[0]?["delta"] == [:])
            #expect(last["choices"]?[0]?["finish_reason"] == "stop")
            #expect(chunks.dropLast().allSatisfy { $0["choices"]?[0]?["finish_reason"] == .null })
            let text = chunks.compactMap { $0["choices"]?[0]?["delta"]?["content"]?.stringValue }.joined()
            // The text is the function's own content events, as /invoke streams them.
            let native = try await gateway.invoke("replier", #"{"inputs": {"prompt": "yo", "n": 4}}"#)
            let nativeText = native.events.filter { $0.type == "content" }.compactMap { $0.data?.stringValue }.joined()
            #expect(text == nativeText)
            #expect(text == "yo-1 yo-2 yo-3 yo-4 ")
            // A normal invocation, counted by its format.
            #expect(try await gateway.request(.get, "/invocations/\(id)").json?["state"] == "done")
            let metrics = try await gateway.request(.get, "/metrics").text
            #expect(metrics.contains(#"prefab_invocations_started_total{format="openai"} 1"#))

            let usage = try await gateway.request(
                .post, "/v1/chat/completions",
                body: Self.completion("replier", stream: true, extra: #", "stream_options": {"include_usage": true}"#))
            let usageChunks = try Self.dataLines(usage.text).dropLast().map(Self.json)
            #expect(usageChunks.last?["choices"] == [])
            #expect(usageChunks.last?["usage"] == ["prompt_tokens": 0, "completion_tokens": 3, "total_tokens": 3])
        }
    }

    @Test func aCompletionWithoutStreamIsOneChatCompletion() async throws {
        try await LiveGateway.run(Self.all) { gateway in
            let reply = try await gateway.request(.post, "/v1/chat/completions", body: Self.completion("replier"))
            #expect(reply.status == .ok)
            let id = try #require(reply.headers[HTTPField.Name("X-Invocation-Id")!])
            let body = try #require(reply.json)
            #expect(body.objectValue?.keys.sorted() == ["choices", "created", "id", "model", "object", "usage"])
            #expect(body["id"] == .string("chatcmpl-\(id)"))
            #expect(body["object"] == "chat.completion")
            #expect(body["model"] == "replier")
            #expect(
                body["choices"]
                    == [
                        [
                            "index": 0, "message": ["role": "assistant", "content": "hi-1 hi-2 hi-3 "],
                            "finish_reason": "stop",
                        ]
                    ])
            #expect(body["usage"] == ["prompt_tokens": 0, "completion_tokens": 3, "total_tokens": 3])

            // The whole conversation, for a function whose chat block asks for it.
            let history = try await gateway.request(.post, "/v1/chat/completions", body: Self.completion("historian"))
            #expect(history.json?["choices"]?[0]?["message"]?["content"] == "system:be brief;user:hi;")
            // Content as parts.
            let parts = try await gateway.request(
                .post, "/v1/chat/completions",
                body:
                    #"{"model": "historian", "messages": [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]}"#
            )
            #expect(parts.json?["choices"]?[0]?["message"]?["content"] == "user:ab;")
            // A non-streaming function's text result, whole or streamed.
            let oneShot = try await gateway.request(.post, "/v1/chat/completions", body: Self.completion("one_shot"))
            #expect(oneShot.json?["choices"]?[0]?["message"]?["content"] == "you wrote hi")
            let streamed = try await gateway.request(
                .post, "/v1/chat/completions", body: Self.completion("one_shot", stream: true))
            let text = try Self.dataLines(streamed.text).dropLast().map(Self.json)
                .compactMap { $0["choices"]?[0]?["delta"]?["content"]?.stringValue }.joined()
            #expect(text == "you wrote hi")
        }
    }

    @Test func anErrorMidStreamIsAnErrorObjectAndTheStreamEnds() async throws {
        try await LiveGateway.run(Self.all) { gateway in
            let reply = try await gateway.request(
                .post, "/v1/chat/completions", body: Self.completion("replier", stream: true, extra: #", "fail": true"#)
            )
            #expect(reply.status == .ok)
            let data = Self.dataLines(reply.text)
            #expect(!data.contains("[DONE]"))
            let error = try Self.json(try #require(data.last))
            #expect(error.objectValue?.keys.sorted() == ["error"])
            #expect(error["error"]?.objectValue?.keys.sorted() == ["code", "message", "param", "type"])
            #expect(error["error"]?["code"] == "MODEL_BROKE")
            #expect(error["error"]?["message"] == "the model broke")
            let text = try data.dropLast().map(Self.json)
                .compactMap { $0["choices"]?[0]?["delta"]?["content"]?.stringValue }.joined()
            #expect(text == "hi-1 hi-2 ")

            // Without stream: 500 in OpenAI's shape, and no retry (the call ran).
            let whole = try await gateway.request(
                .post, "/v1/chat/completions", body: Self.completion("replier", extra: #", "fail": true"#))
            Self.expectOpenAIError(whole, .internalServerError, code: "MODEL_BROKE", type: "server_error")
            #expect(whole.headers[HTTPField.Name("x-should-retry")!] == "false")
            #expect(whole.headers[HTTPField.Name("X-Invocation-Id")!] != nil)
        }
    }

    @Test func errorsBeforeTheStreamHaveOpenAIsShapeAndStatus() async throws {
        try await LiveGateway.run(Self.all) { gateway in
            func post(_ body: String) async throws -> TestReply {
                try await gateway.request(.post, "/v1/chat/completions", body: body)
            }
            Self.expectOpenAIError(
                try await post(Self.completion("nope")), .notFound, code: "FUNCTION_NOT_FOUND", type: "not_found_error")
            Self.expectOpenAIError(
                try await post(Self.completion("plain")), .notFound, code: "FUNCTION_NOT_FOUND", type: "not_found_error"
            )
            for body in [
                "{", "[]", #"{"messages": [{"role": "user", "content": "x"}]}"#, #"{"model": "replier"}"#,
                #"{"model": "replier", "messages": []}"#, #"{"model": "replier", "messages": [{"content": "x"}]}"#,
                #"{"model": "replier", "messages": [{"role": "user", "content": 5}]}"#,
                Self.completion("replier", extra: #", "stream_options": 3"#),
                #"{"model": "replier", "messages": [{"role": "user", "content": "x"}], "stream": "yes"}"#,
                #"{"model": "replier", "messages": [{"role": "system", "content": "no user message"}]}"#,
            ] {
                let reply = try await post(body)
                Self.expectOpenAIError(
                    reply, .badRequest, code: reply.json?["error"]?["code"]?.stringValue ?? "?",
                    type: "invalid_request_error")
                #expect(["INVALID_JSON", "INVALID_REQUEST"].contains(reply.json?["error"]?["code"]?.stringValue))
            }
            // A declared input of the wrong type names its parameter.
            let invalid = try await post(Self.completion("replier", extra: #", "n": "three""#))
            Self.expectOpenAIError(invalid, .badRequest, code: "INVALID_INPUTS", type: "invalid_request_error")
            #expect(invalid.json?["error"]?["param"] == "n")
            // Members that are no parameter (temperature, ...) are ignored.
            let extra = try await post(Self.completion("replier", extra: #", "temperature": 0.2, "max_tokens": 5"#))
            #expect(extra.status == .ok)
            // The router's own errors too.
            Self.expectOpenAIError(
                try await gateway.request(.get, "/v1/nothing"), .notFound, code: "NOT_FOUND", type: "not_found_error")
            let wrongMethod = try await gateway.request(.get, "/v1/chat/completions")
            Self.expectOpenAIError(
                wrongMethod, .methodNotAllowed, code: "METHOD_NOT_ALLOWED", type: "invalid_request_error")
        }
    }

    @Test func apiKeysWorkUnchangedAndAMissingOneIs401() async throws {
        try await LiveGateway.run(Self.all, configure: { $0.apiKeys = ["k1"] }) { gateway in
            Self.expectOpenAIError(
                try await gateway.request(.get, "/v1/models"), .unauthorized, code: "UNAUTHORIZED",
                type: "authentication_error")
            Self.expectOpenAIError(
                try await gateway.request(
                    .post, "/v1/chat/completions", body: Self.completion("replier"),
                    headers: [.authorization: "Bearer wrong"]),
                .unauthorized, code: "UNAUTHORIZED", type: "authentication_error")
            let reply = try await gateway.request(
                .post, "/v1/chat/completions", body: Self.completion("replier"), headers: [.authorization: "Bearer k1"])
            #expect(reply.status == .ok)
            let id = try #require(reply.headers[HTTPField.Name("X-Invocation-Id")!])
            // The invocation belongs to the key that made it.
            #expect(
                try await gateway.request(.get, "/invocations/\(id)", headers: [.authorization: "Bearer k1"]).status
                    == .ok)
        }
    }

    @Test func overloadIs429InOpenAIsShape() async throws {
        let probe = Probe()
        try await LiveGateway.run(
            [NDJSONTests.gated(probe), Self.replier],
            configure: {
                $0.maxConcurrentInvocations = 1
                $0.maxQueuedInvocations = 0
            }
        ) { gateway in
            var first = try await gateway.openStream("gated")
            #expect(try await first.nextEvent()?.type == "content")
            let refused = try await gateway.request(.post, "/v1/chat/completions", body: Self.completion("replier"))
            Self.expectOpenAIError(refused, .tooManyRequests, code: "OVERLOADED", type: "rate_limit_error")
            #expect(refused.headers[.retryAfter] == "1")
            probe.proceed.signal()
            #expect(try await first.rest().last?.prefabEvent?.type == "done")
        }
    }
}
