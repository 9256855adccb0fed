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
                    arguments: [options.pythonRunner.path, entryURL.path],
                    directory: folder,
                    environment: environment
                )
            )
        default:
            return problem("$.runtime.kind", "unknown runtime kind '\(kindName ?? "")' (python, process or swift)")
        }
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
