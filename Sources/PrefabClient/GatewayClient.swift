import AsyncHTTPClient
import Foundation
import NIOCore
import PrefabKit

/// The HTTP side of the terminal client: the manifest, a call, answers, cancel, downloads.
public struct GatewayClient: Sendable {
    /// What `POST /invoke/<name>` answered.
    public enum Reply: Sendable {
        /// An SSE stream of the invocation's events.
        case stream(invocationId: String, body: HTTPClientResponse.Body)
        /// A non-streaming function's JSON answer (`success`, `result`, `files`, ...).
        case result(invocationId: String, json: JSONValue)
    }

    public let baseURL: String
    /// Sent as `Authorization: Bearer <key>` when the gateway requires keys.
    private let apiKey: String?
    private let http = HTTPClient.shared

    /// `url` such as `http://127.0.0.1:8080` (a trailing slash is dropped).
    public init(url: String, apiKey: String? = nil) {
        baseURL = url.hasSuffix("/") ? String(url.dropLast()) : url
        self.apiKey = apiKey
    }

    public func manifest() async throws -> JSONValue {
        try await json(HTTPClientRequest(url: baseURL + "/manifest"))
    }

    private func execute(_ request: HTTPClientRequest, deadline: NIODeadline) async throws -> HTTPClientResponse {
        var request = request
        if let apiKey { request.headers.replaceOrAdd(name: "Authorization", value: "Bearer \(apiKey)") }
        return try await http.execute(request, deadline: deadline)
    }

    public func invoke(_ function: String, inputs: [String: JSONValue]) async throws -> Reply {
        var request = HTTPClientRequest(url: baseURL + "/invoke/" + Self.escape(function))
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.headers.add(name: "Accept", value: "text/event-stream, application/json")
        request.body = .bytes(ByteBuffer(string: JSONValue.object(["inputs": .object(inputs)]).jsonString))
        let response = try await execute(request, deadline: .distantFuture)
        let id = response.headers.first(name: "X-Invocation-Id") ?? ""
        let contentType = response.headers.first(name: "Content-Type") ?? ""
        if response.status == .ok && contentType.hasPrefix("text/event-stream") {
            return .stream(invocationId: id, body: response.body)
        }
        let body = try await response.body.collect(upTo: 64 << 20)
        let json = try? JSONValue(parsing: Array(body.readableBytesView))
        if let json, json["success"] != nil { return .result(invocationId: id, json: json) }
        throw ServerError(status: Int(response.status.code), body: json, text: String(buffer: body))
    }

    /// Posts the answer to a question; throws the server's refusal (422 not an option, 409 ...).
    public func answer(_ invocationId: String, questionId: String, value: JSONValue) async throws {
        var request = HTTPClientRequest(url: "\(baseURL)/invocations/\(invocationId)/messages")
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.body = .bytes(ByteBuffer(string: PrefabEvent.answer(value, to: questionId).jsonString))
        _ = try await json(request)
    }

    /// Cancels the invocation on the server; the stream then ends with `CANCELLED`.
    public func cancel(_ invocationId: String) async throws {
        var request = HTTPClientRequest(url: "\(baseURL)/invocations/\(invocationId)")
        request.method = .DELETE
        _ = try await json(request)
    }

    /// Saves the file at `url` as `path`; returns its size.
    public func download(_ url: String, to path: String) async throws -> Int {
        let response = try await execute(HTTPClientRequest(url: url), deadline: .now() + .seconds(300))
        let body = try await response.body.collect(upTo: 1 << 30)
        guard response.status == .ok else {
            throw ServerError(
                status: Int(response.status.code), body: try? JSONValue(parsing: Array(body.readableBytesView)),
                text: String(buffer: body))
        }
        let data = Data(body.readableBytesView)
        try data.write(to: URL(fileURLWithPath: path))
        return data.count
    }

    private func json(_ request: HTTPClientRequest) async throws -> JSONValue {
        let response = try await execute(request, deadline: .now() + .seconds(60))
        let body = try await response.body.collect(upTo: 64 << 20)
        let json = try? JSONValue(parsing: Array(body.readableBytesView))
        guard (200..<300).contains(response.status.code), let json else {
            throw ServerError(status: Int(response.status.code), body: json, text: String(buffer: body))
        }
        return json
    }

    private static func escape(_ segment: String) -> String {
        segment.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed.subtracting(["/"])) ?? segment
    }
}

/// An error answer of the gateway: its status and `{"error": {"code", "message", "details"}}`.
public struct ServerError: Error, CustomStringConvertible {
    public var status: Int
    public var code: String
    public var message: String
    public var details: [JSONValue]

    init(status: Int, body: JSONValue?, text: String) {
        self.status = status
        let error = body?["error"]
        code = error?["code"]?.stringValue ?? "HTTP_\(status)"
        message = error?["message"]?.stringValue ?? String(text.prefix(300))
        details = error?["details"]?.arrayValue ?? []
    }

    /// `CODE: message`, then one line per detail (`parameter: reason` for invalid inputs).
    public var description: String {
        var lines = ["\(code): \(message)"]
        for detail in details {
            if let parameter = detail["parameter"]?.stringValue, let reason = detail["reason"]?.stringValue {
                lines.append("  - \(parameter): \(reason)")
            } else {
                lines.append("  - " + (detail.stringValue ?? detail.jsonString))
            }
        }
        return lines.joined(separator: "\n")
    }
}
