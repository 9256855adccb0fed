import HTTPTypes
import Hummingbird
import NIOCore
import PrefabKit

/// CORS for the origins on an allow-list, and for no other. Hummingbird's `CORSMiddleware`
/// answers preflights; this decides which requests reach it (its own list takes only a fixed
/// number of origins) and adds the headers to other responses, errors included, with
/// `Access-Control-Expose-Headers` so that a page can read `X-Invocation-Id`. A preflight from
/// another origin is refused with 403, and its other requests get no CORS headers, so a browser
/// blocks them. It runs outside the error middleware, so it sees errors as responses.
struct CORSAllowList<Context: RequestContext>: RouterMiddleware {
    let origins: Set<String>
    private static var exposedHeaders: [String] { ["X-Invocation-Id", "Retry-After"] }
    private let preflight = CORSMiddleware<Context>(
        allowOrigin: .originBased,
        allowHeaders: [.accept, .authorization, .contentType, .lastEventID],
        allowMethods: [.get, .post, .delete, .options],
        exposedHeaders: exposedHeaders,
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
        let isPreflight = request.method == .options && request.headers[.accessControlRequestMethod] != nil
        guard origins.contains(origin) else {
            guard isPreflight else { return try await next(request, context) }
            return try GatewayError(.forbidden, .originNotAllowed, "pages from \(origin) may not call this gateway")
                .response(from: request, context: context)
        }
        if isPreflight { return try await preflight.handle(request, context: context, next: next) }
        var response = try await next(request, context)
        response.headers[.accessControlAllowOrigin] = origin
        response.headers[.accessControlExposeHeaders] = Self.exposedHeaders.joined(separator: ", ")
        response.headers[values: .vary].append("Origin")
        return response
    }
}

extension PrefabError.Code {
    public static let originNotAllowed: Self = "ORIGIN_NOT_ALLOWED"
}
