import PrefabKit
import Testing

/// A function named `f` with the given parameters.
private func function(_ parameters: ParameterManifest...) -> FunctionManifest {
    FunctionManifest(name: "f", streaming: true, parameters: parameters)
}

/// The validated inputs, or nil (recording an issue) when validation failed.
private func validated(_ manifest: FunctionManifest, _ inputs: PrefabInputs) -> PrefabInputs? {
    switch manifest.validate(inputs) {
    case .success(let inputs): return inputs
    case .failure(let error):
        Issue.record("expected valid inputs, got \(error)")
        return nil
    }
}

/// The validation error, or nil (recording an issue) when validation passed.
private func failure(_ manifest: FunctionManifest, _ inputs: PrefabInputs) -> PrefabError? {
    switch manifest.validate(inputs) {
    case .success(let inputs):
        Issue.record("expected invalid inputs, got \(inputs.values)")
        return nil
    case .failure(let error): return error
    }
}

@Suite("Input validation: required inputs, defaults and unknown inputs")
struct InputPresenceTests {
    @Test("a missing required input is reported with code INVALID_INPUTS")
    func requiredMissing() throws {
        let manifest = function(ParameterManifest(name: "text", type: .string, required: true))
        let error = try #require(failure(manifest, [:]))
        #expect(error.code == .invalidInputs)
        #expect(error.code.rawValue == "INVALID_INPUTS")
        #expect(error.message == "1 input is invalid: text: is required")
        #expect(error.details == [["parameter": "text", "reason": "is required"]])
    }

    @Test("null counts as absent for a required input")
    func requiredNull() throws {
        let manifest = function(ParameterManifest(name: "text", type: .string, required: true))
        let error = try #require(failure(manifest, ["text": nil]))
        #expect(error.details == [["parameter": "text", "reason": "is required"]])
    }

    @Test("an optional input without a default stays absent")
    func optionalAbsent() throws {
        let manifest = function(ParameterManifest(name: "limit", type: .integer))
        let inputs = try #require(validated(manifest, [:]))
        #expect(inputs.values.isEmpty)
        let fromNull = try #require(validated(manifest, ["limit": nil]))
        #expect(fromNull.values.isEmpty)
    }

    @Test("defaults are applied when the input is absent or null", arguments: [false, true])
    func defaultsApplied(passNull: Bool) throws {
        let manifest = function(
            ParameterManifest(name: "delay_ms", type: .integer, defaultValue: 300),
            ParameterManifest(name: "mode", type: .string, defaultValue: "fast", allowedValues: ["fast", "slow"]),
            ParameterManifest(name: "tags", type: .array, defaultValue: ["x"])
        )
        let given: PrefabInputs = passNull ? ["delay_ms": nil, "mode": nil, "tags": nil] : [:]
        let inputs = try #require(validated(manifest, given))
        #expect(inputs.values == ["delay_ms": 300, "mode": "fast", "tags": ["x"]])
    }

    @Test("a given input wins over the default")
    func givenBeatsDefault() throws {
        let manifest = function(ParameterManifest(name: "delay_ms", type: .integer, defaultValue: 300))
        let inputs = try #require(validated(manifest, ["delay_ms": 0]))
        #expect(inputs.values == ["delay_ms": 0])
    }

    @Test("unknown inputs are reported, sorted by name")
    func unknownInputs() throws {
        let manifest = function(ParameterManifest(name: "text", type: .string))
        let error = try #require(failure(manifest, ["text": "hi", "zeta": 1, "alpha": true]))
        #expect(error.code == .invalidInputs)
        #expect(
            error.message
                == "2 inputs are invalid: alpha: is not a parameter of 'f'; zeta: is not a parameter of 'f'"
        )
        #expect(
            error.details == [
                ["parameter": "alpha", "reason": "is not a parameter of 'f'"],
                ["parameter": "zeta", "reason": "is not a parameter of 'f'"],
            ]
        )
    }

    @Test("every problem is reported at once")
    func everyProblemAtOnce() throws {
        let manifest = function(
            ParameterManifest(name: "text", type: .string, required: true),
            ParameterManifest(name: "count", type: .integer),
            ParameterManifest(name: "ok", type: .boolean)
        )
        let error = try #require(failure(manifest, ["count": "three", "ok": true, "extra": 1]))
        #expect(error.code == .invalidInputs)
        #expect(error.message.hasPrefix("3 inputs are invalid"))
        #expect(
            error.message
                == "3 inputs are invalid: text: is required; count: must be integer, got string; extra: is not a parameter of 'f'"
        )
        try #require(error.details.count == 3)
        #expect(error.details.map { $0["parameter"] } == ["text", "count", "extra"])
        #expect(error.details[1] == ["parameter": "count", "reason": "must be integer, got string"])
    }

    @Test("valid inputs come back with only the declared parameters")
    func validInputs() throws {
        let manifest = function(
            ParameterManifest(name: "text", type: .string, required: true),
            ParameterManifest(name: "options", type: .object)
        )
        let inputs = try #require(validated(manifest, ["text": "hi", "options": ["a": 1]]))
        #expect(inputs == ["text": "hi", "options": ["a": 1]])
    }
}

