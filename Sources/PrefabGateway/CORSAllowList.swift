import HTTPTypes
import Hummingbird
import NIOCore
import PrefabKit

/// CORS for the origins on an allow-list, and for no other. Hummingbird's `CORSMiddleware`
/// writes the headers and answers preflights; this decides which requests reach it, because
/// its own list takes only a fixed number of origins. A preflight from another origin is
/// refused with 403, and its other requests get no CORS headers, so a browser blocks them.
struct CORSAllowList<Context: RequestContext>: RouterMiddleware {
    let origins: Set<String>
    private let cors = CORSMiddleware<Context>(
        allowOrigin: .originBased,
        allowHeaders: [.accept, .authorization, .contentType, .lastEventID],
        allowMethods: [.get, .post, .delete, .options],
        exposedHeaders: ["X-Invocation-Id", "Retry-After"],
        maxAge: .seconds(600)
    )

    init(origins: [String]) {
        self.origins = Set(origins)
    }

    func handle(
        _ request: Request,
        context: Context,
        next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        guard let origin = request.headers[.origin] else { return try await next(request, context) }
        if origins.contains(origin) { return try await cors.handle(request, context: context, next: next) }
        if request.method == .options, request.headers[.accessControlRequestMethod] != nil {
            throw GatewayError(.forbidden, .originNotAllowed, "pages from \(origin) may not call this gateway")
        }
        return try await next(request, context)
    }
}

extension PrefabError.Code {
    public static let originNotAllowed: Self = "ORIGIN_NOT_ALLOWED"
}
