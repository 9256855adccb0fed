import Foundation
import HTTPTypes
import PrefabGateway
import PrefabKit
import Testing

/// Errors found before a stream opens: plain HTTP errors with a JSON body and a stable code.
@Suite(.timeLimit(.minutes(1))) struct InvokeErrorTests {
    static let greet = TestPrefab.streaming(
        "greet",
        parameters: [
            ParameterManifest(name: "name", type: .string, required: true),
            ParameterManifest(name: "times", type: .integer, defaultValue: 1),
            ParameterManifest(name: "tone", type: .string, allowedValues: ["warm", "dry"]),
        ]
    ) { inputs, context in
        try context.yield(.content("hello \(try inputs.string("name"))"))
    }

    struct Case: Sendable, CustomTestStringConvertible {
        var method: HTTPRequest.Method
        var path: String
        var body: String?
        var status: HTTPResponse.Status
        var code: String
        var testDescription: String { "\(method) \(path) \(body ?? "") → \(status.code) \(code)" }
    }

    static let cases: [Case] = [
        Case(method: .post, path: "/invoke/nope", body: "{}", status: .notFound, code: "FUNCTION_NOT_FOUND"),
        Case(method: .post, path: "/invoke/greet", body: "{not json", status: .badRequest, code: "INVALID_JSON"),
        Case(
            method: .post, path: "/invoke/greet", body: #"{"inputs": {"name": "a"}} x"#, status: .badRequest,
            code: "INVALID_JSON"),
        Case(method: .post, path: "/invoke/greet", body: "[1, 2]", status: .badRequest, code: "INVALID_REQUEST"),
        Case(
            method: .post, path: "/invoke/greet", body: #"{"name": "a"}"#, status: .badRequest, code: "INVALID_REQUEST"),
        Case(
            method: .post, path: "/invoke/greet", body: #"{"inputs": [1]}"#, status: .badRequest,
            code: "INVALID_REQUEST"),
        Case(
            method: .post, path: "/invoke/greet", body: #"{"inputs": {}}"#, status: .unprocessableContent,
            code: "INVALID_INPUTS"),
        Case(method: .post, path: "/invoke/greet", body: nil, status: .unprocessableContent, code: "INVALID_INPUTS"),
        Case(method: .get, path: "/invoke/greet", body: nil, status: .methodNotAllowed, code: "METHOD_NOT_ALLOWED"),
        Case(method: .post, path: "/manifest", body: "{}", status: .methodNotAllowed, code: "METHOD_NOT_ALLOWED"),
        Case(method: .delete, path: "/health", body: nil, status: .methodNotAllowed, code: "METHOD_NOT_ALLOWED"),
        Case(method: .get, path: "/nothing/here", body: nil, status: .notFound, code: "NOT_FOUND"),
    ]

    @Test(arguments: cases)
    func answersWithStatusAndCode(_ test: Case) async throws {
        try await LiveGateway.run([Self.greet]) { gateway in
            let response = try await gateway.request(test.method, test.path, body: test.body)
            #expect(response.status == test.status)
            #expect(response.errorCode == test.code)
            #expect(response.headers[.contentType] == "application/json; charset=utf-8")
            #expect(response.json?["error"]?["message"]?.stringValue?.isEmpty == false)
        }
    }

    @Test func wrongMethodNamesTheAllowedOne() async throws {
        try await LiveGateway.run([Self.greet]) { gateway in
            let response = try await gateway.request(.get, "/invoke/greet")
            #expect(response.headers[.allow] == "POST")
        }
    }

    @Test func invalidInputsListEveryProblemWithItsParameter() async throws {
        try await LiveGateway.run([Self.greet]) { gateway in
            let response = try await gateway.invoke(
                "greet", #"{"inputs": {"times": "3", "tone": "loud", "colour": 1}}"#)
            #expect(response.status == .unprocessableContent)
            let details = try #require(response.json?["error"]?["details"]?.arrayValue)
            let problems = details.compactMap { $0["parameter"]?.stringValue }
            #expect(problems == ["name", "times", "tone", "colour"])
            #expect(details[1]["reason"] == "must be integer, got string")
            #expect(response.json?["error"]?["message"]?.stringValue?.hasPrefix("4 inputs are invalid") == true)
        }
    }

    @Test func bodyOverTheLimitIs413() async throws {
        try await LiveGateway.run([Self.greet], configure: { $0.maxBodyBytes = 1024 }) { gateway in
            let big = #"{"inputs": {"name": ""# + String(repeating: "x", count: 4096) + #""}}"#
            let response = try await gateway.invoke("greet", big)
            #expect(response.status == .contentTooLarge)
            #expect(response.errorCode == "PAYLOAD_TOO_LARGE")
            // The same gateway still serves a body under the limit.
            let small = try await gateway.invoke("greet", #"{"inputs": {"name": "ok"}}"#)
            #expect(small.status == .ok)
        }
    }
}
