import Foundation
import HTTPTypes
import PrefabGateway
import PrefabKit
import Synchronization
import Testing

/// What a web page can make a loopback gateway do: a page on another site (CSRF) or on a rebound
/// DNS name is refused before any work; clients that are not browsers, and the gateway's own
/// pages, are served as before. Raw requests, so that `Host` and `Origin` are exactly as sent.
@Suite(.timeLimit(.minutes(1))) struct BrowserAccessTests {
    /// Counts its calls: a refused request must not run it.
    final class Calls: Sendable {
        private let count = Mutex(0)
        func add() { count.withLock { $0 += 1 } }
        var value: Int { count.withLock { $0 } }
    }

    static func echo(_ calls: Calls) -> TestPrefab {
        TestPrefab.result("echo") { inputs, _ in
            calls.add()
            return inputs.jsonValue
        }
    }

    /// The raw answer to one request on its own connection (`Connection: close`); `host` nil sends
    /// no Host at all.
    static func send(
        _ gateway: LiveGateway, _ method: String = "POST", _ path: String = "/invoke/echo", host: String?,
        headers: [String] = [], body: String = #"{"inputs": {}}"#, version: String = "HTTP/1.1"
    ) async throws -> String {
        var lines = ["\(method) \(path) \(version)"]
        if let host { lines.append("Host: \(host)") }
        lines += headers + ["Content-Length: \(body.utf8.count)", "Connection: close"]
        let connection = try RawConnection(port: gateway.port)
        try connection.sendRaw(Array((lines.joined(separator: "\r\n") + "\r\n\r\n" + body).utf8))
        return try await connection.readToEnd()
    }

    static func status(_ answer: String) -> Int {
        Int(answer.split(separator: " ", maxSplits: 2).dropFirst().first ?? "") ?? 0
    }

    static func errorCode(_ answer: String) -> String? {
        guard let body = answer.range(of: "\r\n\r\n").map({ answer[$0.upperBound...] }) else { return nil }
        return (try? JSONValue(parsing: String(body)))?["error"]?["code"]?.stringValue
    }

    // MARK: Cross-site requests

    @Test func aCrossSiteCallIsRefusedBeforeTheFunctionRuns() async throws {
        let calls = Calls()
        try await LiveGateway.run([Self.echo(calls)]) { gateway in
            // The request of the issue: a "simple" request a page on any site can send with fetch.
            let answer = try await Self.send(
                gateway, host: "localhost:\(gateway.port)",
                headers: ["Content-Type: text/plain", "Origin: http://evil.example"])
            #expect(Self.status(answer) == 403, "\(answer)")
            #expect(Self.errorCode(answer) == "ORIGIN_NOT_ALLOWED")
            #expect(answer.contains("http://evil.example"))
            #expect(calls.value == 0)
        }
    }

    @Test(arguments: [
        "null",  // sandboxed frames, file: pages
        "http://localhost:1",  // another local service
        "https://127.0.0.1.evil.example",
        "not an origin",
    ])
    func anOriginThatIsNotTheGatewaysOwnIsRefused(_ origin: String) async throws {
        let calls = Calls()
        try await LiveGateway.run([Self.echo(calls)]) { gateway in
            for method in ["POST", "GET"] {
                let answer = try await Self.send(
                    gateway, method, method == "GET" ? "/manifest" : "/invoke/echo", host: "127.0.0.1:\(gateway.port)",
                    headers: ["Origin: \(origin)"], body: method == "GET" ? "" : #"{"inputs": {}}"#)
                #expect(Self.status(answer) == 403, "\(method) \(answer)")
                #expect(Self.errorCode(answer) == "ORIGIN_NOT_ALLOWED")
            }
            #expect(calls.value == 0)
        }
    }

    @Test func theGatewaysOwnPagesAndClientsWithoutOriginAreServed() async throws {
        let calls = Calls()
        try await LiveGateway.run([Self.echo(calls)]) { gateway in
            let port = gateway.port
            // The playground: its page's origin is the host it was loaded from, in any case.
            for (host, origin) in [
                ("127.0.0.1:\(port)", "http://127.0.0.1:\(port)"), ("localhost:\(port)", "http://LOCALHOST:\(port)"),
                ("[::1]:\(port)", "http://[::1]:\(port)"),
            ] {
                let answer = try await Self.send(gateway, host: host, headers: ["Origin: \(origin)"])
                #expect(Self.status(answer) == 200, "\(origin): \(answer)")
            }
            // curl, Python, the CLI: no Origin.
            let plain = try await Self.send(gateway, host: "127.0.0.1:\(port)")
            #expect(Self.status(plain) == 200, "\(plain)")
            #expect(try await gateway.invoke("echo").status == .ok)
            #expect(calls.value == 5)
        }
    }

    @Test func aCORSOriginAndThePublicURLOriginAreAllowed() async throws {
        let calls = Calls()
        try await LiveGateway.run(
            [Self.echo(calls)],
            configure: {
                $0.corsOrigins = ["https://app.example.com"]
                $0.publicBaseURL = "https://gw.example.com"
            }
        ) { gateway in
            let host = "127.0.0.1:\(gateway.port)"
            let cors = try await Self.send(gateway, host: host, headers: ["Origin: https://app.example.com"])
            #expect(Self.status(cors) == 200, "\(cors)")
            #expect(cors.contains("Access-Control-Allow-Origin: https://app.example.com"))
            // Behind a proxy: the page comes from the public URL, the proxy sends the gateway's Host.
            let proxied = try await Self.send(gateway, host: host, headers: ["Origin: https://gw.example.com"])
            #expect(Self.status(proxied) == 200, "\(proxied)")
            let other = try await Self.send(gateway, host: host, headers: ["Origin: https://other.example.com"])
            #expect(Self.status(other) == 403, "\(other)")
        }
    }

    // MARK: DNS rebinding

    @Test func aReboundHostIsRefusedBeforeTheFunctionRuns() async throws {
        let calls = Calls()
        try await LiveGateway.run([Self.echo(calls)]) { gateway in
            // A page on rebound.example, whose name now points at 127.0.0.1, is its own origin.
            let port = gateway.port
            for host in ["rebound.example:\(port)", "rebound.example", "127.0.0.1.nip.io:\(port)", "localhost.evil"] {
                let answer = try await Self.send(
                    gateway, host: host, headers: ["Origin: http://\(host)", "Content-Type: text/plain"])
                #expect(Self.status(answer) == 421, "\(host): \(answer)")
                #expect(Self.errorCode(answer) == "HOST_NOT_ALLOWED")
                let read = try await Self.send(gateway, "GET", "/manifest", host: host, body: "")
                #expect(Self.status(read) == 421, "\(host): \(read)")
            }
            #expect(calls.value == 0)
        }
    }

    @Test func loopbackNamesAndIPAddressesAreServedWhateverTheBinding() async throws {
        let calls = Calls()
        try await LiveGateway.run([Self.echo(calls)], configure: { $0.host = "0.0.0.0" }) { gateway in
            let port = gateway.port
            // A browser connects to an IP literal itself, so it cannot be rebound: the machine's own
            // addresses, unknowable in general, are all served.
            for host in [
                "127.0.0.1:\(port)", "127.0.0.2", "localhost", "LocalHost.:\(port)", "app.localhost:\(port)",
                "[::1]:\(port)", "10.1.2.3:\(port)", "[fe80::1]",
            ] {
                let answer = try await Self.send(gateway, host: host)
                #expect(Self.status(answer) == 200, "\(host): \(answer)")
            }
            // HTTP/1.0 without a Host: not a browser.
            let old = try await Self.send(gateway, host: nil, version: "HTTP/1.0")
            #expect(Self.status(old) == 200, "\(old)")
        }
    }

    @Test func allowedHostsAndThePublicURLHostAreServed() async throws {
        try await LiveGateway.run(
            [Self.echo(Calls())],
            configure: {
                $0.allowedHosts = ["gw.internal", "*.example.org"]
                $0.publicBaseURL = "https://gw.example.com"
            }
        ) { gateway in
            for host in [
                "gw.internal:\(gateway.port)", "GW.INTERNAL", "a.example.org", "a.b.example.org", "gw.example.com",
            ] {
                let answer = try await Self.send(gateway, host: host)
                #expect(Self.status(answer) == 200, "\(host): \(answer)")
            }
            for host in ["example.org", "gw.internal.evil", "x.gw.internal", "evilexample.org"] {
                let answer = try await Self.send(gateway, host: host)
                #expect(Self.status(answer) == 421, "\(host): \(answer)")
            }
        }
    }

    @Test func anyHostIsServedWithAStarButTheFileURLsStayClean() async throws {
        let writer = TestPrefab.result("writer") { _, context in
            try Data("x".utf8).write(to: try context.outputDirectory.appendingPathComponent("a.txt"))
            return .null
        }
        try await LiveGateway.run([writer], configure: { $0.allowedHosts = ["*"] }) { gateway in
            let clean = try await Self.send(gateway, "POST", "/invoke/writer", host: "any.example:81", body: "")
            #expect(Self.status(clean) == 200, "\(clean)")
            #expect(clean.contains("http://any.example:81/files/"), "\(clean)")
            // A Host that is not a plain host[:port] never reaches a file URL.
            let hostile = try await Self.send(
                gateway, "POST", "/invoke/writer", host: "evil.example/x?#\"<", body: "")
            #expect(Self.status(hostile) == 200, "\(hostile)")
            #expect(!hostile.contains("evil.example"), "\(hostile)")
            #expect(hostile.contains("http://127.0.0.1:"), "\(hostile)")
        }
    }

    @Test func aWebSocketUpgradeFromAnotherSiteIsRefused() async throws {
        try await LiveGateway.run([Self.echo(Calls())]) { gateway in
            let upgrade = [
                "Connection: Upgrade", "Upgrade: websocket", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                "Sec-WebSocket-Version: 13",
            ]
            let host = "127.0.0.1:\(gateway.port)"
            let refused = try await Self.send(
                gateway, "GET", "/invoke/echo/ws", host: host, headers: upgrade + ["Origin: http://evil.example"],
                body: "")
            #expect(Self.status(refused) == 403, "\(refused)")
            #expect(Self.errorCode(refused) == "ORIGIN_NOT_ALLOWED")
            let rebound = try await Self.send(
                gateway, "GET", "/invoke/echo/ws", host: "rebound.example", headers: upgrade, body: "")
            #expect(Self.status(rebound) == 421, "\(rebound)")
            // The same upgrade from the gateway's own page is accepted.
            let connection = try RawConnection(port: gateway.port)
            let request = (["GET /invoke/echo/ws HTTP/1.1", "Host: \(host)", "Origin: http://\(host)"] + upgrade)
                .joined(separator: "\r\n")
            try connection.sendRaw(Array((request + "\r\n\r\n").utf8))
            let accepted = try await connection.readOffPool(until: "\r\n\r\n")
            #expect(accepted.hasPrefix("HTTP/1.1 101"), "\(accepted)")
        }
    }

    @Test func thePlaygroundCannotBeFramedByAnotherSite() async throws {
        // A page that framed it could lay its own buttons over Run (clickjacking).
        try await LiveGateway.run([Self.echo(Calls())]) { gateway in
            for path in ["/", "/playground/playground.js"] {
                let page = try await gateway.request(.get, path)
                #expect(page.status == .ok)
                #expect(page.headers[.contentSecurityPolicy] == "frame-ancestors 'none'", "\(path)")
                #expect(page.headers[.init("X-Frame-Options")!] == "DENY", "\(path)")
                #expect(page.headers[.xContentTypeOptions] == "nosniff", "\(path)")
            }
        }
    }

    // MARK: Output files as documents

    @Test func outputFilesCannotScriptTheGatewaysOrigin() async throws {
        let page = TestPrefab.result("page") { _, context in
            let directory = try context.outputDirectory
            try Data("<script>fetch('/manifest')</script>".utf8).write(to: directory.appendingPathComponent("a.html"))
            try Data("<svg xmlns='http://www.w3.org/2000/svg'><script>1</script></svg>".utf8)
                .write(to: directory.appendingPathComponent("b.svg"))
            try Data("<script>2</script>".utf8).write(to: directory.appendingPathComponent("c.txt"))
            return .null
        }
        try await LiveGateway.run([page]) { gateway in
            let reply = try await gateway.invoke("page")
            let files = try #require(reply.json?["files"]?.arrayValue)
            #expect(files.count == 3)
            for file in files {
                let url = try #require(file["url"]?.stringValue)
                let served = try await gateway.request(.get, String(url.dropFirst(gateway.baseURL.count)))
                #expect(served.status == .ok)
                #expect(served.headers[.xContentTypeOptions] == "nosniff", "\(url)")
                #expect(served.headers[.contentSecurityPolicy] == "sandbox", "\(url)")
            }
        }
    }
}
