import AsyncHTTPClient
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import PrefabGateway
import PrefabKit

/// A prefab made in a test: one function, its manifest and its implementation.
struct TestPrefab {
    var folder: String
    var manifest: FunctionManifest
    var implementation: PrefabFunction

    static func streaming(
        _ name: String,
        parameters: [ParameterManifest] = [],
        _ body: @escaping StreamingFunction
    ) -> TestPrefab {
        TestPrefab(
            folder: name,
            manifest: FunctionManifest(name: name, streaming: true, parameters: parameters),
            implementation: .streaming(body)
        )
    }

    static func asyncStreaming(
        _ name: String,
        parameters: [ParameterManifest] = [],
        _ body: @escaping AsyncStreamingFunction
    ) -> TestPrefab {
        TestPrefab(
            folder: name,
            manifest: FunctionManifest(name: name, streaming: true, parameters: parameters),
            implementation: .asyncStreaming(body)
        )
    }

    static func result(
        _ name: String,
        parameters: [ParameterManifest] = [],
        _ body: @escaping ResultFunction
    ) -> TestPrefab {
        TestPrefab(
            folder: name,
            manifest: FunctionManifest(name: name, streaming: false, parameters: parameters),
            implementation: .result(body)
        )
    }
}

/// A gateway running on a loopback port for one test, with its own prefabs and data folders.
struct LiveGateway: Sendable {
    let client: any TestClientProtocol
    let port: Int
    let dataDirectory: URL
    /// The gateway behind the server, for what only it can tell.
    let loaded: Gateway

    var baseURL: String { "http://127.0.0.1:\(port)" }

    /// Writes each prefab's manifest (and any raw manifest text by folder, and other files by path)
    /// into a fresh prefabs folder, starts the gateway on a free
    /// port, runs `test`, and shuts everything down.
    static func run(
        _ prefabs: [TestPrefab],
        rawManifests: [String: String] = [:],
        files: [String: String] = [:],
        configure: (inout GatewayConfiguration) -> Void = { _ in },
        _ test: @Sendable (LiveGateway) async throws -> Void
    ) async throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("gateway-test-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: root) }
        let prefabsDirectory = root.appendingPathComponent("prefabs")
        var compiled: [String: [String: PrefabFunction]] = [:]
        for (folder, group) in Dictionary(grouping: prefabs, by: \.folder) {
            let manifest = PrefabManifest(name: folder, functions: group.map(\.manifest))
            try writeManifest(manifest.json.jsonString(pretty: true), folder: folder, in: prefabsDirectory)
            compiled[folder] = Dictionary(uniqueKeysWithValues: group.map { ($0.manifest.name, $0.implementation) })
        }
        for (folder, text) in rawManifests {
            try writeManifest(text, folder: folder, in: prefabsDirectory)
        }
        for (path, text) in files {
            let url = prefabsDirectory.appendingPathComponent(path)
            try FileManager.default.createDirectory(
                at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try text.write(to: url, atomically: true, encoding: .utf8)
            if text.hasPrefix("#!") {
                try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: url.path)
            }
        }
        try FileManager.default.createDirectory(at: prefabsDirectory, withIntermediateDirectories: true)
        var configuration = GatewayConfiguration()
        configuration.port = 0
        configuration.prefabsDirectory = prefabsDirectory
        configuration.dataDirectory = root.appendingPathComponent("data")
        // A disconnect cancels at once unless a test is about resuming (which sets its own grace).
        configuration.resumeGrace = .zero
        configure(&configuration)
        var logger = Logger(label: "gateway-test")
        logger.logLevel = .warning
        let gateway = try Gateway.load(configuration: configuration, compiled: compiled, logger: logger)
        let dataDirectory = configuration.dataDirectory
        try await gateway.makeApplication().test(.live) { client in
            guard let port = client.port else { throw RawConnectionError("the live test client has no port") }
            try await test(LiveGateway(client: client, port: port, dataDirectory: dataDirectory, loaded: gateway))
        }
    }

    static func writeManifest(_ text: String, folder: String, in prefabsDirectory: URL) throws {
        let directory = prefabsDirectory.appendingPathComponent(folder)
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        try text.write(to: directory.appendingPathComponent("prefab-manifest.json"), atomically: true, encoding: .utf8)
    }

    // MARK: Requests

