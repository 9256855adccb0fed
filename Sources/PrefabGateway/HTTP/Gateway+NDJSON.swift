import HTTPTypes
import Hummingbird
import PrefabKit

extension Gateway {
    /// `POST /invoke/<name>` with `Accept: application/x-ndjson`: every event as one line of JSON,
    /// exactly as the SSE stream's `data:` (the `files` event and the terminal event included), for
    /// a streaming function and a non-streaming one (whose result is its `done` event) alike.
    func respondWithNDJSON(
        _ function: LoadedFunction,
        _ inputs: PrefabInputs,
        request: Request,
        context: GatewayRequestContext
    ) async throws -> Response {
        let (invocation, reader) = try await startViewedCall(
            function, inputs, format: .ndjson, request: request, context: context)
        var headers: HTTPFields = [.contentType: "application/x-ndjson", .cacheControl: "no-cache"]
        headers[.accelBuffering] = "no"
        return eventViewResponse(
            invocation, reader: reader, format: NDJSONFormat(), headers: headers, request: request, context: context)
    }
}

/// One event JSON per line. No heartbeat: a blank line is no JSON, and a line reader that parses
/// every line would fail on it; an idle NDJSON stream stays silent.
struct NDJSONFormat: EventFormat {
    var heartbeat: [UInt8]? { nil }

    func append(_ event: PrefabEvent, json: ArraySlice<UInt8>, to bytes: inout [UInt8]) {
        bytes += json
        bytes.append(UInt8(ascii: "\n"))
    }
}
