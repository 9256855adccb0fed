import PrefabKit
import Testing

/// The problems reported for `text`, or none (recording an issue) when it loads.
private func problems(_ text: String) -> [ManifestProblem] {
    do {
        let manifest = try PrefabManifest(parsing: Array(text.utf8))
        Issue.record("expected problems, got a manifest with \(manifest.functions.count) functions")
        return []
    } catch {
        return error.problems
    }
}

/// The problems reported for `json`.
private func problems(json: JSONValue) -> [ManifestProblem] {
    do {
        _ = try PrefabManifest(json: json)
        Issue.record("expected problems for \(json.jsonString)")
        return []
    } catch {
        return error.problems
    }
}

/// A manifest with one function `f` and the given parameters.
private func withParameters(_ parameters: JSONValue...) -> JSONValue {
    ["functions": [["name": "f", "parameters": .array(parameters)]]]
}

@Suite("Manifest reading")
struct ManifestReadingTests {
    static let full = """
        // A manifest as a prefab author writes it, with comments and members for other tools.
        {
          "name": "weather",
          "version": "2.1.0",
          "description": "Forecasts and alerts.",
          "author": "someone@example.com",
          "runtime": { "command": ["python3", "main.py"] },
          "functions": [
            {
              "name": "forecast",
              "description": "The forecast for a city.",
              "streaming": true,
              /* block comment inside */
              "parameters": [
                { "name": "city", "type": "string", "required": true, "description": "Where." },
                { "name": "days", "type": "integer", "default": 3, "enum": [1, 3, 7] },
                { "name": "units", "type": "string", "default": "metric", "enum": ["metric", "imperial"] },
                { "name": "threshold", "type": "number", "required": false },
                { "name": "detailed", "type": "boolean" },
                { "name": "fields", "type": "array" },
                { "name": "extra", "type": "object", "ui_hint": "advanced" }
              ],
              "returns": { "type": "object", "description": "done carries the forecast." },
              "timeout_seconds": 30,
              "x-category": "weather"
            },
            {
              "name": "alerts"
            }
          ]
        }
        """

    @Test("a full manifest loads with every field")
    func fullManifest() throws {
        let manifest = try PrefabManifest(parsing: Array(Self.full.utf8))
        #expect(manifest.name == "weather")
        #expect(manifest.version == "2.1.0")
        #expect(manifest.description == "Forecasts and alerts.")
        #expect(manifest.runtime == ["command": ["python3", "main.py"]])
        try #require(manifest.functions.count == 2)

        let forecast = manifest.functions[0]
        #expect(forecast.name == "forecast")
        #expect(forecast.description == "The forecast for a city.")
        #expect(forecast.streaming == true)
        #expect(forecast.returns == ["type": "object", "description": "done carries the forecast."])
        #expect(
            forecast.parameters == [
                ParameterManifest(name: "city", type: .string, required: true, description: "Where."),
                ParameterManifest(name: "days", type: .integer, defaultValue: 3, allowedValues: [1, 3, 7]),
                ParameterManifest(
                    name: "units",
                    type: .string,
                    defaultValue: "metric",
                    allowedValues: ["metric", "imperial"]
                ),
                ParameterManifest(name: "threshold", type: .number),
                ParameterManifest(name: "detailed", type: .boolean),
                ParameterManifest(name: "fields", type: .array),
                ParameterManifest(name: "extra", type: .object),
            ]
        )

