import Foundation
import PrefabGateway
import PrefabKit
import Testing

@Suite(.timeLimit(.minutes(1))) struct ManifestAndHealthTests {
    @Test func manifestListsEveryFunctionWithItsEntry() async throws {
        let stream = TestPrefab.streaming(
            "count",
            parameters: [ParameterManifest(name: "n", type: .integer, required: true, description: "how many")]
        ) { _, _ in }
        let result = TestPrefab.result("answer") { _, _ in 42 }
        try await LiveGateway.run([stream, result]) { gateway in
            let response = try await gateway.request(.get, "/manifest")
            #expect(response.status == .ok)
            let functions = try #require(response.json?["functions"]?.arrayValue)
            #expect(functions.map { $0["name"]?.stringValue } == ["answer", "count"])
            #expect(functions[0]["streaming"] == false)
            #expect(functions[1]["streaming"] == true)
            #expect(functions[1]["prefab"] == "count")
            let parameter = try #require(functions[1]["parameters"]?.arrayValue?.first)
            #expect(parameter == ["name": "n", "type": "integer", "required": true, "description": "how many"])
        }
    }

    @Test func healthIsOkWithNoLoadErrors() async throws {
        try await LiveGateway.run([.result("answer") { _, _ in 42 }]) { gateway in
            let response = try await gateway.request(.get, "/health")
            #expect(response.status == .ok)
            #expect(response.json?["status"] == "ok")
            #expect(response.json?["functions"] == 1)
            #expect(response.json?["load_errors"] == [])
        }
    }

    @Test func healthShowsWhatFailedToLoad() async throws {
        let broken = "{\n  \"functions\": [\n    {\"name\": }\n  ]\n}"
        try await LiveGateway.run([.result("answer") { _, _ in 42 }], rawManifests: ["broken": broken]) { gateway in
            let response = try await gateway.request(.get, "/health")
            #expect(response.status == .ok)
            #expect(response.json?["status"] == "degraded")
            #expect(response.json?["functions"] == 1)
            let problem = try #require(response.json?["load_errors"]?.arrayValue?.first)
            #expect(problem["file"]?.stringValue?.hasSuffix("broken/prefab-manifest.json") == true)
            #expect(problem["path"] == "$")
            #expect(problem["reason"]?.stringValue?.contains("line 3, column 14") == true)
        }
    }

    @Test func strictModeRefusesToStartWithABrokenPrefab() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("strict-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: root) }
        try LiveGateway.writeManifest(#"{"functions": [{"name": "good"}]}"#, folder: "good", in: root)
        try LiveGateway.writeManifest(#"{"functions": [{"name": "orphan"}]}"#, folder: "orphan", in: root)
        var configuration = GatewayConfiguration()
        configuration.prefabsDirectory = root
        let compiled: [String: [String: PrefabFunction]] = ["good": ["good": .result({ _, _ in nil })]]
        let lenient = try Gateway.load(configuration: configuration, compiled: compiled)
        #expect(lenient.catalog.functions.keys.sorted() == ["good"])
        configuration.strict = true
        let error = #expect(throws: GatewayStartError.self) {
            try Gateway.load(configuration: configuration, compiled: compiled)
        }
        #expect(error?.problems.first?.reason.contains("no implementation") == true)
    }
}

@Suite(.timeLimit(.minutes(1))) struct PlaygroundTests {
    @Test func theRootServesThePlaygroundPageAndOnlyItsOwnFiles() async throws {
        try await LiveGateway.run([]) { gateway in
            let page = try await gateway.request(.get, "/")
            #expect(page.status == .ok)
            #expect(page.headers[.contentType] == "text/html; charset=utf-8")
            #expect(page.text.contains("/playground/playground.js"))
            let script = try await gateway.request(.get, "/playground/playground.js")
            #expect(script.status == .ok)
            #expect(script.headers[.contentType] == "text/javascript; charset=utf-8")
            for path in ["/playground/missing.js", "/playground/..%2FPackage.swift", "/playground/%2Fetc%2Fpasswd"] {
                #expect(try await gateway.request(.get, path).status == .notFound, "\(path)")
            }
        }
    }
}
