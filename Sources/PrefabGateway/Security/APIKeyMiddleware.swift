import HTTPTypes
import Hummingbird
import PrefabKit

/// Requires `Authorization: Bearer <key>` on every route but `/health` and the playground's
/// static page, and records which key it was. With no keys configured it lets everything through.
struct APIKeyMiddleware<Context: APIKeyRequestContext>: RouterMiddleware {
    let keys: APIKeys

    func handle(
        _ request: Request,
        context: Context,
        next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        guard keys.isEnabled, !Self.isOpen(request.uri.path) else { return try await next(request, context) }
        var context = context
        context.apiKey = try keys.owner(authorization: request.headers[.authorization])
        return try await next(request, context)
    }

    /// Liveness for load balancers, and the playground page (which asks for a key itself).
    private static func isOpen(_ path: String) -> Bool {
        path == "/health" || path == "/" || path.hasPrefix("/playground/")
    }

}

extension APIKeys {
    /// The key an `Authorization: Bearer <key>` header names, or 401 with why not.
    func owner(authorization header: String?) throws(GatewayError) -> Int {
        guard let header else {
            throw Self.unauthorized("this gateway requires an API key: send Authorization: Bearer <key>")
        }
        let parts = header.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else {
            throw Self.unauthorized("the Authorization header must be 'Bearer <key>'")
        }
        guard let key = match(parts[1].drop { $0 == " " }) else {
            throw Self.unauthorized("the API key is not valid", challenge: #"Bearer error="invalid_token""#)
        }
        return key
    }

    private static func unauthorized(_ message: String, challenge: String = "Bearer") -> GatewayError {
        GatewayError(.unauthorized, .unauthorized, message, headers: [.wwwAuthenticate: challenge])
    }
}

extension PrefabError.Code {
    public static let unauthorized: Self = "UNAUTHORIZED"
}