        let alerts = manifest.functions[1]
        #expect(alerts.name == "alerts")
        #expect(alerts.streaming == false)
        #expect(alerts.parameters.isEmpty)
        #expect(alerts.description == nil)
        #expect(alerts.returns == nil)
    }

    @Test("unknown members are ignored and kept in json")
    func unknownMembersKept() throws {
        let manifest = try PrefabManifest(parsing: Array(Self.full.utf8))
        #expect(manifest.json["author"] == "someone@example.com")
        let forecast = try #require(manifest.functions.first)
        #expect(forecast.json["x-category"] == "weather")
        #expect(forecast.json["timeout_seconds"] == 30)
        #expect(forecast.json["parameters"]?.arrayValue?.last?["ui_hint"] == "advanced")
        #expect(manifest.json["functions"]?.arrayValue?.first == forecast.json)
    }

    @Test("reading from JSON gives the same manifest as reading the text")
    func fromJSON() throws {
        let json = try JSONValue(parsing: Self.full, options: JSONParseOptions(allowComments: true))
        #expect(try PrefabManifest(json: json) == PrefabManifest(parsing: Array(Self.full.utf8)))
    }

    @Test(
        "Python type names are accepted as aliases",
        arguments: [
            ("str", ParameterManifest.Kind.string), ("int", .integer), ("float", .number), ("bool", .boolean),
            ("list", .array), ("dict", .object), ("string", .string), ("integer", .integer), ("number", .number),
            ("boolean", .boolean), ("array", .array), ("object", .object),
        ]
    )
    func typeAliases(name: String, kind: ParameterManifest.Kind) throws {
        let manifest = try PrefabManifest(json: withParameters(["name": "p", "type": .string(name)]))
        #expect(manifest.functions.first?.parameters.first?.type == kind)
    }

    @Test("a Python alias also checks defaults with its type")
    func aliasDefaults() throws {
        let manifest = try PrefabManifest(json: withParameters(["name": "n", "type": "int", "default": 5]))
        #expect(manifest.functions.first?.parameters.first?.defaultValue == 5)
        #expect(
            problems(json: withParameters(["name": "n", "type": "int", "default": "5"]))
                == [
                    ManifestProblem(
                        path: "$.functions[0].parameters[0].default",
                        reason: "string does not match the parameter type integer")
                ]
        )
    }

    @Test("a null default means no default")
    func nullDefault() throws {
        let manifest = try PrefabManifest(json: withParameters(["name": "n", "type": "integer", "default": nil]))
        #expect(manifest.functions.first?.parameters.first?.defaultValue == nil)
    }

    @Test("invalid JSON is reported at $ with its line and column")
    func invalidJSON() throws {
        let found = problems("{\n  \"functions\": [\n    {\"name\": \"f\"}\n    {\"name\": \"g\"}\n  ]\n}")
        try #require(found.count == 1)
        #expect(found[0].path == "$")
        #expect(found[0].reason == "invalid JSON: line 4, column 5: expected ',' or ']' after array element")
    }

    @Test("an unterminated comment is invalid JSON")
    func unterminatedComment() throws {
        let found = problems("{\"functions\": []} /* oops")
        try #require(found.count == 1)
        #expect(found[0].reason.hasPrefix("invalid JSON: line 1, column "))
        #expect(found[0].reason.hasSuffix("unterminated /* comment"))
    }
}

/// A manifest, and the one problem it must produce.
struct ProblemCase: Sendable, CustomTestStringConvertible {
    var label: String
    var json: JSONValue
    var path: String
    var reason: String

    var testDescription: String { label }
}

