import Hummingbird

/// Runs each request's routing, middleware and handler in a child task; the connection's task
/// only writes the response.
///
/// A task keeps the memory of its deepest stack of async frames until it ends (Swift's task
/// allocator gives its slabs back only then), and a connection's task lives as long as the
/// connection: a stream kept the frames of the router, every middleware and the handler (~12 KB)
/// for its whole life, though its body is written from a few frames. A child task gives them
/// back as soon as the handler has returned its response.
struct ShallowResponder<Inner: HTTPResponder>: HTTPResponder where Inner.Context: Sendable {
    typealias Context = Inner.Context
    let inner: Inner

    func respond(to request: Request, context: Context) async throws -> Response {
        try await withThrowingTaskGroup(of: Response.self) { group in
            group.addTask { try await inner.respond(to: request, context: context) }
            guard let response = try await group.next() else { throw CancellationError() }
            return response
        }
    }
}
