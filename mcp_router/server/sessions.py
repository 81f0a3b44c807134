"""Who a request comes from and which MCP session it belongs to.

The SDK builds a new `ctx.session` for every request, in both protocol eras, so nothing that
must last a session can hang on it. A session here is the connection over stdio (or in
process): one lifespan entry, one host. Over HTTP it is the `Mcp-Session-Id` of streamable
HTTP or SSE's `session_id`, both issued by the server, taken together with the token's
client. A 2026-07-28 request over HTTP carries no session: it is its own.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from mcp.server.mcpserver import Context
from mcp.server.streamable_http import MCP_SESSION_ID_HEADER

from mcp_router.pii import PiiSession
from mcp_router.server.http_auth import authenticated_client

__all__ = ["PiiSessions", "client_name", "page_owner"]


def client_name(ctx: Context[Any]) -> str:
    """The token's client over HTTP with tokens; otherwise the host's clientInfo name."""
    if (name := authenticated_client()) is not None:
        return name
    params = ctx.session.client_params
    return params.client_info.name if params and params.client_info else "unknown"


def page_owner() -> str:
    """Whose answer pages a request may read: the token's client; without tokens there is one
    user (stdio, or HTTP on loopback), whatever name the host gives."""
    return authenticated_client() or ""


class PiiSessions:
    """The PII session of each MCP session, so pseudonyms never cross from one to another.

    HTTP sessions end without telling the tools, so the newest `keep` are kept and the least
    recently used is dropped first; a session that comes back after that starts new
    pseudonyms (its old placeholders are then no longer restored, and none of another
    session's ever are).
    """

    def __init__(self, new: Callable[[], PiiSession], keep: int = 64) -> None:
        self._new, self._keep = new, keep
        self._http: OrderedDict[tuple[str, str], PiiSession] = OrderedDict()

    def of(self, ctx: Context[Any], connection: PiiSession | None) -> PiiSession:
        """The PII session of `ctx`'s MCP session; `connection` is that of the stdio (or
        in-process) connection the request came in on."""
        request = ctx.request_context.request
        if request is None:
            assert connection is not None, "a connection's session is made in the lifespan"
            return connection
        session_id = (request.headers.get(MCP_SESSION_ID_HEADER)
                      or request.query_params.get("session_id"))
        if not session_id:
            return self._new()
        return self.over_http(client_name(ctx), session_id)

    def over_http(self, client: str, session_id: str) -> PiiSession:
        """The PII session of `client`'s HTTP session `session_id`."""
        key = (client, session_id)
        session = self._http.pop(key, None)
        self._http[key] = session = self._new() if session is None else session
        while len(self._http) > self._keep:
            self._http.popitem(last=False)
        return session
