import Foundation
import HTTPTypes
import PrefabGateway
import PrefabKit
import Testing

/// `POST /ai-sdk/<name>`: the body `useChat` sends, answered as the AI SDK's UI message stream v1.
/// The SDK's client is not installable here, so each part is checked against the protocol's part
/// list: its type, its exact members (the SDK's schemas are strict objects), their order.
@Suite(.timeLimit(.minutes(1))) struct AISDKStreamTests {
    static let writer = TestPrefab.streaming(
        "writer",
        parameters: [
            ParameterManifest(name: "prompt", type: .string, required: true),
            ParameterManifest(name: "fail", type: .boolean, defaultValue: false),
            ParameterManifest(name: "suffix", type: .string, defaultValue: ""),
        ]
    ) { inputs, context in
        let prompt = try inputs.string("prompt")
        try context.yield(.start(["model": "test"]))
        try context.yield(.progress(current: 1, total: 2, message: "reading"))
        try context.yield(.content("You said "))
        try context.yield(PrefabEvent(type: "thought", fields: ["text": "hmm", "step": 1]))
        try context.yield(.content(prompt + (try inputs.string("suffix"))))
        if try inputs.bool("fail") { throw PrefabError("MODEL_BROKE", "the model broke") }
        try context.yield(.progress(current: 2, total: 2, message: "writing"))
        try "a,b\n".write(
            to: context.outputDirectory.appendingPathComponent("t.csv"), atomically: true, encoding: .utf8)
        try context.yield(.done(["ok": true]))
    }
    static let plain = TestPrefab.streaming("plain") { _, context in try context.yield(.done(nil)) }

    /// The members each part type requires and those it may have, as the AI SDK's
    /// `uiMessageChunkSchema` defines them.
    static let partMembers: [String: (required: Set<String>, optional: Set<String>)] = [
        "start": (["type"], ["messageId", "messageMetadata"]),
        "text-start": (["type", "id"], ["providerMetadata"]),
        "text-delta": (["type", "id", "delta"], ["providerMetadata"]),
        "text-end": (["type", "id"], ["providerMetadata"]),
        "file": (["type", "url", "mediaType"], ["providerMetadata"]),
        "error": (["type", "errorText"], []),
        "finish": (["type"], ["finishReason", "messageMetadata"]),
        "data-*": (["type", "data"], ["id", "transient"]),
    ]

    static func body(_ text: String, inputs: String = "{}") -> String {
        #"{"id": "chat-1", "trigger": "submit-message", "messages": [{"id": "m1", "role": "user", "parts": [{"type": "text", "text": "\#(text)"}]}], "inputs": \#(inputs)}"#
    }

    /// The parts of a stream body, checked for the SSE framing, the `[DONE]` end, and each part's
    /// members; `[DONE]` itself is not returned.
    static func parts(_ reply: TestReply) throws -> [JSONValue] {
        let messages = reply.text.components(separatedBy: "\n\n").filter { !$0.isEmpty }
        #expect(messages.allSatisfy { $0.hasPrefix("data: ") && !$0.contains("\n") })
        #expect(messages.last == "data: [DONE]")
        #expect(messages.filter { $0 == "data: [DONE]" }.count == 1)
        let parts = try messages.dropLast().map { try JSONValue(parsing: Array($0.dropFirst(6).utf8)) }
        for part in parts {
            let type = try #require(part["type"]?.stringValue)
            let members = try #require(Self.partMembers[type.hasPrefix("data-") ? "data-*" : type], "type \(type)")
            let keys = Set(part.objectValue?.keys.map { $0 } ?? [])
            #expect(keys.isSuperset(of: members.required), "\(type) lacks \(members.required.subtracting(keys))")
            #expect(keys.isSubset(of: members.required.union(members.optional)), "\(type) has extra members \(keys)")
        }
        return parts
    }

    @Test func aCallIsStartTextDataFilesFinishThenDone() async throws {
        try await LiveGateway.run([Self.writer, Self.plain]) { gateway in
            let reply = try await gateway.request(.post, "/ai-sdk/writer", body: Self.body("hi"))
            #expect(reply.status == .ok)
            #expect(reply.headers[.contentType] == "text/event-stream")
            #expect(reply.headers[HTTPField.Name("x-vercel-ai-ui-message-stream")!] == "v1")
            #expect(reply.headers[HTTPField.Name("x-accel-buffering")!] == "no")
            let id = try #require(reply.headers[HTTPField.Name("X-Invocation-Id")!])
            let parts = try Self.parts(reply)
            #expect(
                parts.compactMap { $0["type"]?.stringValue } == [
                    "start", "data-progress", "text-start", "text-delta", "data-thought", "text-delta",
                    "data-progress", "file", "text-end", "finish",
                ])
            #expect(parts.first?["messageId"] == .string("msg-\(id)"))
            // Every text part is of the one text block.
            let textParts = parts.filter { $0["type"]?.stringValue?.hasPrefix("text-") == true }
            #expect(Set(textParts.compactMap { $0["id"] }).count == 1)
            let text = parts.filter { $0["type"] == "text-delta" }.compactMap { $0["delta"]?.stringValue }.joined()
            let native = try await gateway.invoke("writer", #"{"inputs": {"prompt": "hi"}}"#)
            let nativeText = native.events.filter { $0.type == "content" }.compactMap { $0.data?.stringValue }.joined()
            #expect(text == nativeText)
            #expect(text == "You said hi")
            // Other events are data parts holding the event.
            let progress = try #require(parts.first { $0["type"] == "data-progress" })
            #expect(progress["data"]?["type"] == "progress")
            #expect(progress["data"]?["data"]?["message"] == "reading")
            #expect(
                parts.first { $0["type"] == "data-thought" }?["data"] == ["type": "thought", "text": "hmm", "step": 1])
            let file = try #require(parts.first { $0["type"] == "file" })
            #expect(file["mediaType"] == "text/csv; charset=utf-8")
            let url = try #require(file["url"]?.stringValue)
            #expect(url == "\(gateway.baseURL)/files/\(id)/t.csv")
            #expect(try await gateway.request(.get, String(url.dropFirst(gateway.baseURL.count))).text == "a,b\n")
            #expect(try await gateway.request(.get, "/invocations/\(id)").json?["state"] == "done")
            let metrics = try await gateway.request(.get, "/metrics").text
            #expect(metrics.contains(#"prefab_invocations_started_total{format="ai-sdk"} 1"#))
        }
    }

    @Test func inputsAndTheLastUserMessageReachTheFunction() async throws {
        try await LiveGateway.run([Self.writer]) { gateway in
            let body =
                #"{"id": "c", "trigger": "submit-message", "messages": [{"id": "1", "role": "user", "parts": [{"type": "text", "text": "old"}]}, {"id": "2", "role": "assistant", "parts": [{"type": "text", "text": "answer"}]}, {"id": "3", "role": "user", "parts": [{"type": "step-start"}, {"type": "text", "text": "new"}, {"type": "text", "text": "er"}]}], "inputs": {"suffix": "!"}}"#
            let reply = try await gateway.request(.post, "/ai-sdk/writer", body: body)
            let text = try Self.parts(reply).filter { $0["type"] == "text-delta" }.compactMap {
                $0["delta"]?.stringValue
            }
            #expect(text.joined() == "You said newer!")
        }
    }

    @Test func anErrorEndsTheTextThenErrorThenFinish() async throws {
        try await LiveGateway.run([Self.writer]) { gateway in
            let reply = try await gateway.request(
                .post, "/ai-sdk/writer", body: Self.body("hi", inputs: #"{"fail": true}"#))
            #expect(reply.status == .ok)
            let parts = try Self.parts(reply)
            #expect(
                parts.compactMap { $0["type"]?.stringValue } == [
                    "start", "data-progress", "text-start", "text-delta", "data-thought", "text-delta", "text-end",
                    "error", "finish",
                ])
            #expect(parts.first { $0["type"] == "error" }?["errorText"] == "MODEL_BROKE: the model broke")
        }
    }

    @Test func refusedCallsAreTheGatewaysJSONErrors() async throws {
        try await LiveGateway.run([Self.writer, Self.plain]) { gateway in
            let unknown = try await gateway.request(.post, "/ai-sdk/nope", body: Self.body("x"))
            #expect(unknown.status == .notFound)
            #expect(unknown.errorCode == "FUNCTION_NOT_FOUND")
            let notChat = try await gateway.request(.post, "/ai-sdk/plain", body: Self.body("x"))
            #expect(notChat.status == .notFound)
            #expect(notChat.errorCode == "FUNCTION_NOT_FOUND")
            for body in [
                "{", #"{"messages": []}"#, #"{"messages": [{"role": "user", "parts": "x"}]}"#,
                #"{"messages": [{"role": "user", "parts": [{"type": "text", "text": "x"}]}], "inputs": 3}"#,
            ] {
                let reply = try await gateway.request(.post, "/ai-sdk/writer", body: body)
                #expect(reply.status == .badRequest, "\(body)")
                #expect(reply.json?["error"]?.objectValue?.keys.sorted() == ["code", "details", "message"])
            }
            let invalid = try await gateway.request(
                .post, "/ai-sdk/writer", body: Self.body("x", inputs: #"{"fail": "yes"}"#))
            #expect(invalid.status == .unprocessableContent)
            #expect(invalid.errorCode == "INVALID_INPUTS")
        }
    }
}
