"""A Router over real adapters whose upstreams are scripted per host, for wire tests whose
effect shows in routing: whether a fallback is asked, how often an upstream is hit.

Built as tests/test_wire_fallbacks.py builds it (the server's lifespan does the same). Run
the tests under the `virtual_time` marker: retries and hold-offs then wait on a fake clock.
"""

from __future__ import annotations

import json
import random
import textwrap
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx

from mcp_router.clock import LoopClock
from mcp_router.config import parse_config
from mcp_router.messages import Attempt, ChatCall, ChatResult
from mcp_router.router import Router
from mcp_router.wiring import open_router

CONFIG = textwrap.dedent("""\
    providers:
      google: {kind: gemini, base_url: "https://gemini.test/v1beta", api_key_env: GEMINI_KEY}
      anthropic: {kind: anthropic, base_url: "https://anthropic.test",
                  api_key_env: ANTHROPIC_KEY, stream: false}
      openai: {kind: openai, base_url: "https://openai.test/v1", api_key_env: OPENAI_KEY,
               stream: false}
      openai_sse: {kind: openai, base_url: "https://openai-sse.test/v1",
                   api_key_env: OPENAI_KEY, stream: true}
      perplexity: {kind: openai, base_url: "https://perplexity.test", api_key_env: PPLX_KEY,
                   stream: false}
    routes:
      default:
        targets:
          - {provider: openai, model: gpt-4o-mini}
    default_route: default
    retry: {attempts: 3, backoff_initial_s: 0.5, backoff_max_s: 2}
    """)
KEYS = {"google": "g-key-0123456789", "anthropic": "a-key-0123456789",
        "openai": "o-key-0123456789", "openai_sse": "o-key-0123456789",
        "perplexity": "p-key-0123456789"}

OPENAI_ANSWER = {"model": "gpt-4o-mini",
                 "choices": [{"index": 0, "message": {"role": "assistant", "content": "Paris."},
                              "finish_reason": "stop"}],
                 "usage": {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11}}
ANTHROPIC_ANSWER = {"type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
                    "content": [{"type": "text", "text": "Paris."}],
                    "stop_reason": "end_turn", "usage": {"input_tokens": 9, "output_tokens": 2}}
GEMINI_ANSWER = {"candidates": [{"content": {"role": "model", "parts": [{"text": "Paris."}]},
                                 "finishReason": "STOP", "index": 0}],
                 "usageMetadata": {"promptTokenCount": 9, "candidatesTokenCount": 2},
                 "modelVersion": "gemini-2.0-flash"}

Handler = Callable[[dict[str, Any]], httpx.Response]
"""Answers one request from the JSON body it carried."""


class Upstreams:
    """The handler of an `httpx.MockTransport`: one handler per host; keeps every body sent."""

    def __init__(self, handlers: dict[str, Handler]) -> None:
        self.handlers = handlers
        self.bodies: dict[str, list[dict[str, Any]]] = {host: [] for host in handlers}

    def hits(self, host: str) -> int:
        return len(self.bodies[host])

    def handle(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.bodies[request.url.host].append(body)
        return self.handlers[request.url.host](body)


def answering(status: int, body: Any, headers: dict[str, str] | None = None) -> Handler:
    return lambda sent: httpx.Response(status, json=body, headers=headers)


@asynccontextmanager
async def router_over(upstreams: Upstreams, tmp_path: Path) -> AsyncIterator[Router]:
    config = parse_config(CONFIG, env={})
    async with httpx.AsyncClient(transport=httpx.MockTransport(upstreams.handle)) as http:
        with open_router(config, http=http, keys=KEYS, home=tmp_path / "home",
                         clock=LoopClock(), rng=random.Random(0)) as router:
            yield router


async def ask(router: Router, **call: Any) -> ChatResult:
    """One call, `cache="skip"` unless said otherwise; bounded, though the clock is virtual."""
    with anyio.fail_after(300):
        return await router.complete(ChatCall(**{"cache": "skip", **call}))


def tried(attempts: list[Attempt]) -> list[tuple[str, str, int | None]]:
    return [(a.provider, a.outcome, a.status) for a in attempts]
