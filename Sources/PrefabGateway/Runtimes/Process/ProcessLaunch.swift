import Foundation
import PrefabKit
import Synchronization

/// How to start a prefab that runs as a child process: read from the manifest's `runtime` block,
/// or by convention from a folder with `main.py` (or `src/main.py`) and no runtime block.
struct ProcessLaunch: Sendable, Hashable {
    enum Kind: String, Sendable {
        case python, process
    }

    var kind: Kind
    var executable: String
    var arguments: [String]
    /// The prefab's folder: the child's working directory.
    var directory: URL
    /// Variables the manifest gives the child, on top of the clean environment.
    var environment: [String: String]
    /// How a Python prefab's process serves calls one after another; nil: a process per call.
    var workers: WorkerSettings? = nil

    /// The launch for a prefab folder, nil when it is not a process prefab (a compiled Swift one),
    /// or the problem that keeps it from starting.
    static func resolve(
        manifest: PrefabManifest,
        folder: URL,
        options: ProcessRuntime.Options
    ) -> Result<ProcessLaunch, LoadProblem>? {
        let file = folder.appendingPathComponent("prefab-manifest.json").path
        func problem(_ path: String, _ reason: String) -> Result<ProcessLaunch, LoadProblem> {
            .failure(LoadProblem(file: file, path: path, reason: reason))
        }
        let runtime = manifest.runtime?.objectValue ?? [:]
        var environment: [String: String] = [:]
        if let env = runtime["env"] {
            guard let values = env.objectValue, values.values.allSatisfy({ $0.stringValue != nil }) else {
                return problem("$.runtime.env", "must be an object of strings")
            }
            environment = values.compactMapValues(\.stringValue)
        }
        let kindName = runtime["kind"]?.stringValue ?? (runtime.isEmpty ? nil : "python")
        let workers: WorkerSettings?
        switch WorkerSettings.parse(runtime, kind: kindName) {
        case .success(let settings): workers = settings
        case .failure(let failure): return problem(failure.path, failure.reason)
        }
        switch kindName {
        case "swift":
            return nil
        case "process":
            guard let command = runtime["command"]?.arrayValue?.compactMap(\.stringValue), !command.isEmpty,
                command.count == runtime["command"]?.arrayValue?.count
            else {
                return problem("$.runtime.command", "a process runtime needs a non-empty array of strings")
            }
            var executable = command[0]
            if executable.contains("/") && !executable.hasPrefix("/") {
                let url = folder.appendingPathComponent(executable)
                guard isInside(url, folder) else {
                    return problem(
                        "$.runtime.command[0]",
                        "'\(executable)' is outside the prefab folder: use a path inside it, an absolute path or a name on PATH"
                    )
                }
                guard FileManager.default.isExecutableFile(atPath: url.path) else {
                    return problem("$.runtime.command[0]", "'\(executable)' does not exist or is not executable")
                }
                executable = url.standardizedFileURL.path
            }
            return .success(
                ProcessLaunch(
                    kind: .process,
                    executable: executable,
                    arguments: Array(command.dropFirst()),
                    directory: folder,
                    environment: environment
                )
            )
        case "python", nil:
            let conventional = ["main.py", "src/main.py"].first {
                FileManager.default.fileExists(atPath: folder.appendingPathComponent($0).path)
            }
            let entry = runtime["entry"]?.stringValue ?? conventional
            guard let entry else {
                // No runtime block and no main.py: a Swift prefab (or one missing its code).
                return kindName == nil ? nil : problem("$.runtime.entry", "no entry file and no main.py")
            }
            let entryURL = folder.appendingPathComponent(entry).standardizedFileURL
            guard isInside(entryURL, folder) else {
                return problem("$.runtime.entry", "entry file '\(entry)' is outside the prefab folder")
            }
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: entryURL.path, isDirectory: &isDirectory),
                !isDirectory.boolValue
            else {
                return problem("$.runtime.entry", "entry file '\(entry)' does not exist in the prefab folder")
            }
            let venvPython = folder.appendingPathComponent(".venv/bin/python")
            let hasVenv = FileManager.default.isExecutableFile(atPath: venvPython.path)
            if !hasVenv, FileManager.default.fileExists(atPath: folder.appendingPathComponent("requirements.txt").path)
            {
                return problem(
                    "$",
                    "requirements.txt is not installed: run `prefab-gateway install` to create \(folder.lastPathComponent)/.venv"
                )
            }
            return .success(
                ProcessLaunch(
                    kind: .python,
                    executable: hasVenv ? venvPython.path : PythonInterpreter.resolve(options.python),
                    arguments: [options.pythonRunner.path] + (workers == nil ? [] : ["--worker"]) + [entryURL.path],
                    directory: folder,
                    environment: environment,
                    workers: workers
                )
            )
        default:
            return problem("$.runtime.kind", "unknown runtime kind '\(kindName ?? "")' (python, process or swift)")
        }
    }
}

