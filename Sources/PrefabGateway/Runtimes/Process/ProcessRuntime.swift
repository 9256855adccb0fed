import Foundation
import Logging
import PrefabKit
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// Runs prefabs as child processes behind the same closure type as compiled Swift functions:
/// routes, validation, SSE and files work unchanged. A Python prefab's calls go to its workers
/// (`WorkerPool`: processes that serve call after call); a command, or a Python prefab with
/// `"isolation": "process-per-call"`, gets a process per call.
///
/// The protocol: the call goes to the child's stdin as one JSON line (`function`, `inputs`,
/// `invocation_id`, `output_dir`, `streaming`), and stdin stays open; the child prints one JSON
/// event per line on stdout, or `{"result": ...}` for a non-streaming function; stderr is logged.
/// A worker also marks each call's end (see prefab_runner.py).
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
        /// The most bytes a call may write into its output folder; a Python child gets it as its
        /// file size limit (`RLIMIT_FSIZE`), a command is stopped once its folder grows past it.
        public var maxOutputBytes = 256 << 20
        /// Lines of stderr kept for the error event of a crash.
        public var stderrTailLines = 20
        /// Children started ahead of time per process prefab, each used for one call: a Python
        /// call then skips the interpreter's start-up. 0 starts every child on demand. For commands
        /// and Python prefabs with `"isolation": "process-per-call"` (workers are started ahead).
        public var warmProcesses = 0
        /// How long a call waits for a busy worker to come free before one more is started, as long
        /// as none came free meanwhile.
        public var workerPatience: Duration = .milliseconds(5)
        /// How long a worker beyond a prefab's `workers` stays idle before it ends.
        public var workerIdleExit: Duration = .seconds(30)

        public init() {}
    }

    public var options: Options
    let logger: Logger
    private let warm = WarmChildren()
    private let pools = WorkerPools()

    /// Told how long each child took to start.
    let onSpawn: (@Sendable (Duration) -> Void)?

    public init(
        options: Options = Options(),
        logger: Logger = Logger(label: "prefab-gateway"),
        onSpawn: (@Sendable (Duration) -> Void)? = nil
    ) {
        self.options = options
        self.logger = logger
        self.onSpawn = onSpawn
        // A child that exits while we write its stdin must give EPIPE, not kill the gateway.
        signal(SIGPIPE, SIG_IGN)
    }

    /// The Python runner shipped with the gateway.
    public static var bundledPythonRunner: URL {
        Bundle.module.url(forResource: "prefab_runner", withExtension: "py")
            ?? URL(fileURLWithPath: "prefab_runner.py")
    }

    func function(_ launch: ProcessLaunch, name: String, streaming: Bool) -> PrefabFunction {
        if let settings = launch.workers {
            let pool = pools.pool(for: launch) { WorkerPool(launch: launch, settings: settings, runtime: self) }
            if streaming {
                return .streaming { inputs, context in
                    let call = ProcessCall(
                        launch: launch, function: name, streaming: true, runtime: self, context: context)
                    _ = try call.run(inputs: inputs, on: pool)
                }
            }
            return .result { inputs, context in
                let call = ProcessCall(
                    launch: launch, function: name, streaming: false, runtime: self, context: context)
                return try call.run(inputs: inputs, on: pool) ?? .null
            }
        }
        if options.warmProcesses > 0 { warm.register(launch) }
        if streaming {
            return .streaming { inputs, context in
                let call = ProcessCall(launch: launch, function: name, streaming: true, runtime: self, context: context)
                _ = try call.run(inputs: inputs, warm: takeWarm(launch))
            }
        }
        return .result { inputs, context in
            let call = ProcessCall(launch: launch, function: name, streaming: false, runtime: self, context: context)
            return try call.run(inputs: inputs, warm: takeWarm(launch)) ?? .null
        }
    }

    /// Starts the workers of every Python prefab and the warm children of every other process
    /// prefab loaded so far (`serve` calls it).
    public func prewarm() {
        for pool in pools.all { pool.prewarm() }
        for launch in warm.launches { refill(launch) }
    }

    /// Python workers being started now, in every pool.
    var workersStarting: Int { pools.all.reduce(0) { $0 + $1.starting } }

    /// Ends every worker: idle ones now, busy ones after their call (the gateway is stopping).
    public func shutdown() {
        for pool in pools.removeAll() { pool.shutdown() }
    }

    /// The worker pool of a prefab loaded from `folder`, for tests.
    func workerPool(in folder: String) -> WorkerPool? {
        pools.all.first { $0.launch.directory.lastPathComponent == folder }
    }

    private func takeWarm(_ launch: ProcessLaunch) -> ChildProcess? {
        guard options.warmProcesses > 0 else { return nil }
        let child = warm.take(launch)
        refill(launch)
        return child
    }

    private func refill(_ launch: ProcessLaunch) {
        let wanted = options.warmProcesses
        DispatchQueue.global().async { [self] in
            while warm.reserveStart(launch, wanted: wanted) {
                let child = try? ChildProcess.start(launch, runtime: self, invocation: nil)
                warm.add(child, for: launch)
                if child == nil { return }  // it cannot start now; calls will start their own
            }
        }
    }
}

extension PrefabError.Code {
    public static let prefabCrashed: Self = "PREFAB_CRASHED"
    public static let protocolError: Self = "PROTOCOL_ERROR"
    public static let prefabStartFailed: Self = "PREFAB_START_FAILED"
}

/// The worker pools, by prefab.
final class WorkerPools: Sendable {
    private let pools = Mutex<[ProcessLaunch: WorkerPool]>([:])

    var all: [WorkerPool] { pools.withLock { Array($0.values) } }

    func pool(for launch: ProcessLaunch, make: () -> WorkerPool) -> WorkerPool {
        pools.withLock { pools in
            if let pool = pools[launch] { return pool }
            let pool = make()
            pools[launch] = pool
            return pool
        }
    }

    func removeAll() -> [WorkerPool] {
        pools.withLock { pools in
            defer { pools = [:] }
            return Array(pools.values)
        }
    }
}

/// Children started ahead of their invocation, by prefab; each is taken once.
final class WarmChildren: Sendable {
    private struct Pool {
        var ready: [ChildProcess] = []
        var starting = 0
    }

    private let pools = Mutex<[ProcessLaunch: Pool]>([:])

    var launches: [ProcessLaunch] { pools.withLock { Array($0.keys) } }

    func register(_ launch: ProcessLaunch) {
        pools.withLock { pools in
            if pools[launch] == nil { pools[launch] = Pool() }
        }
    }

    /// A running warm child, or nil; children that died while waiting are dropped.
    func take(_ launch: ProcessLaunch) -> ChildProcess? {
        pools.withLock { pools in
            while let child = pools[launch]?.ready.popLast() {
                if child.isRunning { return child }
            }
            return nil
        }
    }

    /// Whether another child should be started, counting it as starting if so.
    func reserveStart(_ launch: ProcessLaunch, wanted: Int) -> Bool {
        pools.withLock { pools in
            var pool = pools[launch] ?? Pool()
            defer { pools[launch] = pool }
            guard pool.ready.count + pool.starting < wanted else { return false }
            pool.starting += 1
            return true
        }
    }

    func add(_ child: ChildProcess?, for launch: ProcessLaunch) {
        pools.withLock { pools in
            pools[launch, default: Pool()].starting -= 1
            if let child { pools[launch, default: Pool()].ready.append(child) }
        }
    }
}
