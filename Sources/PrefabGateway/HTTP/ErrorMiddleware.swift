import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import PrefabKit

/// Turns every error into the gateway's JSON error body with a stable code, including the
/// router's own 404s, and answers 405 (with `Allow`) for a known route asked with the wrong method.
struct ErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(
        _ request: Request,
        context: Context,
        next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as GatewayError {
            return try error.response(from: request, context: context)
        } catch let error as HTTPError {
            return try translate(error, request: request).response(from: request, context: context)
        } catch is NIOTooManyBytesError {
            return try GatewayError(.contentTooLarge, .payloadTooLarge, "the request body is too large")
                .response(from: request, context: context)
        } catch {
            context.logger.error("unexpected error", metadata: ["error": "\(error)", "path": "\(request.uri.path)"])
            return try GatewayError(.internalServerError, .internalError, "internal error")
                .response(from: request, context: context)
        }
    }

    private func translate(_ error: HTTPError, request: Request) -> GatewayError {
        guard error.status == .notFound else {
            return GatewayError(
                error.status, .init(rawValue: Self.code(for: error.status)), error.body ?? error.status.reasonPhrase)
        }
        let path = request.uri.path
        if let allowed = Self.allowedMethods(path: path), !allowed.contains(request.method) {
            let list = allowed.map(\.rawValue).joined(separator: ", ")
            return GatewayError(
                .methodNotAllowed,
                .methodNotAllowed,
                "\(request.method.rawValue) is not allowed on \(path): use \(list)",
                headers: [.allow: list]
            )
        }
        return GatewayError(.notFound, .notFound, "nothing at \(request.method.rawValue) \(path)")
    }

    /// The methods of the gateway's routes, by the shape of the path.
    static func allowedMethods(path: String) -> [HTTPRequest.Method]? {
        let parts = path.split(separator: "/", omittingEmptySubsequences: true)
        switch (parts.first, parts.count) {
        case ("manifest", 1), ("health", 1), ("openapi.json", 1), ("metrics", 1): return [.get, .head]
        case ("invoke", 2), ("ai-sdk", 2): return [.post]
        case ("v1", 2) where parts[1] == "models": return [.get, .head]
        case ("v1", 3) where parts[1] == "chat" && parts[2] == "completions": return [.post]
        case ("files", 3...): return [.get, .head]
        default: return nil
        }
    }

    private static func code(for status: HTTPResponse.Status) -> String {
        status.reasonPhrase.uppercased().map { $0.isLetter || $0.isNumber ? $0 : "_" }.reduce(into: "") {
            $0.append($1)
        }
    }
}
