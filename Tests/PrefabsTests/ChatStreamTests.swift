import Foundation
import PrefabKit
import Testing

@testable import Prefabs

@Suite("chat_stream prefab")
struct ChatStreamTests {
    static let expectedTokens = [
        "You ", "said: ", "hi. ", "This ", "reply ", "arrives ", "one ", "token ", "at ", "a ", "time, ", "the ",
        "way ", "a ", "language ", "model ", "streams.",
    ]

    @Test("start, one content event per token, then done with the token count and full text")
    func exactSequence() throws {
        let events = try collect(ChatStream.chatStream, inputs: ["prompt": "hi", "delay_ms": 0])
        let text = "You said: hi. This reply arrives one token at a time, the way a language model streams."
        #expect(
            events
                == [.start(["model": "echo-bot"])] + Self.expectedTokens.map(PrefabEvent.content)
                + [.done(["tokens": 17, "text": .string(text)])]
        )
    }

    @Test(
        "the tokens joined equal the done text",
        arguments: ["hi", "", "two words", "  spaced  out  ", "émoji 🎉 and\nnewline"]
    )
    func tokensJoinToText(prompt: String) throws {
        let events = try collect(ChatStream.chatStream, inputs: ["prompt": .string(prompt), "delay_ms": 0])
        let tokens = events.filter { $0.type == "content" }.compactMap { $0.data?.stringValue }
        let done = try #require(events.last)
        #expect(done.type == "done")
        #expect(events.first == .start(["model": "echo-bot"]))
        #expect(events.count == tokens.count + 2)
        #expect(done.data?["text"] == .string(tokens.joined()))
        #expect(done.data?["tokens"] == .int(tokens.count))
        #expect(
            tokens.joined()
                == "You said: \(prompt). This reply arrives one token at a time, the way a language model streams.")
        #expect(tokens.dropLast().allSatisfy { $0.hasSuffix(" ") && $0.dropLast().allSatisfy { $0 != " " } })
    }

    @Test("missing prompt is an INVALID_INPUTS error event and nothing else")
    func missingPrompt() throws {
        let events = try collect(ChatStream.chatStream, inputs: ["delay_ms": 0])
        #expect(events == [.error("input 'prompt' is missing", code: "INVALID_INPUTS")])
    }

    @Test("cancelling stops the stream at the next token")
    func cancelled() throws {
        let unused = FileManager.default.temporaryDirectory.appendingPathComponent("chat-\(UUID().uuidString)")
        let context = PrefabContext(invocationId: "chat", outputDirectory: unused) { _ in }
        context.cancel()
        let terminal = context.run(ChatStream.chatStream, inputs: ["prompt": "hi", "delay_ms": 0])
        #expect(terminal == .error("the invocation was cancelled", code: "CANCELLED"))
    }

    @Test("fail_after ends the reply with REPLY_FAILED after that many tokens")
    func failAfter() throws {
        let events = try collect(ChatStream.chatStream, inputs: ["prompt": "hi", "delay_ms": 0, "fail_after": 3])
        #expect(
            events
                == [.start(["model": "echo-bot"])] + Self.expectedTokens.prefix(3).map(PrefabEvent.content)
                + [.error("the reply failed after 3 tokens, as asked (fail_after)", code: "REPLY_FAILED")])
    }
}
