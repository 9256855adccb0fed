/// One thing wrong with a manifest: where (a JSON path such as `$.functions[1].parameters[0].type`)
/// and why.
public struct ManifestProblem: Sendable, Hashable, CustomStringConvertible {
    /// Where: a JSON path such as `$.functions[1].parameters[0].type`.
    public var path: String
    /// What is wrong there.
    public var reason: String

    public init(path: String, reason: String) {
        self.path = path
        self.reason = reason
    }

    public var description: String { "\(path): \(reason)" }
}

/// Every problem found in one manifest.
public struct ManifestError: Error, Sendable, Hashable, CustomStringConvertible {
    /// Every problem found.
    public var problems: [ManifestProblem]

    public init(_ problems: [ManifestProblem]) {
        self.problems = problems
    }

    public var description: String { problems.map(\.description).joined(separator: "; ") }
}

extension PrefabManifest {
    /// Reads a manifest from its text. `//` and `/* */` comments are tolerated, since people copy
    /// manifests with comments; a JSON syntax error is reported with its line and column.
    public init(parsing bytes: some Collection<UInt8>) throws(ManifestError) {
        let json: JSONValue
        do {
            json = try JSONValue(parsing: bytes, options: JSONParseOptions(allowComments: true))
        } catch {
            throw ManifestError([ManifestProblem(path: "$", reason: "invalid JSON: \(error)")])
        }
        try self.init(json: json)
    }

    /// Reads a manifest from JSON, reporting every problem with its path.
    public init(json: JSONValue) throws(ManifestError) {
        var reader = ManifestReader()
        guard let manifest = reader.manifest(json), reader.problems.isEmpty else {
            throw ManifestError(reader.problems)
        }
        self = manifest
    }
}

/// Walks a manifest's JSON, collecting problems instead of stopping at the first.
private struct ManifestReader {
    var problems: [ManifestProblem] = []

    mutating func manifest(_ json: JSONValue) -> PrefabManifest? {
        guard let object = json.objectValue else {
            fail("$", "a manifest must be a JSON object, got \(json.typeName)")
            return nil
        }
        let name = optionalString(object, "name", at: "$")
        let version = optionalString(object, "version", at: "$")
        let description = optionalString(object, "description", at: "$")
        if let runtime = object["runtime"], runtime.objectValue == nil {
            fail("$.runtime", "must be an object, got \(runtime.typeName)")
        }
        guard let functionsJSON = object["functions"] else {
            fail("$.functions", "missing: a manifest lists its functions")
            return nil
        }
        guard let entries = functionsJSON.arrayValue else {
            fail("$.functions", "must be an array, got \(functionsJSON.typeName)")
            return nil
        }
        if entries.isEmpty { fail("$.functions", "is empty: a manifest declares at least one function") }
        var functions: [FunctionManifest] = []
        var seen: Set<String> = []
        for (index, entry) in entries.enumerated() {
            let path = "$.functions[\(index)]"
            guard let function = function(entry, at: path) else { continue }
            if !seen.insert(function.name).inserted {
                fail("\(path).name", "duplicate function name '\(function.name)'")
            }
            functions.append(function)
        }
        return PrefabManifest(
            name: name,
            version: version,
            description: description,
            runtime: object["runtime"],
            functions: functions,
            json: json
        )
    }

    private mutating func function(_ json: JSONValue, at path: String) -> FunctionManifest? {
        guard let object = json.objectValue else {
            fail(path, "a function must be an object, got \(json.typeName)")
            return nil
        }
        let name = requiredString(object, "name", at: path)
        if let name, !FunctionManifest.isValidName(name) {
            fail(
                "\(path).name",
                "'\(name)' is not a valid function name (letters, digits, '_' and '-', not starting with a digit)")
        }
        let description = optionalString(object, "description", at: path)
        var streaming = false
        if let value = object["streaming"] {
            if let flag = value.boolValue { streaming = flag } else { fail("\(path).streaming", "must be a boolean") }
        }
        if let returns = object["returns"], returns.objectValue == nil {
            fail("\(path).returns", "must be an object, got \(returns.typeName)")
        }
        var timeoutSeconds: Double?
        if let timeout = object["timeout_seconds"] {
            if let seconds = timeout.doubleValue, seconds > 0 {
                timeoutSeconds = seconds
            } else {
                fail("\(path).timeout_seconds", "must be a positive number")
            }
        }
        var maxConcurrency: Int?
        if let limit = object["max_concurrency"] {
            if let count = limit.intValue, count > 0 {
                maxConcurrency = count
            } else {
                fail("\(path).max_concurrency", "must be a positive integer")
            }
        }
        var runsOnEventLoop = false
        if let value = object["runs_on_event_loop"] {
            if let flag = value.boolValue {
                runsOnEventLoop = flag
                if flag && !streaming {
                    fail(
                        "\(path).runs_on_event_loop",
                        "only a streaming function (\"streaming\": true) runs on the event loop")
                }
            } else {
                fail("\(path).runs_on_event_loop", "must be a boolean")
            }
        }
        if let annotations = object["annotations"] { self.annotations(annotations, at: "\(path).annotations") }
        var parameters: [ParameterManifest] = []
        if let list = object["parameters"] {
            if let entries = list.arrayValue {
                var seen: Set<String> = []
                for (index, entry) in entries.enumerated() {
                    guard let parameter = parameter(entry, at: "\(path).parameters[\(index)]") else { continue }
                    if !seen.insert(parameter.name).inserted {
                        fail("\(path).parameters[\(index)].name", "duplicate parameter name '\(parameter.name)'")
                    }
                    parameters.append(parameter)
                }
            } else {
                fail("\(path).parameters", "must be an array, got \(list.typeName)")
            }
        }
        let chat = object["chat"].flatMap { chatInput($0, parameters: parameters, at: "\(path).chat") }
        guard let name else { return nil }
        return FunctionManifest(
            name: name,
            description: description,
            streaming: streaming,
            parameters: parameters,
            returns: object["returns"],
            timeoutSeconds: timeoutSeconds,
            maxConcurrency: maxConcurrency,
            chat: chat,
            runsOnEventLoop: runsOnEventLoop,
            json: json
        )
    }

