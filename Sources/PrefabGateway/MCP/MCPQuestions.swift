import MCP
import PrefabKit
import Synchronization

/// A call's questions put to the MCP client: each `question` event becomes an
/// `elicitation/create` request (its options an enum), and the accepted answer is delivered to
/// the function as an `answer` message. A declined or cancelled elicitation, a client without the
/// elicitation capability, or an answer the function refuses ends the call with a clear code
/// (the function's `ask` throws it).
final class MCPQuestions: Sendable {
    private let session: MCPSession
    /// Weak: the invocation's sink holds these questions, so a strong reference would keep every
    /// finished MCP call (and its events) alive for the process's life.
    private let attached = Mutex(WeakInvocation())

    private struct WeakInvocation {
        weak var invocation: Invocation?
    }

    init(session: MCPSession) {
        self.session = session
    }

    /// The call whose questions these are; set before its function runs.
    func attach(_ invocation: Invocation) {
        attached.withLock { $0.invocation = invocation }
    }

    /// Puts the question to the client; returns at once (the function waits in its `ask`).
    func ask(_ question: PrefabEvent) {
        guard let invocation = attached.withLock({ $0.invocation }),
            let data = question.data?.objectValue, let id = data["questionId"]?.stringValue
        else { return }
        guard session.canElicit else {
            invocation.context.cancel(
                PrefabError(
                    .elicitationUnsupported,
                    "the function asked a question, and this MCP client did not declare the elicitation capability"
                ))
            return
        }
        let text = question["text"]?.stringValue ?? data["question"]?.stringValue ?? "The function asks:"
        let options = data["options"]?.arrayValue ?? []
        let server = session.server
        Task {
            let result: CreateElicitation.Result
            do {
                result = try await server.requestElicitation(
                    message: text, requestedSchema: Self.schema(text, options: options))
            } catch {
                invocation.context.cancel(
                    PrefabError(.elicitationFailed, "the MCP client did not answer the question: \(error)"))
                return
            }
            switch result.action {
            case .accept:
                guard let answer = result.content?["answer"] else {
                    invocation.context.cancel(
                        PrefabError(.invalidAnswer, "the MCP client accepted the question without an 'answer'"))
                    return
                }
                do throws(PrefabError) {
                    try invocation.context.deliver(.answer(Self.value(of: answer, options: options), to: id))
                } catch {
                    invocation.context.cancel(error)
                }
            case .decline:
                invocation.context.cancel(
                    PrefabError(.questionDeclined, "the MCP client declined the question: \(text)"))
            case .cancel:
                invocation.context.cancel(
                    PrefabError(.questionDeclined, "the MCP client dismissed the question: \(text)"))
            }
        }
    }

    /// One `answer` field: a string, or one of the options (rendered as text: MCP's enums are strings).
    static func schema(_ text: String, options: [JSONValue]) -> Elicitation.RequestSchema {
        var answer: [String: Value] = ["type": "string", "title": .string(text)]
        if !options.isEmpty { answer["enum"] = .array(options.map { .string(label(of: $0)) }) }
        return Elicitation.RequestSchema(properties: ["answer": .object(answer)], required: ["answer"])
    }

    /// The option whose label the client sent back, or what it sent.
    static func value(of answer: Value, options: [JSONValue]) -> JSONValue {
        if let text = answer.stringValue, let option = options.first(where: { label(of: $0) == text }) {
            return option
        }
        return JSONValue(answer)
    }

    static func label(of option: JSONValue) -> String {
        option.stringValue ?? option.jsonString(pretty: false)
    }
}

extension PrefabError.Code {
    public static let questionDeclined: Self = "QUESTION_DECLINED"
    public static let elicitationUnsupported: Self = "ELICITATION_UNSUPPORTED"
    public static let elicitationFailed: Self = "ELICITATION_FAILED"
}
