import HTTPTypes
import Hummingbird
import PrefabKit

extension Gateway {
    /// `HEAD /invocations/<id>/events`: the status and headers a GET would get, without attaching
    /// a reader (the router's generated HEAD runs the GET, whose reader would hold the invocation
    /// for a body that is never sent).
    func invocationEventsHead(_ request: Request, context: GatewayRequestContext) throws -> Response {
        let invocation = try invocation(context)
        let text = request.headers[.lastEventID] ?? request.uri.queryParameters.get("after") ?? "0"
        guard let after = Int(text.filter { $0 != " " }), after >= 0 else {
            throw GatewayError(
                .badRequest, .invalidRequest, "Last-Event-ID (or ?after=) must be an event number, not '\(text)'")
        }
        var response: Response
        if let count = invocation.events.finalCount, after >= count {
            response = Response(status: .noContent)
        } else {
            response = Response(
                status: .ok,
                headers: [.contentType: "text/event-stream; charset=utf-8", .cacheControl: "no-cache"]
            )
            response.headers[.contentLength] = nil
        }
        response.headers[.invocationId] = invocation.id
        return response
    }
}