@Suite("Manifest problems")
struct ManifestProblemTests {
    static let cases: [ProblemCase] = [
        ProblemCase(
            label: "not an object",
            json: [1],
            path: "$",
            reason: "a manifest must be a JSON object, got array"
        ),
        ProblemCase(
            label: "missing functions",
            json: ["name": "x"],
            path: "$.functions",
            reason: "missing: a manifest lists its functions"
        ),
        ProblemCase(
            label: "functions not an array",
            json: ["functions": ["name": "f"]],
            path: "$.functions",
            reason: "must be an array, got object"
        ),
        ProblemCase(
            label: "empty functions",
            json: ["functions": []],
            path: "$.functions",
            reason: "is empty: a manifest declares at least one function"
        ),
        ProblemCase(
            label: "function not an object",
            json: ["functions": ["f"]],
            path: "$.functions[0]",
            reason: "a function must be an object, got string"
        ),
        ProblemCase(
            label: "missing function name",
            json: ["functions": [["streaming": true]]],
            path: "$.functions[0].name",
            reason: "missing"
        ),
        ProblemCase(
            label: "function name not a string",
            json: ["functions": [["name": 7]]],
            path: "$.functions[0].name",
            reason: "must be a non-empty string, got integer"
        ),
        ProblemCase(
            label: "empty function name",
            json: ["functions": [["name": ""]]],
            path: "$.functions[0].name",
            reason: "must be a non-empty string, got string"
        ),
        ProblemCase(
            label: "streaming not a bool",
            json: ["functions": [["name": "f", "streaming": "yes"]]],
            path: "$.functions[0].streaming",
            reason: "must be a boolean"
        ),
        ProblemCase(
            label: "parameters not an array",
            json: ["functions": [["name": "f", "parameters": ["name": "a"]]]],
            path: "$.functions[0].parameters",
            reason: "must be an array, got object"
        ),
        ProblemCase(
            label: "returns not an object",
            json: ["functions": [["name": "f", "returns": "text"]]],
            path: "$.functions[0].returns",
            reason: "must be an object, got string"
        ),
        ProblemCase(
            label: "timeout not positive",
            json: ["functions": [["name": "f", "timeout_seconds": 0]]],
            path: "$.functions[0].timeout_seconds",
            reason: "must be a positive number"
        ),
        ProblemCase(
            label: "runs_on_event_loop not a bool",
            json: ["functions": [["name": "f", "streaming": true, "runs_on_event_loop": "yes"]]],
            path: "$.functions[0].runs_on_event_loop",
            reason: "must be a boolean"
        ),
        ProblemCase(
            label: "runs_on_event_loop on a function that does not stream",
            json: ["functions": [["name": "f", "runs_on_event_loop": true]]],
            path: "$.functions[0].runs_on_event_loop",
            reason: "only a streaming function (\"streaming\": true) runs on the event loop"
        ),
        ProblemCase(
            label: "annotations not an object",
            json: ["functions": [["name": "f", "annotations": true]]],
            path: "$.functions[0].annotations",
            reason: "must be an object, got boolean"
        ),
        ProblemCase(
            label: "an annotation hint not a boolean",
            json: ["functions": [["name": "f", "annotations": ["readOnlyHint": "yes"]]]],
            path: "$.functions[0].annotations.readOnlyHint",
            reason: "must be a boolean, got string"
        ),
        ProblemCase(
            label: "a misspelt annotation",
            json: ["functions": [["name": "f", "annotations": ["readonlyHint": true]]]],
            path: "$.functions[0].annotations.readonlyHint",
            reason:
                "is not an annotation (known: title, readOnlyHint, destructiveHint, idempotentHint, openWorldHint)"
        ),
        ProblemCase(
            label: "runtime not an object",
            json: ["runtime": "python", "functions": [["name": "f"]]],
            path: "$.runtime",
            reason: "must be an object, got string"
        ),
        ProblemCase(
            label: "version not a string",
            json: ["version": 2, "functions": [["name": "f"]]],
            path: "$.version",
            reason: "must be a string, got integer"
        ),
        ProblemCase(
            label: "duplicate function name",
            json: ["functions": [["name": "f"], ["name": "g"], ["name": "f"]]],
            path: "$.functions[2].name",
            reason: "duplicate function name 'f'"
        ),
        ProblemCase(
            label: "parameter not an object",
            json: withParameters("a"),
            path: "$.functions[0].parameters[0]",
            reason: "a parameter must be an object, got string"
        ),
        ProblemCase(
            label: "missing parameter type",
            json: withParameters(["name": "a"]),
            path: "$.functions[0].parameters[0].type",
            reason: "missing"
        ),
        ProblemCase(
            label: "missing parameter name",
            json: withParameters(["type": "string"]),
            path: "$.functions[0].parameters[0].name",
            reason: "missing"
        ),
        ProblemCase(
            label: "unknown type",
            json: withParameters(["name": "a", "type": "string"], ["name": "b", "type": "text"]),
            path: "$.functions[0].parameters[1].type",
            reason: "unknown type 'text' (one of string, number, integer, boolean, array, object)"
        ),
        ProblemCase(
            label: "required not a bool",
            json: withParameters(["name": "a", "type": "string", "required": "true"]),
            path: "$.functions[0].parameters[0].required",
            reason: "must be a boolean"
        ),
        ProblemCase(
            label: "default of the wrong type",
            json: withParameters(["name": "a", "type": "integer", "default": "3"]),
            path: "$.functions[0].parameters[0].default",
            reason: "string does not match the parameter type integer"
        ),
        ProblemCase(
            label: "fractional default for an integer",
            json: withParameters(["name": "a", "type": "integer", "default": 2.5]),
            path: "$.functions[0].parameters[0].default",
            reason: "number does not match the parameter type integer"
        ),
        ProblemCase(
            label: "default not in the enum",
            json: withParameters(["name": "a", "type": "string", "default": "c", "enum": ["a", "b"]]),
            path: "$.functions[0].parameters[0].default",
            reason: "is not one of the enum values"
        ),
        ProblemCase(
            label: "enum with a wrong-typed value",
            json: withParameters(["name": "a", "type": "string", "enum": ["x", 2, "y"]]),
            path: "$.functions[0].parameters[0].enum[1]",
            reason: "integer does not match the parameter type string"
        ),
        ProblemCase(
            label: "empty enum",
            json: withParameters(["name": "a", "type": "string", "enum": []]),
            path: "$.functions[0].parameters[0].enum",
            reason: "must be a non-empty array"
        ),
        ProblemCase(
            label: "duplicate parameter name",
            json: withParameters(["name": "a", "type": "string"], ["name": "a", "type": "integer"]),
            path: "$.functions[0].parameters[1].name",
            reason: "duplicate parameter name 'a'"
        ),
    ]

