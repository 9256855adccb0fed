import Foundation
import PrefabGateway
import PrefabKit
import Synchronization
import Testing

/// `GET /openapi.json`: the OpenAPI document built from the loaded functions.
@Suite(.timeLimit(.minutes(1))) struct OpenAPITests {
    static let count = TestPrefab.streaming(
        "count",
        parameters: [
            ParameterManifest(name: "n", type: .integer, required: true, description: "how many"),
            ParameterManifest(name: "mode", type: .string, defaultValue: "fast", allowedValues: ["fast", "slow"]),
            ParameterManifest(name: "tags", type: .array),
        ]
    ) { _, _ in }
    static let answer = TestPrefab.result("answer") { _, _ in 42 }

    @Test func theDocumentListsEachFunctionWithItsParameterSchema() async throws {
        try await LiveGateway.run([Self.count, Self.answer]) { gateway in
            let response = try await gateway.request(.get, "/openapi.json")
            #expect(response.status == .ok)
            #expect(response.headers[.contentType] == "application/json; charset=utf-8")
            let document = try #require(response.json)
            #expect(document["openapi"] == "3.1.0")
            let paths = try #require(document["paths"]?.objectValue)
            #expect(
                paths.keys.sorted() == [
                    "/files/{invocation}/{file}", "/health", "/invocations/{id}", "/invocations/{id}/cancel",
                    "/invocations/{id}/events", "/invocations/{id}/messages", "/invoke/answer", "/invoke/count",
                    "/manifest", "/metrics", "/openapi.json", "/v1/chat/completions", "/v1/models",
                ]
            )

            let count = try #require(paths["/invoke/count"]?["post"])
            #expect(count["operationId"] == "invoke_count")
            let body = try #require(count["requestBody"]?["content"]?["application/json"]?["schema"])
            #expect(body["required"] == ["inputs"])
            #expect(body["additionalProperties"] == false)
            #expect(
                body["properties"]?["inputs"]
                    == [
                        "type": "object",
                        "required": ["n"],
                        "additionalProperties": false,
                        "properties": [
                            "n": ["type": "integer", "description": "how many"],
                            "mode": ["type": ["string", "null"], "default": "fast", "enum": ["fast", "slow", nil]],
                            "tags": ["type": ["array", "null"]],
                        ],
                    ]
            )
            let streamed = try #require(count["responses"]?["200"]?["content"]?.objectValue)
            #expect(streamed.keys.sorted() == ["application/json", "application/x-ndjson", "text/event-stream"])
            #expect(streamed["application/json"]?["schema"] == ["$ref": "#/components/schemas/CollectedEvents"])

            let answer = try #require(paths["/invoke/answer"]?["post"])
            #expect(answer["requestBody"]?["required"] == false)
            #expect(
                answer["responses"]?["200"]?["content"]?["application/json"]?["schema"]
                    == ["$ref": "#/components/schemas/Result"]
            )
            #expect(answer["responses"]?["500"] != nil)
            for status in ["400", "403", "404", "413", "414", "421", "422", "429", "431"] {
                #expect(answer["responses"]?[status] != nil, "\(status)")
            }
            // HEAD wherever GET works, with the GET's statuses and no content; the manifest's 304.
            for path in ["/manifest", "/health", "/metrics", "/openapi.json", "/invocations/{id}/events", "/v1/models"]
            {
                let get = try #require(paths[path]?["get"]?["responses"]?.objectValue, "\(path)")
                let head = try #require(paths[path]?["head"]?["responses"]?.objectValue, "\(path)")
                #expect(Set(head.keys) == Set(get.keys), "\(path)")
                #expect(head.values.allSatisfy { $0["content"] == nil }, "\(path)")
            }
            #expect(paths["/invoke/answer"]?["head"] == nil)
            #expect(paths["/manifest"]?["get"]?["responses"]?["304"]?["headers"]?["ETag"] != nil)
            #expect(answer["responses"]?["401"] == nil)
            #expect(document["security"] == nil)
        }
    }

    @Test func theChatFormatsAreListedForTheChatCapableFunctions() async throws {
        try await LiveGateway.run([Self.count, ChatCompletionsTests.replier, ChatCompletionsTests.historian]) {
            gateway in
            let document = try #require(try await gateway.request(.get, "/openapi.json").json)
            let paths = try #require(document["paths"]?.objectValue)
            #expect(
                paths.keys.filter { $0.hasPrefix("/ai-sdk/") }.sorted() == ["/ai-sdk/historian", "/ai-sdk/replier"])
            let completions = try #require(paths["/v1/chat/completions"]?["post"])
            let model = completions["requestBody"]?["content"]?["application/json"]?["schema"]?["properties"]?["model"]
            #expect(model?["enum"] == ["historian", "replier"])
            let ok = try #require(completions["responses"]?["200"]?["content"]?.objectValue)
            #expect(ok.keys.sorted() == ["application/json", "text/event-stream"])
            for status in ["400", "404", "413", "429", "403"] {
                #expect(
                    completions["responses"]?[status]?["content"]?["application/json"]?["schema"]
                        == ["$ref": "#/components/schemas/OpenAIError"], "\(status)")
            }
            // The conversation's parameter is not among an AI SDK call's inputs; the others are.
            let aiSDK = try #require(paths["/ai-sdk/replier"]?["post"])
            let inputs = aiSDK["requestBody"]?["content"]?["application/json"]?["schema"]?["properties"]?["inputs"]
            #expect(inputs?["properties"]?.objectValue?.keys.sorted() == ["fail", "n"])
            #expect(inputs?["required"] == nil)
            #expect(aiSDK["responses"]?["200"]?["content"]?["text/event-stream"] != nil)
        }
    }

    @Test func aFunctionAddedToThePrefabsFolderAppears() async throws {
        let before = try await Self.invokePaths(prefabs: [Self.answer])
        #expect(before == ["/invoke/answer"])
        let manifest =
            #"{"functions": [{"name": "shout", "streaming": true, "parameters": [{"name": "text", "type": "str"}]}]}"#
        let code = "def shout(text=None):\n    yield {'type': 'done', 'data': text}\n"
        let after = try await Self.invokePaths(
            prefabs: [Self.answer], manifests: ["shout": manifest], files: ["shout/main.py": code])
        #expect(after == ["/invoke/answer", "/invoke/shout"])
    }

    static func invokePaths(
        prefabs: [TestPrefab],
        manifests: [String: String] = [:],
        files: [String: String] = [:]
    ) async throws -> [String] {
        let paths = Mutex<[String]>([])
        try await LiveGateway.run(prefabs, rawManifests: manifests, files: files) { gateway in
            let document = try #require(try await gateway.request(.get, "/openapi.json").json)
            let keys = document["paths"]?.objectValue?.keys.filter { $0.hasPrefix("/invoke/") } ?? []
            paths.withLock { $0 = keys.sorted() }
            if keys.contains("/invoke/shout") {
                let inputs = document["paths"]?["/invoke/shout"]?["post"]?["requestBody"]?["content"]?[
                    "application/json"]?["schema"]?["properties"]?["inputs"]
                #expect(inputs?["properties"] == ["text": ["type": ["string", "null"]]])
            }
        }
        return paths.withLock { $0 }
    }

    @Test func requiringAnAPIKeyAddsTheSecuritySchemeAndLeavesHealthOpen() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("openapi-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: root) }
        let manifest = PrefabManifest(functions: [Self.answer.manifest])
        try LiveGateway.writeManifest(manifest.json.jsonString(pretty: true), folder: "answer", in: root)
        let catalog = PrefabCatalog.load(from: root, compiled: ["answer": ["answer": Self.answer.implementation]])
        #expect(catalog.functions.keys.sorted() == ["answer"])
        let open = OpenAPIDocument(catalog: catalog, configuration: GatewayConfiguration()).json
        #expect(open["security"] == nil)
        #expect(open["components"]?["securitySchemes"] == nil)

        let keyed = OpenAPIDocument(catalog: catalog, configuration: GatewayConfiguration(), requiresAPIKey: true).json
        #expect(keyed["components"]?["securitySchemes"]?["apiKey"]?["type"] == "http")
        #expect(keyed["components"]?["securitySchemes"]?["apiKey"]?["scheme"] == "bearer")
        #expect(keyed["security"] == [["apiKey": []]])
        let health = try #require(keyed["paths"]?["/health"]?["get"])
        #expect(health["security"] == [])
        #expect(health["responses"]?["401"] == nil)
        let invoke = try #require(keyed["paths"]?["/invoke/answer"]?["post"])
        #expect(invoke["responses"]?["401"] == ["$ref": "#/components/responses/Unauthorized"])
        #expect(keyed["paths"]?["/manifest"]?["get"]?["responses"]?["401"] != nil)
    }

    @Test func everyReferenceResolves() async throws {
        try await LiveGateway.run([Self.count, Self.answer]) { gateway in
            let document = try #require(try await gateway.request(.get, "/openapi.json").json)
            let references = Self.references(in: document)
            #expect(references.count > 20)
            for reference in references {
                let parts = reference.split(separator: "/").dropFirst().map(String.init)
                var target: JSONValue? = document
                for part in parts { target = target?[part] }
                #expect(target?.objectValue != nil, "\(reference)")
            }
        }
    }

    static func references(in value: JSONValue) -> [String] {
        switch value {
        case .object(let members):
            return (members["$ref"]?.stringValue.map { [$0] } ?? []) + members.values.flatMap(references(in:))
        case .array(let items): return items.flatMap(references(in:))
        default: return []
        }
    }
}
