import Foundation

/// Messages sent to a running invocation (answers and anything else), kept in order until the
/// function reads them, and the questions it has asked that are still unanswered.
///
/// A function thread blocks here in `ask`, `nextMessage` or `sleep`; cancelling wakes it.
final class MessageInbox: @unchecked Sendable {
    /// The most messages that wait unread; past it a sender is told to slow down.
    static let capacity = 256

    // Guarded by `condition`.
    private let condition = NSCondition()
    private var messages: [PrefabEvent] = []
    /// Unanswered questions by id, with their options (empty when any answer goes).
    private var pending: [String: [JSONValue]] = [:]
    private var questionCount = 0
    private var cancelReason: PrefabError?
    /// Set for a function that runs elsewhere (a process): messages go there instead of the queue.
    private var forward: (@Sendable (PrefabEvent) -> Bool)?
    /// Async functions waiting for a message, oldest first.
    private var asyncWaiters: [AsyncWaiter] = []

    /// An async function's wait for a message; its continuation is resumed once, under the lock.
    private final class AsyncWaiter: @unchecked Sendable {  // guarded by the inbox's lock
        let matches: @Sendable (PrefabEvent) -> Bool
        var continuation: CheckedContinuation<PrefabEvent?, any Error>?
        var timeout: Task<Void, Never>?

        init(matches: @escaping @Sendable (PrefabEvent) -> Bool) {
            self.matches = matches
        }

        func resume(with result: Result<PrefabEvent?, any Error>) {
            continuation?.resume(with: result)
            continuation = nil
            timeout?.cancel()
            timeout = nil
        }
    }

    /// Records a question the function sent, so that its answer is accepted.
    func questionAsked(_ event: PrefabEvent) {
        let id = event.data?.objectValue?["questionId"]?.stringValue
        let options = event.data?.objectValue?["options"]?.arrayValue ?? []
        condition.withLock {
            questionCount += 1
            if let id { pending[id] = options }
        }
    }

    /// An id for a question asked without one: `q<n>` for the n-th question.
    func nextQuestionId() -> String {
        condition.withLock { "q\(questionCount + 1)" }
    }

    /// Checks a message from the client and queues (or forwards) it. Throws `INVALID_MESSAGE`,
    /// `QUESTION_NOT_PENDING`, `INVALID_ANSWER` or `TOO_MANY_MESSAGES`.
    func deliver(_ message: PrefabEvent) throws(PrefabError) {
        var answered: String?
        if message.type == PrefabEvent.answer {
            guard let answer = message.data?.objectValue, let id = answer["questionId"]?.stringValue else {
                throw PrefabError(
                    .invalidMessage,
                    #"an answer needs "data": {"questionId": "...", "answer": ...}"#
                )
            }
            guard answer["answer"] != nil else {
                throw PrefabError(.invalidMessage, "the answer to question '\(id)' has no \"answer\" member")
            }
            answered = id
        }
        condition.lock()
        defer { condition.unlock() }
        try accept(message, answering: answered)
    }

    /// The checks of `deliver`, under the lock; queues the message, or hands it to the forwarder.
    /// Under the lock, so that forwarded messages keep their order and a refused one changes nothing.
    private func accept(_ message: PrefabEvent, answering answered: String?) throws(PrefabError) {
        if cancelReason != nil { throw PrefabError(.invocationFinished, "the invocation has already ended") }
        if let id = answered {
            guard let options = pending[id] else {
                let open = pending.keys.sorted().map { "'\($0)'" }.joined(separator: ", ")
                throw PrefabError(
                    .questionNotPending,
                    "no question '\(id)' is waiting for an answer" + (open.isEmpty ? "" : "; waiting: \(open)")
                )
            }
            let value = message.data?.objectValue?["answer"] ?? .null
            if !options.isEmpty && !options.contains(value) {
                throw PrefabError(
                    .invalidAnswer, "the answer to question '\(id)' must be one of the options", details: options)
            }
        }
        // The same bound for a function in another process: its forwarder refuses a message while
        // `capacity` of them wait unread there.
        let accepted = forward.map { $0(message) } ?? (messages.count < Self.capacity)
        guard accepted else {
            throw PrefabError(
                .tooManyMessages, "\(Self.capacity) messages are already waiting to be read by the function")
        }
        if let id = answered { pending[id] = nil }
        if forward == nil {
            if let index = asyncWaiters.firstIndex(where: { $0.matches(message) }) {
                asyncWaiters.remove(at: index).resume(with: .success(message))
                return
            }
            messages.append(message)
            condition.broadcast()
        }
    }

