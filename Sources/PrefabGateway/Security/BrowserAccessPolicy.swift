import Foundation
import HTTPTypes
import Hummingbird
import PrefabKit

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// What keeps web pages from driving the gateway: which `Host` and `Origin` a request may carry.
///
/// - **DNS rebinding.** A page on `rebound.example` whose name is made to point at 127.0.0.1 talks
///   to the gateway as its own origin, so CORS does not stop it; but its requests say
///   `Host: rebound.example`. Only hosts that cannot be rebound are served: IP literals (a
///   browser connects to exactly that address), `localhost` and `*.localhost` (browsers resolve
///   them to loopback themselves), the name the gateway listens on, the `--public-url` host, and
///   the `--allowed-host` names.
/// - **Cross-site requests (CSRF).** A page on another origin can send a request (a form-free
///   `fetch`) even when it cannot read the answer. Browsers mark such a request with `Origin`: one
///   that is neither the gateway's own origin (its `Host`), the `--public-url` origin, nor on
///   `--cors-origin` is refused, as is `Origin: null` (sandboxed frames, `file:` pages).
///
/// Clients that are not browsers (curl, Python, the CLI) send no `Origin`, and any `Host` they
/// send is one of the above unless it was made up, so they are not affected.
struct BrowserAccessPolicy: Sendable {
    /// Host names allowed besides loopback names and IP literals, lowercased, without a port.
    private let hosts: Set<String>
    /// Suffixes (`.example.com`) from `--allowed-host *.example.com`.
    private let hostSuffixes: [String]
    /// `--allowed-host '*'`: any host (behind a proxy that checks it).
    private let anyHost: Bool
    /// Origins allowed besides the request's own, normalized.
    private let origins: Set<Origin>

    init(configuration: GatewayConfiguration) {
        var hosts = Set<String>()
        var suffixes: [String] = []
        var anyHost = false
        for entry in configuration.allowedHosts.map({ Self.normalizedName($0) }) {
            if entry == "*" {
                anyHost = true
            } else if entry.hasPrefix("*.") {
                suffixes.append(String(entry.dropFirst()))
            } else if !entry.isEmpty {
                hosts.insert(entry)
            }
        }
        // The name the gateway listens on, when it is one (an address is an IP literal anyway).
        hosts.insert(Self.normalizedName(configuration.host))
        var origins = Set(configuration.corsOrigins.compactMap(Origin.init))
        if let publicURL = configuration.publicBaseURL, let origin = Origin(publicURL) {
            origins.insert(origin)
            hosts.insert(origin.host)
        }
        self.hosts = hosts
        self.hostSuffixes = suffixes
        self.anyHost = anyHost
        self.origins = origins
    }

    /// Why `request` is refused, or nil when it may go on.
    func refusal(of request: HTTPRequest) -> GatewayError? {
        // No Host at all (HTTP/1.0): not a browser, which always sends one.
        if let authority = request.authority, !isAllowed(authority: authority) {
            let shown = String(authority.prefix(100))
            return GatewayError(
                .misdirectedRequest,
                .hostNotAllowed,
                "this gateway does not serve the host '\(shown)': use its address or localhost, or start it with --allowed-host"
            )
        }
        guard let origin = request.headerFields[.origin] else { return nil }
        guard !isAllowed(origin: origin, authority: request.authority) else { return nil }
        let shown = String(origin.prefix(100))
        guard Origin(origin) != nil else {
            // `null` (sandboxed frames, file: pages) or no origin at all: nothing can allow it.
            return GatewayError(
                .forbidden, .originNotAllowed, "pages with the origin '\(shown)' may not call this gateway")
        }
        return GatewayError(
            .forbidden,
            .originNotAllowed,
            "pages from \(shown) may not call this gateway: start it with --cors-origin \(shown) to allow them"
        )
    }

    func isAllowed(authority: String) -> Bool {
        guard !anyHost else { return true }
        guard let host = Self.host(ofAuthority: authority) else { return false }
        if host.isIPLiteral { return true }
        let name = host.name
        return name == "localhost" || name.hasSuffix(".localhost") || hosts.contains(name)
            || hostSuffixes.contains { name.hasSuffix($0) }
    }

