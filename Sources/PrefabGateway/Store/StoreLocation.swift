import Foundation
import PostgresNIO

/// Where the shared store is: a `postgres://user:password@host:port/database` URL, with
/// `?sslmode=disable|prefer|require` (disable by default: a loopback or private network).
public struct StoreLocation: Sendable, CustomStringConvertible {
    public var host: String
    public var port: Int
    public var username: String
    public var password: String?
    public var database: String?
    public var sslMode: String

    /// Parses `url`; nil when it is not a `postgres://` or `postgresql://` URL with a host.
    public init?(url: String) {
        guard let components = URLComponents(string: url),
            ["postgres", "postgresql"].contains(components.scheme ?? ""),
            let host = components.host, !host.isEmpty
        else { return nil }
        self.host = host
        self.port = components.port ?? 5432
        self.username = components.user ?? "postgres"
        self.password = components.password
        let path = components.path.hasPrefix("/") ? String(components.path.dropFirst()) : components.path
        self.database = path.isEmpty ? nil : path
        self.sslMode = components.queryItems?.first { $0.name == "sslmode" }?.value ?? "disable"
        guard ["disable", "prefer", "require"].contains(sslMode) else { return nil }
    }

    /// The URL without its password, for logs.
    public var description: String {
        "postgres://\(username)@\(host):\(port)/\(database ?? "")"
    }

    var clientConfiguration: PostgresClient.Configuration {
        let tls: PostgresClient.Configuration.TLS =
            switch sslMode {
            case "require": .require(.makeClientConfiguration())
            case "prefer": .prefer(.makeClientConfiguration())
            default: .disable
            }
        var configuration = PostgresClient.Configuration(
            host: host, port: port, username: username, password: password, database: database, tls: tls)
        // Events are kept minutes, not years: a commit need not wait for the disk (a crash of the
        // database loses at most its last few hundred milliseconds of events).
        configuration.options.additionalStartupParameters = [("synchronous_commit", "off")]
        configuration.options.maximumConnections = 8
        return configuration
    }
}
