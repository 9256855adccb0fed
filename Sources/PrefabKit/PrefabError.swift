/// An error with a stable code: the code reaches clients unchanged, in the HTTP error body and in
/// the `error` event's `error_code`.
public struct PrefabError: Error, Sendable, Hashable, CustomStringConvertible {
    /// A stable, upper-snake-case error code.
    public struct Code: RawRepresentable, Sendable, Hashable, ExpressibleByStringLiteral, CustomStringConvertible {
        public var rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public init(stringLiteral value: String) { self.rawValue = value }
        public var description: String { rawValue }

        public static let invalidInputs: Code = "INVALID_INPUTS"
        public static let cancelled: Code = "CANCELLED"
        public static let unexpectedError: Code = "UNEXPECTED_ERROR"
        public static let streamEnded: Code = "STREAM_ENDED"
        public static let timeout: Code = "TIMEOUT"
        public static let questionTimeout: Code = "QUESTION_TIMEOUT"
        public static let invalidMessage: Code = "INVALID_MESSAGE"
        public static let questionNotPending: Code = "QUESTION_NOT_PENDING"
        public static let invalidAnswer: Code = "INVALID_ANSWER"
        public static let tooManyMessages: Code = "TOO_MANY_MESSAGES"
        public static let invocationFinished: Code = "INVOCATION_FINISHED"
    }

    public var code: Code
    public var message: String
    /// Further detail for clients, such as one entry per invalid input.
    public var details: [JSONValue]

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
