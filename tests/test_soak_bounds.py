"""What a long-running server keeps per model, as a host sees it: models callers name do not
pile up, refused calls leave nothing behind, and an upstream's far Retry-After is capped."""

from __future__ import annotations

import json
import math
import time
from datetime import UTC, datetime
from email.utils import formatdate
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.types import Implementation

from mcp_router.access import hash_token
from mcp_router.config import parse_config
from mcp_router.health import REPORT_NAMED
from mcp_router.limits import MAX_FALLBACKS, MAX_MODEL_CHARS
from mcp_router.providers._http import parse_retry_after
from mcp_router.routing.roster import KEEP_NAMED
from mcp_router.server import create_server

pytestmark = pytest.mark.anyio

CONFIG = """\
providers:
  deepseek: {{kind: openai, base_url: "{url}/v1", models: [deepseek-chat]}}
  local: {{kind: openai, base_url: "{url}/v1"}}   # a vLLM/Ollama server: no models list
routes:
  default: {{targets: [{{provider: deepseek, model: deepseek-chat}}]}}
  house: {{targets: [{{provider: local, model: house-model}}]}}
cache: {{enabled: false}}
prices: {{"local/*": {{input_per_mtok: 0, output_per_mtok: 0}}}}
{extra}
"""
KEPT_TO_DEEPSEEK = f"""\
clients:
  ci:
    token_sha256: {hash_token("t")}
    models: ['deepseek/*']
    rate_per_min: 1
"""


def server(sim: Any, home: Path, extra: str = "") -> Any:
    return create_server(parse_config(CONFIG.format(url=sim.url, extra=extra), env={}),
                         home=home, env={})


async def local_health(client: Client) -> dict[str, Any]:
    health = await client.call_tool("provider_health", {"provider": "local"})
    assert not health.is_error, health.content[0].text
    return health.structured_content["providers"][0]


async def test_provider_health_lists_the_routes_targets_and_only_the_most_recent_named_models(
        sim: Any, tmp_path: Path):
    async with Client(server(sim, tmp_path)) as client:
        await client.call_tool("chat_completion", {"prompt": "hi", "route": "house"})
        for i in range(KEEP_NAMED + 44):
            await client.call_tool("chat_completion", {"prompt": "hi", "model": f"local/m-{i}"})
        health = await client.call_tool("provider_health", {})

    local = health.structured_content["providers"][1]
    assert [t["target"] for t in local["targets"]] == ["local/house-model", *(
        f"local/m-{i}" for i in range(KEEP_NAMED + 44 - REPORT_NAMED, KEEP_NAMED + 44))]
    assert local["targets_not_listed"] == KEEP_NAMED - REPORT_NAMED  # the rest are forgotten
    assert len(json.dumps(health.structured_content)) < 20_000


async def test_calls_refused_by_access_or_rate_leave_no_per_model_state(sim: Any,
                                                                        tmp_path: Path):
    async with Client(server(sim, tmp_path, KEPT_TO_DEEPSEEK),
                      client_info=Implementation(name="ci", version="1")) as client:
        for i in range(20):
            refused = await client.call_tool("chat_completion",
                                             {"prompt": "hi", "model": f"local/z-{i}"})
            assert refused.is_error and "may not use model 'local/z-" in refused.content[0].text
        await client.call_tool("chat_completion", {"prompt": "hi"})  # spends the one call
        limited = await client.call_tool("chat_completion", {"prompt": "hi", "model": "local/y",
                                                             "fallbacks": ["local/w"]})
        unknown = await client.call_tool("chat_completion", {"prompt": "hi",
                                                             "model": "deepseek/nope"})
        local = await local_health(client)

    assert limited.is_error and "may not use model 'local/y'" in limited.content[0].text
    # A model no provider has is still told so, before the client's limits.
    assert unknown.content[0].text.endswith("model: deepseek has no model 'nope'; its models "
                                            "are: deepseek-chat")
    # Only the route's target, known from start-up: nothing of the refused calls' models.
    assert [t["target"] for t in local["targets"]] == ["local/house-model"]
    assert local["targets_not_listed"] == 0


