/// An error with a stable code: the code reaches clients unchanged, in the HTTP error body and in
/// the `error` event's `error_code`.
public struct PrefabError: Error, Sendable, Hashable, CustomStringConvertible {
    /// A stable, upper-snake-case error code.
    public struct Code: RawRepresentable, Sendable, Hashable, ExpressibleByStringLiteral, CustomStringConvertible {
        public var rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public init(stringLiteral value: String) { self.rawValue = value }
        public var description: String { rawValue }

        /// Inputs that do not fit the manifest, or that the function refuses.
        public static let invalidInputs: Code = "INVALID_INPUTS"
        /// The client went away or the invocation was cancelled.
        public static let cancelled: Code = "CANCELLED"
        /// The function threw an error that is not a ``PrefabError``.
        public static let unexpectedError: Code = "UNEXPECTED_ERROR"
        /// An event yielded after the stream's terminal event.
        public static let streamEnded: Code = "STREAM_ENDED"
        /// The call ran past its time limit.
        public static let timeout: Code = "TIMEOUT"
        /// No answer came to a question within its timeout.
        public static let questionTimeout: Code = "QUESTION_TIMEOUT"
        /// A message from the caller that is malformed, such as an answer without `questionId`.
        public static let invalidMessage: Code = "INVALID_MESSAGE"
        /// An answer to a question that is not waiting for one.
        public static let questionNotPending: Code = "QUESTION_NOT_PENDING"
        /// An answer that is not one of the question's options.
        public static let invalidAnswer: Code = "INVALID_ANSWER"
        /// Too many messages wait unread by the function (``PrefabContext/messageCapacity``).
        public static let tooManyMessages: Code = "TOO_MANY_MESSAGES"
        /// A message for an invocation that has already ended.
        public static let invocationFinished: Code = "INVOCATION_FINISHED"
        /// A function that runs on the event loop (``FunctionManifest/runsOnEventLoop``) tried to
        /// wait: to `ask`, `sleep` or read a message, or to yield past the stream buffer.
        public static let cannotWaitOnEventLoop: Code = "CANNOT_WAIT_ON_EVENT_LOOP"
    }

    /// The stable code, which clients receive unchanged.
    public var code: Code
    /// What went wrong, in words for a person.
    public var message: String
    /// Further detail for clients, such as one entry per invalid input.
    public var details: [JSONValue]

    /// An error with a code and a message: `PrefabError(.invalidInputs, "...")`, or a code of the
    /// prefab's own, `PrefabError("DISK_FULL", "the disk is full")`.
    public init(_ code: Code, _ message: String, details: [JSONValue] = []) {
        self.code = code
        self.message = message
        self.details = details
    }

    public var description: String { "\(code.rawValue): \(message)" }

    /// The client went away or the invocation was cancelled: the function should stop.
    public static let cancelled = PrefabError(.cancelled, "the invocation was cancelled")

    /// Any error as a `PrefabError`, keeping the code of one that already is.
    public init(describing error: any Error) {
        if let error = error as? PrefabError {
            self = error
        } else {
            self.init(.unexpectedError, String(describing: error))
        }
    }
}
