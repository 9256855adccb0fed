import PrefabKit
import Testing

/// The manifest's `chat` block, and the naming rule that makes a function chat-capable without it.
@Suite("Chat input")
struct ChatInputTests {
    private static func function(_ json: JSONValue) throws -> FunctionManifest {
        let manifest = try PrefabManifest(json: ["functions": [json]])
        return try #require(manifest.functions.first)
    }

    private static func problems(_ json: JSONValue) -> [ManifestProblem] {
        do {
            _ = try PrefabManifest(json: ["functions": [json]])
            Issue.record("expected problems for \(json.jsonString)")
            return []
        } catch {
            return error.problems
        }
    }

    @Test("a chat block names the parameter that gets the conversation")
    func declared() throws {
        let messages = try Self.function([
            "name": "f", "chat": ["messages": "history"],
            "parameters": [["name": "history", "type": "list"], ["name": "prompt", "type": "string"]],
        ])
        #expect(messages.chat == .messages("history"))
        #expect(messages.chatInput == .messages("history"))
        let prompt = try Self.function([
            "name": "f", "chat": ["prompt": "question"], "parameters": [["name": "question", "type": "string"]],
        ])
        #expect(prompt.chatInput == .prompt("question"))
        #expect(FunctionManifest(name: "g", chat: .prompt("q")).json["chat"] == ["prompt": "q"])
    }

    @Test(
        "without a chat block: a string prompt or message, or an array messages",
        arguments: [
            (["name": "prompt", "type": "string"], .prompt("prompt")),
            (["name": "message", "type": "str"], .prompt("message")),
            (["name": "messages", "type": "array"], .messages("messages")),
            (["name": "prompt", "type": "integer"], nil),
            (["name": "messages", "type": "string"], nil),
            (["name": "text", "type": "string"], nil),
        ] as [(JSONValue, ChatInput?)])
    func namingRule(parameter: JSONValue, expected: ChatInput?) throws {
        #expect(try Self.function(["name": "f", "parameters": [parameter]]).chatInput == expected)
    }

    @Test(
        "a chat block that names no parameter of the right type is refused",
        arguments: [
            (["prompt": "missing"], "$.functions[0].chat.prompt", "names no parameter of the function: 'missing'"),
            (["messages": "p"], "$.functions[0].chat.messages", "'p' must be an array parameter, not string"),
            (["prompt": 3], "$.functions[0].chat.prompt", "must name a parameter, got integer"),
            (
                ["prompt": "p", "messages": "p"], "$.functions[0].chat",
                #"must be {"messages": "<parameter>"} or {"prompt": "<parameter>"}"#
            ),
            ("p", "$.functions[0].chat", #"must be {"messages": "<parameter>"} or {"prompt": "<parameter>"}"#),
        ] as [(JSONValue, String, String)])
    func refused(chat: JSONValue, path: String, reason: String) {
        let json: JSONValue = ["name": "f", "chat": chat, "parameters": [["name": "p", "type": "string"]]]
        #expect(Self.problems(json) == [ManifestProblem(path: path, reason: reason)])
    }
}
