import Foundation
import PrefabKit
import Synchronization
import Testing

@Suite("questions, answers and messages", .timeLimit(.minutes(1)))
struct MessageTests {
    /// A context whose sink hands each question to `onQuestion` (as a client would see it). Its
    /// questions wait 10 s at most, so that an answer that never comes fails a test instead of
    /// hanging it.
    private func makeContext(
        questionTimeout: Duration? = .seconds(10),
        onQuestion: @escaping @Sendable (PrefabContext, PrefabEvent) -> Void = { _, _ in }
    ) -> PrefabContext {
        let box = ContextBox()
        let context = PrefabContext(
            invocationId: "test",
            outputDirectory: URL(fileURLWithPath: "/nonexistent"),
            questionTimeout: questionTimeout
        ) { event in
            if event.type == PrefabEvent.question, let context = box.context { onQuestion(context, event) }
        }
        box.context = context
        return context
    }

    /// Delivers an answer the test expects to be accepted; a refusal fails the test and cancels
    /// the context, so the `ask` waiting for it throws at once instead of waiting.
    private static func deliver(_ message: PrefabEvent, to context: PrefabContext) {
        do {
            try context.deliver(message)
        } catch {
            Issue.record("the message was refused: \(error)")
            context.cancel(error)
        }
    }

    @Test("ask returns the answer delivered for its question, and numbers questions without an id")
    func askAndAnswer() throws {
        let context = makeContext { context, question in
            let id = question.data?.objectValue?["questionId"]?.stringValue ?? ""
            Self.deliver(.answer(.string("answer to \(id)"), to: id), to: context)
        }
        #expect(try context.ask("first?") == "answer to q1")
        #expect(try context.ask("named?", id: "color") == "answer to color")
        #expect(try context.ask("third?") == "answer to q3")
    }

    @Test("an answer from another thread wakes a waiting ask")
    func answerFromAnotherThread() throws {
        let context = makeContext { context, question in
            Thread.detachNewThread {
                Thread.sleep(forTimeInterval: 0.05)
                Self.deliver(.answer(42, to: "n"), to: context)
            }
        }
        #expect(try context.ask("how many?", id: "n") == 42)
    }

    @Test("an answer to no open question is refused with QUESTION_NOT_PENDING")
    func answerWithoutQuestion() {
        let context = makeContext()
        #expect(throws: PrefabError.self) { try context.deliver(.answer("x", to: "nope")) }
        do {
            try context.deliver(.answer("x", to: "nope"))
        } catch {
            #expect(error.code == .questionNotPending)
        }
    }

    @Test("an answer outside the options is refused and the question stays open for a valid one")
    func answerOutsideOptions() throws {
        let refusal = Mutex<PrefabError?>(nil)
        let context = makeContext { context, _ in
            do {
                try context.deliver(.answer("java", to: "lang"))
            } catch {
                refusal.withLock { $0 = error as? PrefabError }
            }
            Self.deliver(.answer("swift", to: "lang"), to: context)
        }
        #expect(try context.ask("language?", options: ["swift", "python"], id: "lang") == "swift")
        #expect(refusal.withLock { $0?.code } == .invalidAnswer)
        #expect(refusal.withLock { $0?.details } == ["swift", "python"])
    }

    @Test("an answer must name its question and carry an answer")
    func malformedAnswers() {
        let context = makeContext()
        for message in [
            PrefabEvent("answer", data: "just text"),
            PrefabEvent("answer", data: ["questionId": "q1"]),
        ] {
            do {
                try context.deliver(message)
                Issue.record("\(message) should be refused")
            } catch {
                #expect(error.code == .invalidMessage)
            }
        }
    }

