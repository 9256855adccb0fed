import Logging
import MCP
import PrefabKit

extension Gateway {
    /// `prefab-gateway mcp`: one MCP session over stdin and stdout (newline-delimited JSON-RPC),
    /// with the tools, calls, progress, questions and cancellation of `/mcp`. Returns when the
    /// client closes stdin or the task is cancelled; either way the session's running calls are
    /// cancelled first. Its output files are links under `--public-url` if set, else under
    /// `fileBaseURL` (the gateway's HTTP listener). Nothing but JSON-RPC is written to stdout: the SDK's own log goes to `logger`.
    public func serveMCPOverStdio(fileBaseURL: String) async throws {
        var transportLogger = logger
        transportLogger[metadataKey: "mcp"] = "stdio"
        let session = MCPSession(
            id: InvocationID.make(), owner: nil, transport: StdioTransport(logger: transportLogger),
            fileBaseURL: configuration.publicBaseURL ?? fileBaseURL)
        try await session.start(tools: mcp.tools, gateway: self)
        logger.info("MCP session over stdio opened", metadata: ["session": "\(session.id)"])
        await withTaskCancellationHandler {
            await session.server.waitUntilCompleted()
        } onCancel: {
            Task { await session.end(Gateway.shutdownReason) }
        }
        let reason =
            Task.isCancelled
            ? Gateway.shutdownReason : PrefabError(.cancelled, "the MCP client closed stdin")
        await session.end(reason)
        logger.info("MCP session over stdio ended", metadata: ["reason": "\(reason.message)"])
    }
}
