"""What the server hands to and asks of the MCP host: results sized for it, its own model
by sampling, and log notifications."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

from mcp.server.context import ServerRequestContext
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.session import ServerSession
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError
from mcp.types import (
    CallToolResult,
    ClientCapabilities,
    ContentBlock,
    EmptyResult,
    ResourceLink,
    SamplingCapability,
    SamplingMessage,
    SetLevelRequestParams,
    TextContent,
)

from mcp_router.config import Config
from mcp_router.errors import ProviderUnavailable
from mcp_router.messages import (
    ChatRequest,
    ChatResponse,
    ChatResult,
    Completion,
    HostUnreachable,
    LastResort,
    ProgressFn,
)
from mcp_router.outputs import ANSWER_URI, AnswerPages, content_budget_tokens, truncate

__all__ = ["RESOURCE_LINKS_SINCE", "accept_log_levels", "host_model", "notify", "sized_result"]

RESOURCE_LINKS_SINCE = "2025-06-18"
"""The first protocol version whose tool results may carry a `resource_link` block."""

# The levels of log notifications, lowest first (the syslog severities).
_LOG_LEVELS = ("debug", "info", "notice", "warning", "error", "critical", "alert", "emergency")
_LOG_LEVEL = "mcp_router.log_level"  # the key of the level a host set, in its connection's state


def sized_result(result: ChatResult, pages: AnswerPages, config: Config, owner: str = "",
                 protocol_version: Callable[[], str | None] = lambda: None) -> CallToolResult:
    """The tool result, cut to what hosts accept; the whole answer stays readable in pages,
    by `owner` only. A host on a protocol older than 2025-06-18 (`protocol_version()`, None
    for the newest, read only for an answer that is cut) gets no link block, which its schema
    lacks and its SDK would refuse the whole result for: the JSON text names the pages all the
    same (`full_text`, `pages`)."""
    content: list[ContentBlock] = []
    head = truncate(result.content, content_budget_tokens(config.output.max_result_tokens))
    if head is not None:
        count = pages.put(owner, result.trace_id, result.content)
        uri = ANSWER_URI.format(trace_id=result.trace_id, page=1)
        result = result.model_copy(update={"content": head, "truncated": True,
                                           "full_text": uri, "pages": count})
        version = protocol_version()
        if version is None or version >= RESOURCE_LINKS_SINCE:
            content.append(ResourceLink(type="resource_link", uri=uri, name="full answer",
                                        description=f"page 1 of {count}; change the last "
                                                    f"part of the URI for the others",
                                        mime_type="text/plain"))
    # Compact JSON for hosts that read only the text: a third of the pretty-printed bytes.
    structured, text = result.wire()
    content.insert(0, TextContent(type="text", text=text))
    return CallToolResult(content=content, structured_content=structured)


def host_model(ctx: Context[Any]) -> LastResort:
    """The host's own model through MCP sampling; if this connection cannot reach it, a last
    resort that says why instead of asking."""
    if not ctx.session.check_client_capability(ClientCapabilities(sampling=SamplingCapability())):
        return HostUnreachable("the host does not offer MCP sampling")
    if not ctx.session.can_send_request:
        return HostUnreachable("this connection carries no request from the server to the host "
                           "(MCP sampling needs the initialize handshake, protocol 2025-11-25 "
                           "or older)")

    async def ask(request: ChatRequest, progress: ProgressFn) -> ChatResponse:
        await progress("every target failed: asking the host's own model")
        system = "\n\n".join(m.content for m in request.messages if m.role == "system")
        messages = [SamplingMessage(role=m.role, content=TextContent(type="text", text=m.content))
                    for m in request.messages if m.role != "system"]
        try:
            # Sampling is deprecated from protocol 2026-07-28 (SEP-2577); hosts in use today
            # still answer it, and it is asked only when the config turns it on.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", MCPDeprecationWarning)
                reply = await ctx.session.create_message(
                    messages, max_tokens=request.max_tokens or 1024,
                    system_prompt=system or None, temperature=request.temperature,
                    stop_sequences=list(request.stop) if request.stop else None)
        except MCPError as exc:
            raise ProviderUnavailable("host", "sampling", f"the host's model: {exc}") from exc
        text = reply.content.text if isinstance(reply.content, TextContent) else ""
        finish = {"endTurn": "stop", "stopSequence": "stop", "maxTokens": "length"}
        return ChatResponse(completion=Completion(
            content=text, finish_reason=finish.get(str(reply.stop_reason), reply.stop_reason)),
            provider="host", model=reply.model)

    return ask




def accept_log_levels(server: MCPServer[Any]) -> None:
    """Answer `logging/setLevel`: a server that sends log notifications (`notify`) must
    declare the `logging` capability, and the SDK declares it for a server with that handler.
    The level a host sets holds for its connection."""

    async def set_level(ctx: ServerRequestContext[Any], params: SetLevelRequestParams
                        ) -> EmptyResult:
        _connection_state(ctx.session)[_LOG_LEVEL] = params.level
        return EmptyResult()

    # MCPServer has no public way to add a request handler; this is the low-level server's.
    server._lowlevel_server.add_request_handler("logging/setLevel", SetLevelRequestParams,
                                                set_level)


async def notify(ctx: Context[Any], message: str) -> None:
    """A warning as a log notification to the host (the server's own log has it already),
    unless the host asked for a higher level only (`logging/setLevel`)."""
    wanted = _connection_state(ctx.session).get(_LOG_LEVEL, "debug")
    if _LOG_LEVELS.index("warning") < _LOG_LEVELS.index(wanted):
        return
    # Log notifications are deprecated from protocol 2026-07-28 (SEP-2577), but the hosts in
    # use today still show them and nothing replaces them yet.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MCPDeprecationWarning)
        await ctx.warning(message)


def _connection_state(session: ServerSession) -> dict[str, Any]:
    """What lasts the connection `session` (new for each request) belongs to. The SDK keeps
    it on the connection, which 2.x gives a request's session no public way to; should a
    later 2.x move it, a level set is forgotten (every alert is sent) rather than an alert
    failing the call."""
    state = getattr(getattr(session, "_connection", None), "state", None)
    return state if isinstance(state, dict) else {}
