import HTTPTypes
import Hummingbird
import PrefabKit

extension Gateway {
    /// `GET /files/<invocation>/<file>`: an output file, and nothing outside its invocation's
    /// directory. A file is what a prefab wrote, maybe from its inputs: the browser must not sniff
    /// it into HTML, and an HTML or SVG file opened from here runs in a sandbox (a unique origin,
    /// no scripts), so it cannot reach the gateway with the user's origin.
    func file(_ request: Request, context: GatewayRequestContext) async throws -> Response {
        let invocation = context.parameters.get("invocation") ?? ""
        guard await outputOwner(of: invocation) == context.apiKey,
            let file = outputs.resolve(invocationId: invocation, components: context.parameters.getCatchAll())
        else {
            throw GatewayError(.notFound, .fileNotFound, "no output file at \(request.uri.path)")
        }
        let body = try await FileIO().loadFile(path: file.url.path, context: context)
        return Response(
            status: .ok,
            headers: [
                .contentType: file.contentType, .contentLength: String(file.size),
                .xContentTypeOptions: "nosniff", .contentSecurityPolicy: "sandbox",
            ],
            body: body
        )
    }
}
