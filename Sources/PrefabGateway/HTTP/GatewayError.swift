import Foundation
import HTTPTypes
import Hummingbird
import PrefabKit

/// An error answered before a stream opens: an HTTP status and a JSON body
/// `{"error": {"code", "message", "details"}}` whose code is stable.
public struct GatewayError: HTTPResponseError, Sendable {
    public var status: HTTPResponse.Status
    public var code: PrefabError.Code
    public var message: String
    public var details: [JSONValue]
    public var headers: HTTPFields

    public init(
        _ status: HTTPResponse.Status,
        _ code: PrefabError.Code,
        _ message: String,
        details: [JSONValue] = [],
        headers: HTTPFields = [:]
    ) {
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.headers = headers
    }

    public var jsonValue: JSONValue {
        ["error": ["code": .string(code.rawValue), "message": .string(message), "details": .array(details)]]
    }

    /// The error body; on the OpenAI-compatible routes (`/v1/...`) in OpenAI's shape
    /// `{"error": {"message", "type", "param", "code"}}`, which the OpenAI clients read.
    public func response(from request: Request, context: some RequestContext) throws -> Response {
        let body =
            request.uri.path.hasPrefix("/v1/")
            ? OpenAIError.body(
                message: message, status: status, code: code.rawValue,
                param: details.first?["parameter"] ?? details.first?["path"] ?? .null)
            : jsonValue
        var response = Response.json(body, status: status)
        response.headers.append(contentsOf: headers)
        return response
    }
}

extension PrefabError.Code {
    public static let functionNotFound: Self = "FUNCTION_NOT_FOUND"
    public static let invalidJSON: Self = "INVALID_JSON"
    public static let invalidRequest: Self = "INVALID_REQUEST"
    public static let payloadTooLarge: Self = "PAYLOAD_TOO_LARGE"
    public static let methodNotAllowed: Self = "METHOD_NOT_ALLOWED"
    public static let notFound: Self = "NOT_FOUND"
    public static let fileNotFound: Self = "FILE_NOT_FOUND"
    public static let overloaded: Self = "OVERLOADED"
    public static let responseTooLarge: Self = "RESPONSE_TOO_LARGE"
    public static let internalError: Self = "INTERNAL_ERROR"
    public static let outputTooLarge: Self = "OUTPUT_TOO_LARGE"
}

extension Response {
    /// A JSON response from a `JSONValue`, encoded by PrefabKit (stable key order).
    static func json(_ value: JSONValue, status: HTTPResponse.Status = .ok) -> Response {
        var bytes: [UInt8] = []
        value.appendJSON(to: &bytes)
        bytes.append(UInt8(ascii: "\n"))
        return Response(
            status: status,
            headers: [.contentType: "application/json; charset=utf-8"],
            body: ResponseBody(byteBuffer: ByteBuffer(bytes: bytes))
        )
    }
}
