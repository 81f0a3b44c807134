"""The benchmark's floors: an MCP stdio server whose tools only forward a prompt upstream.

Run as `python tools/_bare_server.py` with `MCP_ROUTER_SIM_URL` set. `stream_chat` is the
upstream call itself, shared with the benchmark's `direct` variant so both send the same bytes
the router's OpenAI adapter sends (`mcp_router/providers/openai.py` `build_body`, streaming).

- `forward` returns the answer as a two-key dict: the floor the issue measures against.
  With `--pipes` the server runs on the router's own stdio transport (`mcp_router.server.stdio`)
  instead of the SDK's, which splits what that transport saves from the routing core's cost.
- `forward_result` returns the answer as a `ChatResult`, serialised as the router serialises
  it and declared with the same output schema, but filled in without any routing: the floor
  of the `chat_completion` contract itself (the SDK carrying a bigger result, the client
  validating it against the schema). The router's cost above it is its routing core's.
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Annotated, Any

import anyio
import httpx
from mcp.server.mcpserver import Context, MCPServer
from mcp.types import CallToolResult, TextContent

from mcp_router.messages import Attempt, ChatResult, Usage
from mcp_router.server.stdio import serve_stdio

MODEL = "gpt-bench"


def chat_body(prompt: str, model: str = MODEL) -> dict[str, Any]:
    """What `openai.build_body` sends for a one-message prompt with streaming on."""
    return {"model": model, "messages": [{"role": "user", "content": prompt}],
            "stream": True, "stream_options": {"include_usage": True}}


async def stream_chat(http: httpx.AsyncClient, base_url: str, prompt: str) -> dict[str, Any]:
    """POST /chat/completions, read the SSE stream to its end, return the joined answer."""
    parts: list[str] = []
    finish_reason = None
    async with http.stream("POST", f"{base_url}/chat/completions",
                           json=chat_body(prompt)) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                continue
            for choice in json.loads(data).get("choices") or []:
                parts.append((choice.get("delta") or {}).get("content") or "")
                finish_reason = choice.get("finish_reason") or finish_reason
    return {"content": "".join(parts), "finish_reason": finish_reason}


def create_bare_server(base_url: str, transport: httpx.AsyncBaseTransport | None = None,
                       ) -> MCPServer[httpx.AsyncClient]:
    """The floor server: one shared AsyncClient from the lifespan, one forwarding tool.

    `transport` (as in `create_server`) lets a profiler run it in memory without a network.
    """

    @asynccontextmanager
    async def lifespan(_: MCPServer[httpx.AsyncClient]) -> AsyncIterator[httpx.AsyncClient]:
        timeout = httpx.Timeout(60, connect=5)
        async with httpx.AsyncClient(timeout=timeout, transport=transport) as http:
            yield http

    server: MCPServer[httpx.AsyncClient] = MCPServer(
        "bench-bare", lifespan=lifespan, log_level="WARNING")  # as the router runs it

    @server.tool()
    async def forward(ctx: Context, prompt: str) -> dict[str, Any]:
        """Send `prompt` to the upstream and return its answer."""
        return await stream_chat(ctx.request_context.lifespan_context, base_url, prompt)

    @server.tool()
    async def forward_result(ctx: Context, prompt: str) -> Annotated[CallToolResult, ChatResult]:
        """Send `prompt` to the upstream and return its answer as a `chat_completion` result."""
        started = time.perf_counter()
        answer = await stream_chat(ctx.request_context.lifespan_context, base_url, prompt)
        latency_ms = round((time.perf_counter() - started) * 1000, 1)
        result = ChatResult(
            content=answer["content"], provider="bench", model=MODEL, route="default",
            finish_reason=answer["finish_reason"], usage=Usage(input_tokens=12, output_tokens=9),
            cost_usd=Decimal("0.0000105"), latency_ms=latency_ms, trace_id=uuid.uuid4().hex,
            attempts=[Attempt(provider="bench", model=MODEL, outcome="ok", latency_ms=latency_ms,
                              ttfb_ms=latency_ms)])
        # As `mcp_router.server` returns it: compact JSON text plus the structured content.
        structured, text = result.wire()
        return CallToolResult(content=[TextContent(type="text", text=text)],
                              structured_content=structured)

    return server


if __name__ == "__main__":
    bare_server = create_bare_server(os.environ["MCP_ROUTER_SIM_URL"] + "/v1")
    if "--pipes" in sys.argv:  # the router's own stdio transport instead of the SDK's
        anyio.run(serve_stdio, bare_server)
    else:
        bare_server.run("stdio")