    /// From now on, messages go to `forward` (after the ones already queued, in order); it returns
    /// false to refuse one while `capacity` messages wait unread where it sends them.
    func forward(to forward: @escaping @Sendable (PrefabEvent) -> Bool) {
        condition.withLock {
            self.forward = forward
            for message in messages { _ = forward(message) }
            messages = []
        }
    }

    /// Takes the first message that `matches`, waiting until `deadline` (nil: no limit). Returns
    /// nil at the deadline; throws the reason once the invocation is cancelled.
    func take(
        until deadline: ContinuousClock.Instant?,
        matching matches: (PrefabEvent) -> Bool = { _ in true }
    ) throws -> PrefabEvent? {
        condition.lock()
        defer { condition.unlock() }
        while true {
            if let reason = cancelReason { throw reason }
            if let index = messages.firstIndex(where: matches) { return messages.remove(at: index) }
            guard let deadline else {
                condition.wait()
                continue
            }
            let left = deadline - .now
            if left <= .zero { return nil }
            // Foundation traps on a date centuries away (a fuzzed delay of 1e15 ms crashed the
            // gateway): wait a day at most per round; the loop checks the deadline again.
            _ = condition.wait(until: Date(timeIntervalSinceNow: min(left.seconds, Self.longestWait)))
        }
    }

    private static let longestWait: TimeInterval = 86_400

    /// `take` for an async function: suspends instead of blocking its thread.
    func take(
        until deadline: ContinuousClock.Instant?,
        matching matches: @escaping @Sendable (PrefabEvent) -> Bool = { _ in true }
    ) async throws -> PrefabEvent? {
        let waiter = AsyncWaiter(matches: matches)
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                condition.withLock {
                    if let reason = cancelReason {
                        continuation.resume(throwing: reason)
                    } else if let index = messages.firstIndex(where: matches) {
                        continuation.resume(returning: messages.remove(at: index))
                    } else if Task.isCancelled {
                        continuation.resume(throwing: CancellationError())
                    } else if let deadline, deadline <= .now {
                        continuation.resume(returning: nil)
                    } else {
                        waiter.continuation = continuation
                        asyncWaiters.append(waiter)
                        // A task of its own ends the wait at the deadline: asking is rare.
                        if let deadline {
                            waiter.timeout = Task { [weak self, weak waiter] in
                                try? await Task.sleep(until: deadline, clock: .continuous)
                                guard let self, let waiter, !Task.isCancelled else { return }
                                self.endWait(waiter, with: .success(nil))
                            }
                        }
                    }
                }
            }
        } onCancel: {
            endWait(waiter, with: .failure(CancellationError()))
        }
    }

    private func endWait(_ waiter: AsyncWaiter, with result: Result<PrefabEvent?, any Error>) {
        condition.withLock {
            guard let index = asyncWaiters.firstIndex(where: { $0 === waiter }) else { return }
            asyncWaiters.remove(at: index).resume(with: result)
        }
    }

    /// Waits for `duration` unless the invocation is cancelled first, which throws.
    func sleep(for duration: Duration) throws {
        _ = try take(until: .now + duration) { _ in false }
    }

    /// Wakes every waiter with `reason`; later waits throw it at once and messages are refused.
    /// Also called when the function returns.
    func cancel(_ reason: PrefabError) {
        condition.withLock {
            if cancelReason == nil { cancelReason = reason }
            pending = [:]
            // Nothing is delivered any more: let go of what the messages would have reached.
            messages = []
            forward = nil
            for waiter in asyncWaiters { waiter.resume(with: .failure(cancelReason ?? reason)) }
            asyncWaiters = []
            condition.broadcast()
        }
    }
}
