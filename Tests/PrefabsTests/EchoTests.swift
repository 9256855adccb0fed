import PrefabKit
import Testing

@testable import Prefabs

@Suite("echo prefab")
struct EchoTests {
    @Test(
        "returns the text and its length in characters",
        arguments: [("hello", 5), ("", 0), ("héllo wörld", 11), ("a\nb", 3)]
    )
    func echo(text: String, length: Int) throws {
        let result = try call(Echo.echo, inputs: ["text": .string(text)])
        #expect(result == ["text": .string(text), "length": .int(length)])
    }

    @Test("a missing text is an INVALID_INPUTS error naming it")
    func missingText() {
        #expect(throws: PrefabError(.invalidInputs, "input 'text' is missing")) {
            try call(Echo.echo)
        }
    }

    @Test("a non-string text is refused")
    func wrongType() {
        #expect(throws: PrefabError(.invalidInputs, "input 'text' must be string, got integer")) {
            try call(Echo.echo, inputs: ["text": 5])
        }
    }

    @Test("the manifest requires text and validation refuses a number")
    func manifest() throws {
        let function = try #require(try exampleManifest("echo").functions.first)
        #expect(function.streaming == false)
        guard case .failure(let error) = function.validate(["text": 5]) else {
            Issue.record("a number should be refused for text")
            return
        }
        #expect(error.details == [["parameter": "text", "reason": "must be string, got integer"]])
    }
}