@pytest.mark.parametrize("field", ["model", "fallbacks"])
async def test_a_model_name_over_the_limit_is_refused_without_being_repeated(
        sim: Any, tmp_path: Path, field: str):
    name = "local/" + "x" * (MAX_MODEL_CHARS - 5)
    arguments = {"model": name} if field == "model" else {"model": "local/a",
                                                          "fallbacks": [name]}
    async with Client(server(sim, tmp_path)) as client:
        refused = await client.call_tool("chat_completion", {"prompt": "hi", **arguments})
        local = await local_health(client)

    where = "model" if field == "model" else "fallbacks[0]"
    assert refused.is_error and refused.content[0].text == (
        f"Error executing tool chat_completion: {where}: a model name of "
        f"{MAX_MODEL_CHARS + 1} characters is over the limit of {MAX_MODEL_CHARS}")
    assert [t["target"] for t in local["targets"]] == ["local/house-model"]
    audit = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert audit[0]["outcome"] == "invalid"
    assert len(audit[0]["model"]) <= MAX_MODEL_CHARS + 3


async def test_a_model_name_at_the_limit_is_asked_for(sim: Any, tmp_path: Path):
    name = "local/" + "x" * (MAX_MODEL_CHARS - 6)
    async with Client(server(sim, tmp_path)) as client:
        answered = await client.call_tool("chat_completion", {"prompt": "hi", "model": name})

    assert not answered.is_error, answered.content[0].text


async def test_more_fallbacks_than_the_limit_are_refused_before_anything_is_built(
        sim: Any, tmp_path: Path):
    fallbacks = [f"local/f-{i}" for i in range(MAX_FALLBACKS + 1)]
    async with Client(server(sim, tmp_path)) as client:
        refused = await client.call_tool("chat_completion", {
            "prompt": "hi", "model": "local/a", "fallbacks": fallbacks})
        local = await local_health(client)

    assert refused.is_error and refused.content[0].text == (
        f"Error executing tool chat_completion: fallbacks: {MAX_FALLBACKS + 1} fallbacks is "
        f"over the limit of {MAX_FALLBACKS}")
    assert [t["target"] for t in local["targets"]] == ["local/house-model"]
    assert sum(sim.state.hits.values()) == 0


async def test_a_retry_after_centuries_away_holds_the_target_off_for_ten_minutes_at_most(
        sim: Any, tmp_path: Path):
    args = {"prompt": "hi", "model": "local/q+fail-429+retry-after-300000000000",
            "fallbacks": ["deepseek/deepseek-chat"], "cache": "skip"}
    async with Client(server(sim, tmp_path)) as client:
        first = await client.call_tool("chat_completion", args)
        second = await client.call_tool("chat_completion", args)
        local = await local_health(client)

    assert not first.is_error and not second.is_error, second.content[0].text
    skipped = second.structured_content["attempts"][0]
    assert (skipped["outcome"], second.structured_content["provider"]) == ("skipped", "deepseek")
    assert skipped["error"].endswith(
        "(HTTP 429 with Retry-After 3e+11 s (held off 600 s, the most))")
    [held] = [t for t in local["targets"] if t["target"].startswith("local/q+")]
    reopens = held["open_until"]
    assert reopens == local["open_until"]
    assert 0 < _epoch(reopens) - time.time() <= 601


@pytest.mark.parametrize("header", [
    {"retry-after": "nan"}, {"retry-after": "inf"}, {"retry-after": "-5"},
    {"retry-after": "1e999"}, {"retry-after-ms": "-1"}, {"retry-after-ms": "nan"},
    {"retry-after": "Mon, 01 Jan 99999 00:00:00 GMT"}, {"retry-after": "soon"}])
def test_retry_after_values_that_are_no_wait_are_ignored(header: dict[str, str]):
    assert parse_retry_after(header, time.time()) is None


@pytest.mark.parametrize("header", [
    {"retry-after": "300000000000"}, {"retry-after-ms": "1e308"},
    {"retry-after": "Fri, 31 Dec 9999 23:59:59 GMT"},
    {"retry-after": "Fri, 31 Dec 9999 23:59:59 -2359"}])
def test_retry_after_values_far_away_are_finite_for_the_circuit_to_cap(header: dict[str, str]):
    seconds = parse_retry_after(header, time.time())
    assert seconds is not None and math.isfinite(seconds) and seconds > 1e10


@pytest.mark.parametrize("date", [formatdate(0, usegmt=True), "Mon, 01 Jan 0001 00:00:00 GMT"])
def test_a_retry_after_date_in_the_past_means_now(date: str):
    assert parse_retry_after({"retry-after": date}, time.time()) == 0.0


def _epoch(stamp: str) -> float:
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
