import HTTPTypes
import Hummingbird
import PrefabKit

extension Gateway {
    /// `GET /files/<invocation>/<file>`: an output file, and nothing outside its invocation's
    /// directory.
    func file(_ request: Request, context: GatewayRequestContext) async throws -> Response {
        let invocation = context.parameters.get("invocation") ?? ""
        guard outputOwners.owner(of: invocation) == context.apiKey,
            let file = outputs.resolve(invocationId: invocation, components: context.parameters.getCatchAll())
        else {
            throw GatewayError(.notFound, .fileNotFound, "no output file at \(request.uri.path)")
        }
        let body = try await FileIO().loadFile(path: file.url.path, context: context)
        return Response(
            status: .ok,
            headers: [.contentType: file.contentType, .contentLength: String(file.size)],
            body: body
        )
    }
}