    @Test(arguments: cases)
    func problem(_ problemCase: ProblemCase) {
        #expect(
            problems(json: problemCase.json) == [ManifestProblem(path: problemCase.path, reason: problemCase.reason)])
    }

    @Test("invalid function names", arguments: ["1abc", "has space", "dot.name", "ünï", "slash/x", "emoji🎉"])
    func badName(_ name: String) {
        #expect(
            problems(json: ["functions": [["name": .string(name)]]]) == [
                ManifestProblem(
                    path: "$.functions[0].name",
                    reason:
                        "'\(name)' is not a valid function name (letters, digits, '_' and '-', not starting with a digit)"
                )
            ]
        )
    }

    @Test("valid function names", arguments: ["a", "_private", "batch-process", "Batch_Process2", "x1"])
    func goodName(_ name: String) throws {
        let manifest = try PrefabManifest(json: ["functions": [["name": .string(name)]]])
        #expect(manifest.functions.map(\.name) == [name])
    }

    @Test("several problems are reported together, in document order")
    func severalProblems() {
        let json: JSONValue = [
            "name": 1,
            "functions": [
                ["name": "ok", "streaming": "no"],
                [
                    "name": "9lives",
                    "parameters": [
                        ["name": "a", "type": "text"],
                        ["name": "b", "type": "integer", "default": "x"],
                        ["name": "b", "type": "string", "enum": ["p", 1]],
                    ],
                ],
                ["description": "no name"],
                ["name": "ok"],
            ],
        ]
        let found = problems(json: json)
        #expect(
            found.map(\.path) == [
                "$.name",
                "$.functions[0].streaming",
                "$.functions[1].name",
                "$.functions[1].parameters[0].type",
                "$.functions[1].parameters[1].default",
                "$.functions[1].parameters[2].enum[1]",
                "$.functions[1].parameters[2].name",
                "$.functions[2].name",
                "$.functions[3].name",
            ]
        )
        #expect(found.last?.reason == "duplicate function name 'ok'")
        #expect(ManifestError(found).description.hasPrefix("$.name: must be a string, got integer; "))
    }

    @Test("problems found while reading text carry the same paths")
    func problemsFromText() {
        let text = """
            {
              // the author forgot the type
              "functions": [{ "name": "f", "parameters": [{ "name": "a" }] }]
            }
            """
        #expect(problems(text) == [ManifestProblem(path: "$.functions[0].parameters[0].type", reason: "missing")])
    }
}

@Suite("Manifest numbers for integer parameters")
struct ManifestIntegerTests {
    @Test("an integral default for an integer parameter is stored as an integer")
    func integralDefault() throws {
        let manifest = try PrefabManifest(json: withParameters(["name": "n", "type": "integer", "default": 3.0]))
        let parameter = try #require(manifest.functions.first?.parameters.first)
        #expect(parameter.defaultValue == .int(3))
        let inputs = try manifest.functions[0].validate([:]).get()
        #expect(inputs["n"] == .int(3))
    }

    @Test("an integral default matches an integer enum")
    func integralDefaultInEnum() throws {
        let json = withParameters(["name": "n", "type": "integer", "default": 2.0, "enum": [1, 2]])
        let manifest = try PrefabManifest(json: json)
        #expect(manifest.functions.first?.parameters.first?.defaultValue == .int(2))
    }

    @Test("an integer enum written with integral doubles accepts integer inputs")
    func integralEnumValues() throws {
        let manifest = try PrefabManifest(json: withParameters(["name": "n", "type": "integer", "enum": [1.0, 2.0]]))
        let inputs = try manifest.functions[0].validate(["n": 1]).get()
        #expect(inputs["n"] == .int(1))
    }
}
