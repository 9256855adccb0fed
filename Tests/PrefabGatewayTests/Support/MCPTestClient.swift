import AsyncHTTPClient
import Foundation
import HTTPTypes
import NIOCore
import PrefabKit

/// A plain-HTTP MCP client for tests: JSON-RPC bodies posted to `/mcp`, answers read from
/// their SSE streams, as a Streamable HTTP client does.
struct MCPTestClient {
    let gateway: LiveGateway
    var sessionId: String?
    var nextId = 1
    var headers: HTTPFields = [:]

    init(_ gateway: LiveGateway, headers: HTTPFields = [:]) {
        self.gateway = gateway
        self.headers = headers
    }

    /// `initialize` then `notifications/initialized`; returns the initialize result.
    @discardableResult
    mutating func initialize(elicitation: Bool = false) async throws -> JSONValue {
        let capabilities: String = elicitation ? #"{"elicitation": {}}"# : "{}"
        let reply = try await post(
            #"{"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": "2025-06-18", "capabilities": \#(capabilities), "clientInfo": {"name": "test", "version": "1"}}}"#
        )
        guard reply.status == .ok, let id = reply.headers[.mcpSessionId] else {
            throw RawConnectionError("initialize failed: \(reply.status) \(reply.text)")
        }
        sessionId = id
        let notified = try await post(#"{"jsonrpc": "2.0", "method": "notifications/initialized"}"#)
        guard notified.status == .accepted else { throw RawConnectionError("initialized: \(notified.status)") }
        return try Self.answer(in: reply, id: 0)["result"] ?? .null
    }

    /// A request; returns its JSON-RPC answer (`result` or `error`).
    mutating func call(_ method: String, _ params: String = "{}") async throws -> JSONValue {
        let id = nextId
        nextId += 1
        let reply = try await post(#"{"jsonrpc": "2.0", "id": \#(id), "method": "\#(method)", "params": \#(params)}"#)
        return try Self.answer(in: reply, id: id)
    }

    func post(_ body: String) async throws -> TestReply {
        try await gateway.request(.post, "/mcp", body: body, headers: requestHeaders)
    }

    var requestHeaders: HTTPFields {
        var fields = headers
        fields[.accept] = "application/json, text/event-stream"
        fields[.contentType] = "application/json"
        if let sessionId {
            fields[.mcpSessionId] = sessionId
            fields[.mcpProtocolVersion] = "2025-06-18"
        }
        return fields
    }

    /// Opens the session's GET stream (notifications and server requests).
    func openStream() async throws -> EventStream {
        var request = HTTPClientRequest(url: "\(gateway.baseURL)/mcp")
        for field in requestHeaders where field.name != .contentType {
            request.headers.add(name: field.name.rawName, value: field.value)
        }
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
        guard response.status == .ok else { throw RawConnectionError("GET /mcp: \(response.status)") }
        return EventStream(response: response)
    }

    /// The JSON-RPC message with `id` in an SSE (or JSON) reply.
    static func answer(in reply: TestReply, id: Int) throws -> JSONValue {
        for message in messages(in: reply) where message["id"]?.intValue == id { return message }
        throw RawConnectionError("no answer to request \(id) in: \(reply.status) \(reply.text)")
    }

    static func messages(in reply: TestReply) -> [JSONValue] {
        if let json = reply.json { return [json] }
        var parser = SSEParser()
        return parser.feed(reply.body.readableBytesView).compactMap { try? JSONValue(parsing: $0.data) }
    }
}

extension EventStream {
    /// The next JSON-RPC message on the stream (priming events skipped); nil at its end.
    mutating func nextMessage() async throws -> JSONValue? {
        while let message = try await next() {
            if let json = try? JSONValue(parsing: message.data) { return json }
        }
        return nil
    }
}

extension HTTPField.Name {
    static let mcpSessionId = HTTPField.Name("Mcp-Session-Id")!
    static let mcpProtocolVersion = HTTPField.Name("MCP-Protocol-Version")!
}

extension JSONValue {
    /// The element at `index` of an array; nil for anything else or past its end.
    subscript(index: Int) -> JSONValue? {
        guard let items = arrayValue, items.indices.contains(index) else { return nil }
        return items[index]
    }
}
