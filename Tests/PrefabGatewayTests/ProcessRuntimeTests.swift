import Foundation
import HTTPTypes
import PrefabGateway
import PrefabKit
import Synchronization
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Process prefabs (Python generators and commands) through a live gateway.
@Suite(.timeLimit(.minutes(1))) struct ProcessRuntimeTests {
    /// A Python prefab folder: `main.py` makes it Python by convention; its runtime block gives
    /// only its isolation (`runtime` adds to it), so that every test runs on workers and on a
    /// process per call.
    static func python(
        _ isolation: Isolation,
        _ function: String,
        _ code: String,
        streaming: Bool = true,
        extra: String = "",
        runtime: String = ""
    ) -> (manifests: [String: String], files: [String: String]) {
        let manifest = """
            {"runtime": {"isolation": "\(isolation.rawValue)"\(runtime)},
             "functions": [{"name": "\(function)", "streaming": \(streaming)\(extra)}]}
            """
        return ([function: manifest], ["\(function)/main.py": code])
    }

    static func run(
        _ prefab: (manifests: [String: String], files: [String: String]),
        configure: (inout GatewayConfiguration) -> Void = { _ in },
        _ test: @Sendable (LiveGateway) async throws -> Void
    ) async throws {
        try await LiveGateway.run([], rawManifests: prefab.manifests, files: prefab.files, configure: configure, test)
    }

    /// True once no process with this id exists any more (not even as a zombie).
    static func isGone(_ pid: Int32) -> Bool {
        !FileManager.default.fileExists(atPath: "/proc/\(pid)")
    }

    @Test(arguments: Isolation.allCases) func eventsAreRelayedAsTheyArePrinted(_ isolation: Isolation) async throws {
        // The prefab prints `start`, then waits until the test has received it (a file appears):
        // only an event relayed as it was printed lets it finish in time.
        let code = """
            import os, time
            def gated(gate):
                yield {"type": "start"}
                for _ in range(200):
                    if os.path.exists(gate):
                        yield {"type": "done", "data": "relayed"}
                        return
                    time.sleep(0.05)
                yield {"type": "done", "data": "never relayed"}
            """
        let parameters = #", "parameters": [{"name": "gate", "type": "string", "required": true}]"#
        let gate = FileManager.default.temporaryDirectory.appendingPathComponent("gate-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: gate) }
        try await Self.run(Self.python(isolation, "gated", code, extra: parameters)) { gateway in
            var stream = try await gateway.openStream("gated", #"{"inputs": {"gate": "\#(gate.path)"}}"#)
            #expect(try await stream.nextEvent()?.type == "start")
            try Data().write(to: gate)
            #expect(try await stream.nextEvent() == .done("relayed"))
        }
    }

    @Test(arguments: Isolation.allCases) func printsInThePrefabGoToTheLogNotTheStream(_ isolation: Isolation)
        async throws
    {
        let code = """
            def chatty():
                print("debug output")
                yield {"type": "content", "data": "real"}
            """
        try await Self.run(Self.python(isolation, "chatty", code)) { gateway in
            let events = try await gateway.invoke("chatty").events
            #expect(events == [.content("real"), .done()])
        }
    }

    @Test(arguments: Isolation.allCases) func disconnectingKillsTheProcessAndWhatItStartedLeavingNoOrphans(
        _ isolation: Isolation
    ) async throws {
        let code = """
            import os, subprocess, time
            def forever():
                child = subprocess.Popen(["sleep", "60"])
                yield {"type": "start", "data": {"pid": os.getpid(), "child": child.pid}}
                while True:
                    time.sleep(0.05)
                    yield {"type": "progress", "data": {"current": 1, "total": 2}}
            """
        try await Self.run(Self.python(isolation, "forever", code)) { gateway in
            var pids: [Int32] = []
            for _ in 0..<8 {
                let connection = try RawConnection(port: gateway.port)
                try connection.sendPost("/invoke/forever", json: "{}")
                let text = try await connection.readOffPool(until: #""child":"#)
                let event = try #require(text.split(separator: "\n").first { $0.hasPrefix("data: ") })
                let data = try JSONValue(parsing: String(event.dropFirst(6)))["data"]
                pids += [data?["pid"]?.intValue, data?["child"]?.intValue].compactMap { $0.map(Int32.init) }
                connection.hangUp()
            }
            #expect(pids.count == 16)
            #expect(
                await Probe.eventually { pids.allSatisfy(Self.isGone) },
                "still running: \(pids.filter { !Self.isGone($0) })")
        }
    }

    @Test(arguments: Isolation.allCases) func aStoppedProcessGetsSIGTERMFirstAndSIGKILLAfterTheGracePeriod(
        _ isolation: Isolation
    ) async throws {
        // The prefab notes each SIGTERM in a file and keeps running: the note shows SIGTERM came
        // (skipping it fails the first check), and its time shows SIGKILL waited for the grace.
        let code = """
            import os, signal, time
            def stubborn(note):
                def noted(*_):
                    with open(note, "a") as file:
                        file.write(f"{time.time()}\\n")
                signal.signal(signal.SIGTERM, noted)
                yield {"type": "start", "data": {"pid": os.getpid()}}
                while True:
                    time.sleep(0.05)
                    yield {"type": "content", "data": "."}
            """
        let parameters = #", "parameters": [{"name": "note", "type": "string", "required": true}]"#
        let note = FileManager.default.temporaryDirectory.appendingPathComponent("sigterm-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: note) }
        let grace = Duration.seconds(2)
        try await Self.run(
            Self.python(isolation, "stubborn", code, extra: parameters),
            configure: { $0.processes.terminationGrace = grace }
        ) { gateway in
            let connection = try RawConnection(port: gateway.port)
            try connection.sendPost("/invoke/stubborn", json: #"{"inputs": {"note": "\#(note.path)"}}"#)
            let text = try await connection.readOffPool(until: #""pid":"#)
            let pid = try #require(text.firstMatch(of: /"pid":(\d+)/).flatMap { Int32($0.1) })
            connection.hangUp()
            #expect(
                await Probe.eventually { FileManager.default.fileExists(atPath: note.path) },
                "the process got no SIGTERM")
            #expect(await Probe.eventually { Self.isGone(pid) })
            let gone = Date().timeIntervalSince1970
            let noted = try String(contentsOf: note, encoding: .utf8).split(separator: "\n").compactMap { Double($0) }
            let termed = try #require(noted.first)
            // SIGKILL comes the grace after SIGTERM; the handler may run late on a loaded machine,
            // so half of it: a SIGKILL without grace ends the process within milliseconds.
            #expect(gone - termed >= grace.seconds / 2, "killed \(gone - termed) s after SIGTERM")
        }
    }

    @Test(arguments: Isolation.allCases) func aCallPastItsTimeoutEndsWithTIMEOUTAndTheProcessIsStopped(
        _ isolation: Isolation
    ) async throws {
        let code = """
            import os, time
            def sleepy():
                yield {"type": "start", "data": {"pid": os.getpid()}}
                time.sleep(30)
                yield {"type": "done"}
            """
        // 3 s: enough for Python to start and yield even while the whole suite runs in parallel.
        try await Self.run(Self.python(isolation, "sleepy", code, extra: #", "timeout_seconds": 3"#)) { gateway in
            let started = ContinuousClock.now
            let events = try await gateway.invoke("sleepy").events
            #expect(ContinuousClock.now - started < .seconds(10))
            #expect(events.map(\.type) == ["start", "error"])
            #expect(events.last?.errorCode == "TIMEOUT")
            let pid = try #require(events.first?.data?["pid"]?.intValue)
            #expect(await Probe.eventually { Self.isGone(Int32(pid)) })
        }
    }

    @Test(
        arguments: Isolation.allCases,
        [
            ("os._exit(3)", "exited with status 3"),
            ("os.kill(os.getpid(), signal.SIGKILL)", "killed by signal 9"),
        ])
    func aProcessThatDiesMidStreamEndsWithPREFAB_CRASHEDAndItsStderr(
        _ isolation: Isolation, _ death: (code: String, how: String)
    ) async throws {
        let how = death.how
        let code = """
            import os, signal, sys
            def doomed():
                yield {"type": "start"}
                print("about to fail", file=sys.stderr, flush=True)
                \(death.code)
                yield {"type": "done"}
            """
        try await Self.run(Self.python(isolation, "doomed", code)) { gateway in
            let events = try await gateway.invoke("doomed").events
            #expect(events.map(\.type) == ["start", "error"])
            #expect(events.last?.errorCode == "PREFAB_CRASHED")
            let message = try #require(events.last?.data?.stringValue)
            #expect(message.contains(how), "\(message)")
            #expect(message.contains("about to fail"), "\(message)")
        }
    }

    @Test func garbageOnStdoutIsAProtocolError() async throws {
        let script = """
            #!/bin/sh
            read call
            echo '{"type": "start"}'
            echo 'this is not json'
            sleep 60
            """
        let manifest =
            #"{"runtime": {"kind": "process", "command": ["./run.sh"]}, "functions": [{"name": "noisy", "streaming": true}]}"#
        try await LiveGateway.run([], rawManifests: ["noisy": manifest], files: ["noisy/run.sh": script]) { gateway in
            let started = ContinuousClock.now
            let events = try await gateway.invoke("noisy").events
            #expect(events.map(\.type) == ["start", "error"])
            #expect(events.last?.errorCode == "PROTOCOL_ERROR")
            #expect(
                events.last?.data?.stringValue?.contains(
                    "line 2 of the prefab's output is not a JSON object: this is not json") == true)
            // Waiting for the process would take its 60 s sleep; stopping it takes well under a
            // second idle, and up to ~5 s seen with the whole suite on a loaded machine.
            #expect(ContinuousClock.now - started < .seconds(20), "the process was stopped, not waited for")
        }
    }

    @Test func aHugeLineIsRefusedWithBoundedMemory() async throws {
        let script = """
            #!/bin/sh
            read call
            echo '{"type": "start"}'
            head -c 20000000 /dev/zero | tr '\\0' 'x'
            """
        let manifest =
            #"{"runtime": {"kind": "process", "command": ["./run.sh"]}, "functions": [{"name": "flood", "streaming": true}]}"#
        try await LiveGateway.run(
            [],
            rawManifests: ["flood": manifest],
            files: ["flood/run.sh": script],
            configure: { $0.processes.maxLineBytes = 1 << 20 }
        ) { gateway in
            let events = try await gateway.invoke("flood").events
            #expect(events.map(\.type) == ["start", "error"])
            #expect(events.last?.errorCode == "PROTOCOL_ERROR")
            #expect(events.last?.data?.stringValue?.contains("longer than 1048576 bytes") == true)
        }
    }

    @Test(arguments: Isolation.allCases) func theProcessGetsACleanEnvironment(_ isolation: Isolation) async throws {
        setenv("GATEWAY_SECRET_TOKEN", "s3cret", 1)
        let code = """
            import os
            def env():
                yield {"type": "done", "data": dict(os.environ)}
            """
        var prefab = Self.python(isolation, "env", code)
        prefab.manifests["env"] =
            #"{"runtime": {"env": {"GREETING": "hi"}, "isolation": "\#(isolation.rawValue)"}, "functions": [{"name": "env", "streaming": true}]}"#
        try await Self.run(prefab) { gateway in
            let response = try await gateway.invoke("env")
            let environment = try #require(response.events.last?.data?.objectValue)
            #expect(environment["GATEWAY_SECRET_TOKEN"] == nil)
            #expect(environment["GREETING"] == "hi")
            #expect(environment["PATH"] != nil && environment["HOME"] != nil && environment["LANG"] != nil)
            #expect(environment["PREFAB_INVOCATION_ID"]?.stringValue == response.headers[.init("X-Invocation-Id")!])
            let own = Set([
                "PATH", "HOME", "LANG", "GREETING", "PREFAB_INVOCATION_ID", "PREFAB_OUTPUT_DIR", "PREFAB_FUNCTION",
                "PREFAB_GATEWAY_CHILD",
            ])
            let python = Set(["PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE", "PYTHONIOENCODING", "LC_CTYPE"])
            #expect(Set(environment.keys).subtracting(own).subtracting(python).isEmpty, "\(environment.keys.sorted())")
        }
    }

    @Test(arguments: Isolation.allCases) func filesWrittenByAProcessGetURLs(_ isolation: Isolation) async throws {
        let code = """
            import os
            def write():
                with open(os.path.join(os.environ["PREFAB_OUTPUT_DIR"], "out.txt"), "w") as file:
                    file.write("from python\\n")
                yield {"type": "done"}
            """
        try await Self.run(Self.python(isolation, "write", code)) { gateway in
            let events = try await gateway.invoke("write").events
            #expect(events.map(\.type) == ["files", "done"])
            let url = try #require(events.first?.data?.arrayValue?.first?["url"]?.stringValue)
            let file = try await gateway.request(.get, String(url.dropFirst(gateway.baseURL.count)))
            #expect(file.text == "from python\n")
        }
    }

    @Test(arguments: Isolation.allCases) func callsLeaveNoFileDescriptorsBehind(_ isolation: Isolation) async throws {
        // Each child reports its pipes (stdin, stdout, stderr) by inode; once the calls are over,
        // the gateway holds none of them. Counting the whole process's descriptors instead would
        // see every other test that runs beside this one.
        let code = """
            import os, sys
            def pipes():
                print("to stderr", file=sys.stderr)
                links = set()
                for fd in os.listdir("/proc/self/fd"):
                    try:
                        links.add(os.readlink(f"/proc/self/fd/{fd}"))
                    except OSError:
                        pass  # the listing's own descriptor, closed by now
                yield {"type": "done", "data": sorted(link for link in links if link.startswith("pipe:"))}
            """
        let seen = Mutex<Set<String>>([])
        try await Self.run(Self.python(isolation, "pipes", code)) { gateway in
            for _ in 0..<20 {
                let data = try #require(try await gateway.invoke("pipes").events.last?.data?.arrayValue)
                #expect(data.count == 3, "\(data)")
                seen.withLock { $0.formUnion(data.compactMap(\.stringValue)) }
            }
            let pipes = seen.withLock { $0 }
            guard isolation == .processPerCall else {
                // The two workers kept ready served the calls one after another (the one that came
                // free last, or the second once it had imported the prefab): the same pipes.
                #expect(pipes.count == 3 || pipes.count == 6, "\(pipes.count) pipes")
                return
            }
            #expect(pipes.count == 60)
            #expect(
                await Probe.eventually { Self.openPipes().isDisjoint(with: pipes) },
                "still open: \(Self.openPipes().intersection(pipes).sorted())")
        }
        // A worker's pipes are closed once the gateway has stopped.
        let pipes = seen.withLock { $0 }
        #expect(
            await Probe.eventually { Self.openPipes().isDisjoint(with: pipes) },
            "still open: \(Self.openPipes().intersection(pipes).sorted())")
    }

    /// The pipes this process holds, as `pipe:[inode]`.
    static func openPipes() -> Set<String> {
        let descriptors = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
        return Set(
            descriptors.compactMap { try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/\($0)") }
                .filter { $0.hasPrefix("pipe:") })
    }

    @Test(arguments: Isolation.allCases) func aNonStreamingPythonFunctionAnswersItsReturnValue(_ isolation: Isolation)
        async throws
    {
        let code = """
            def add(a, b=2):
                return {"sum": a + b}
            """
        let parameters = #", "parameters": [{"name": "a", "type": "integer", "required": true}]"#
        try await Self.run(Self.python(isolation, "add", code, streaming: false, extra: parameters)) { gateway in
            let response = try await gateway.invoke("add", #"{"inputs": {"a": 40}}"#)
            #expect(response.status == .ok)
            #expect(response.json?["result"] == ["sum": 42])
        }
    }

    @Test(arguments: Isolation.allCases) func aValueThatIsNotJSONIsAnErrorNamingTheField(_ isolation: Isolation)
        async throws
    {
        let code = """
            def odd():
                yield {"type": "start"}
                yield {"type": "content", "data": {"items": [1, {2, 3}]}}
            """
        try await Self.run(Self.python(isolation, "odd", code)) { gateway in
            let events = try await gateway.invoke("odd").events
            #expect(events.last?.errorCode == "NOT_SERIALIZABLE")
            #expect(
                events.last?.data?.stringValue
                    == "event 2 cannot be sent as JSON: field 'data.items[1]' is a value of type set")
        }
    }

    @Test(arguments: Isolation.allCases) func aRaisedExceptionBecomesAnErrorEventWithItsCode(_ isolation: Isolation)
        async throws
    {
        let code = """
            class QuotaExceeded(Exception):
                error_code = "QUOTA_EXCEEDED"
            def limited():
                yield {"type": "start"}
                raise QuotaExceeded("no more today")
            """
        try await Self.run(Self.python(isolation, "limited", code)) { gateway in
            let events = try await gateway.invoke("limited").events
            #expect(events == [.start(), .error("no more today", code: "QUOTA_EXCEEDED")])
        }
    }

    @Test(arguments: Isolation.allCases) func aPrefabWithItsOwnVenvRunsOnItsPython(_ isolation: Isolation) async throws
    {
        var prefab = Self.python(
            isolation,
            "venv", "import os\ndef venv():\n    yield {'type': 'done', 'data': os.environ.get('VIA_VENV')}\n")
        let real = PythonInterpreterPath.current
        prefab.files["venv/.venv/bin/python"] = "#!/bin/sh\nexport VIA_VENV=yes\nexec \(real) \"$@\"\n"
        try await Self.run(prefab) { gateway in
            let events = try await gateway.invoke("venv").events
            #expect(events == [.done("yes")])
        }
    }

    @Test func warmChildrenAreStartedAheadAndUsedOnceWithTheirOwnInvocation() async throws {
        // Each child leaves a marker when its module is imported, so the test waits for the warm
        // child itself rather than for a fixed time (1 s was too short when the suite's Python
        // starts crowded two cores).
        let markers = FileManager.default.temporaryDirectory.appendingPathComponent("warm-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: markers, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: markers) }
        let code = """
            import os, time
            IMPORTED = time.time()
            open(os.path.join("\(markers.path)", str(os.getpid())), "w").close()
            def warm():
                yield {"type": "done", "data": {"pid": os.getpid(), "imported": IMPORTED,
                                                "invocation": os.environ["PREFAB_INVOCATION_ID"]}}
            """
        let markersPath = markers.path
        let imported: @Sendable () -> Int = {
            (try? FileManager.default.contentsOfDirectory(atPath: markersPath).count) ?? 0
        }
        try await Self.run(Self.python(.processPerCall, "warm", code), configure: { $0.processes.warmProcesses = 1 }) {
            gateway in
            var pids: Set<Int> = []
            for call in 0..<3 {
                // One child is started at launch and one after each call: this call's child is ready.
                #expect(await Probe.eventually(within: .seconds(30)) { imported() >= call + 1 })
                let called = Date().timeIntervalSince1970
                let response = try await gateway.invoke("warm")
                let data = try #require(response.events.last?.data)
                #expect(data["invocation"]?.stringValue == response.headers[.init("X-Invocation-Id")!])
                pids.insert(try #require(data["pid"]?.intValue))
                // Started ahead: its module was imported before the call was made.
                #expect(try #require(data["imported"]?.doubleValue) < called)
            }
            #expect(pids.count == 3)
        }
    }

    @Test(arguments: Isolation.allCases) func aManifestFunctionMissingFromMainPyIsAnErrorEvent(_ isolation: Isolation)
        async throws
    {
        try await Self.run(Self.python(isolation, "absent", "def other():\n    return 1\n")) { gateway in
            let events = try await gateway.invoke("absent").events
            #expect(events.last?.errorCode == "FUNCTION_NOT_FOUND")
        }
    }
}

/// How a Python prefab's calls share processes: the process-runtime tests run against both.
enum Isolation: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case worker
    case processPerCall = "process-per-call"

    var testDescription: String { rawValue }
}

/// The real interpreter behind `python3`, for tests that wrap it.
enum PythonInterpreterPath {
    static let current: String = {
        let process = Process()
        let output = Pipe()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-c", "import sys; print(sys.executable)"]
        process.standardOutput = output
        try? process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }()

}

extension ProcessRuntimeTests {
    @Test func aQuickCallStartedBesideLongOnesEndsWhenItsProcessEnds() async throws {
        // A call ends when its own process does, however many long ones run beside it.
        let script = """
            #!/bin/sh
            read call
            case "$call" in *'"function":"slow"'*) sleep 15 ;; esac
            echo '{"type": "done"}'
            """
        let manifest =
            #"{"runtime": {"kind": "process", "command": ["./run.sh"]}, "functions": [{"name": "slow", "streaming": true}, {"name": "quick", "streaming": true}]}"#
        try await LiveGateway.run([], rawManifests: ["pair": manifest], files: ["pair/run.sh": script]) { gateway in
            let slowest = try await withThrowingTaskGroup(of: Duration.self) { group in
                var slow: [RawConnection] = []
                for _ in 0..<10 {
                    let connection = try RawConnection(port: gateway.port)
                    try connection.sendPost("/invoke/slow", json: "{}")
                    slow.append(connection)
                    group.addTask {
                        let started = ContinuousClock.now
                        _ = try await gateway.invoke("quick")
                        return ContinuousClock.now - started
                    }
                }
                var slowest = Duration.zero
                for try await duration in group { slowest = max(slowest, duration) }
                for connection in slow { connection.hangUp() }
                return slowest
            }
            // Waiting behind the slow calls would take their 15 s; 8 s was once exceeded (8.1 s)
            // with the load average at 15, so 12 s.
            #expect(slowest < .seconds(12), "a quick call took \(slowest)")
        }
    }
}
