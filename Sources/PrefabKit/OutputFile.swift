import Foundation

/// A file a function wrote into its output directory.
public struct OutputFile: Sendable, Hashable {
    /// The path relative to the output directory, with `/` between folders.
    public var name: String
    /// Where the file is on disk.
    public var url: URL
    /// The size in bytes.
    public var size: Int
    /// The `Content-Type` it is served with, from its extension (``contentType(forPath:)``).
    public var contentType: String

    public init(name: String, url: URL, size: Int, contentType: String) {
        self.name = name
        self.url = url
        self.size = size
        self.contentType = contentType
    }

    /// The regular files under `directory`, sorted by name. Symbolic links are skipped: an
    /// output directory only ever serves what was written into it.
    public static func list(in directory: URL) throws -> [OutputFile] {
        let root = directory.standardizedFileURL.path
        guard
            let enumerator = FileManager.default.enumerator(
                at: directory,
                includingPropertiesForKeys: [.isRegularFileKey, .isSymbolicLinkKey, .fileSizeKey]
            )
        else { return [] }
        var files: [OutputFile] = []
        for case let url as URL in enumerator {
            let values = try url.resourceValues(forKeys: [.isRegularFileKey, .isSymbolicLinkKey, .fileSizeKey])
            guard values.isRegularFile == true, values.isSymbolicLink != true else { continue }
            let path = url.standardizedFileURL.path
            guard path.hasPrefix(root + "/") else { continue }
            let name = String(path.dropFirst(root.count + 1))
            files.append(
                OutputFile(
                    name: name,
                    url: url,
                    size: values.fileSize ?? 0,
                    contentType: contentType(forPath: name)
                )
            )
        }
        return files.sorted { $0.name < $1.name }
    }

    /// The entry of a `files` event or result: name, url, size and content type.
    public func jsonValue(url: String) -> JSONValue {
        ["name": .string(name), "url": .string(url), "size": .int(size), "content_type": .string(contentType)]
    }

    /// A content type from the file's extension; unknown ones are served as bytes.
    public static func contentType(forPath path: String) -> String {
        let ext = path.split(separator: ".").last.map { $0.lowercased() } ?? ""
        return contentTypes[ext] ?? "application/octet-stream"
    }

    private static let contentTypes: [String: String] = [
        "txt": "text/plain; charset=utf-8", "log": "text/plain; charset=utf-8",
        "md": "text/markdown; charset=utf-8", "csv": "text/csv; charset=utf-8",
        "tsv": "text/tab-separated-values; charset=utf-8", "json": "application/json",
        "jsonl": "application/x-ndjson", "html": "text/html; charset=utf-8", "htm": "text/html; charset=utf-8",
        "xml": "application/xml", "yaml": "application/yaml", "yml": "application/yaml",
        "pdf": "application/pdf", "png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg",
        "gif": "image/gif", "svg": "image/svg+xml", "webp": "image/webp", "zip": "application/zip",
        "gz": "application/gzip", "wav": "audio/wav", "mp3": "audio/mpeg", "mp4": "video/mp4",
    ]
}
