import PrefabClient
import PrefabKit
import Testing

@Suite struct InputArgumentsTests {
    static let manifest: JSONValue = [
        "functions": [
            [
                "name": "batch_process",
                "parameters": [
                    ["name": "items", "type": "array"], ["name": "delay_ms", "type": "integer"],
                    ["name": "ratio", "type": "float"], ["name": "loud", "type": "boolean"],
                    ["name": "title", "type": "string"],
                ],
            ]
        ]
    ]

    @Test func valuesAreTypedByTheManifest() throws {
        let arguments = try #require(InputArguments(manifest: Self.manifest, function: "batch_process"))
        let inputs = try arguments.inputs([
            #"items=["a","b"]"#, "delay_ms=50", "ratio=0.5", "loud=yes", "title=12", "title=a=b",
        ])
        #expect(
            inputs == ["items": ["a", "b"], "delay_ms": 50, "ratio": 0.5, "loud": true, "title": "a=b"]
        )
    }

    @Test func argumentsOverrideTheJSONInputs() throws {
        let arguments = try #require(InputArguments(manifest: Self.manifest, function: "batch_process"))
        let inputs = try arguments.inputs(["delay_ms=1"], base: ["delay_ms": 9, "items": ["x"]])
        #expect(inputs == ["delay_ms": 1, "items": ["x"]])
    }

    @Test(arguments: [
        ("delay_ms=soon", "'delay_ms' must be an integer, got 'soon'"),
        ("loud=maybe", "'loud' must be true or false, got 'maybe'"),
        ("colour=red", "no parameter 'colour'; parameters: delay_ms, items, loud, ratio, title"),
        ("=x", "'=x' is not name=value"),
        ("items", "'items' is not name=value"),
    ])
    func badArgumentsAreExplained(argument: String, message: String) throws {
        let arguments = try #require(InputArguments(manifest: Self.manifest, function: "batch_process"))
        #expect(throws: InputError(message)) { try arguments.inputs([argument]) }
    }

    @Test func anArrayThatIsNotJSONSaysHowToWriteIt() throws {
        let arguments = try #require(InputArguments(manifest: Self.manifest, function: "batch_process"))
        do {
            _ = try arguments.inputs(["items=a,b"])
            Issue.record("a,b is not a JSON array")
        } catch {
            #expect(error.description.hasPrefix(#"'items' must be JSON (array), e.g. items='["a","b"]'"#))
        }
    }

    @Test func anUnknownFunctionHasNoArguments() {
        #expect(InputArguments(manifest: Self.manifest, function: "nope") == nil)
    }
}
