import Foundation
import PrefabGateway
import PrefabKit
import Synchronization
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Python workers: a prefab's process serves call after call, and what must not cross from one
/// call to the next does not.
@Suite(.timeLimit(.minutes(1))) struct WorkerTests {
    /// A worker prefab with `runtime` added to its runtime block.
    static func worker(
        _ function: String,
        _ code: String,
        runtime: String = "",
        extra: String = ""
    ) -> (manifests: [String: String], files: [String: String]) {
        ProcessRuntimeTests.python(.worker, function, code, extra: extra, runtime: runtime)
    }

    /// A file for a test's notes, removed after it.
    static func scratch(_ name: String) -> URL {
        FileManager.default.temporaryDirectory.appendingPathComponent("\(name)-\(UUID().uuidString)")
    }

    static func lines(_ file: URL) -> [String] {
        ((try? String(contentsOf: file, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
    }

    /// Every call's `done` data.
    static func data(_ gateway: LiveGateway, _ function: String, _ body: String = #"{"inputs": {}}"#) async throws
        -> JSONValue
    {
        let events = try await gateway.invoke(function, body).events
        #expect(events.last?.type == "done", "\(events)")
        return try #require(events.last?.data)
    }

    @Test func theModuleIsImportedOnceAndOneWorkerServesCallAfterCall() async throws {
        let imports = Self.scratch("imports")
        defer { try? FileManager.default.removeItem(at: imports) }
        let code = """
            import os
            with open(os.environ["IMPORT_LOG"], "a") as log:
                log.write(f"{os.getpid()}\\n")
            CALLS = 0
            def count():
                global CALLS
                CALLS += 1
                yield {"type": "done", "data": {"pid": os.getpid(), "calls": CALLS}}
            """
        let runtime = #", "workers": 1, "env": {"IMPORT_LOG": "\#(imports.path)"}"#
        try await ProcessRuntimeTests.run(Self.worker("count", code, runtime: runtime)) { gateway in
            var pids: Set<Int> = []
            for call in 1...5 {
                let data = try await Self.data(gateway, "count")
                pids.insert(try #require(data["pid"]?.intValue))
                // Module state lives on from call to call, as in an in-process server.
                #expect(data["calls"]?.intValue == call)
            }
            #expect(pids.count == 1)
            #expect(Self.lines(imports) == pids.map(String.init))
        }
    }

    /// A slow import is paid once: the first call waits for the worker that imports rather than
    /// have another one started after 5 ms (which would import again), and later calls reuse it.
    /// (No worker is kept ready, so the first call starts one and surely waits for its import.)
    @Test func aSlowImportIsPaidOnceNotByEveryCall() async throws {
        let imports = Self.scratch("imports")
        defer { try? FileManager.default.removeItem(at: imports) }
        let code = """
            import os, time
            time.sleep(0.3)
            with open(os.environ["IMPORT_LOG"], "a") as log:
                log.write(f"{os.getpid()}\\n")
            def slow_import():
                yield {"type": "done", "data": os.getpid()}
            """
        let runtime = #", "workers": 0, "env": {"IMPORT_LOG": "\#(imports.path)"}"#
        try await ProcessRuntimeTests.run(Self.worker("slow_import", code, runtime: runtime)) { gateway in
            var pids: Set<Int> = []
            for _ in 0..<3 { pids.insert(try #require(try await Self.data(gateway, "slow_import").intValue)) }
            #expect(pids.count == 1)
            #expect(Self.lines(imports).count == 1, "imported \(Self.lines(imports).count) times")
        }
    }

    @Test func aProcessPerCallPrefabGetsAFreshProcessEachCall() async throws {
        let code = "import os\ndef pid():\n    yield {'type': 'done', 'data': os.getpid()}\n"
        try await ProcessRuntimeTests.run(ProcessRuntimeTests.python(.processPerCall, "pid", code)) { gateway in
            var pids: Set<Int> = []
            for _ in 0..<3 { pids.insert(try #require(try await Self.data(gateway, "pid").intValue)) }
            #expect(pids.count == 3)
        }
    }

    /// How a call can end its worker.
    enum Ending: String, CaseIterable, Sendable, CustomTestStringConvertible {
        case crash, cancel, timeout, protocolError, outputLimit, maxCalls
        var testDescription: String { rawValue }
    }

    @Test(arguments: Ending.allCases)
    func aWorkerIsReplacedAfter(_ ending: Ending) async throws {
        let code = """
            import os, time
            def work(how="pid"):
                if how == "pid":
                    yield {"type": "done", "data": os.getpid()}
                    return
                yield {"type": "start", "data": os.getpid()}
                if how == "crash":
                    os._exit(3)
                if how == "long line":
                    yield {"type": "content", "data": "x" * 200_000}
                if how == "big file":
                    with open(os.path.join(os.environ["PREFAB_OUTPUT_DIR"], "big"), "wb") as file:
                        file.write(b"x" * 5000)
                time.sleep(60)
            """
        // A time limit only where it is the ending: elsewhere a loaded machine could reach it first.
        let timeout = ending == .timeout ? 3 : 60
        let parameters = #", "parameters": [{"name": "how", "type": "string"}], "timeout_seconds": \#(timeout)"#
        // max_calls 2 makes the third call a new worker's; 1 worker, so that a reused one is seen.
        let runtime = ending == .maxCalls ? #", "workers": 1, "max_calls": 2"# : #", "workers": 1"#
        try await ProcessRuntimeTests.run(
            Self.worker("work", code, runtime: runtime, extra: parameters),
            // A line of 200,000 bytes is refused once a read of 64 KiB holds no newline.
            configure: {
                $0.processes.maxLineBytes = 1024
                $0.processes.maxOutputBytes = 1000
            }
        ) { gateway in
            let first = try #require(try await Self.data(gateway, "work").intValue)
            switch ending {
            case .crash:
                let events = try await gateway.invoke("work", #"{"inputs": {"how": "crash"}}"#).events
                #expect(events.last?.errorCode == "PREFAB_CRASHED")
            case .cancel:
                var stream = try await gateway.openStream("work", #"{"inputs": {"how": "sleep"}}"#)
                #expect(try await stream.nextEvent()?.type == "start")
                let id = try #require(stream.response.headers.first(name: "X-Invocation-Id"))
                _ = try await gateway.request(.delete, "/invocations/\(id)")
                let rest = try await stream.rest()
                #expect(rest.last?.prefabEvent?.errorCode == "CANCELLED", "\(rest)")
            case .timeout:
                let events = try await gateway.invoke("work", #"{"inputs": {"how": "sleep"}}"#).events
                #expect(events.last?.errorCode == "TIMEOUT")
            case .protocolError:
                let events = try await gateway.invoke("work", #"{"inputs": {"how": "long line"}}"#).events
                #expect(events.last?.errorCode == "PROTOCOL_ERROR")
            case .outputLimit:
                let events = try await gateway.invoke("work", #"{"inputs": {"how": "big file"}}"#).events
                #expect(events.last?.errorCode == "OUTPUT_TOO_LARGE")
            case .maxCalls:
                #expect(try await Self.data(gateway, "work").intValue == first)
            }
            let next = try #require(try await Self.data(gateway, "work").intValue)
            #expect(next != first)
            #expect(await Probe.eventually { ProcessRuntimeTests.isGone(Int32(first)) }, "worker \(first) still runs")
        }
    }

    /// A message the call did not read, even one sent just as it ended, never reaches the next
    /// call on the worker.
    @Test func aMessageLeftByACallNeverReachesTheNext() async throws {
        let gate = Self.scratch("gate")
        defer { try? FileManager.default.removeItem(at: gate) }
        let code = """
            import os, time
            from prefab_runtime import next_message
            def first(gate):
                yield {"type": "start", "data": os.getpid()}
                while not os.path.exists(gate):
                    time.sleep(0.01)
            def second():
                yield {"type": "done", "data": {"pid": os.getpid(), "message": next_message(timeout=1)}}
            """
        let manifest = """
            {"runtime": {"workers": 1}, "functions": [
             {"name": "first", "streaming": true, "parameters": [{"name": "gate", "type": "string"}]},
             {"name": "second", "streaming": true}]}
            """
        try await ProcessRuntimeTests.run((["pair": manifest], ["pair/main.py": code])) { gateway in
            var stream = try await gateway.openStream("first", #"{"inputs": {"gate": "\#(gate.path)"}}"#)
            let pid = try #require(try await stream.nextEvent()?.data?.intValue)
            let id = try #require(stream.response.headers.first(name: "X-Invocation-Id"))
            for index in 0..<20 {
                let reply = try await gateway.request(
                    .post, "/invocations/\(id)/messages", body: #"{"type": "note", "data": \#(index)}"#)
                #expect(reply.status == .accepted)
            }
            // More messages race the call's end.
            async let racing: Void = {
                for index in 20..<60 {
                    _ = try? await gateway.request(
                        .post, "/invocations/\(id)/messages", body: #"{"type": "note", "data": \#(index)}"#)
                }
            }()
            try Data().write(to: gate)
            #expect(try await stream.rest().last?.prefabEvent?.type == "done")
            let data = try await Self.data(gateway, "second")
            await racing
            #expect(data["pid"]?.intValue == pid, "the same worker")
            #expect(data["message"] == .null, "\(data)")
        }
    }

    @Test func eachCallHasItsOwnVariablesOutputFolderAndWorkingDirectory() async throws {
        let code = """
            import os
            def place(leave=False):
                with open(os.path.join(os.environ["PREFAB_OUTPUT_DIR"], "mine.txt"), "w") as file:
                    file.write(os.environ["PREFAB_INVOCATION_ID"])
                data = {"pid": os.getpid(), "cwd": os.getcwd(), "leaked": os.environ.get("LEAKED"),
                        "invocation": os.environ["PREFAB_INVOCATION_ID"], "output": os.environ["PREFAB_OUTPUT_DIR"],
                        "function": os.environ["PREFAB_FUNCTION"]}
                if leave:
                    os.environ["LEAKED"] = "yes"
                    os.chdir("/")
                yield {"type": "done", "data": data}
            """
        let parameters = #", "parameters": [{"name": "leave", "type": "boolean"}]"#
        try await ProcessRuntimeTests.run(Self.worker("place", code, runtime: #", "workers": 1"#, extra: parameters)) {
            gateway in
            var pids: Set<Int> = []
            for leave in [true, false, false] {
                let response = try await gateway.invoke("place", #"{"inputs": {"leave": \#(leave)}}"#)
                let id = try #require(response.headers[.init("X-Invocation-Id")!])
                let events = response.events
                #expect(events.map(\.type) == ["files", "done"])
                #expect(events.first?.data?.arrayValue?.compactMap { $0["name"]?.stringValue } == ["mine.txt"])
                let data = try #require(events.last?.data)
                pids.insert(try #require(data["pid"]?.intValue))
                #expect(data["invocation"]?.stringValue == id)
                #expect(data["output"]?.stringValue?.hasSuffix("/outputs/\(id)") == true, "\(data)")
                #expect(data["function"]?.stringValue == "place")
                #expect(data["cwd"]?.stringValue?.hasSuffix("/prefabs/place") == true, "\(data)")
                #expect(data["leaked"] == .null, "\(data)")
            }
            #expect(pids.count == 1)
        }
    }

    /// More calls than workers run at once: each waits until all have started (a barrier).
    @Test func moreConcurrentCallsThanWorkersAllRunAtOnce() async throws {
        let barrier = Self.scratch("barrier")
        try FileManager.default.createDirectory(at: barrier, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: barrier) }
        let code = """
            import os, time
            def meet(barrier, count):
                open(os.path.join(barrier, str(os.getpid())), "w").close()
                for _ in range(2000):
                    if len(os.listdir(barrier)) >= count:
                        yield {"type": "done", "data": os.getpid()}
                        return
                    time.sleep(0.01)
                raise RuntimeError("the calls did not all run at once")
            """
        let parameters =
            #", "parameters": [{"name": "barrier", "type": "string"}, {"name": "count", "type": "integer"}]"#
        let count = 3
        try await ProcessRuntimeTests.run(Self.worker("meet", code, runtime: #", "workers": 2"#, extra: parameters)) {
            gateway in
            let body = #"{"inputs": {"barrier": "\#(barrier.path)", "count": \#(count)}}"#
            let pids = try await withThrowingTaskGroup(of: Int.self) { group in
                for _ in 0..<count {
                    group.addTask { try #require(try await Self.data(gateway, "meet", body).intValue) }
                }
                return try await group.reduce(into: Set<Int>()) { $0.insert($1) }
            }
            #expect(pids.count == count)
        }
    }

    @Test func callsPastMaxWorkersWaitForAWorker() async throws {
        let code = """
            import os, time
            def nap():
                time.sleep(0.3)
                yield {"type": "done", "data": os.getpid()}
            """
        try await ProcessRuntimeTests.run(Self.worker("nap", code, runtime: #", "workers": 1, "max_workers": 1"#)) {
            gateway in
            let pids = try await withThrowingTaskGroup(of: Int.self) { group in
                for _ in 0..<3 { group.addTask { try #require(try await Self.data(gateway, "nap").intValue) } }
                return try await group.reduce(into: Set<Int>()) { $0.insert($1) }
            }
            #expect(pids.count == 1, "\(pids)")
        }
    }

    /// Calls that find no worker busy (here: every worker is replaced after its one call) start
    /// one worker each only up to four per core, not one per call: 64 calls at once once started
    /// 58 interpreters (1 GB). The bound is the pool's own limit, so any start past it fails the
    /// test; without the limit the calls waiting when the first worker is replaced (all but one)
    /// all start at once.
    @Test func callsThatFindNoWorkerBusyStartAFewWorkersNotOnePerCall() async throws {
        let log = Self.scratch("workers")
        defer { try? FileManager.default.removeItem(at: log) }
        let code = """
            import os, time
            def note(what):
                with open(os.environ["WORKER_LOG"], "a") as log:
                    log.write(f"{what} {os.getpid()} {time.monotonic()}\\n")
            note("import")
            time.sleep(0.3)
            def quick():
                note("call")
                yield {"type": "done", "data": os.getpid()}
            """
        let runtime = #", "workers": 1, "max_calls": 1, "env": {"WORKER_LOG": "\#(log.path)"}"#
        let limit = 4 * ProcessInfo.processInfo.activeProcessorCount
        let calls = 3 * limit
        try await ProcessRuntimeTests.run(
            Self.worker("quick", code, runtime: runtime),
            // Patience 200 ms: more are started for long calls only after 2 s with none free.
            configure: { $0.processes.workerPatience = .milliseconds(200) }
        ) { gateway in
            // A connection each, all sent at once (the shared HTTP client keeps eight per host).
            let connections = try (0..<calls).map { _ in try RawConnection(port: gateway.port) }
            for connection in connections {
                try connection.sendPost("/invoke/quick", json: #"{"inputs": {}}"#, headers: "Connection: close\r\n")
            }
            for connection in connections {
                let text = try await connection.readToEnd()
                #expect(text.contains(#""type":"done""#), "\(text)")
            }
        }
        // A worker lives from its import to its one call (one that never had a call, to the end).
        var imported: [String: Double] = [:]
        var called: [String: Double] = [:]
        for line in Self.lines(log) {
            let fields = line.split(separator: " ").map(String.init)
            guard fields.count == 3, let time = Double(fields[2]) else { continue }
            if fields[0] == "import" { imported[fields[1]] = time } else { called[fields[1]] = time }
        }
        let changes = imported.flatMap { pid, start in [(start, 1), (called[pid] ?? .infinity, -1)] }
        var alive = 0
        var most = 0
        for (_, change) in changes.sorted(by: { $0.0 < $1.0 || ($0.0 == $1.0 && $0.1 < $1.1) }) {
            alive += change
            most = max(most, alive)
        }
        #expect(imported.count >= calls)
        #expect(most <= limit, "\(most) workers at once, limit \(limit)")
    }

    /// Workers started for a busy moment end once idle; the ones kept ready stay.
    @Test func extraWorkersEndWhenIdle() async throws {
        let barrier = Self.scratch("barrier")
        try FileManager.default.createDirectory(at: barrier, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: barrier) }
        let code = """
            import os, time
            def meet(barrier):
                open(os.path.join(barrier, str(os.getpid())), "w").close()
                while len(os.listdir(barrier)) < 3:
                    time.sleep(0.01)
                yield {"type": "done", "data": os.getpid()}
            """
        let parameters = #", "parameters": [{"name": "barrier", "type": "string"}]"#
        try await ProcessRuntimeTests.run(
            Self.worker("meet", code, runtime: #", "workers": 1"#, extra: parameters),
            configure: { $0.processes.workerIdleExit = .milliseconds(500) }
        ) { gateway in
            let body = #"{"inputs": {"barrier": "\#(barrier.path)"}}"#
            let pids = try await withThrowingTaskGroup(of: Int.self) { group in
                for _ in 0..<3 { group.addTask { try #require(try await Self.data(gateway, "meet", body).intValue) } }
                return try await group.reduce(into: Set<Int>()) { $0.insert($1) }
            }
            #expect(pids.count == 3)
            #expect(
                await Probe.eventually { pids.filter { ProcessRuntimeTests.isGone(Int32($0)) }.count == 2 },
                "running: \(pids.filter { !ProcessRuntimeTests.isGone(Int32($0)) })")
        }
    }

    /// A crash reports its own call's stderr, not what earlier calls on the worker printed.
    @Test func aCrashReportsOnlyItsOwnCallsStderr() async throws {
        let code = """
            import os, sys
            def talk(crash=False):
                print(f"printed by call {os.environ['PREFAB_INVOCATION_ID']}", file=sys.stderr, flush=True)
                if crash:
                    os._exit(4)
                yield {"type": "done", "data": os.getpid()}
            """
        let parameters = #", "parameters": [{"name": "crash", "type": "boolean"}]"#
        try await ProcessRuntimeTests.run(Self.worker("talk", code, runtime: #", "workers": 1"#, extra: parameters)) {
            gateway in
            let pid = try #require(try await Self.data(gateway, "talk").intValue)
            #expect(try await Self.data(gateway, "talk").intValue == pid)
            let response = try await gateway.invoke("talk", #"{"inputs": {"crash": true}}"#)
            let id = try #require(response.headers[.init("X-Invocation-Id")!])
            let error = try #require(response.events.last)
            #expect(error.errorCode == "PREFAB_CRASHED")
            #expect(error.fields["details"] == [.string("printed by call \(id)")])
        }
    }

    /// A worker killed with its call leaves nothing to the next call: that one gets a new worker,
    /// with the module imported afresh and a stderr tail of its own.
    @Test func aKilledWorkersStateDoesNotReachTheNextCall() async throws {
        let code = """
            import os, sys, time
            CALLS = 0
            def state(crash=False):
                global CALLS
                CALLS += 1
                print(f"call {CALLS} of {os.getpid()}", file=sys.stderr, flush=True)
                yield {"type": "start", "data": {"pid": os.getpid(), "calls": CALLS}}
                if crash:
                    os._exit(4)
                time.sleep(60)
            """
        let parameters = #", "parameters": [{"name": "crash", "type": "boolean"}]"#
        try await ProcessRuntimeTests.run(Self.worker("state", code, runtime: #", "workers": 1"#, extra: parameters)) {
            gateway in
            var stream = try await gateway.openStream("state")
            let killed = try #require(try await stream.nextEvent()?.data?["pid"]?.intValue)
            let id = try #require(stream.response.headers.first(name: "X-Invocation-Id"))
            _ = try await gateway.request(.delete, "/invocations/\(id)")
            _ = try await stream.rest()
            let events = try await gateway.invoke("state", #"{"inputs": {"crash": true}}"#).events
            let pid = try #require(events.first?.data?["pid"]?.intValue)
            #expect(pid != killed)
            #expect(events.first?.data?["calls"] == 1)
            #expect(events.last?.fields["details"] == [.string("call 1 of \(pid)")])
        }
    }

    /// What a call starts ends with the call, as with a process per call; what the module started
    /// as it was imported lives as long as the worker.
    @Test func aCallsProcessesEndWithItTheImportsWithTheWorker() async throws {
        let code = """
            import os, subprocess
            AT_IMPORT = subprocess.Popen(["sleep", "1000"])
            def spawn():
                mine = subprocess.Popen(["sleep", "1000"])
                away = subprocess.Popen(["sleep", "1000"], start_new_session=True)
                yield {"type": "done", "data": {"import": AT_IMPORT.pid, "call": [mine.pid, away.pid],
                                                "worker": os.getpid()}}
            """
        let seen = Mutex<[Int]>([])
        try await ProcessRuntimeTests.run(Self.worker("spawn", code, runtime: #", "workers": 1"#)) { gateway in
            for _ in 0..<2 {
                let data = try await Self.data(gateway, "spawn")
                let started = data["call"]?.arrayValue?.compactMap(\.intValue) ?? []
                #expect(started.count == 2)
                #expect(
                    await Probe.eventually { started.allSatisfy { ProcessRuntimeTests.isGone(Int32($0)) } },
                    "still running: \(started.filter { !ProcessRuntimeTests.isGone(Int32($0)) })")
                let atImport = try #require(data["import"]?.intValue)
                #expect(!ProcessRuntimeTests.isGone(Int32(atImport)))
                let worker = try #require(data["worker"]?.intValue)
                seen.withLock { $0 = [atImport, worker] }
            }
        }
        let last = seen.withLock { $0 }
        #expect(await Probe.eventually { last.allSatisfy { ProcessRuntimeTests.isGone(Int32($0)) } })
    }
}
