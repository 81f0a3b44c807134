"""What the server hands to and asks of the MCP host: results sized for it, its own model
by sampling, and log notifications."""

from __future__ import annotations

import warnings
from typing import Any

from mcp.server.mcpserver import Context
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError
from mcp.types import (
    CallToolResult,
    ClientCapabilities,
    ContentBlock,
    ResourceLink,
    SamplingCapability,
    SamplingMessage,
    TextContent,
)

from mcp_router.config import Config
from mcp_router.errors import ProviderNotConfigured, ProviderUnavailable
from mcp_router.messages import (
    ChatRequest,
    ChatResponse,
    ChatResult,
    Completion,
    LastResort,
    ProgressFn,
)
from mcp_router.outputs import ANSWER_URI, AnswerPages, content_budget_tokens, truncate

__all__ = ["host_model", "notify", "sized_result"]



def sized_result(result: ChatResult, pages: AnswerPages, config: Config,
                 owner: str = "") -> CallToolResult:
    """The tool result, cut to what hosts accept; the whole answer stays readable in pages,
    by `owner` only."""
    content: list[ContentBlock] = []
    head = truncate(result.content, content_budget_tokens(config.output.max_result_tokens))
    if head is not None:
        count = pages.put(owner, result.trace_id, result.content)
        uri = ANSWER_URI.format(trace_id=result.trace_id, page=1)
        result = result.model_copy(update={"content": head, "truncated": True,
                                           "full_text": uri, "pages": count})
        content.append(ResourceLink(type="resource_link", uri=uri, name="full answer",
                                    description=f"page 1 of {count}; change the last part "
                                                f"of the URI for the others",
                                    mime_type="text/plain"))
    # Compact JSON for hosts that read only the text: a third of the pretty-printed bytes.
    structured, text = result.wire()
    content.insert(0, TextContent(type="text", text=text))
    return CallToolResult(content=content, structured_content=structured)


def host_model(ctx: Context[Any]) -> LastResort:
    """The host's own model through MCP sampling; if this connection cannot reach it, a last
    resort that says why instead of asking."""
    if not ctx.session.check_client_capability(ClientCapabilities(sampling=SamplingCapability())):
        return _cannot_ask("the host does not offer MCP sampling")
    if not ctx.session.can_send_request:
        return _cannot_ask("this connection carries no request from the server to the host "
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


def _cannot_ask(reason: str) -> LastResort:
    async def refuse(request: ChatRequest, progress: ProgressFn) -> ChatResponse:
        raise ProviderNotConfigured("host", "sampling", reason)

    return refuse


async def notify(ctx: Context[Any], message: str) -> None:
    """A log notification to the host (the server's own log has it already)."""
    # Log notifications are deprecated from protocol 2026-07-28 (SEP-2577), but the hosts in
    # use today still show them and nothing replaces them yet.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MCPDeprecationWarning)
        await ctx.warning(message)
