import MCP
import PrefabKit

/// What `tools/list` answers: one MCP tool per loaded function, with its name, description and
/// an input schema that is the one `/openapi.json` documents for its inputs.
struct MCPToolCatalog: Sendable {
    let tools: [Tool]

    init(catalog: PrefabCatalog) {
        tools = catalog.functions.values
            .sorted { $0.manifest.name < $1.manifest.name }
            .map(Self.tool)
    }

    /// No `outputSchema`: clients refuse a result without `structuredContent` when a tool has one,
    /// and a failed call or a streaming function's text-only answer has none.
    static func tool(_ function: LoadedFunction) -> Tool {
        let manifest = function.manifest
        var schema = OpenAPIDocument.inputsSchema(manifest).objectValue ?? [:]
        // MCP's arguments are always an object (an absent one is sent as `{}`), where the
        // gateway's `inputs` may also be null.
        schema["type"] = "object"
        return Tool(
            name: manifest.name,
            description: manifest.description ?? "The \(manifest.name) function of the \(function.prefab) prefab.",
            inputSchema: Value(.object(schema)),
            annotations: annotations(manifest.json["annotations"]?.objectValue ?? [:])
        )
    }

    /// The manifest's `annotations` (checked when it was read), as the tool's.
    static func annotations(_ hints: [String: JSONValue]) -> Tool.Annotations {
        Tool.Annotations(
            title: hints["title"]?.stringValue,
            readOnlyHint: hints["readOnlyHint"]?.boolValue,
            destructiveHint: hints["destructiveHint"]?.boolValue,
            idempotentHint: hints["idempotentHint"]?.boolValue,
            openWorldHint: hints["openWorldHint"]?.boolValue
        )
    }
}