/// One value given for a parameter of one type: what validation makes of it, or why it refuses it.
struct TypeCase: Sendable, CustomTestStringConvertible {
    var type: ParameterManifest.Kind
    var value: JSONValue
    /// The validated value when accepted; nil when refused.
    var accepted: JSONValue?
    /// The reason when refused.
    var reason: String?

    static func accepts(_ type: ParameterManifest.Kind, _ value: JSONValue, as result: JSONValue? = nil) -> TypeCase {
        TypeCase(type: type, value: value, accepted: result ?? value, reason: nil)
    }

    static func refuses(_ type: ParameterManifest.Kind, _ value: JSONValue) -> TypeCase {
        TypeCase(type: type, value: value, accepted: nil, reason: "must be \(type.rawValue), got \(value.typeName)")
    }

    var testDescription: String {
        "\(type.rawValue) \(accepted == nil ? "refuses" : "accepts") \(value.jsonString)"
    }
}

@Suite("Input validation: types")
struct InputTypeTests {
    static let cases: [TypeCase] = [
        .accepts(.string, "hello"),
        .accepts(.string, ""),
        .refuses(.string, 1),
        .refuses(.string, true),
        .refuses(.string, ["a"]),
        .accepts(.number, 2),
        .accepts(.number, 2.5),
        .refuses(.number, "2"),
        .refuses(.number, false),
        .accepts(.integer, 3),
        .accepts(.integer, 3.0, as: .int(3)),
        .accepts(.integer, -0.0, as: .int(0)),
        .refuses(.integer, 3.5),
        .refuses(.integer, 1e300),
        .refuses(.integer, "3"),
        .refuses(.integer, true),
        .accepts(.boolean, true),
        .accepts(.boolean, false),
        .refuses(.boolean, 1),
        .refuses(.boolean, "true"),
        .accepts(.array, [1, "two", nil]),
        .accepts(.array, []),
        .refuses(.array, ["a": 1]),
        .refuses(.array, "a,b"),
        .accepts(.object, ["a": 1]),
        .accepts(.object, [:]),
        .refuses(.object, [1]),
        .refuses(.object, "{}"),
    ]

    @Test(arguments: cases)
    func typeCheck(_ typeCase: TypeCase) throws {
        let manifest = function(ParameterManifest(name: "x", type: typeCase.type, required: true))
        let result = manifest.validate(["x": typeCase.value])
        if let accepted = typeCase.accepted {
            let inputs = try result.get()
            #expect(inputs.values == ["x": accepted])
        } else {
            guard case .failure(let error) = result else {
                Issue.record("\(typeCase.value.jsonString) should be refused for \(typeCase.type.rawValue)")
                return
            }
            #expect(error.code == .invalidInputs)
            #expect(error.details == [["parameter": "x", "reason": .string(typeCase.reason ?? "")]])
        }
    }

    @Test("an integral double for an integer becomes exactly .int, not .double")
    func integerNormalisation() throws {
        let manifest = function(ParameterManifest(name: "n", type: .integer, required: true))
        let inputs = try manifest.validate(["n": 3.0]).get()
        #expect(inputs["n"] == .int(3))
        #expect(inputs["n"] != .double(3.0))
    }

    @Test("a number keeps integers as integers and doubles as doubles")
    func numberKeepsRepresentation() throws {
        let manifest = function(
            ParameterManifest(name: "a", type: .number), ParameterManifest(name: "b", type: .number))
        let inputs = try manifest.validate(["a": 2, "b": 2.0]).get()
        #expect(inputs["a"] == .int(2))
        #expect(inputs["b"] == .double(2.0))
    }
}

@Suite("Input validation: enums")
struct InputEnumTests {
    static let mode = function(
        ParameterManifest(name: "mode", type: .string, required: true, allowedValues: ["fast", "slow"])
    )

    @Test("a listed value is accepted", arguments: ["fast", "slow"])
    func accepted(_ value: String) throws {
        let inputs = try Self.mode.validate(["mode": .string(value)]).get()
        #expect(inputs.values == ["mode": .string(value)])
    }

    @Test("a value not listed is refused and the message lists the options")
    func refused() throws {
        let error = try #require(failure(Self.mode, ["mode": "medium"]))
        #expect(error.code == .invalidInputs)
        #expect(error.message == #"1 input is invalid: mode: must be one of "fast", "slow", got "medium""#)
        #expect(error.details == [["parameter": "mode", "reason": #"must be one of "fast", "slow", got "medium""#]])
    }

    @Test("the type is checked before the enum")
    func typeBeforeEnum() throws {
        let error = try #require(failure(Self.mode, ["mode": 1]))
        #expect(error.details == [["parameter": "mode", "reason": "must be string, got integer"]])
    }

    @Test("an integral double matches an integer enum after normalisation")
    func integerEnum() throws {
        let manifest = function(ParameterManifest(name: "level", type: .integer, allowedValues: [1, 2, 3]))
        let inputs = try manifest.validate(["level": 2.0]).get()
        #expect(inputs["level"] == .int(2))
        let error = try #require(failure(manifest, ["level": 4]))
        #expect(error.details == [["parameter": "level", "reason": "must be one of 1, 2, 3, got 4"]])
    }
}
