import Foundation
import Logging
import PrefabKit

#if canImport(Glibc)
    import Glibc
#endif

/// Runs prefabs as child processes, one per invocation, behind the same closure type as compiled
/// Swift functions: routes, validation, SSE and files work unchanged.
///
/// The protocol: the call goes to the child's stdin as one JSON line (`function`, `inputs`,
/// `invocation_id`, `output_dir`, `streaming`), and stdin stays open; the child prints one JSON
/// event per line on stdout, or `{"result": ...}` for a non-streaming function; stderr is logged.
public struct ProcessRuntime: Sendable {
    public struct Options: Sendable {
        /// The Python used when a prefab has no `.venv`.
        public var python = "python3"
        /// The runner that calls a Python prefab's generator function.
        public var pythonRunner: URL = ProcessRuntime.bundledPythonRunner
        /// Time between SIGTERM and SIGKILL when a call is stopped.
        public var terminationGrace: Duration = .seconds(2)
        /// The longest line a child may print on stdout.
        public var maxLineBytes = 8 << 20
        /// Lines of stderr kept for the error event of a crash.
        public var stderrTailLines = 20

        public init() {}
    }

    public var options: Options
    let logger: Logger

    public init(options: Options = Options(), logger: Logger = Logger(label: "prefab-gateway")) {
        self.options = options
        self.logger = logger
        // A child that exits while we write its stdin must give EPIPE, not kill the gateway.
        signal(SIGPIPE, SIG_IGN)
    }

    /// The Python runner shipped with the gateway.
    public static var bundledPythonRunner: URL {
        Bundle.module.url(forResource: "prefab_runner", withExtension: "py")
            ?? URL(fileURLWithPath: "prefab_runner.py")
    }

    func function(_ launch: ProcessLaunch, name: String, streaming: Bool) -> PrefabFunction {
        if streaming {
            return .streaming { inputs, context in
                let call = ProcessCall(launch: launch, function: name, streaming: true, runtime: self, context: context)
                _ = try call.run(inputs: inputs)
            }
        }
        return .result { inputs, context in
            let call = ProcessCall(launch: launch, function: name, streaming: false, runtime: self, context: context)
            return try call.run(inputs: inputs) ?? .null
        }
    }
}

extension PrefabError.Code {
    public static let prefabCrashed: Self = "PREFAB_CRASHED"
    public static let protocolError: Self = "PROTOCOL_ERROR"
    public static let prefabStartFailed: Self = "PREFAB_START_FAILED"
}
