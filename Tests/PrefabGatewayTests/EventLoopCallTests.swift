import Foundation
import NIOPosix
import PrefabKit
import Testing

@testable import PrefabGateway

/// A synchronous function whose manifest says `"runs_on_event_loop": true` runs on the event loop
/// of the connection that asked. There it cannot wait: each way of waiting ends its call with
/// `CANNOT_WAIT_ON_EVENT_LOOP` instead of holding the loop, and a call that runs too long sends
/// the function to function threads.
@Suite(.timeLimit(.minutes(1))) struct EventLoopCallTests {
    /// Its first event names the thread it runs on; then `mode` says what it does.
    static let onLoop = TestPrefab(
        folder: "on_loop",
        manifest: FunctionManifest(
            name: "on_loop", streaming: true,
            parameters: [
                ParameterManifest(name: "mode", type: .string, required: true),
                ParameterManifest(name: "n", type: .integer, defaultValue: 0),
            ],
            runsOnEventLoop: true),
        implementation: .streaming { inputs, context in
            try context.yield(.content(threadName()))
            let n = try inputs.int("n")
            switch try inputs.string("mode") {
            case "ask": _ = try context.ask("Which?", id: "which")
            case "ask-and-carry-on":
                // A function that swallows the error still ends with it, not with `done`.
                _ = try? context.ask("Which?", id: "which")
                try? context.yield(.content("after the refusal"))
            case "sleep": try context.sleep(for: .milliseconds(n))
            case "message": _ = try context.nextMessage(timeout: .seconds(1))
            case "flood":
                for index in 1...n { try context.yield(.content("\(index) " + String(repeating: "x", count: 1000))) }
            case "spin":
                let until = ContinuousClock.now + .milliseconds(n)
                while ContinuousClock.now < until {}
            default: break
            }
        })

    /// The same function without the flag.
    static let offLoop = TestPrefab.streaming("off_loop") { _, context in
        try context.yield(.content(threadName()))
    }

    /// Where the calling thread belongs: an event loop, or not (a function thread, whose kernel
    /// name is that of the loop that started it).
    static func threadName() -> String {
        MultiThreadedEventLoopGroup.currentEventLoop == nil ? "function thread" : "event loop"
    }

    /// A debug build amid the whole suite can take over the 10 ms limit for a quick call, which
    /// would move the function off the loop: the tests not about that limit raise it.
    static func patient(_ configuration: inout GatewayConfiguration) {
        configuration.eventLoopOverrunLimit = .seconds(10)
    }

    static func call(_ gateway: LiveGateway, _ mode: String, n: Int = 0) async throws -> [PrefabEvent] {
        try await gateway.invoke("on_loop", #"{"inputs": {"mode": "\#(mode)", "n": \#(n)}}"#).events
    }

    static func ranOnALoop(_ events: [PrefabEvent]) -> Bool {
        events.first?["data"] == "event loop"
    }

    @Test func itsCallsRunOnTheEventLoopFromTheFirstAndStreamAsAnyOther() async throws {
        try await LiveGateway.run([Self.onLoop, Self.offLoop], configure: Self.patient) { gateway in
            for _ in 0..<20 {
                let events = try await Self.call(gateway, "quick")
                #expect(events.map(\.type) == ["content", "done"])
                #expect(Self.ranOnALoop(events), "\(events)")
            }
            let other = try await gateway.invoke("off_loop").events
            #expect(other.first?["data"] == "function thread")
            // Its finished events are there to resume from, as any call's.
            let reply = try await gateway.invoke("on_loop", #"{"inputs": {"mode": "quick"}}"#)
            let id = try #require(reply.headers[.init("X-Invocation-Id")!])
            #expect(try await gateway.request(.get, "/invocations/\(id)/events?after=1").events.map(\.type) == ["done"])
        }
    }

    /// Each of them would hold the loop, which may be the one that serves the answer, the message
    /// or the client: the call ends with the refusal, whose message names the flag.
    @Test(arguments: ["ask", "ask-and-carry-on", "sleep", "message"])
    func waitingEndsTheCallWithAClearError(mode: String) async throws {
        try await LiveGateway.run([Self.onLoop], configure: Self.patient) { gateway in
            let events = try await Self.call(gateway, mode, n: 5)
            #expect(Self.ranOnALoop(events))
            let terminal = try #require(events.last)
            #expect(terminal.errorCode == "CANNOT_WAIT_ON_EVENT_LOOP")
            #expect(terminal["data"]?.stringValue?.contains("runs_on_event_loop") == true)
            #expect(events.filter(\.isTerminal).count == 1)
            #expect(!events.contains { $0["data"] == "after the refusal" })
            // The loop was not held: the next call is answered, on it.
            #expect(Self.ranOnALoop(try await Self.call(gateway, "quick")))
        }
    }

    /// Past the stream buffer (16 KB here) a `yield` would wait for the client, whose writes the
    /// same loop makes: the call ends there. Every event yielded before is delivered, in order.
    @Test func yieldingPastTheStreamBufferEndsTheCallAndKeepsWhatCameBefore() async throws {
        try await LiveGateway.run(
            [Self.onLoop],
            configure: {
                Self.patient(&$0)
                $0.streamBufferBytes = 16 << 10
            }
        ) { gateway in
            let events = try await Self.call(gateway, "flood", n: 200)
            #expect(events.last?.errorCode == "CANNOT_WAIT_ON_EVENT_LOOP")
            let numbers = events.dropFirst().dropLast().compactMap {
                $0["data"]?.stringValue?.split(separator: " ").first.flatMap { Int($0) }
            }
            // None is lost or out of order before the error. Each event is about 1,060 bytes as
            // SSE (1,000 x's, its JSON and id, 8 bytes of index) and the first about 150: 16 fit
            // below 16,384, and the 17th is refused; 14 allows for framing a little larger.
            #expect(numbers == Array(1...max(1, numbers.count)))
            #expect((14...16).contains(numbers.count), "\(numbers.count) events before the error")
            // Within the buffer, a flood is whole.
            let whole = try await Self.call(gateway, "flood", n: 8)
            #expect(whole.count == 10 && whole.last?.type == "done")
        }
    }

    /// 30 ms of work on the loop, over the 10 ms limit: such a call ends as usual; the function
    /// keeps its place after one and two of them (a busy host can delay a quick call that long:
    /// the second and third still run on the loop), and its calls run on function threads after
    /// the third within a minute.
    @Test func callsThatRunTooLongSendTheirFunctionToFunctionThreads() async throws {
        try await LiveGateway.run([Self.onLoop]) { gateway in
            for overrun in 1...EventLoopCalls.overrunsToLeave {
                let long = try await Self.call(gateway, "spin", n: 30)
                #expect(Self.ranOnALoop(long), "overrun \(overrun)")
                #expect(long.last?.type == "done")
            }
            for _ in 0..<5 {
                let events = try await Self.call(gateway, "quick")
                #expect(events.first?["data"] == "function thread")
                #expect(events.last?.type == "done")
            }
            // And there it may wait.
            #expect(try await Self.call(gateway, "sleep", n: 5).last?.type == "done")
        }
    }

    /// Overruns count within a minute: two, then a third over a minute after the first, keep the
    /// function on the loop; a third within the minute of the second and third sends it off.
    @Test func onlyOverrunsWithinTheWindowCount() throws {
        let manifest = FunctionManifest(name: "quick", streaming: true, runsOnEventLoop: true)
        let calls = EventLoopCalls(functions: [manifest], overrunLimit: .milliseconds(10))
        let start = ContinuousClock.now
        let over = Duration.milliseconds(11)
        #expect(!calls.ran("quick", for: .milliseconds(9), at: start))
        #expect(!calls.ran("quick", for: over, at: start))
        #expect(!calls.ran("quick", for: over, at: start + .seconds(30)))
        #expect(calls.refusal(for: "quick") != nil)
        // The first has left the window: two count.
        #expect(!calls.ran("quick", for: over, at: start + .seconds(61)))
        #expect(calls.refusal(for: "quick") != nil)
        #expect(calls.ran("quick", for: over, at: start + .seconds(62)))
        #expect(calls.refusal(for: "quick") == nil)
        // Once only.
        #expect(!calls.ran("quick", for: over, at: start + .seconds(63)))
    }
}
