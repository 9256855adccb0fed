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

    func apply(to configuration: inout GatewayConfiguration) throws {
        do {
            configuration.apiKeys = try APIKeys.load(
                file: apiKeysFile ?? Environment.value("PREFAB_GATEWAY_API_KEYS_FILE"),
                list: Environment.value("PREFAB_GATEWAY_API_KEYS")
            )
        } catch let error as APIKeyError {
            throw ValidationError(error.description)
        }
        let origins =
            corsOrigins.isEmpty
            ? (Environment.value("PREFAB_GATEWAY_CORS_ORIGINS") ?? "").split(separator: ",").map {
                $0.trimmingCharacters(in: .whitespaces)
            }
            : corsOrigins
        for origin in origins where origin == "*" || origin.hasSuffix("/") || !origin.contains("://") {
            throw ValidationError(
                "a CORS origin is scheme://host[:port] with no path, like https://app.example.com; '\(origin)' is not")
        }
        configuration.corsOrigins = origins.filter { !$0.isEmpty }
    }
}
