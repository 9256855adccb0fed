import Foundation
import PrefabKit

/// A function the gateway serves: its manifest entry and its implementation.
public struct LoadedFunction: Sendable {
    /// The prefab folder it came from.
    public var prefab: String
    /// How it runs: `swift` (compiled in), `python` or `process`.
    public var runtime: String
    public var manifest: FunctionManifest
    public var implementation: PrefabFunction
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
            var isDirectory: ObjCBool = false
            guard fileManager.fileExists(atPath: folderURL.path, isDirectory: &isDirectory), isDirectory.boolValue
            else {
                continue
            }
            catalog.load(prefab: folder, at: folderURL, compiled: compiled[folder] ?? [:], processes: processes)
        }
        return catalog
    }

    private mutating func load(
        prefab: String,
        at folder: URL,
        compiled: [String: PrefabFunction],
        processes: ProcessRuntime
    ) {
        let manifestURL = folder.appendingPathComponent("prefab-manifest.json")
        let file = manifestURL.path
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: file, isDirectory: &isDirectory) else {
            problems.append(
                LoadProblem(file: file, path: "", reason: "missing: a prefab folder needs a prefab-manifest.json"))
            return
        }
        guard !isDirectory.boolValue, let data = FileManager.default.contents(atPath: file) else {
            problems.append(LoadProblem(file: file, path: "", reason: "is not a readable file"))
            return
        }
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
}
