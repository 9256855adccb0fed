import CProcessSpawn
import Foundation
import PrefabKit

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// The output directories of invocations, `data/outputs/<invocation>/`: where functions write
/// files, how their URLs look, and the one safe way to find a file for `GET /files/...`.
struct OutputStore: Sendable {
    let root: URL
    /// `root`'s path: a process call's folder is a path, and building it from `root` cost a call
    /// several thousand instructions (`URL.appendingPathComponent`, then `URL.path`).
    let rootPath: String
    /// Empty folders of ended calls, named after the ids of calls to come.
    let spares: SpareFolders

    init(root: URL) {
        self.root = root.standardizedFileURL
        self.rootPath = self.root.path
        self.spares = SpareFolders(root: self.root)
    }

    func directoryPath(for invocationId: String) -> String {
        rootPath + "/" + invocationId
    }

    func directory(for invocationId: String) -> URL {
        root.appendingPathComponent(invocationId, isDirectory: true)
    }

    /// The files an invocation wrote, as `files` entries with absolute URLs under `baseURL`.
    func fileEntries(in directory: String, invocationId: String, baseURL: String) -> [JSONValue] {
        let files = (try? OutputFile.list(in: URL(fileURLWithPath: directory, isDirectory: true))) ?? []
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
        // Real paths throughout: the root may be reached through links (a `--data` path with a
        // symlink in it), but nothing from the invocation's folder down may be a link, the folder
        // itself included (a process prefab could put one in its place).
        guard let root = Self.realPath(root.path) else { return nil }
        let directory = root + "/" + invocationId
        let candidate = ([directory] + names).joined(separator: "/")
        guard Self.realPath(directory) == directory, Self.realPath(candidate) == candidate else { return nil }
        guard
            let attributes = try? FileManager.default.attributesOfItem(atPath: candidate),
            attributes[.type] as? FileAttributeType == .typeRegular,
            let size = attributes[.size] as? Int
        else { return nil }
        let name = names.joined(separator: "/")
        return OutputFile(
            name: name, url: URL(fileURLWithPath: candidate), size: size,
            contentType: OutputFile.contentType(forPath: name))
    }

    /// The absolute path of `path` with every link, `.` and `..` resolved; nil when it does not exist.
    static func realPath(_ path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    /// Bytes of the regular files under `directory`, what its `files` event would list; links are
    /// not followed.
    static func size(of directory: String) -> Int {
        let keys: [URLResourceKey] = [.isRegularFileKey, .isSymbolicLinkKey, .fileSizeKey]
        let url = URL(fileURLWithPath: directory, isDirectory: true)
        guard let enumerator = FileManager.default.enumerator(at: url, includingPropertiesForKeys: keys)
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

    /// Marks the end of a call that wrote files: its folder's retention counts from now.
    func markEnded(_ directory: String) {
        _ = utimensat(AT_FDCWD, directory, nil, 0)
    }

    /// True when `directory` holds no entry (or cannot be read): the usual end of a call, told
    /// with one read of the folder instead of an enumerator and a lookup per entry.
    static func isEmpty(_ directory: URL) -> Bool {
        hasEntries(directory.path) != true
    }

    /// Whether the folder at `path` holds an entry; nil when it cannot be read.
    static func hasEntries(_ path: String) -> Bool? {
        switch prefab_directory_has_entries(path) {
        case 1: true
        case 0: false
        default: nil
        }
    }

    /// Removes the output directories of calls that ended (`markEnded`, or last changed) more than
    /// `retention` ago; a running call's directory is never removed. Returns how many.
    @discardableResult
    func removeExpired(retention: Duration, now: Date = Date(), isRunning: (String) -> Bool) -> Int {
        let cutoff = now.addingTimeInterval(-retention.seconds)
        guard let entries = try? FileManager.default.contentsOfDirectory(at: root, includingPropertiesForKeys: nil)
        else { return 0 }
        var removed = 0
        for entry in entries where InvocationID.isValid(entry.lastPathComponent) {
            // Spares and taken ids first (a taken one is running before it is let go), then
            // running, then the date: a call that ends in between has marked its end by then.
            guard !spares.holds(entry.lastPathComponent), !isRunning(entry.lastPathComponent) else { continue }
            let attributes = try? FileManager.default.attributesOfItem(atPath: entry.path)
            if let modified = attributes?[.modificationDate] as? Date, modified < cutoff,
                (try? FileManager.default.removeItem(at: entry)) != nil
            {
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
