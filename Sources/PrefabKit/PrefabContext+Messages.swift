extension PrefabContext {
    /// Sends a `question` event and blocks until its answer arrives, returning the answer's
    /// value. Throws `QUESTION_TIMEOUT` when none comes within `timeout` (or the context's
    /// `questionTimeout`), and the cancel reason once the invocation is cancelled.
    ///
    ///     let name = try context.ask("What is the project called?", id: "name").stringValue
    ///
    /// With `options`, only one of them is accepted as the answer.
    @available(*, noasync, message: "an async function uses 'try await context.ask', which holds no thread")
    public func ask(
        _ text: String,
        options: [JSONValue] = [],
        id: String? = nil,
        timeout: Duration? = nil
    ) throws -> JSONValue {
        try checkMayWait()
        let questionId = id ?? inbox.nextQuestionId()
        try yield(.question(text, id: questionId, options: options))
        let limit = timeout ?? questionTimeout
        let answer = try inbox.take(until: limit.map { .now + $0 }, matching: Self.answers(questionId))
        return try Self.value(of: answer, to: questionId, within: limit)
    }

    /// The next message the caller sent (answers to `ask` excepted), in order; nil when none
    /// comes within `timeout` (nil: wait until one comes). Throws once cancelled.
    @available(*, noasync, message: "an async function uses 'try await context.nextMessage', which holds no thread")
    public func nextMessage(timeout: Duration? = nil) throws -> PrefabEvent? {
        try checkMayWait()
        return try inbox.take(until: timeout.map { .now + $0 })
    }

    /// The caller's messages in order, for a function that serves them one by one:
    /// `for message in context.messages { ... }`. Ends when the invocation is cancelled.
    public var messages: some Sequence<PrefabEvent> {
        AnyIterator { [self] in try? nextMessage() }.lazy
    }

    /// Sleeps like `Thread.sleep`, but throws as soon as the invocation is cancelled.
    @available(*, noasync, message: "an async function uses 'try await context.sleep', which holds no thread")
    public func sleep(for duration: Duration) throws {
        try checkMayWait()
        try inbox.sleep(for: duration)
    }

    /// Hands a message from the caller to the function. Throws, without delivering it,
    /// `INVALID_MESSAGE` (an answer without `questionId` or `answer`), `QUESTION_NOT_PENDING`
    /// (no such unanswered question), `INVALID_ANSWER` (not one of the options),
    /// `TOO_MANY_MESSAGES` (the function is not reading) or `INVOCATION_FINISHED`.
    public func deliver(_ message: PrefabEvent) throws(PrefabError) {
        try inbox.deliver(message)
    }

    /// The most messages that wait unread by a function; past it `deliver` refuses with
    /// `TOO_MANY_MESSAGES`.
    public static var messageCapacity: Int { MessageInbox.capacity }

    /// Sends every message, from now on, to `forward` instead of queueing it: for a function
    /// that runs in another process. `forward` returns false to refuse a message (`TOO_MANY_MESSAGES`)
    /// while ``messageCapacity`` messages wait unread there.
    public func forwardMessages(to forward: @escaping @Sendable (PrefabEvent) -> Bool) {
        inbox.forward(to: forward)
    }

    /// Whether a message is the answer to question `questionId`.
    private static func answers(_ questionId: String) -> @Sendable (PrefabEvent) -> Bool {
        { message in
            message.type == PrefabEvent.answer
                && message.data?.objectValue?["questionId"]?.stringValue == questionId
        }
    }

    /// The answer's value; `QUESTION_TIMEOUT` when none came within `limit`.
    private static func value(of answer: PrefabEvent?, to questionId: String, within limit: Duration?) throws
        -> JSONValue
    {
        guard let answer else {
            let seconds = limit.map { "\($0.seconds)" } ?? "?"
            throw PrefabError(.questionTimeout, "no answer to question '\(questionId)' within \(seconds) s")
        }
        return answer.data?.objectValue?["answer"] ?? .null
    }

    // MARK: For async functions

    /// `ask` for an async function: waits for the answer without holding a thread.
    public func ask(
        _ text: String,
        options: [JSONValue] = [],
        id: String? = nil,
        timeout: Duration? = nil
    ) async throws -> JSONValue {
        let questionId = id ?? inbox.nextQuestionId()
        try await yield(.question(text, id: questionId, options: options))
        let limit = timeout ?? questionTimeout
        let answer = try await waiting {
            try await inbox.take(until: limit.map { .now + $0 }, matching: Self.answers(questionId))
        }
        return try Self.value(of: answer, to: questionId, within: limit)
    }

    /// `nextMessage` for an async function: waits without holding a thread.
    public func nextMessage(timeout: Duration? = nil) async throws -> PrefabEvent? {
        try await waiting { try await inbox.take(until: timeout.map { .now + $0 }) }
    }

    /// Sleeps without holding a thread; throws as soon as the invocation is cancelled.
    public func sleep(for duration: Duration) async throws {
        try await waiting {
            if let sleeper { try await sleeper(duration) } else { try await Task.sleep(for: duration) }
        }
    }

    /// Runs a wait of an async function; a cancelled task throws the invocation's cancel reason.
    private func waiting<T>(_ wait: () async throws -> T) async throws -> T {
        if let reason = cancelReason { throw reason }
        do {
            return try await wait()
        } catch is CancellationError {
            throw cancelReason ?? .cancelled
        }
    }
}
