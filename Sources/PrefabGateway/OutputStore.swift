import Foundation
import PrefabKit

/// The output directories of invocations, `data/outputs/<invocation>/`: where functions write
/// files, how their URLs look, and the one safe way to find a file for `GET /files/...`.
struct OutputStore: Sendable {
    let root: URL

    init(root: URL) {
        self.root = root.standardizedFileURL
    }

    func directory(for invocationId: String) -> URL {
        root.appendingPathComponent(invocationId, isDirectory: true)
    }

    /// The files an invocation wrote, as `files` entries with absolute URLs under `baseURL`.
    func fileEntries(in directory: URL, invocationId: String, baseURL: String) -> [JSONValue] {
        let files = (try? OutputFile.list(in: directory)) ?? []
        return files.map { file in
            let path = file.name.split(separator: "/").map { Self.percentEncode(String($0)) }.joined(separator: "/")
            return file.jsonValue(url: "\(baseURL)/files/\(invocationId)/\(path)")
        }
    }

    /// The file named by the route's components, or nil for anything that is not a regular file
    /// inside the invocation's directory: `..`, encoded slashes, NUL, symbolic links, folders.
    func resolve(invocationId: String, components: [Substring]) -> OutputFile? {
        guard InvocationID.isValid(invocationId), !components.isEmpty else { return nil }
        var names: [String] = []
        for component in components {
            guard let name = String(component).removingPercentEncoding, Self.isSafeName(name) else { return nil }
            names.append(name)
        }
        let directory = directory(for: invocationId)
        let candidate = names.reduce(directory) { $0.appendingPathComponent($1) }
        // Resolving links must change nothing: a symlink anywhere on the way is refused.
        let resolvedRoot = directory.resolvingSymlinksInPath().path
        let resolved = candidate.resolvingSymlinksInPath().path
        guard resolved == candidate.path, resolved.hasPrefix(resolvedRoot + "/") else { return nil }
        guard
            let attributes = try? FileManager.default.attributesOfItem(atPath: resolved),
            attributes[.type] as? FileAttributeType == .typeRegular,
            let size = attributes[.size] as? Int
        else { return nil }
        let name = names.joined(separator: "/")
        return OutputFile(name: name, url: candidate, size: size, contentType: OutputFile.contentType(forPath: name))
    }

    /// Bytes of the regular files under `directory`, what its `files` event would list; links are
    /// not followed.
    static func size(of directory: URL) -> Int {
        let keys: [URLResourceKey] = [.isRegularFileKey, .isSymbolicLinkKey, .fileSizeKey]
        guard let enumerator = FileManager.default.enumerator(at: directory, includingPropertiesForKeys: keys)
        else { return 0 }
        var total = 0
        for case let url as URL in enumerator {
            guard let values = try? url.resourceValues(forKeys: Set(keys)), values.isRegularFile == true,
                values.isSymbolicLink != true
            else { continue }
            total += values.fileSize ?? 0
        }
        return total
    }

    /// Removes the output directories last modified more than `retention` ago; returns how many.
    @discardableResult
    func removeExpired(retention: Duration, now: Date = Date()) -> Int {
        let cutoff = now.addingTimeInterval(-retention.seconds)
        guard
            let entries = try? FileManager.default.contentsOfDirectory(
                at: root,
                includingPropertiesForKeys: [.contentModificationDateKey]
            )
        else { return 0 }
        var removed = 0
        for entry in entries where InvocationID.isValid(entry.lastPathComponent) {
            let modified = (try? entry.resourceValues(forKeys: [.contentModificationDateKey]))?.contentModificationDate
            if let modified, modified < cutoff, (try? FileManager.default.removeItem(at: entry)) != nil {
                removed += 1
            }
        }
        return removed
    }

    private static func isSafeName(_ name: String) -> Bool {
        !name.isEmpty && name != "." && name != ".." && !name.contains("/") && !name.contains("\\")
            && !name.contains("\0")
    }

    private static let unreserved = CharacterSet(
        charactersIn: "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~"
    )

    private static func percentEncode(_ text: String) -> String {
        text.addingPercentEncoding(withAllowedCharacters: unreserved) ?? text
    }
}

extension PrefabError {
    /// A call wrote more than `limit` bytes of output files.
    static func outputTooLarge(limit: Int) -> PrefabError {
        PrefabError(.outputTooLarge, "the call's output files exceed the limit of \(limit) bytes; they were deleted")
    }
}
