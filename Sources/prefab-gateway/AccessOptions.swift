import ArgumentParser
import PrefabGateway

/// The `serve` flags that say who may call the gateway.
struct AccessOptions: ParsableArguments {
    @Option(
        help:
            "A file of API keys, one per line: every route but /health then needs 'Authorization: Bearer <key>' (env PREFAB_GATEWAY_API_KEYS_FILE; keys can also be given comma-separated in PREFAB_GATEWAY_API_KEYS)."
    )
    var apiKeysFile: String?

    @Option(
        name: .customLong("cors-origin"),
        help:
            "An origin (e.g. https://app.example.com) whose pages may call the gateway; repeat for more (env PREFAB_GATEWAY_CORS_ORIGINS, comma-separated; default: CORS off)."
    )
    var corsOrigins: [String] = []

    @Option(
        name: .customLong("allowed-host"),
        help:
            "A host name this gateway answers for besides its IP addresses, localhost and the --public-url host (e.g. gw.internal, or *.example.com); repeat for more, '*' for any. Other Host headers get 421 (env PREFAB_GATEWAY_ALLOWED_HOSTS, comma-separated)."
    )
    var allowedHosts: [String] = []

    func apply(to configuration: inout GatewayConfiguration) throws {
        do {
            configuration.apiKeys = try APIKeys.load(
                file: apiKeysFile ?? Environment.value("PREFAB_GATEWAY_API_KEYS_FILE"),
                list: Environment.value("PREFAB_GATEWAY_API_KEYS")
            )
        } catch let error as APIKeyError {
            throw ValidationError(error.description)
        }
        let origins = corsOrigins.isEmpty ? Self.list(Environment.value("PREFAB_GATEWAY_CORS_ORIGINS")) : corsOrigins
        for origin in origins where origin == "*" || origin.hasSuffix("/") || !origin.contains("://") {
            throw ValidationError(
                "a CORS origin is scheme://host[:port] with no path, like https://app.example.com; '\(origin)' is not")
        }
        configuration.corsOrigins = origins.filter { !$0.isEmpty }
        configuration.allowedHosts = try Self.hostNames(
            allowedHosts.isEmpty ? Self.list(Environment.value("PREFAB_GATEWAY_ALLOWED_HOSTS")) : allowedHosts)
    }

    private static func list(_ text: String?) -> [String] {
        (text ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
    }

    /// Host names as `--allowed-host` takes them: a name, `*.name` or `*`; no scheme, port or path.
    private static func hostNames(_ names: [String]) throws -> [String] {
        let names = names.filter { !$0.isEmpty }
        let characters = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_")
        for name in names where name != "*" {
            let bare = name.hasPrefix("*.") ? name.dropFirst(2) : Substring(name)
            guard !bare.isEmpty, bare.allSatisfy(characters.contains) else {
                throw ValidationError(
                    "--allowed-host takes a host name like gw.example.com, *.example.com or *, with no scheme, port or path; '\(name)' is not"
                )
            }
        }
        return names
    }
}
