import Foundation
import PrefabKit
import Synchronization
import Testing

/// Async streaming functions run without a server: `collect`, `sleep`, `ask`, `nextMessage`, and
/// a cancel that ends their awaits.
@Suite("async functions", .timeLimit(.minutes(1)))
struct AsyncFunctionTests {
    @Test("collect runs an async function: its events in order, then exactly one done")
    func collectsEvents() async throws {
        let ticker: AsyncStreamingFunction = { inputs, context in
            let n = try inputs.int("n")
            for i in 1...n {
                if i > 1 { try await context.sleep(for: .milliseconds(1)) }
                try await context.yield(.progress(current: i, total: n))
            }
        }
        let events = try await collect(ticker, inputs: ["n": 3])
        #expect(events.map(\.type) == ["progress", "progress", "progress", "done"])
    }

    @Test("a thrown error becomes the error event; the function's own done is sent once, last")
    func terminalEvents() async throws {
        let failed = try await collect { _, context in
            try await context.yield(.start())
            throw PrefabError("DISK_FULL", "the disk is full")
        }
        #expect(failed == [.start(), .error(PrefabError("DISK_FULL", "the disk is full"))])
        let done = try await collect { _, context in
            try await context.yield(.done(["answer": 42]))
            try await context.yield(.content("late"))
        }
        #expect(done == [.done(["answer": 42])])
    }

    /// The caller's task is cancelled while the function sleeps an hour: `collect` cancels the
    /// context, whose cancel cancels the function's task, so that even a plain `Task.sleep` ends.
    /// A cancel that does not reach the sleep runs the test into its time limit.
    @Test("cancelling the caller ends the function's sleep at once", arguments: [false, true])
    func cancelEndsTheSleep(plainTaskSleep: Bool) async throws {
        let caller = Task {
            try await collect { _, context in
                try await context.yield(.start())
                if plainTaskSleep {
                    try await Task.sleep(for: .seconds(3600))
                } else {
                    try await context.sleep(for: .seconds(3600))
                }
            }
        }
        try await Task.sleep(for: .milliseconds(50))
        caller.cancel()
        let events = try await caller.value
        #expect(events.last?.errorCode == "CANCELLED")
    }

    /// Runs `function` in a task cancelled with `context`, as the gateway does.
    private static func start(
        _ context: PrefabContext, _ function: @escaping AsyncStreamingFunction
    ) -> Task<PrefabEvent, Never> {
        let task = Task { await context.run(function, inputs: [:]) }
        context.onCancel { task.cancel() }
        return task
    }

    /// Events a context received, for a test to wait on.
    private final class Received: Sendable {
        private let events = Mutex<[PrefabEvent]>([])
        func append(_ event: PrefabEvent) { events.withLock { $0.append(event) } }
        var all: [PrefabEvent] { events.withLock { $0 } }

        func waitFor(count: Int) async throws {
            while all.count < count { try await Task.sleep(for: .milliseconds(5)) }
        }
    }

    private static func context(_ received: Received, questionTimeout: Duration? = nil) -> PrefabContext {
        PrefabContext(
            invocationId: "async-test",
            outputDirectory: FileManager.default.temporaryDirectory.appendingPathComponent(UUID().uuidString),
            questionTimeout: questionTimeout
        ) { received.append($0) }
    }

    @Test("ask waits, without a thread, for an answer delivered later")
    func askGetsALaterAnswer() async throws {
        let received = Received()
        let context = Self.context(received)
        let task = Self.start(context) { _, context in
            let name = try await context.ask("Name?", id: "name")
            try await context.yield(.content(name.stringValue ?? "?"))
        }
        try await received.waitFor(count: 1)
        // The function is waiting by now (or soon): either way the answer reaches it.
        try await Task.sleep(for: .milliseconds(20))
        try context.deliver(.answer("Ada", to: "name"))
        #expect(await task.value.type == "done")
        #expect(received.all.last == .content("Ada"))
    }

    @Test("nextMessage returns messages in order, and nil after its timeout")
    func nextMessageInOrderThenTimeout() async throws {
        let received = Received()
        let context = Self.context(received)
        let task = Self.start(context) { _, context in
            while let message = try await context.nextMessage(timeout: .milliseconds(300)) {
                try await context.yield(.content(message.type))
            }
            try await context.yield(.content("timed out"))
        }
        try context.deliver(PrefabEvent(type: "first"))
        try await Task.sleep(for: .milliseconds(20))
        try context.deliver(PrefabEvent(type: "second"))
        #expect(await task.value.type == "done")
        #expect(received.all == [.content("first"), .content("second"), .content("timed out")])
    }

    @Test("an unanswered question times out with QUESTION_TIMEOUT")
    func questionTimeout() async throws {
        let context = Self.context(Received(), questionTimeout: .milliseconds(50))
        let terminal = await Self.start(context) { _, context in _ = try await context.ask("anyone?") }.value
        #expect(terminal.errorCode == "QUESTION_TIMEOUT")
    }

    @Test("a cancel ends a waiting ask with the cancel's reason")
    func cancelEndsTheAsk() async throws {
        let received = Received()
        let context = Self.context(received)
        let task = Self.start(context) { _, context in _ = try await context.ask("anyone?") }
        try await received.waitFor(count: 1)
        try await Task.sleep(for: .milliseconds(20))
        context.cancel(PrefabError(.timeout, "too slow"))
        let terminal = await task.value
        #expect(terminal.errorCode == "TIMEOUT")
    }
}
