import Hummingbird

extension Gateway {
    /// `/mcp`: every function as an MCP tool over Streamable HTTP (see `MCPSessions`), behind the
    /// same middleware as every route (browser checks, size limits, API keys).
    func addMCPRoutes(to router: Router<GatewayRequestContext>) {
        router.post("/mcp") { request, context in
            try await self.mcp.respond(to: request, context: context, gateway: self)
        }
        router.get("/mcp") { request, context in
            try await self.mcp.respond(to: request, context: context, gateway: self)
        }
        router.delete("/mcp") { request, context in
            try await self.mcp.respond(to: request, context: context, gateway: self)
        }
    }
}
