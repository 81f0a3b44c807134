"""The response cache as a host sees it: hits, savings, single flight, tenants, modes."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from mcp import Client
from mcp.types import (
    CreateMessageRequestParams,
    CreateMessageResult,
    Implementation,
    TextContent,
)

from mcp_router.cache import FLUSH_AFTER_S
from mcp_router.config import parse_config
from mcp_router.server import create_server

pytestmark = pytest.mark.anyio

CONFIG = """\
providers:
  deepseek: {{kind: openai, base_url: "{url}/v1"}}
routes:
  default:
    targets: [{{provider: deepseek, model: deepseek-chat}}]
  slow:
    targets: [{{provider: deepseek, model: deepseek-chat+slow-300}}]
  cut:
    targets: [{{provider: deepseek, model: deepseek-chat+cut}}]
  failing:
    targets: [{{provider: deepseek, model: deepseek-chat+slow-300+fail-503}}]
  dripping:
    targets: [{{provider: deepseek, model: deepseek-chat+drip-150}}]
retry: {{attempts: 1}}
"""


@pytest.fixture
def server(sim: Any, tmp_path: Path) -> Any:
    return create_server(parse_config(CONFIG.format(url=sim.url), env={}), home=tmp_path, env={})


@asynccontextmanager
async def connect(server: Any, name: str = "host-a") -> AsyncIterator[Client]:
    async with Client(server, client_info=Implementation(name=name, version="1")) as client:
        yield client


async def ask(client: Client, **arguments: Any) -> dict[str, Any]:
    result = await client.call_tool("chat_completion", {"prompt": "same question", **arguments})
    assert not result.is_error, result.content
    assert result.structured_content is not None
    return result.structured_content


async def test_a_repeated_call_is_a_free_hit_and_the_saving_is_reported(server: Any, sim: Any,
                                                                        tmp_path: Path):
    async with connect(server) as client:
        first = await ask(client)
        second = await ask(client)
        report = (await client.call_tool("cost_report", {})).structured_content
    assert (first["cached"], second["cached"]) == (False, True)
    assert second["cost_usd"] == 0 and second["cache_age_s"] >= 0
    assert second["content"] == first["content"]
    assert (second["provider"], second["model"]) == ("deepseek", "deepseek-chat")
    assert sim.state.hits["deepseek-chat"] == 1
    assert report is not None
    assert Decimal(str(report["rows"][0]["saved_usd"])) == Decimal(str(first["cost_usd"]))
    assert report["rows"][0]["cache_hits"] == 1
    audit = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert [e["cached"] for e in audit if e["tool"] == "chat_completion"] == [False, True]


async def test_twenty_concurrent_identical_calls_make_one_upstream_call(server: Any, sim: Any):
    results: list[dict[str, Any]] = []
    async with connect(server) as client:
        async def one() -> None:
            results.append(await ask(client, route="slow"))

        async with anyio.create_task_group() as tg:
            for _ in range(20):
                tg.start_soon(one)
    assert sim.state.hits["deepseek-chat+slow-300"] == 1
    assert sorted(r["cached"] for r in results) == [False] + [True] * 19
    assert len({r["content"] for r in results}) == 1


async def test_another_client_never_gets_this_clients_answer(server: Any, sim: Any):
    async with connect(server, "host-a") as a:
        await ask(a)
    async with connect(server, "host-b") as b:
        other = await ask(b)
    assert other["cached"] is False
    assert sim.state.hits["deepseek-chat"] == 2


async def test_refresh_asks_again_and_skip_neither_reads_nor_writes(server: Any, sim: Any):
    async with connect(server) as client:
        await ask(client)
        refreshed = await ask(client, cache="refresh")
        skipped = await ask(client, cache="skip", max_tokens=7)
        after_skip = await ask(client, max_tokens=7)
    assert refreshed["cached"] is False and skipped["cached"] is False
    assert after_skip["cached"] is False
    assert sim.state.hits["deepseek-chat"] == 4


async def test_fields_that_change_the_answer_change_the_key(server: Any, sim: Any):
    async with connect(server) as client:
        await ask(client)
        assert (await ask(client, max_tokens=9))["cached"] is False
        assert (await ask(client, stop=["\n"]))["cached"] is False
        assert (await ask(client, top_p=0.5))["cached"] is False
        assert (await ask(client, messages=[{"role": "system", "content": "terse"},
                                            {"role": "user", "content": "same question"}],
                          prompt=None))["cached"] is False
    assert sim.state.hits["deepseek-chat"] == 5


async def test_sampled_answers_are_cached_only_on_opt_in(server: Any, sim: Any):
    async with connect(server) as client:
        await ask(client, temperature=0.7)
        assert (await ask(client, temperature=0.7))["cached"] is False
        await ask(client, temperature=0.9, cache_sampled=True)
        assert (await ask(client, temperature=0.9, cache_sampled=True))["cached"] is True


async def test_a_cut_stream_is_never_cached(server: Any, sim: Any):
    async with connect(server) as client:
        for _ in range(2):
            result = await client.call_tool("chat_completion", {"prompt": "q", "route": "cut"})
            assert result.is_error
    assert sim.state.hits["deepseek-chat+cut"] == 2


async def test_crossing_the_daily_alert_sends_one_log_notification(sim: Any, tmp_path: Path):
    text = CONFIG.format(url=sim.url) + "budgets: {alert_daily_usd: 0.000001}\n"
    server = create_server(parse_config(text, env={}), home=tmp_path, env={})
    logged: list[Any] = []

    async def on_log(params: Any) -> None:
        logged.append(params)

    # Hosts today connect with the initialize handshake; log notifications are theirs.
    async with Client(server, logging_callback=on_log, mode="legacy") as client:
        first = await ask(client, cache="skip")
        second = await ask(client, cache="skip", max_tokens=5)
        report = (await client.call_tool("cost_report", {})).structured_content
    assert [p.level for p in logged] == ["warning"]
    assert "alert" in str(logged[0].data).lower()
    assert report is not None and report["alerts"]
    # the result of the call that crossed it says so too, for hosts without log notifications
    assert first["budget_alert"] == logged[0].data and "budget_alert" not in second


async def test_a_tightened_answer_policy_is_not_bypassed_by_an_answer_cached_before(
        tmp_path: Path):
    # An upstream whose answers carry an email the prompt never had.
    def upstream(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"model": "m", "choices": [{"index": 0, "message": {
            "role": "assistant", "content": "Write to jane@example.com"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 5}})

    config = ('providers:\n  up: {kind: openai, base_url: "http://up.test/v1", stream: false}\n'
              'routes:\n  default: {targets: [{provider: up, model: m}]}\n')
    answers = []
    for pii in ("", "pii: {answer_actions: {secret: redact, email: redact}}\n"):
        server = create_server(parse_config(config + pii, env={}), home=tmp_path, env={},
                               transport=httpx.MockTransport(upstream))
        async with connect(server) as client:
            answers.append(await ask(client))

    assert (answers[0]["content"], answers[0]["cached"]) == ("Write to jane@example.com", False)
    assert (answers[1]["content"], answers[1]["cached"]) == ("Write to <EMAIL>", False)


async def test_identical_calls_to_a_failing_upstream_all_get_its_error_at_once(server: Any,
                                                                               sim: Any):
    errors: list[str] = []
    async with connect(server) as client:
        async def one() -> None:
            result = await client.call_tool("chat_completion", {
                "prompt": "same question", "route": "failing", "timeout_s": 2})
            assert result.is_error
            errors.append(result.content[0].text)  # type: ignore[union-attr]

        started = time.monotonic()
        async with anyio.create_task_group() as tg:
            for _ in range(4):
                tg.start_soon(one)
        took = time.monotonic() - started
    # One upstream call, its 503 for all four, after one call's time: not 0.3, 0.6, 0.9, 1.2 s
    # with the last callers told of a deadline instead.
    assert sim.state.hits["deepseek-chat+slow-300+fail-503"] == 1
    assert len(errors) == 4 and all("HTTP 503" in text for text in errors), errors
    assert took < 0.6


async def test_a_call_waiting_on_an_identical_call_hears_progress(server: Any, sim: Any):
    heard: dict[str, list[str]] = {"first": [], "second": []}
    results: dict[str, dict[str, Any]] = {}

    async def one(name: str, delay: float) -> None:
        async def progress(value: float, total: float | None, message: str | None) -> None:
            heard[name].append(message or "")

        await anyio.sleep(delay)
        async with connect(server) as client:
            result = await client.call_tool("chat_completion", {
                "prompt": "same question", "route": "dripping"}, progress_callback=progress)
        assert result.structured_content is not None
        results[name] = result.structured_content

    async with anyio.create_task_group() as tg:
        tg.start_soon(one, "first", 0)
        tg.start_soon(one, "second", 0.1)
    assert sim.state.hits["deepseek-chat+drip-150"] == 1
    assert results["second"]["cached"] is True
    streamed = [m for m in heard["first"] if "tokens received" in m]
    assert streamed and heard["second"] == ["waiting for an identical call in flight",
                                            *streamed]


async def test_refresh_with_a_zero_ttl_leaves_nothing_to_serve(server: Any, sim: Any):
    async with connect(server) as client:
        await ask(client)
        refreshed = await ask(client, cache="refresh", cache_ttl_s=0)
        after = await ask(client)
    assert (refreshed["cached"], after["cached"]) == (False, False)
    assert sim.state.hits["deepseek-chat"] == 3


async def test_a_model_with_a_fallback_is_never_served_a_model_named_with_a_bar(server: Any,
                                                                               sim: Any):
    async with connect(server) as client:
        barred = await ask(client, model="deepseek/m|deepseek/n")
        fallback = await ask(client, model="deepseek/m", fallbacks=["deepseek/n"])
    assert barred["model"] == "m|deepseek/n"
    assert (fallback["cached"], fallback["model"]) == (False, "m")


SAMPLING = """\
providers:
  deepseek: {{kind: openai, base_url: "{url}/v1"}}
