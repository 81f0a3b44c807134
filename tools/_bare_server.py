"""The benchmark's floor: an MCP stdio server whose one tool forwards a prompt to the upstream.

Run as `python tools/_bare_server.py` with `MCP_ROUTER_SIM_URL` set. `stream_chat` is the
upstream call itself, shared with the benchmark's `direct` variant so both send the same bytes
the router's OpenAI adapter sends (`mcp_router/providers/openai.py` `build_body`, streaming).
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from mcp.server.mcpserver import Context, MCPServer

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

    return server


if __name__ == "__main__":
    create_bare_server(os.environ["MCP_ROUTER_SIM_URL"] + "/v1").run("stdio")
