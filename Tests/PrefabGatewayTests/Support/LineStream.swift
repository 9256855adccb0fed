import AsyncHTTPClient
import Foundation
import NIOCore
import PrefabKit

/// A live response read line by line as it arrives (NDJSON), as a line reader does.
struct LineStream {
    let response: HTTPClientResponse
    private var chunks: HTTPClientResponse.Body.AsyncIterator
    private var buffer: [UInt8] = []

    init(response: HTTPClientResponse) {
        self.response = response
        self.chunks = response.body.makeAsyncIterator()
    }

    /// Opens `POST <uri>` with `body` and `headers`.
    static func open(_ gateway: LiveGateway, _ uri: String, body: String, headers: [(String, String)]) async throws
        -> LineStream
    {
        var request = HTTPClientRequest(url: gateway.baseURL + uri)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        request.body = .bytes(ByteBuffer(string: body))
        return LineStream(response: try await HTTPClient.shared.execute(request, timeout: .seconds(30)))
    }

    /// The next line without its newline, or nil at the end of the body.
    mutating func next() async throws -> String? {
        while true {
            if let newline = buffer.firstIndex(of: UInt8(ascii: "\n")) {
                let line = String(decoding: buffer[..<newline], as: UTF8.self)
                buffer.removeSubrange(...newline)
                return line
            }
            guard let chunk = try await chunks.next() else {
                guard !buffer.isEmpty else { return nil }
                defer { buffer = [] }
                return String(decoding: buffer, as: UTF8.self)
            }
            buffer += chunk.readableBytesView
        }
    }

    /// Every remaining line.
    mutating func rest() async throws -> [String] {
        var lines: [String] = []
        while let line = try await next() { lines.append(line) }
        return lines
    }
}
