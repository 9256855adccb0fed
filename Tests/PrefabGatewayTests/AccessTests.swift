import Foundation
import HTTPTypes
import HummingbirdWSClient
import Logging
import PrefabGateway
import PrefabKit
import Synchronization
import Testing

/// API keys, the owner of an invocation, and CORS, on a live gateway.
@Suite(.timeLimit(.minutes(1))) struct AccessTests {
    static let alice = "alice-0123456789abcdef"
    static let bob = "bob-0123456789abcdef"

    /// Writes a file and waits for one message, so that its invocation can be reached while it runs.
    /// It waits up to 50 s, near the test's time limit: a CI run of the whole suite took over 10 s
    /// (the wait before) for the test's requests, and the call had ended when the message came.
    static let writer = TestPrefab.streaming("writer") { _, context in
        try Data("hello".utf8).write(to: try context.outputDirectory.appendingPathComponent("note.txt"))
        try context.yield(.start())
        _ = try context.nextMessage(timeout: .seconds(50))
    }

    static func withKeys(_ test: @Sendable (LiveGateway) async throws -> Void) async throws {
        try await LiveGateway.run([Self.writer], configure: { $0.apiKeys = [Self.alice, Self.bob] }, test)
    }

    static func bearer(_ key: String) -> HTTPFields { [.authorization: "Bearer \(key)"] }

    @Test(arguments: [
        "/manifest", "/invocations/0123456789abcdef0123456789abcdef", "/files/0123456789abcdef0123456789abcdef/a",
        "/metrics",
    ])
    func everyRouteButHealthNeedsAKey(path: String) async throws {
        try await Self.withKeys { gateway in
            let missing = try await gateway.request(.get, path)
            #expect(missing.status == .unauthorized)
            #expect(missing.errorCode == "UNAUTHORIZED")
            #expect(missing.headers[.wwwAuthenticate] == "Bearer")
            let wrong = try await gateway.request(.get, path, headers: Self.bearer("mallory-0123456789abcdef"))
            #expect(wrong.status == .unauthorized)
            #expect(wrong.headers[.wwwAuthenticate] == #"Bearer error="invalid_token""#)
            // A real key with one character more, or one fewer, is no key.
            #expect(
                try await gateway.request(.get, path, headers: Self.bearer(Self.alice + "x")).status == .unauthorized)
            #expect(
                try await gateway.request(.get, path, headers: Self.bearer(String(Self.alice.dropLast()))).status
                    == .unauthorized)
            // Nor is one with 256 more: the length difference once went through 8 bits only.
            for junk in [256, 512] {
                let longer = Self.alice + String(repeating: "x", count: junk)
                #expect(
                    try await gateway.request(.get, path, headers: Self.bearer(longer)).status == .unauthorized,
                    "\(junk)")
            }
            let good = try await gateway.request(.get, path, headers: Self.bearer(Self.alice))
            #expect(good.status != .unauthorized)
            #expect(try await gateway.request(.get, "/health").status == .ok)
        }
    }

    @Test func invokeNeedsAKey() async throws {
        try await Self.withKeys { gateway in
            let reply = try await gateway.invoke("writer")
            #expect(reply.status == .unauthorized)
        }
    }

    @Test func anInvocationAndItsFilesAreReachableOnlyWithTheKeyThatStartedIt() async throws {
        try await Self.withKeys { gateway in
            var stream = try await gateway.openStream("writer", headers: Self.bearer(Self.alice))
            #expect(try await stream.nextEvent()?.type == "start")
            let invocation = try #require(stream.response.headers.first(name: "X-Invocation-Id"))
            #expect(
                try await gateway.request(.get, "/invocations/\(invocation)", headers: Self.bearer(Self.alice)).status
                    == .ok
            )
            for (method, path) in [
                (HTTPRequest.Method.get, "/invocations/\(invocation)"),
                (.get, "/invocations/\(invocation)/events"),
                (.delete, "/invocations/\(invocation)"),
            ] {
                let reply = try await gateway.request(method, path, headers: Self.bearer(Self.bob))
                #expect(reply.status == .notFound, "\(method) \(path)")
                #expect(reply.errorCode == "INVOCATION_NOT_FOUND")
            }
            let message = try await gateway.request(
                .post, "/invocations/\(invocation)/messages", body: #"{"type": "go"}"#, headers: Self.bearer(Self.bob))
            #expect(message.status == .notFound)
            // Alice lets it finish; its file is hers alone.
            let delivered = try await gateway.request(
                .post, "/invocations/\(invocation)/messages", body: #"{"type": "go"}"#, headers: Self.bearer(Self.alice)
            )
            #expect(delivered.status == .accepted)
            let rest = try await stream.rest().compactMap(\.prefabEvent)
            let url = try #require(rest.first { $0.type == "files" }?.data?.arrayValue?.first?["url"]?.stringValue)
            let path = String(url.dropFirst(gateway.baseURL.count))
            let own = try await gateway.request(.get, path, headers: Self.bearer(Self.alice))
            #expect(own.status == .ok)
            #expect(own.text == "hello")
            #expect(try await gateway.request(.get, path, headers: Self.bearer(Self.bob)).status == .notFound)
        }
    }

    @Test func aWebSocketNeedsAKeyToo() async throws {
        try await Self.withKeys { gateway in
            await #expect(throws: (any Error).self) {
                try await WebSocketClient.connect(
                    url: "ws://127.0.0.1:\(gateway.port)/invoke/writer/ws",
                    logger: Logger(label: "ws-test")
                ) { _, outbound, _ in
                    try await outbound.writeTextMessage(#"{"inputs": {}}"#)
                }
            }
            let events = Mutex<[String]>([])
            try await WebSocketClient.connect(
                url: "ws://127.0.0.1:\(gateway.port)/invoke/writer/ws",
                configuration: .init(additionalHeaders: Self.bearer(Self.alice)),
                logger: Logger(label: "ws-test")
            ) { inbound, outbound, _ in
                try await outbound.writeTextMessage(#"{"inputs": {}}"#)
                for try await message in inbound.messages(maxSize: 1 << 20) {
                    guard case .text(let text) = message else { continue }
                    let type = try JSONValue(parsing: text)["type"]?.stringValue ?? ""
                    events.withLock { $0.append(type) }
                    if type == "start" { try await outbound.writeTextMessage(#"{"type": "go"}"#) }
                }
            }
            #expect(events.withLock { $0 } == ["start", "files", "done"])
        }
    }

    // MARK: CORS

    static func withCORS(_ origins: [String], _ test: @Sendable (LiveGateway) async throws -> Void) async throws {
        try await LiveGateway.run([Self.writer], configure: { $0.corsOrigins = origins }, test)
    }

    static func preflight(from origin: String) -> HTTPFields {
        [.origin: origin, .accessControlRequestMethod: "POST", .accessControlRequestHeaders: "content-type"]
    }

    @Test func aPreflightFromAnAllowedOriginIsAnswered() async throws {
        try await Self.withCORS(["https://app.example.com", "http://localhost:3000"]) { gateway in
            let reply = try await gateway.request(
                .options, "/invoke/writer", headers: Self.preflight(from: "http://localhost:3000"))
            #expect(reply.status == .noContent)
            #expect(reply.headers[.accessControlAllowOrigin] == "http://localhost:3000")
            #expect(reply.headers[.accessControlAllowMethods]?.contains("POST") == true)
            #expect(reply.headers[.accessControlAllowHeaders]?.contains("content-type") == true)
            #expect(reply.headers[.vary] == "Origin")
            let simple = try await gateway.request(.get, "/manifest", headers: [.origin: "https://app.example.com"])
            #expect(simple.headers[.accessControlAllowOrigin] == "https://app.example.com")
            #expect(simple.headers[.accessControlExposeHeaders]?.contains("X-Invocation-Id") == true)
        }
    }

    @Test func aPreflightAllowsTheKeyAndResumingHeaders() async throws {
        try await Self.withCORS(["https://app.example.com"]) { gateway in
            // What the playground and an EventSource polyfill send: the key, and the resume point.
            let reply = try await gateway.request(
                .options, "/invocations/0123456789abcdef0123456789abcdef/events",
                headers: [
                    .origin: "https://app.example.com", .accessControlRequestMethod: "GET",
                    .accessControlRequestHeaders: "authorization, last-event-id",
                ])
            #expect(reply.status == .noContent)
            let allowed = (reply.headers[.accessControlAllowHeaders] ?? "").lowercased()
            #expect(allowed.contains("authorization"), "\(allowed)")
            #expect(allowed.contains("last-event-id"), "\(allowed)")
            #expect(reply.headers[.accessControlAllowMethods]?.contains("DELETE") == true)
        }
    }

    @Test func anotherOriginGetsNoCORSHeadersAndItsPreflightIs403() async throws {
        try await Self.withCORS(["https://app.example.com"]) { gateway in
            let reply = try await gateway.request(
                .options, "/invoke/writer", headers: Self.preflight(from: "https://evil.example"))
            #expect(reply.status == .forbidden)
            #expect(reply.errorCode == "ORIGIN_NOT_ALLOWED")
            #expect(reply.headers[.accessControlAllowOrigin] == nil)
            let simple = try await gateway.request(.get, "/manifest", headers: [.origin: "https://evil.example"])
            #expect(simple.headers[.accessControlAllowOrigin] == nil)
            #expect(simple.status == .forbidden)
            #expect(simple.errorCode == "ORIGIN_NOT_ALLOWED")
        }
    }

    @Test func corsIsOffByDefault() async throws {
        try await LiveGateway.run([Self.writer]) { gateway in
            let reply = try await gateway.request(
                .options, "/invoke/writer", headers: Self.preflight(from: "https://app.example.com"))
            #expect(reply.headers[.accessControlAllowOrigin] == nil)
            #expect(reply.status != .noContent)
            let simple = try await gateway.request(.get, "/manifest", headers: [.origin: "https://app.example.com"])
            #expect(simple.headers[.accessControlAllowOrigin] == nil)
        }
    }

    @Test func aPreflightNeedsNoKeyButTheRequestDoes() async throws {
        try await LiveGateway.run(
            [Self.writer],
            configure: {
                $0.corsOrigins = ["https://app.example.com"]
                $0.apiKeys = [Self.alice]
            }
        ) { gateway in
            let preflight = try await gateway.request(
                .options, "/invoke/writer", headers: Self.preflight(from: "https://app.example.com"))
            #expect(preflight.status == .noContent)
            let refused = try await gateway.request(.get, "/manifest", headers: [.origin: "https://app.example.com"])
            #expect(refused.status == .unauthorized)
            // The browser can read why: the error carries the CORS headers too.
            #expect(refused.headers[.accessControlAllowOrigin] == "https://app.example.com")
        }
    }

    // MARK: Keys from a file or a list

    static func keysFile(_ text: String) throws -> String {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("keys-\(UUID().uuidString).txt")
        try text.write(to: url, atomically: true, encoding: .utf8)
        return url.path
    }

    @Test func keysComeFromAFileWithCommentsAndFromAList() throws {
        let file = try Self.keysFile("# team keys\n\n  \(Self.alice)  \n# old: short\n\(Self.bob)\n")
        defer { try? FileManager.default.removeItem(atPath: file) }
        let keys = try APIKeys.load(file: file, list: " carol-0123456789abcdef , ")
        #expect(keys == [Self.alice, Self.bob, "carol-0123456789abcdef"])
    }

    @Test(arguments: ["short-key-12345", "has space-0123456789", "tab\t-0123456789abcdef"])
    func aKeyUnder16CharactersOrWithSpacesStopsTheStart(_ key: String) throws {
        // 15 characters is one short of the minimum.
        let file = try Self.keysFile("\(Self.alice)\n\(key)\n")
        defer { try? FileManager.default.removeItem(atPath: file) }
        #expect(throws: APIKeyError.self) { try APIKeys.load(file: file, list: nil) }
        #expect(throws: APIKeyError.self) { try APIKeys.load(file: nil, list: "\(Self.alice),\(key)") }
        #expect(try APIKeys.load(file: nil, list: "exactly-16-chars") == ["exactly-16-chars"])
    }

    @Test func aMissingKeysFileStopsTheStart() {
        #expect(throws: APIKeyError.self) { try APIKeys.load(file: "/nonexistent/keys.txt", list: nil) }
    }
}