    /// `annotations`: hints for MCP clients (``FunctionManifest/annotationKeys``), read from the
    /// function's JSON by the gateway. A misspelt key is an error, not a hint silently lost.
    private mutating func annotations(_ json: JSONValue, at path: String) {
        guard let object = json.objectValue else {
            fail(path, "must be an object, got \(json.typeName)")
            return
        }
        for (key, value) in object.sorted(by: { $0.key < $1.key }) {
            switch key {
            case "title":
                if value.stringValue == nil { fail("\(path).title", "must be a string, got \(value.typeName)") }
            case _ where FunctionManifest.annotationKeys.contains(key):
                if value.boolValue == nil { fail("\(path).\(key)", "must be a boolean, got \(value.typeName)") }
            default:
                let known = (["title"] + FunctionManifest.annotationKeys).joined(separator: ", ")
                fail("\(path).\(key)", "is not an annotation (known: \(known))")
            }
        }
    }

    /// `{"messages": "<array parameter>"}` or `{"prompt": "<string parameter>"}`: exactly one of
    /// them, naming a declared parameter of that type.
    private mutating func chatInput(
        _ json: JSONValue, parameters: [ParameterManifest], at path: String
    ) -> ChatInput? {
        guard let object = json.objectValue, object.count == 1, let (key, value) = object.first,
            key == "messages" || key == "prompt"
        else {
            fail(path, #"must be {"messages": "<parameter>"} or {"prompt": "<parameter>"}"#)
            return nil
        }
        guard let name = value.stringValue, !name.isEmpty else {
            fail("\(path).\(key)", "must name a parameter, got \(value.typeName)")
            return nil
        }
        let type: ParameterManifest.Kind = key == "messages" ? .array : .string
        guard let parameter = parameters.first(where: { $0.name == name }) else {
            fail("\(path).\(key)", "names no parameter of the function: '\(name)'")
            return nil
        }
        guard parameter.type == type else {
            let wanted = type == .array ? "an array" : "a string"
            fail("\(path).\(key)", "'\(name)' must be \(wanted) parameter, not \(parameter.type.rawValue)")
            return nil
        }
        return key == "messages" ? .messages(name) : .prompt(name)
    }

    private mutating func parameter(_ json: JSONValue, at path: String) -> ParameterManifest? {
        guard let object = json.objectValue else {
            fail(path, "a parameter must be an object, got \(json.typeName)")
            return nil
        }
        let name = requiredString(object, "name", at: path)
        let description = optionalString(object, "description", at: path)
        var kind: ParameterManifest.Kind?
        if let typeName = requiredString(object, "type", at: path) {
            kind = ParameterManifest.Kind(manifestName: typeName)
            if kind == nil {
                let known = ParameterManifest.Kind.allCases.map(\.rawValue).joined(separator: ", ")
                fail("\(path).type", "unknown type '\(typeName)' (one of \(known))")
            }
        }
        var required = false
        if let value = object["required"] {
            if let flag = value.boolValue { required = flag } else { fail("\(path).required", "must be a boolean") }
        }
        var allowed: [JSONValue]?
        if let value = object["enum"] {
            if let values = value.arrayValue, !values.isEmpty {
                allowed = kind.map { kind in values.map(kind.normalized) } ?? values
                if let kind {
                    for (index, option) in values.enumerated() where !kind.accepts(option) {
                        fail(
                            "\(path).enum[\(index)]",
                            "\(option.typeName) does not match the parameter type \(kind.rawValue)")
                    }
                }
            } else {
                fail("\(path).enum", "must be a non-empty array")
            }
        }
        var defaultValue: JSONValue?
        if let value = object["default"], !value.isNull {
            defaultValue = kind.map { $0.normalized(value) } ?? value
        }
        if let defaultValue, let kind {
            if !kind.accepts(defaultValue) {
                fail("\(path).default", "\(defaultValue.typeName) does not match the parameter type \(kind.rawValue)")
            } else if let allowed, !allowed.contains(defaultValue) {
                fail("\(path).default", "is not one of the enum values")
            }
        }
        guard let name, let kind else { return nil }
        return ParameterManifest(
            name: name,
            type: kind,
            required: required,
            description: description,
            defaultValue: defaultValue,
            allowedValues: allowed
        )
    }

    private mutating func requiredString(_ object: [String: JSONValue], _ key: String, at path: String) -> String? {
        guard let value = object[key] else {
            fail("\(path).\(key)", "missing")
            return nil
        }
        guard let text = value.stringValue, !text.isEmpty else {
            fail("\(path).\(key)", "must be a non-empty string, got \(value.typeName)")
            return nil
        }
        return text
    }

    private mutating func optionalString(_ object: [String: JSONValue], _ key: String, at path: String) -> String? {
        guard let value = object[key], !value.isNull else { return nil }
        guard let text = value.stringValue else {
            fail("\(path).\(key)", "must be a string, got \(value.typeName)")
            return nil
        }
        return text
    }

    private mutating func fail(_ path: String, _ reason: String) {
        problems.append(ManifestProblem(path: path, reason: reason))
    }
}
