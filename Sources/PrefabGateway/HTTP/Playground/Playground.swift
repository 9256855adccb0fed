import Foundation
import HTTPTypes
import Hummingbird
import PrefabKit

/// The web playground's files (HTML, CSS, JavaScript shipped as resources), read once at start-up
/// and served from memory: `/` is its page, `/playground/<file>` the rest.
struct Playground: Sendable {
    private let files: [String: (contentType: String, bytes: ByteBuffer)]

    init(directory: URL? = Bundle.module.url(forResource: "playground", withExtension: nil)) {
        var files: [String: (String, ByteBuffer)] = [:]
        let names = directory.flatMap { try? FileManager.default.contentsOfDirectory(atPath: $0.path) } ?? []
        for name in names {
            guard let directory,
                let data = FileManager.default.contents(atPath: directory.appendingPathComponent(name).path)
            else { continue }
            files[name] = (Self.contentType(of: name), ByteBuffer(bytes: data))
        }
        self.files = files
    }

    /// The file `name` (only the playground's own files: no path reaches anything else).
    func response(for name: String) throws -> Response {
        guard let file = files[name] else {
            throw GatewayError(.notFound, .notFound, "no playground file '\(name)'")
        }
        // No other site may frame the page (and trick a click on Run); nothing is sniffed.
        return Response(
            status: .ok,
            headers: [
                .contentType: file.contentType, .cacheControl: "no-cache", .xContentTypeOptions: "nosniff",
                .contentSecurityPolicy: "frame-ancestors 'none'", .frameOptions: "DENY",
            ],
            body: ResponseBody(byteBuffer: file.bytes)
        )
    }

    private static func contentType(of name: String) -> String {
        switch name.split(separator: ".").last {
        case "html": "text/html; charset=utf-8"
        case "css": "text/css; charset=utf-8"
        case "js": "text/javascript; charset=utf-8"
        case "svg": "image/svg+xml"
        case "png": "image/png"
        default: "application/octet-stream"
        }
    }
}

extension HTTPField.Name {
    /// The older way to refuse framing, for browsers that ignore `frame-ancestors`.
    static let frameOptions = HTTPField.Name("X-Frame-Options")!
}