/// How a Python prefab's worker processes serve its calls, from the manifest's runtime block:
/// `"isolation"` (`"worker"`, the default, or `"process-per-call"`), `"workers"`, `"max_workers"`
/// and `"max_calls"`.
struct WorkerSettings: Sendable, Hashable {
    /// Workers kept ready, started with the gateway.
    var workers = Self.defaultWorkers
    /// The most workers at once; nil: as many as calls run (calls past it wait for one).
    var maxWorkers: Int?
    /// Calls a worker serves before it is replaced, which bounds what a slow leak can grow to.
    var maxCalls = Self.defaultMaxCalls

    /// Two: a second call does not wait for the first, and while one worker is replaced (after
    /// `max_calls`, a crash or a cancel) the other still serves without the import's delay.
    static let defaultWorkers = 2
    /// A replacement costs one interpreter start and import (~40 ms of CPU without the prefab's
    /// own imports): over 10,000 calls that is a few microseconds a call.
    static let defaultMaxCalls = 10_000
    /// Started with the gateway, so a typing slip must not start thousands of interpreters.
    static let workersLimit = 64

    struct Failure: Error {
        var path: String
        var reason: String
    }

    /// The settings for a runtime block of `kind`; nil for a process per call.
    static func parse(_ runtime: [String: JSONValue], kind: String?) -> Result<WorkerSettings?, Failure> {
        let keys = ["workers", "max_workers", "max_calls"]
        var isolation = "worker"
        if let value = runtime["isolation"] {
            guard let name = value.stringValue, ["worker", "process-per-call"].contains(name) else {
                return .failure(
                    Failure(path: "$.runtime.isolation", reason: #"must be "worker" or "process-per-call""#))
            }
            isolation = name
        }
        let isPython = kind == nil || kind == "python"
        if !isPython || isolation == "process-per-call" {
            if isPython, let key = keys.first(where: { runtime[$0] != nil }) {
                return .failure(
                    Failure(path: "$.runtime.\(key)", reason: #"has no meaning with "isolation": "process-per-call""#))
            }
            if !isPython, let key = (["isolation"] + keys).first(where: { runtime[$0] != nil }),
                key != "isolation" || isolation != "process-per-call"
            {
                return .failure(
                    Failure(
                        path: "$.runtime.\(key)",
                        reason: "only Python prefabs have workers: a \(kind ?? "") runtime starts a process per call"))
            }
            return .success(nil)
        }
        var settings = WorkerSettings()
        func integer(_ key: String, _ range: ClosedRange<Int>) -> Result<Int?, Failure> {
            guard let value = runtime[key] else { return .success(nil) }
            guard let number = value.intValue, range.contains(number), value.boolValue == nil else {
                let bounds =
                    range.upperBound == Int.max
                    ? "at least \(range.lowerBound)" : "from \(range.lowerBound) to \(range.upperBound)"
                return .failure(Failure(path: "$.runtime.\(key)", reason: "must be an integer \(bounds)"))
            }
            return .success(number)
        }
        switch integer("workers", 0...workersLimit) {
        case .failure(let failure): return .failure(failure)
        case .success(let value): settings.workers = value ?? settings.workers
        }
        switch integer("max_workers", 1...Int.max) {
        case .failure(let failure): return .failure(failure)
        case .success(let value): settings.maxWorkers = value
        }
        switch integer("max_calls", 1...Int.max) {
        case .failure(let failure): return .failure(failure)
        case .success(let value): settings.maxCalls = value ?? settings.maxCalls
        }
        if let maxWorkers = settings.maxWorkers, maxWorkers < settings.workers {
            if runtime["workers"] != nil {
                return .failure(
                    Failure(
                        path: "$.runtime.max_workers",
                        reason: "is \(maxWorkers), fewer than the \(settings.workers) workers kept ready"))
            }
            settings.workers = maxWorkers
        }
        return .success(settings)
    }
}

/// Whether `url`, with `..` and symbolic links resolved, lies inside `folder`.
private func isInside(_ url: URL, _ folder: URL) -> Bool {
    let base = folder.resolvingSymlinksInPath().path
    return url.standardizedFileURL.resolvingSymlinksInPath().path.hasPrefix(base + "/")
}

/// The interpreter behind a `python3` command, asked once: version managers put shell-script
/// shims on PATH that cost ~100 ms per start and add variables of their own to the environment.
enum PythonInterpreter {
    private static let resolved = Mutex<[String: String]>([:])

    static func resolve(_ command: String) -> String {
        if let known = resolved.withLock({ $0[command] }) { return known }
        var path = command
        if let executable = ChildProcess.resolveExecutable(command),
            let output = ProcessSpawner.shared.output(
                of: executable, arguments: ["-c", "import sys; print(sys.executable)"])
        {
            let text = output.trimmingCharacters(in: .whitespacesAndNewlines)
            if FileManager.default.isExecutableFile(atPath: text) { path = text }
        }
        resolved.withLock { $0[command] = path }
        return path
    }
}
