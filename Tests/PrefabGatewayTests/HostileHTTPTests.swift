import Foundation
import PrefabGateway
import PrefabKit
import Synchronization
import Testing

/// Malformed and slow requests found by `scripts/http-fuzz.py`: each gets a clear answer or a
/// closed connection within a bound, never a 500 or a connection held forever.
@Suite(.timeLimit(.minutes(1))) struct HostileHTTPTests {
    static let echo = TestPrefab.result("echo") { inputs, _ in inputs.jsonValue }

    static func exchange(
        _ request: String, shutdown: Bool = false, configure: (inout GatewayConfiguration) -> Void = { _ in }
    )
        async throws -> String
    {
        try await exchangeTimed(request, shutdown: shutdown, configure: configure).answer
    }

    /// `exchange`, with the time from the request's first byte to the connection's end (the
    /// gateway's start and stop, slow on a loaded machine, are not in it).
    static func exchangeTimed(
        _ request: String, shutdown: Bool = false, configure: (inout GatewayConfiguration) -> Void = { _ in }
    )
        async throws -> (answer: String, took: Duration)
    {
        let result = Mutex(("", Duration.zero))
        try await LiveGateway.run([echo], configure: configure) { gateway in
            let connection = try RawConnection(port: gateway.port)
            let started = ContinuousClock.now
            try connection.sendRaw(Array(request.utf8))
            if shutdown { connection.shutdownWrite() }
            let text = try await connection.readToEnd()
            result.withLock { $0 = (text, ContinuousClock.now - started) }
        }
        return result.withLock { $0 }
    }

    @Test(arguments: ["X-Test: a\u{01}b", "Content-Type: \u{7f}/\u{7f}"])
    func aControlCharacterInAHeaderIsA400WithTheJSONErrorBody(_ header: String) async throws {
        // The first request's parse error used to leave the connection waiting forever.
        let answer = try await Self.exchange("GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\(header)\r\n\r\n")
        #expect(answer.hasPrefix("HTTP/1.1 400"), "\(answer)")
        #expect(answer.contains(#""code":"INVALID_REQUEST""#), "\(answer)")
    }

    @Test(arguments: ["X-Test : a", "Host : 127.0.0.1", "Transfer-Encoding : chunked", "X-Test\t: a"])
    func whitespaceBeforeAHeadersColonIsA400(_ header: String) async throws {
        // RFC 9112 §5.1: a server must refuse it with 400; proxies that read the name otherwise
        // disagree about where a request ends (request smuggling).
        let answer = try await Self.exchange("GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\(header)\r\n\r\n")
        #expect(answer.hasPrefix("HTTP/1.1 400"), "\(answer)")
        #expect(answer.contains(#""code":"INVALID_REQUEST""#), "\(answer)")
    }

    @Test(arguments: ["Connection: Upgrade\r\nUpgrade: h2c", "Upgrade: h2c", "Connection: Upgrade\r\nUpgrade: TLS/1.0"])
    func anUpgradeToAProtocolTheGatewayDoesNotSpeakIsServedAsPlainHTTP(_ upgrade: String) async throws {
        // RFC 9110 §7.8 lets a server ignore Upgrade; the connection used to close with no answer.
        let answer = try await Self.exchange(
            "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\(upgrade)\r\nConnection: close\r\n\r\n")
        #expect(answer.hasPrefix("HTTP/1.1 200"), "\(answer)")
        #expect(answer.contains(#""status":"ok""#), "\(answer)")
    }

    @Test(arguments: [
        ("Content-Length: 100", #"{"inputs": "#),
        ("Transfer-Encoding: chunked", "zz\r\nhello\r\n0\r\n\r\n"),
        ("Transfer-Encoding: chunked", "100\r\nabc"),
    ])
    func aBodyCutShortOrBadlyFramedIsA400Not500(_ framing: String, _ body: String) async throws {
        let request = "POST /invoke/echo HTTP/1.1\r\nHost: 127.0.0.1\r\n\(framing)\r\n\r\n\(body)"
        let answer = try await Self.exchange(request, shutdown: true)
        #expect(answer.hasPrefix("HTTP/1.1 400"), "\(answer)")
        #expect(answer.contains(#""code":"INVALID_REQUEST""#), "\(answer)")
    }

    @Test func aDeclaredLengthOverTheLimitIs413BeforeTheBodyIsSent() async throws {
        let request =
            "POST /invoke/echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 10485760\r\nConnection: close\r\n\r\n"
        let answer = try await Self.exchange(request)
        #expect(answer.hasPrefix("HTTP/1.1 413"), "\(answer)")
        #expect(answer.contains(#""code":"PAYLOAD_TOO_LARGE""#), "\(answer)")
    }

    @Test(arguments: ["", "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: a"])
    func aClientThatNeverFinishesItsHeadersIsClosedAfterTheIdleTimeout(_ partial: String) async throws {
        // Without the idle timeout the connection stays open until the raw connection's 10 s
        // receive timeout; with it, it closes 0.5 s after the last byte.
        let (answer, took) = try await Self.exchangeTimed(partial) { $0.idleTimeout = .milliseconds(500) }
        #expect(answer.isEmpty)
        #expect(took < .seconds(8))
    }
}
