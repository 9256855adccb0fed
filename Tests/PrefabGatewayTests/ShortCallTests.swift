import Foundation
import HTTPTypes
import Logging
import PrefabKit
import Testing

@testable import PrefabGateway

/// Short calls: the pieces of their path rewritten for speed keep their meaning, and calls of
/// functions that have proven short run off the function threads without giving up a guarantee.
@Suite(.timeLimit(.minutes(1))) struct ShortCallTests {
    /// Ids are 32 lowercase hex digits, the high bits of each half included (a digit written in the
    /// wrong place, or a leading zero dropped, shows in 2,000 ids), and do not repeat.
    @Test func invocationIdsAre32HexDigitsAndDistinct() {
        let ids = (0..<2000).map { _ in InvocationID.make() }
        #expect(ids.allSatisfy { InvocationID.isValid($0) })
        #expect(Set(ids).count == ids.count)
        for position in [0, 16] {
            // 2,000 ids: each of the 16 digits turns up first in a half with near certainty.
            let leading = Set(ids.map { $0.utf8[$0.utf8.index($0.utf8.startIndex, offsetBy: position)] })
            #expect(leading.count == 16)
        }
    }

    @Test(
        arguments: [
            (nil, false),
            ("", false),
            ("*/*", false),
            ("text/event-stream", false),
            ("application/json", true),
            ("application/json; charset=utf-8", true),
            ("text/html, application/json;q=0.9", true),
            ("application/json, text/event-stream", false),
            ("application/jso", false),
        ] as [(String?, Bool)])
    func anAcceptHeaderAsksForJSONOnlyWithoutAStream(accept: String?, json: Bool) {
        #expect(Gateway.wantsJSON(accept) == json)
    }

    /// A function whose inputs say how it behaves: `quick` returns at once, `fail` throws, `loop`
    /// yields every 10 ms until it is stopped (its time limit is 0.5 s), `nap` blocks its thread
    /// for `seconds` or until its test wakes it (`NapRoom`), where no cancel reaches it. Its first
    /// event says where it ran: on a function thread, or as a task.
    static let flexible = TestPrefab(
        folder: "flexible",
        manifest: FunctionManifest(
            name: "flexible", streaming: true,
            parameters: [
                ParameterManifest(name: "mode", type: .string, required: true),
                ParameterManifest(name: "seconds", type: .number, defaultValue: 0),
                ParameterManifest(name: "room", type: .string, defaultValue: ""),
            ],
            timeoutSeconds: 0.5),
        implementation: .streaming { inputs, context in
            try context.yield(.content(withUnsafeCurrentTask { $0 == nil } ? "function thread" : "task"))
            switch try inputs.string("mode") {
            case "fail": throw PrefabError(.init(rawValue: "BROKEN"), "broken on purpose")
            case "loop":
                while true {
                    try context.yield(.content("tick"))
                    Thread.sleep(forTimeInterval: 0.01)
                }
            case "nap": NapRoom.shared.sleep(try inputs.string("room"), seconds: try inputs.double("seconds"))
            default: break
            }
        }
    )

    static func call(_ gateway: LiveGateway, _ mode: String, seconds: Double = 0) async throws -> TestReply {
        try await gateway.invoke("flexible", #"{"inputs": {"mode": "\#(mode)", "seconds": \#(seconds)}}"#)
    }

    /// Where a call ran, from its first event.
    static func thread(of reply: TestReply) -> String? { reply.events.first?["data"]?.stringValue }

    /// Makes `flexible` prove short: calls it until a call runs as a task, and returns how many
    /// ran on function threads before. On a fresh gateway that is at least `provenAfter`; more
    /// when a call took over `shortEnough` (a loaded machine, a debug build's first calls).
    @discardableResult
    static func warmUp(_ gateway: LiveGateway) async throws -> Int {
        var calls = 0
        while try await thread(of: call(gateway, "quick")) == "function thread", calls < 200 { calls += 1 }
        #expect(calls < 200)
        return calls
    }

    /// Calls run on function threads until their function has proven short, then off them; a call
    /// that runs long sends the function back to function threads. And each call off the function
    /// threads keeps the guarantees: one terminal event, the function's error, its time limit,
    /// resuming a finished call's events.
    @Test func aFunctionThatHasProvenShortRunsOffTheFunctionThreadsAndKeepsEveryGuarantee() async throws {
        try await LiveGateway.run([Self.flexible], configure: { $0.shortCallSlots = 1 }) { gateway in
            #expect(try await Self.warmUp(gateway) >= ShortCalls.provenAfter)
            /// A call of `mode` that ran as a task: on a loaded machine a call may take over 1 ms
            /// and send the function back to function threads, so it is proven short again first.
            func callAsTask(_ mode: String) async throws -> TestReply {
                for _ in 0..<5 {
                    try await Self.warmUp(gateway)
                    let reply = try await Self.call(gateway, mode)
                    if Self.thread(of: reply) == "task" { return reply }
                }
                Issue.record("no call of \(mode) ran as a task")
                return try await Self.call(gateway, mode)
            }
            let quick = try await callAsTask("quick")
            #expect(quick.events.map(\.type) == ["content", "done"])

            let failed = try await callAsTask("fail")
            #expect(failed.events.last?.errorCode == "BROKEN")
            #expect(failed.events.filter(\.isTerminal).count == 1)

            // A finished call's events are there to resume from.
            let id = try #require(quick.headers[HTTPField.Name("X-Invocation-Id")!])
            let resumed = try await gateway.request(.get, "/invocations/\(id)/events?after=1")
            #expect(resumed.events.map(\.type) == ["done"])

            let timedOut = try await callAsTask("loop")
            #expect(timedOut.events.last?.errorCode == "TIMEOUT")
            #expect(timedOut.events.filter(\.isTerminal).count == 1)
            // It ran 0.5 s: the function runs on function threads again.
            #expect(Self.thread(of: try await Self.call(gateway, "quick")) == "function thread")
        }
    }

    /// A function that has proven short and then sleeps holds the thread it runs on, one of those
    /// that serve requests. Other requests must still be answered while eight calls per core
    /// sleep: a request stuck behind them would wait for the naps, 20 s; answered, they took
    /// 3-13 ms alone and up to 2.4 s amid the whole suite, whose tests share the test process's
    /// two cooperative threads (one of them held by a nap). The bound, 8 s, lies between. The naps
    /// are woken once measured, so they hold no thread past the test. (Measured: Swift's pool on
    /// Linux adds threads for blocked ones, so this held even with every nap run there; at most
    /// one fewer than the cores run there, which keeps a thread free where a pool does not grow.)
    @Test func callsThatTurnOutLongNeverHoldEveryThreadThatServesRequests() async throws {
        let cores = ProcessInfo.processInfo.activeProcessorCount
        let room = UUID().uuidString
        defer { NapRoom.shared.wake(room) }
        try await LiveGateway.run([Self.flexible, StreamingTests.count]) { gateway in
            try await Self.warmUp(gateway)
            // On connections of their own: the test client's pool would queue the requests below.
            var naps: [RawConnection] = []
            for _ in 0..<(8 * cores) {
                let connection = try RawConnection(port: gateway.port)
                try connection.sendPost(
                    "/invoke/flexible", json: #"{"inputs": {"mode": "nap", "seconds": 20, "room": "\#(room)"}}"#)
                naps.append(connection)
            }
            defer {
                NapRoom.shared.wake(room)
                for connection in naps { connection.hangUp() }
            }
            try await Task.sleep(for: .milliseconds(300))
            for _ in 0..<3 {
                let started = ContinuousClock.now
                #expect(try await gateway.invoke("count").events.last?.type == "done")
                let invoked = ContinuousClock.now
                #expect(try await gateway.request(.get, "/health").status == .ok)
                let answered = ContinuousClock.now
                #expect(
                    answered - started < .seconds(8), "invoke took \(invoked - started), /health \(answered - invoked)")
            }
        }
    }

    /// A process prefab's call blocks on its pipes and may wait for a free worker: however short
    /// its calls, it never runs on a thread that serves requests. A Swift function beside it, with
    /// the same record, does (so the check can fail).
    @Test func aProcessPrefabsCallsNeverRunAsTasks() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("short-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: root) }
        let prefabs = root.appendingPathComponent("prefabs")
        // No worker kept ready: this test calls nothing, so no process starts.
        let manifest = #"{"runtime": {"workers": 0}, "functions": [{"name": "quick_py", "streaming": true}]}"#
        try LiveGateway.writeManifest(manifest, folder: "quick_py", in: prefabs)
        try "def quick_py():\n    yield {\"type\": \"done\"}\n".write(
            to: prefabs.appendingPathComponent("quick_py/main.py"), atomically: true, encoding: .utf8)
        let swiftFolder = PrefabManifest(name: "flexible", functions: [Self.flexible.manifest])
        try LiveGateway.writeManifest(swiftFolder.json.jsonString(pretty: true), folder: "flexible", in: prefabs)
        var configuration = GatewayConfiguration()
        configuration.prefabsDirectory = prefabs
        configuration.dataDirectory = root.appendingPathComponent("data")
        configuration.shortCallSlots = 1
        let gateway = try Gateway.load(
            configuration: configuration, compiled: ["flexible": ["flexible": Self.flexible.implementation]],
            logger: Logger(label: "gateway-test"))
        #expect(gateway.catalog.functions["quick_py"]?.runtime == "python")
        for _ in 0..<ShortCalls.provenAfter {
            gateway.shortCalls.record("quick_py", ran: .zero)
            gateway.shortCalls.record("flexible", ran: .zero)
        }
        #expect(!gateway.shortCalls.begin("quick_py"))
        #expect(gateway.shortCalls.begin("flexible"))
        gateway.shortCalls.end()
    }
}

/// Where `flexible`'s naps block their threads: until their test wakes their room, or their time
/// is up.
final class NapRoom: @unchecked Sendable {
    static let shared = NapRoom()
    private let condition = NSCondition()
    private var woken: Set<String> = []

    func sleep(_ room: String, seconds: Double) {
        let deadline = Date(timeIntervalSinceNow: seconds)
        condition.lock()
        defer { condition.unlock() }
        while !woken.contains(room), condition.wait(until: deadline) {}
    }

    func wake(_ room: String) {
        condition.lock()
        woken.insert(room)
        condition.broadcast()
        condition.unlock()
    }
}
