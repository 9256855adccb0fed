import Foundation
import HTTPTypes
import Hummingbird
import PrefabKit

extension Response {
    /// A JSON response with a strong `ETag` of its bytes and `Cache-Control: no-cache` (a client
    /// asks again each time, cheaply), or 304 with no body when the request's `If-None-Match`
    /// names that tag.
    static func json(_ value: JSONValue, conditionalOn request: Request) -> Response {
        var bytes: [UInt8] = []
        value.appendJSON(to: &bytes)
        bytes.append(UInt8(ascii: "\n"))
        let tag = entityTag(of: bytes)
        if let condition = request.headers[.ifNoneMatch], Self.condition(condition, matches: tag) {
            var response = Response(status: .notModified, headers: [.eTag: tag, .cacheControl: "no-cache"])
            // A 304 has no body; a length of 0 would claim the document is empty.
            response.headers[.contentLength] = nil
            return response
        }
        return Response(
            status: .ok,
            headers: [.contentType: "application/json; charset=utf-8", .eTag: tag, .cacheControl: "no-cache"],
            body: ResponseBody(byteBuffer: ByteBuffer(bytes: bytes))
        )
    }

    /// `"<64-bit FNV-1a of the bytes, in hex>"`: the same bytes give the same tag, on any replica.
    static func entityTag(of bytes: [UInt8]) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in bytes {
            hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01b3
        }
        let hex = String(hash, radix: 16)
        return "\"" + String(repeating: "0", count: 16 - hex.count) + hex + "\""
    }

    /// Whether an `If-None-Match` list (`"a", W/"b"` or `*`) names `tag`; weak comparison, as
    /// RFC 9110 asks for this header.
    static func condition(_ header: String, matches tag: String) -> Bool {
        header.split(separator: ",").contains { entry in
            var entry = entry.trimmingCharacters(in: .whitespaces)
            if entry == "*" { return true }
            if entry.hasPrefix("W/") { entry.removeFirst(2) }
            return entry == tag
        }
    }
}
