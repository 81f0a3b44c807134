"""Money behind a stop string the router applies (o3-mini takes no `stop`; no model takes a
fifth): the upstream generated, and bills, the text past the stop that the caller never gets.
With no usage report, the estimate counts all of it that was read, not only the cut answer."""

from __future__ import annotations

import json
import math
import random
import textwrap
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from mcp_router.clock import LoopClock
from mcp_router.config import parse_config
from mcp_router.ledger import LedgerRow
from mcp_router.messages import ChatCall, ChatResult, Usage
from mcp_router.router import Router
from mcp_router.wiring import open_router
from tests.providers.fakes import HTTPX_ON_TRIO

pytestmark = pytest.mark.anyio

CONFIG = textwrap.dedent("""\
    providers:
      openai: {kind: openai, base_url: "https://openai.test/v1", api_key_env: OPENAI_KEY,
               stream: false}
      openai_sse: {kind: openai, base_url: "https://openai-sse.test/v1",
                   api_key_env: OPENAI_KEY, stream: true}
    routes:
      default:
        targets:
          - {provider: openai, model: o3-mini}
    default_route: default
    budgets: {daily_usd: 100}
    prices:
      openai_sse/*: {input_per_mtok: 1.10, output_per_mtok: 4.40}
    """)
TAIL = "lorem ipsum dolor sit amet " * 200  # 5,400 characters generated past the stop

Handler = Callable[[httpx.Request], httpx.Response]


@asynccontextmanager
async def router_over(handler: Handler, tmp_path: Path) -> AsyncIterator[Router]:
    config = parse_config(CONFIG, env={})
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        with open_router(config, http=http, keys={"openai": "k", "openai_sse": "k"},
                         home=tmp_path / "home", clock=LoopClock(),
                         rng=random.Random(0)) as router:
            yield router


async def ask_once(handler: Handler, tmp_path: Path, **call: Any) -> tuple[ChatResult,
                                                                            LedgerRow, Router]:
    async with router_over(handler, tmp_path) as router:
        with anyio.fail_after(300):
            result = await router.complete(ChatCall(prompt="Capital of France?", cache="skip",
                                                    **call))
        [row] = router.spend.ledger.recent()
    return result, row, router


def answering_without_usage(content: str) -> Handler:
    """A compatible server that sends no `usage`, and runs on past the caller's stop."""
    return lambda request: httpx.Response(200, json={
        "model": json.loads(request.content)["model"],
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": content}}]})


@pytest.mark.parametrize(("model", "stop"), [
    ("o3-mini", ("END",)), ("gpt-4o-mini", ("\n\n", "###", "Q:", "User:", "END"))],
    ids=["a reasoning model's stop", "a fifth stop"])
async def test_an_answer_cut_at_a_local_stop_is_charged_for_all_the_text_generated(
        tmp_path: Path, model: str, stop: tuple[str, ...]) -> None:
    generated = "Paris.\nEND\n" + TAIL

    result, row, router = await ask_once(answering_without_usage(generated), tmp_path,
                                         model=f"openai/{model}", stop=stop)

    assert (result.content, result.finish_reason) == ("Paris.\n", "stop")
    expected = math.ceil(len(generated) / 3)  # ASCII: a token per 3 characters, counted high
    assert (row.estimated, row.usage.output_tokens) == (True, expected)  # was 3: "Paris.\n"
    assert result.usage == row.usage
    priced = router.spend.prices.cost_of("openai", model, row.usage).cost
    assert result.cost_usd == row.cost_usd == priced


async def test_an_uncut_answer_without_usage_is_still_charged_for_its_text(
        tmp_path: Path) -> None:
    result, row, _ = await ask_once(answering_without_usage("Paris." + TAIL), tmp_path,
                                    stop=("END",))

    assert result.content == "Paris." + TAIL
    assert row.usage.output_tokens == math.ceil(len("Paris." + TAIL) / 3)


def sse(*chunks: dict[str, Any]) -> Handler:
    """A stream of `chunks` one read at a time, then 40 more chunks of text and [DONE]."""

    async def body() -> AsyncIterator[bytes]:
        for data in chunks:
            yield f"data: {json.dumps(data)}\n\n".encode()
        for _ in range(40):
            yield f"data: {json.dumps(delta(' more text'))}\n\n".encode()
        yield b"data: [DONE]\n\n"

    return lambda request: httpx.Response(200, headers={"content-type": "text/event-stream"},
                                          content=body())


def delta(text: str, usage: dict[str, int] | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {"model": "o3-mini", "choices": [
        {"index": 0, "delta": {"content": text}, "finish_reason": None}]}
    return data if usage is None else {**data, "usage": usage}


@pytest.mark.filterwarnings(HTTPX_ON_TRIO)
@pytest.mark.virtual_time
async def test_a_stream_ended_at_a_local_stop_without_usage_is_charged_for_all_it_read(
        tmp_path: Path) -> None:
    read = "Paris." + "\nEND\n" + TAIL  # the stop's chunk carries text generated past it

    result, row, _ = await ask_once(sse(delta("Paris."), delta("\nEND\n" + TAIL)), tmp_path,
                                    model="openai_sse/o3-mini", stop=("END",))

    assert (result.content, result.finish_reason) == ("Paris.\n", "stop")
    # What was read counts; the 40 chunks the stream would have sent after are never read.
    assert (row.estimated, row.usage.output_tokens) == (True, math.ceil(len(read) / 3))
    assert result.usage == row.usage


@pytest.mark.filterwarnings(HTTPX_ON_TRIO)
@pytest.mark.virtual_time
async def test_usage_a_stream_reported_before_its_local_stop_is_charged_as_reported(
        tmp_path: Path) -> None:
    # A server sending running usage on every chunk (vLLM's continuous_usage_stats).
    running = {"prompt_tokens": 12, "completion_tokens": 1900}

    result, row, _ = await ask_once(sse(delta("Paris.", {**running, "completion_tokens": 2}),
                                        delta("\nEND\n" + TAIL, running)),
                                    tmp_path, model="openai_sse/o3-mini", stop=("END",))

    assert result.content == "Paris.\n"
    assert (row.estimated, row.usage) == (False, Usage(input_tokens=12, output_tokens=1900))
    assert result.cost_note is None
