import HTTPTypes
import Hummingbird
import PrefabKit

/// Refuses, with 414 or 431, a request whose target (path and query) or header fields are larger than the
/// gateway's limits, before any route looks at them.
struct RequestSizeLimits<Context: RequestContext>: RouterMiddleware {
    let limits: HeadSizeLimits

    func handle(
        _ request: Request,
        context: Context,
        next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        if let refusal = limits.refusal(of: request.head) { throw refusal }
        return try await next(request, context)
    }
}

/// The largest request target and header fields the gateway reads.
struct HeadSizeLimits: Sendable {
    let maxURLBytes: Int
    let maxHeaderBytes: Int

    /// Why `head` is over a limit, or nil.
    func refusal(of head: HTTPRequest) -> GatewayError? {
        let target = head.path?.utf8.count ?? 0
        guard target <= maxURLBytes else {
            return GatewayError(
                .uriTooLong, .urlTooLong, "the URL is \(target) bytes, more than the limit of \(maxURLBytes)")
        }
        // As on the wire: "name: value\r\n".
        let headers = head.headerFields.reduce(0) { $0 + $1.name.rawName.utf8.count + $1.value.utf8.count + 4 }
        guard headers <= maxHeaderBytes else {
            return GatewayError(
                .init(code: 431, reasonPhrase: "Request Header Fields Too Large"),
                .headersTooLarge,
                "the header fields are \(headers) bytes, more than the limit of \(maxHeaderBytes)"
            )
        }
        return nil
    }
}

extension PrefabError.Code {
    public static let urlTooLong: Self = "URL_TOO_LONG"
    public static let headersTooLarge: Self = "HEADERS_TOO_LARGE"
}
