"""The MCP face of the router, and the only package (with `mcp_router.cli`, which runs it)
that imports the MCP SDK.

- `app`: the server itself: a lifespan that builds the router, and four thin tools.
- `arguments`: the argument forms hosts send, and argument errors told as `field: problem`.
- `host`: what the server hands to and asks of the host (sized results, sampling, notices).
- `lifecycle`: how long the router's state lives: the HTTP server's life, or stdio's.
- `sessions`: who is calling, and what lives as long as their MCP session.
- `http_auth`: client tokens, Host and Origin checks, and serving over HTTP.
- `http_wrap`: what wraps the SDK's HTTP apps: health check, body limit, SSE streams.
- `oversized`: the JSON-RPC error for a message too large to read.
- `stdio`: serving stdio through the event loop's own pipe transports.
"""

from mcp_router.server.app import AppState, RouterServer, create_server

__all__ = ["AppState", "RouterServer", "create_server"]