    private func isAllowed(origin text: String, authority: String?) -> Bool {
        guard let origin = Origin(text) else { return false }
        if origins.contains(origin) { return true }
        // Its own origin: the page came from the host this request is sent to.
        guard let authority, let host = Self.host(ofAuthority: authority) else { return false }
        // A page's origin is always http(s); a WebSocket client that is no browser (Hummingbird's,
        // for one) may name the server it connects to as `ws://host`, without the port.
        if origin.scheme == "ws" || origin.scheme == "wss" { return host.name == origin.host }
        return host.name == origin.host && (host.port ?? origin.defaultPort) == origin.port
    }

    /// The host of a `Host` header (`name[:port]`, `[v6][:port]`), lowercased, and its port.
    static func host(ofAuthority authority: String) -> (name: String, port: Int?, isIPLiteral: Bool)? {
        var rest = Substring(authority.lowercased())
        var name: String
        var isIPLiteral: Bool
        if rest.hasPrefix("[") {
            guard let close = rest.firstIndex(of: "]") else { return nil }
            name = String(rest[rest.index(after: rest.startIndex)..<close])
            guard Self.isIPv6(name) else { return nil }
            isIPLiteral = true
            rest = rest[rest.index(after: close)...]
        } else {
            let end = rest.firstIndex(of: ":") ?? rest.endIndex
            name = normalizedName(String(rest[..<end]))
            isIPLiteral = Self.isIPv4(name)
            rest = rest[end...]
        }
        var port: Int?
        if !rest.isEmpty {
            guard rest.first == ":", let number = Int(rest.dropFirst()), (0...65535).contains(number) else {
                return nil
            }
            port = number
        }
        guard !name.isEmpty else { return nil }
        return (name, port, isIPLiteral)
    }

    /// A host name as compared: lowercased, without the trailing dot of a fully qualified name.
    private static func normalizedName(_ name: String) -> String {
        let lowered = name.lowercased()
        return lowered.hasSuffix(".") ? String(lowered.dropLast()) : lowered
    }

    static func isIPv4(_ text: String) -> Bool {
        var address = in_addr()
        return inet_pton(AF_INET, text, &address) == 1
    }

    static func isIPv6(_ text: String) -> Bool {
        var address = in6_addr()
        return inet_pton(AF_INET6, text, &address) == 1
    }

    /// An origin, `scheme://host[:port]`, with its port made explicit so that
    /// `https://a.example` and `https://a.example:443` are the same.
    struct Origin: Hashable, Sendable {
        var scheme: String
        var host: String
        var port: Int

        var defaultPort: Int { Self.defaultPort(of: scheme) }

        static func defaultPort(of scheme: String) -> Int { scheme == "https" || scheme == "wss" ? 443 : 80 }

        init?(_ text: String) {
            let lowered = text.lowercased()
            guard let separator = lowered.range(of: "://") else { return nil }
            scheme = String(lowered[..<separator.lowerBound])
            guard ["http", "https", "ws", "wss"].contains(scheme) else { return nil }
            var authority = lowered[separator.upperBound...]
            // A --public-url may carry a path; an origin never does.
            if let slash = authority.firstIndex(of: "/") { authority = authority[..<slash] }
            guard let parsed = BrowserAccessPolicy.host(ofAuthority: String(authority)) else { return nil }
            host = parsed.name
            port = parsed.port ?? Self.defaultPort(of: scheme)
        }
    }
}

extension HTTPResponse.Status {
    /// 421: the request was sent to a host this server does not answer for.
    static var misdirectedRequest: Self { .init(code: 421, reasonPhrase: "Misdirected Request") }
}

extension PrefabError.Code {
    public static let hostNotAllowed: Self = "HOST_NOT_ALLOWED"
}

/// Refuses, before any work, requests that a web page on another site could have made (see
/// `BrowserAccessPolicy`), with 421 `HOST_NOT_ALLOWED` or 403 `ORIGIN_NOT_ALLOWED`.
struct BrowserAccessMiddleware<Context: RequestContext>: RouterMiddleware {
    let policy: BrowserAccessPolicy

    func handle(
        _ request: Request,
        context: Context,
        next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        if let refusal = policy.refusal(of: request.head) { throw refusal }
        return try await next(request, context)
    }
}