    /// Sends a request with AsyncHTTPClient, which, like most clients, opens a new connection
    /// after a response that said `Connection: close`.
    @discardableResult
    func request(
        _ method: HTTPRequest.Method,
        _ uri: String,
        body: String? = nil,
        headers: HTTPFields = [:]
    ) async throws -> TestReply {
        var request = HTTPClientRequest(url: baseURL + uri)
        request.method = .init(rawValue: method.rawValue)
        for field in headers { request.headers.add(name: field.name.rawName, value: field.value) }
        if let body { request.body = .bytes(ByteBuffer(string: body)) }
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
        var fields = HTTPFields()
        for (name, value) in response.headers {
            if let fieldName = HTTPField.Name(name) { fields.append(HTTPField(name: fieldName, value: value)) }
        }
        let collected = try await response.body.collect(upTo: 64 << 20)
        return TestReply(status: HTTPResponse.Status(code: Int(response.status.code)), headers: fields, body: collected)
    }

    func invoke(_ function: String, _ body: String = #"{"inputs": {}}"#, headers: HTTPFields = [:]) async throws
        -> TestReply
    {
        try await request(.post, "/invoke/\(function)", body: body, headers: headers)
    }

    /// Opens `GET /invocations/<id>/events` with a streaming client.
    func openEvents(_ id: String, after: Int) async throws -> EventStream {
        let request = HTTPClientRequest(url: "\(baseURL)/invocations/\(id)/events?after=\(after)")
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
        return EventStream(response: response)
    }

    /// Opens `POST /invoke/<function>` with a streaming client, for tests that watch events arrive.
    func openStream(
        _ function: String,
        _ body: String = #"{"inputs": {}}"#,
        headers: HTTPFields = [:]
    ) async throws -> EventStream {
        var request = HTTPClientRequest(url: "\(baseURL)/invoke/\(function)")
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        for field in headers { request.headers.add(name: field.name.rawName, value: field.value) }
        request.body = .bytes(ByteBuffer(string: body))
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
        return EventStream(response: response)
    }
}

/// The events of a live SSE response, parsed as they arrive.
struct EventStream {
    let response: HTTPClientResponse
    private var chunks: HTTPClientResponse.Body.AsyncIterator
    private var parser = SSEParser()
    private var pending: [SSEMessage] = []
    /// Every byte received so far, for checks on the raw framing.
    private(set) var raw = ""

    init(response: HTTPClientResponse) {
        self.response = response
        self.chunks = response.body.makeAsyncIterator()
    }

    /// The next message, or nil at the end of the stream.
    mutating func next() async throws -> SSEMessage? {
        while pending.isEmpty {
            guard let chunk = try await chunks.next() else { return nil }
            raw += String(buffer: chunk)
            pending += parser.feed(chunk.readableBytesView)
        }
        return pending.removeFirst()
    }

    /// Reads until the raw stream contains `text`; false if it ended first.
    mutating func readRaw(until text: String) async throws -> Bool {
        while !raw.contains(text) {
            guard let chunk = try await chunks.next() else { return false }
            raw += String(buffer: chunk)
            pending += parser.feed(chunk.readableBytesView)
        }
        return true
    }

    /// The next message as an event.
    mutating func nextEvent() async throws -> PrefabEvent? {
        guard let message = try await next() else { return nil }
        return message.prefabEvent
    }

    /// Every remaining message.
    mutating func rest() async throws -> [SSEMessage] {
        var messages: [SSEMessage] = []
        while let message = try await next() { messages.append(message) }
        return messages
    }
}

extension SSEMessage {
    /// The event as the function yielded it: without the `invocation_id` the gateway adds to the
    /// first event (which `InvocationTests` checks).
    var prefabEvent: PrefabEvent? {
        guard var event = (try? JSONValue(parsing: data)).flatMap(PrefabEvent.init(json:)) else { return nil }
        if lastEventId == "1" { event["invocation_id"] = nil }
        return event
    }
}

/// A whole response.
struct TestReply {
    var status: HTTPResponse.Status
    var headers: HTTPFields
    var body: ByteBuffer
}

extension TestReply {
    var json: JSONValue? { try? JSONValue(parsing: Array(body.readableBytesView)) }
    var text: String { String(buffer: body) }

    /// The events of an SSE body.
    var events: [PrefabEvent] {
        var parser = SSEParser()
        return parser.feed(body.readableBytesView).compactMap(\.prefabEvent)
    }

    /// `error.code` of a JSON error body.
    var errorCode: String? { json?["error"]?["code"]?.stringValue }
}
