import Foundation
import PrefabKit

/// A function the gateway serves: its manifest entry and its implementation.
///
/// Its fields live in one shared, immutable box: every call holds its function (an invocation
/// is kept for minutes after it ends), and held inline they were about 180 bytes and eight
/// reference counts to copy a call; a change makes a new box.
public struct LoadedFunction: Sendable {
    private struct Fields {
        var prefab: String
        var runtime: String
        var manifest: FunctionManifest
        var implementation: PrefabFunction
    }

    private final class Box: Sendable {
        let fields: Fields
        init(_ fields: Fields) { self.fields = fields }
    }

    private var box: Box

    public init(prefab: String, runtime: String, manifest: FunctionManifest, implementation: PrefabFunction) {
        box = Box(Fields(prefab: prefab, runtime: runtime, manifest: manifest, implementation: implementation))
    }

    /// A change makes a new box: the old one may be shared.
    private mutating func change(_ update: (inout Fields) -> Void) {
        var fields = box.fields
        update(&fields)
        box = Box(fields)
    }

    /// The prefab folder it came from.
    public var prefab: String {
        get { box.fields.prefab }
        set { change { $0.prefab = newValue } }
    }

    /// How it runs: `swift` (compiled in), `python` or `process`.
    public var runtime: String {
        get { box.fields.runtime }
        set { change { $0.runtime = newValue } }
    }

    public var manifest: FunctionManifest {
        get { box.fields.manifest }
        set { change { $0.manifest = newValue } }
    }

    public var implementation: PrefabFunction {
        get { box.fields.implementation }
        set { change { $0.implementation = newValue } }
    }
}

/// Why something under the prefabs directory was not loaded: the file, the JSON path, the reason.
public struct LoadProblem: Error, Sendable, Hashable, CustomStringConvertible {
    public var file: String
    public var path: String
    public var reason: String

    public var description: String { "\(file): \(path): \(reason)" }

    public var jsonValue: JSONValue { ["file": .string(file), "path": .string(path), "reason": .string(reason)] }
}

/// The functions loaded from every `prefabs/*/prefab-manifest.json`, and what failed to load.
public struct PrefabCatalog: Sendable {
    public var functions: [String: LoadedFunction]
    public var problems: [LoadProblem]

    public init(functions: [String: LoadedFunction] = [:], problems: [LoadProblem] = []) {
        self.functions = functions
        self.problems = problems
    }

    /// Reads every prefab folder of `directory` and matches each manifest function with its
    /// implementation in `compiled` (prefab folder → function name → implementation). A broken
    /// manifest, a function with no implementation or a name used twice is reported and skipped.
    public static func load(
        from directory: URL,
        compiled: [String: [String: PrefabFunction]],
        processes: ProcessRuntime = ProcessRuntime()
    ) -> PrefabCatalog {
        var catalog = PrefabCatalog()
        let fileManager = FileManager.default
        let folders: [String]
        do {
            folders = try fileManager.contentsOfDirectory(atPath: directory.path).sorted()
        } catch {
            catalog.problems.append(
                LoadProblem(file: directory.path, path: "", reason: "cannot list the prefabs directory"))
            return catalog
        }
        for folder in folders where !folder.hasPrefix(".") && !folder.hasPrefix("_") {
            let folderURL = directory.appendingPathComponent(folder)
            if let problem = linkProblem(folderURL, mustStayIn: directory, what: "prefab folder") {
                catalog.problems.append(problem)
                continue
            }
            var isDirectory: ObjCBool = false
            guard fileManager.fileExists(atPath: folderURL.path, isDirectory: &isDirectory), isDirectory.boolValue
            else {
                continue
            }
            catalog.load(prefab: folder, at: folderURL, compiled: compiled[folder] ?? [:], processes: processes)
        }
        return catalog
    }

    /// The largest manifest read: a manifest is a few kilobytes; a huge file is a mistake or hostile.
    public static let maxManifestBytes = 1 << 20

    /// A problem when `url` is a symbolic link that is dangling or leads outside `root`: a prefab
    /// runs with the gateway's rights, so only what sits in the prefabs directory is loaded.
    static func linkProblem(_ url: URL, mustStayIn root: URL, what: String) -> LoadProblem? {
        let fileManager = FileManager.default
        guard (try? fileManager.attributesOfItem(atPath: url.path))?[.type] as? FileAttributeType == .typeSymbolicLink
        else { return nil }
        let target = url.resolvingSymlinksInPath().path
        let base = root.resolvingSymlinksInPath().path
        guard fileManager.fileExists(atPath: target), target != url.path else {
            return LoadProblem(file: url.path, path: "", reason: "is a symbolic link to something that does not exist")
        }
        guard target.hasPrefix(base + "/") else {
            return LoadProblem(
                file: url.path,
                path: "",
                reason: "is a symbolic link to \(target), outside \(base): a \(what) must be inside it"
            )
        }
        return nil
    }