    @Test("a question nobody answers ends with QUESTION_TIMEOUT")
    func questionTimeout() {
        let context = makeContext(questionTimeout: .milliseconds(50))
        let started = ContinuousClock.now
        #expect(throws: PrefabError(.questionTimeout, "no answer to question 'q1' within 0.05 s")) {
            try context.ask("anyone?")
        }
        #expect(ContinuousClock.now - started >= .milliseconds(50))
    }

    @Test("cancelling wakes a waiting ask, which throws the cancel reason")
    func cancelWakesAsk() {
        let context = makeContext { context, _ in
            Thread.detachNewThread {
                Thread.sleep(forTimeInterval: 0.05)
                context.cancel()
            }
        }
        #expect(throws: PrefabError.cancelled) { try context.ask("waiting", timeout: .seconds(30)) }
    }

    @Test("other messages are read in order with nextMessage and the messages sequence")
    func messagesInOrder() throws {
        let context = makeContext()
        for index in 1...3 { try context.deliver(PrefabEvent("note", data: .int(index))) }
        #expect(try context.nextMessage()?.data == 1)
        #expect(Array(context.messages.prefix(2)).map(\.data) == [2, 3])
        context.cancel()
        #expect(Array(context.messages).isEmpty)
    }

    @Test("nextMessage returns nil when nothing comes in time")
    func nextMessageTimeout() throws {
        let context = makeContext()
        #expect(try context.nextMessage(timeout: .milliseconds(20)) == nil)
    }

    @Test("the inbox is bounded: past 256 unread messages the sender gets TOO_MANY_MESSAGES")
    func boundedInbox() throws {
        let context = makeContext()
        for index in 0..<256 { try context.deliver(PrefabEvent("note", data: .int(index))) }
        do {
            try context.deliver(PrefabEvent("note", data: "one too many"))
            Issue.record("the 257th message should be refused")
        } catch {
            #expect(error.code == .tooManyMessages)
        }
    }

    @Test("messages to a function that has returned are refused with INVOCATION_FINISHED")
    func finished() {
        let context = makeContext()
        _ = context.run({ _, _ in }, inputs: [:])
        do {
            try context.deliver(PrefabEvent("note", data: 1))
            Issue.record("a finished invocation should refuse messages")
        } catch {
            #expect(error.code == .invocationFinished)
        }
    }

    /// The inbox is made on first use: one made after a cancel must start out closed.
    @Test("cancelled before any message, ask or sleep: a message is refused, sleep throws the reason at once")
    func cancelledBeforeFirstUse() throws {
        let context = makeContext()
        let reason = PrefabError(.cancelled, "stopped before anything was asked")
        context.cancel(reason)
        do {
            try context.deliver(PrefabEvent("note", data: 1))
            Issue.record("a cancelled invocation should refuse messages")
        } catch {
            #expect(error.code == .invocationFinished)
        }
        let started = ContinuousClock.now
        #expect(throws: reason) { try context.sleep(for: .seconds(30)) }
        #expect(ContinuousClock.now - started < .seconds(5))
    }

    @Test("sleep returns after its duration, and throws at once when cancelled")
    func cancellableSleep() throws {
        let context = makeContext()
        let started = ContinuousClock.now
        try context.sleep(for: .milliseconds(20))
        #expect(ContinuousClock.now - started >= .milliseconds(20))
        Thread.detachNewThread {
            Thread.sleep(forTimeInterval: 0.05)
            context.cancel()
        }
        let sleeping = ContinuousClock.now
        #expect(throws: PrefabError.cancelled) { try context.sleep(for: .seconds(30)) }
        #expect(ContinuousClock.now - sleeping < .seconds(10))
    }

    @Test("a sleep of any length ends at the cancel, without a crash")
    func endlessWaitsAreCancellable() throws {
        for wait in [Duration.milliseconds(1_173_291_627_675_796), .milliseconds(Int.max), .seconds(Int64.max)] {
            let context = makeContext()
            Thread.detachNewThread {
                Thread.sleep(forTimeInterval: 0.05)
                context.cancel()
            }
            let started = ContinuousClock.now
            #expect(throws: PrefabError.cancelled) { try context.sleep(for: wait) }
            #expect(ContinuousClock.now - started < .seconds(10))
        }
    }

    @Test("forwarded messages go to the forwarder, queued ones first, in order")
    func forwarding() throws {
        let context = makeContext()
        try context.deliver(PrefabEvent("note", data: 1))
        let forwarded = Mutex<[JSONValue?]>([])
        context.forwardMessages { message in
            forwarded.withLock { $0.append(message.data) }
            return true
        }
        try context.deliver(PrefabEvent("note", data: 2))
        #expect(forwarded.withLock { $0 } == [1, 2])
    }

    @Test("a forwarder that refuses a message makes deliver throw TOO_MANY_MESSAGES; the question stays open")
    func forwardingRefused() throws {
        let context = makeContext()
        try context.yield(.question("name?", id: "q1"))
        context.forwardMessages { _ in false }
        do {
            try context.deliver(.answer("x", to: "q1"))
            Issue.record("a refused message was delivered")
        } catch {
            #expect(error.code == .tooManyMessages)
        }
        context.forwardMessages { _ in true }
        try context.deliver(.answer("x", to: "q1"))
    }
}

private final class ContextBox: @unchecked Sendable {
    var context: PrefabContext?
}