routes:
  default:
    targets: [{{provider: deepseek, model: deepseek-chat+fail-503x1}}]
retry: {{attempts: 1}}
sampling: {{fallback: true}}
"""


async def test_an_answer_from_the_hosts_own_model_is_not_served_from_the_cache_later(
        sim: Any, tmp_path: Path):
    async def host_model(context: Any,
                         params: CreateMessageRequestParams) -> CreateMessageResult:
        return CreateMessageResult(role="assistant", model="host-model-1", stop_reason="endTurn",
                                   content=TextContent(type="text", text="from the host"))

    server = create_server(parse_config(SAMPLING.format(url=sim.url), env={}), home=tmp_path,
                           env={})
    async with Client(server, sampling_callback=host_model, mode="legacy") as client:
        first = await ask(client)  # the route fails once: the host's model answers
        second = await ask(client)  # the route answers again, and is asked
    assert (first["provider"], first["cached"]) == ("host", False)
    assert (second["provider"], second["cached"]) == ("deepseek", False)
    assert sim.state.hits["deepseek-chat+fail-503x1"] == 2


def _stream_with_a_half_emoji() -> bytes:
    # The model name and the text each carry half an emoji, which JSON cannot write back.
    chunks = [{"model": "m\ud83d", "choices": [{"index": 0, "delta": {"content": text},
                                                "finish_reason": None}]}
              for text in ("smile \ud83d", " ok")]
    chunks.append({"model": "m\ud83d", "choices": [{"index": 0, "delta": {},
                                                    "finish_reason": "stop"}]})
    return b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks) + \
        b"data: [DONE]\n\n"


async def test_an_answer_the_cache_cannot_write_never_ends_the_session(tmp_path: Path):
    def upstream(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": "text/event-stream"},
                              content=_stream_with_a_half_emoji())

    config = ('providers:\n  up: {kind: openai, base_url: "http://up.test/v1"}\n'
              'routes:\n  default: {targets: [{provider: up, model: m}]}\n')
    server = create_server(parse_config(config, env={}), home=tmp_path, env={},
                           transport=httpx.MockTransport(upstream))
    async with connect(server) as client:
        await client.call_tool("chat_completion", {"prompt": "q"})
        await anyio.sleep(FLUSH_AFTER_S * 4)  # the batched cache write has run
        listed = await client.call_tool("list_providers", {})
        again = await client.call_tool("chat_completion", {"prompt": "other"})
    assert not listed.is_error
    assert again.content  # answered (or refused), over a session that is still there
