/// One input that does not fit the manifest.
public struct InputProblem: Sendable, Hashable, CustomStringConvertible {
    /// The parameter's name, or an unknown input's.
    public var parameter: String
    /// What is wrong with the input.
    public var reason: String

    public init(parameter: String, reason: String) {
        self.parameter = parameter
        self.reason = reason
    }

    public var description: String { "\(parameter): \(reason)" }

    /// The problem as the gateway reports it: one entry of an error's `details`.
    public var jsonValue: JSONValue { ["parameter": .string(parameter), "reason": .string(reason)] }
}

extension FunctionManifest {
    /// Checks `inputs` against the parameters and applies defaults. Reports every problem:
    /// missing required inputs, wrong types, values outside an enum, and unknown inputs.
    ///
    /// `null` counts as absent. An integral number given for an `integer` becomes an integer.
    public func validate(_ inputs: PrefabInputs) -> Result<PrefabInputs, PrefabError> {
        var problems: [InputProblem] = []
        var validated = PrefabInputs()
        // Inputs that name a parameter: when that is all of them, none is unknown.
        var named = 0
        for parameter in parameters {
            let given = inputs[parameter.name]
            if given != nil { named += 1 }
            guard let value = given, !value.isNull else {
                if let defaultValue = parameter.defaultValue {
                    validated[parameter.name] = defaultValue
                } else if parameter.required {
                    problems.append(InputProblem(parameter: parameter.name, reason: "is required"))
                }
                continue
            }
            guard parameter.type.accepts(value) else {
                problems.append(
                    InputProblem(
                        parameter: parameter.name,
                        reason: "must be \(parameter.type.rawValue), got \(value.typeName)"
                    )
                )
                continue
            }
            let normalized = parameter.type.normalized(value)
            if let allowed = parameter.allowedValues, !allowed.contains(normalized) {
                let options = allowed.map(\.jsonString).joined(separator: ", ")
                problems.append(
                    InputProblem(
                        parameter: parameter.name, reason: "must be one of \(options), got \(value.jsonString)")
                )
                continue
            }
            validated[parameter.name] = normalized
        }
        if named < inputs.values.count {
            let known = Set(parameters.map(\.name))
            for name in inputs.values.keys.sorted() where !known.contains(name) {
                problems.append(InputProblem(parameter: name, reason: "is not a parameter of '\(self.name)'"))
            }
        }
        guard problems.isEmpty else {
            let summary = problems.count == 1 ? "1 input is invalid" : "\(problems.count) inputs are invalid"
            return .failure(
                PrefabError(
                    .invalidInputs,
                    "\(summary): " + problems.map(\.description).joined(separator: "; "),
                    details: problems.map(\.jsonValue)
                )
            )
        }
        return .success(validated)
    }
}

extension FunctionManifest {
    /// The rule for function names: ASCII letters, digits, `_` and `-`, not starting with a digit.
    public static func isValidName(_ name: String) -> Bool {
        guard let first = name.unicodeScalars.first, !("0"..."9").contains(first) else { return false }
        return name.unicodeScalars.allSatisfy { scalar in
            scalar.isASCII
                && (scalar.properties.isAlphabetic || ("0"..."9").contains(scalar) || scalar == "_" || scalar == "-")
        }
    }
}