    private mutating func load(
        prefab: String,
        at folder: URL,
        compiled: [String: PrefabFunction],
        processes: ProcessRuntime
    ) {
        let manifestURL = folder.appendingPathComponent("prefab-manifest.json")
        let file = manifestURL.path
        guard let data = readManifest(manifestURL, in: folder) else { return }
        let manifest: PrefabManifest
        do {
            manifest = try PrefabManifest(parsing: data)
        } catch {
            problems += error.problems.map { LoadProblem(file: file, path: $0.path, reason: $0.reason) }
            return
        }
        // A folder without compiled Swift functions may be a process prefab (Python by convention).
        var launch: ProcessLaunch?
        if compiled.isEmpty {
            switch ProcessLaunch.resolve(manifest: manifest, folder: folder, options: processes.options) {
            case .success(let resolved): launch = resolved
            case .failure(let problem):
                problems.append(problem)
                return
            case .none: break
            }
        }
        for (index, function) in manifest.functions.enumerated() {
            let path = "$.functions[\(index)]"
            if let existing = functions[function.name] {
                let reason =
                    "duplicate function name '\(function.name)': prefab '\(existing.prefab)' already defines it"
                problems.append(LoadProblem(file: file, path: "\(path).name", reason: reason))
                continue
            }
            if let launch {
                if function.runsOnEventLoop {
                    let reason =
                        "only a compiled Swift function runs on the event loop: a \(launch.kind.rawValue) prefab's call"
                        + " waits on its process"
                    problems.append(LoadProblem(file: file, path: "\(path).runs_on_event_loop", reason: reason))
                    continue
                }
                let implementation = processes.function(launch, name: function.name, streaming: function.streaming)
                functions[function.name] = LoadedFunction(
                    prefab: prefab,
                    runtime: launch.kind.rawValue,
                    manifest: function,
                    implementation: implementation
                )
                continue
            }
            guard let implementation = compiled[function.name] else {
                let reason =
                    "no implementation: prefab '\(prefab)' has no compiled Swift function '\(function.name)'"
                    + " (add it and rebuild, or give the manifest a runtime block)"
                problems.append(LoadProblem(file: file, path: path, reason: reason))
                continue
            }
            guard implementation.isStreaming == function.streaming else {
                let reason =
                    "the manifest says streaming: \(function.streaming) but the compiled function differs: rebuild"
                problems.append(LoadProblem(file: file, path: "\(path).streaming", reason: reason))
                continue
            }
            functions[function.name] = LoadedFunction(
                prefab: prefab,
                runtime: "swift",
                manifest: function,
                implementation: implementation
            )
        }
    }

    /// The manifest's bytes, or nil after recording why it cannot be used: missing, not a regular
    /// file (a folder, a FIFO that would block, a device), a link out of its folder, too large.
    private mutating func readManifest(_ url: URL, in folder: URL) -> [UInt8]? {
        let file = url.path
        func problem(_ reason: String) -> [UInt8]? {
            problems.append(LoadProblem(file: file, path: "", reason: reason))
            return nil
        }
        if let link = Self.linkProblem(url, mustStayIn: folder, what: "manifest") {
            problems.append(link)
            return nil
        }
        guard let attributes = try? FileManager.default.attributesOfItem(atPath: url.resolvingSymlinksInPath().path)
        else { return problem("missing: a prefab folder needs a prefab-manifest.json") }
        let type = attributes[.type] as? FileAttributeType
        guard type == .typeRegular else {
            let kind: String
            switch type {
            case .typeDirectory?: kind = "a directory"
            case .typeCharacterSpecial?, .typeBlockSpecial?: kind = "a device"
            case .typeSocket?: kind = "a socket"
            default: kind = "not a regular file (a FIFO?)"
            }
            return problem("is \(kind): the manifest must be a regular file")
        }
        let size = (attributes[.size] as? Int) ?? 0
        guard size <= Self.maxManifestBytes else {
            return problem("is \(size) bytes: a manifest may be at most \(Self.maxManifestBytes) bytes")
        }
        guard let data = FileManager.default.contents(atPath: file) else { return problem("cannot be read") }
        guard !data.isEmpty else { return problem("is empty: a manifest is a JSON object with its functions") }
        return Array(data)
    }
}
