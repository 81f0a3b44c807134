"""A host that gives up while the answer is streaming: it is finished, kept and served again."""

from __future__ import annotations

import json
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from mcp_router.config import parse_config
from mcp_router.server import create_server

pytestmark = pytest.mark.anyio

CONFIG = """\
providers:
  deepseek: {{kind: openai, base_url: "{url}/v1"}}
routes:
  default:
    targets: [{{provider: deepseek, model: deepseek-chat+drip-120}}]
  silent:
    targets: [{{provider: deepseek, model: deepseek-chat+slow-1500}}]
cache: {{enabled: false}}
"""


@pytest.fixture
def server(sim: Any, tmp_path: Path) -> Any:
    return create_server(parse_config(CONFIG.format(url=sim.url), env={}), home=tmp_path, env={})


async def test_an_answer_paid_for_after_the_host_gave_up_is_returned_to_the_retry(
        server: Any, sim: Any):
    async with Client(server) as client:
        with pytest.raises(Exception, match="(?i)timed out|timeout"):
            await client.call_tool("chat_completion", {"prompt": "long story"},
                                   read_timeout_seconds=0.3)
        await anyio.sleep(1.5)  # the stream drips to its end on the server's side
        again = await client.call_tool("chat_completion", {"prompt": "long story"})
    assert not again.is_error
    data = again.structured_content
    assert data is not None and data["late"] is True and data["cost_usd"] == 0
    assert data["content"].startswith("Simulated answer from deepseek-chat+drip-120")
    assert sim.state.hits["deepseek-chat+drip-120"] == 1
    assert sim.state.disconnects["deepseek-chat+drip-120"] == 0


async def test_an_answer_not_yet_started_is_aborted_not_kept(server: Any, sim: Any):
    async with Client(server) as client:
        with pytest.raises(Exception, match="(?i)timed out|timeout"):
            await client.call_tool("chat_completion", {"prompt": "q", "route": "silent"},
                                   read_timeout_seconds=0.3)
        deadline = time.monotonic() + 5
        while sim.state.disconnects["deepseek-chat+slow-1500"] == 0:
            assert time.monotonic() < deadline
            await anyio.sleep(0.05)
        again = await client.call_tool("chat_completion", {"prompt": "q", "route": "silent"})
    assert again.structured_content is not None and "late" not in again.structured_content
    assert sim.state.hits["deepseek-chat+slow-1500"] == 2


async def test_a_streaming_answer_reports_progress_as_tokens_arrive(server: Any):
    messages: list[str] = []

    async def progress(value: float, total: float | None, message: str | None) -> None:
        messages.append(message or "")

    async with Client(server) as client:
        result = await client.call_tool("chat_completion", {"prompt": "a fairly long prompt "
                                                                      "to stream back"},
                                        progress_callback=progress)
    assert not result.is_error
    streamed = [m for m in messages if "tokens received" in m]
    assert streamed and streamed[0].startswith("deepseek/deepseek-chat+drip-120: ~")


CACHED = """\
providers:
  deepseek: {{kind: openai, base_url: "{url}/v1"}}
routes:
  default:
    targets: [{{provider: deepseek, model: deepseek-chat+drip-120}}]
"""


async def test_a_call_waiting_on_a_given_up_answer_gets_it_and_so_does_the_cache(
        sim: Any, tmp_path: Path):
    server = create_server(parse_config(CACHED.format(url=sim.url), env={}), home=tmp_path,
                           env={})
    shared: list[Any] = []
    async with Client(server) as first, Client(server) as second:
        async def wait_on_the_first() -> None:
            await anyio.sleep(0.15)  # joins the first call's flight while it streams
            shared.append(await second.call_tool("chat_completion", {"prompt": "long story"}))

        async with anyio.create_task_group() as group:
            group.start_soon(wait_on_the_first)
            with pytest.raises(Exception, match="(?i)timed out|timeout"):
                await first.call_tool("chat_completion", {"prompt": "long story"},
                                      read_timeout_seconds=0.3)
        retry = await first.call_tool("chat_completion", {"prompt": "long story"})
        later = await second.call_tool("chat_completion", {"prompt": "long story"})
        report = (await second.call_tool("cost_report", {"group_by": "model"}))

    (waiter,) = shared
    assert sim.state.hits["deepseek-chat+drip-120"] == 1  # one upstream call for all four
    shared_answer, kept, hit = (r.structured_content for r in (waiter, retry, later))
    assert (shared_answer["cached"], shared_answer["cost_usd"]) == (True, 0)
    assert (kept["late"], kept["cost_usd"]) == (True, 0)
    assert hit["cached"] is True
    (row,) = report.structured_content["rows"]
    assert (row["requests"], row["cache_hits"]) == (4, 3)
    audit = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    given_up = [e for e in audit if e["outcome"] in ("cancelled", "kept")]
    assert [e["outcome"] for e in given_up] == ["cancelled", "kept"]
    assert given_up[0]["trace_id"] == given_up[1]["trace_id"]
    assert Decimal(given_up[1]["cost_usd"]) == Decimal(str(row["cost_usd"])) > 0


BACKING_OFF = """\
providers:
  deepseek: {{kind: openai, base_url: "{url}/v1"}}
routes:
  default:
    targets:
      - {{provider: deepseek, model: deepseek-chat+cut+drip-20}}
      - {{provider: deepseek, model: deepseek-chat+slow-300}}
retry: {{attempts: 2, backoff_initial_s: 2, backoff_max_s: 2}}
cache: {{enabled: false}}
"""


async def test_a_call_given_up_between_attempts_is_aborted_not_kept(sim: Any, tmp_path: Path):
    server = create_server(parse_config(BACKING_OFF.format(url=sim.url), env={}),
                           home=tmp_path, env={})
    async with Client(server) as client:
        # The first attempt streams, is cut, and the call waits out its backoff: nothing is
        # being generated when the host gives up, so nothing more may be sent or paid for.
        with pytest.raises(Exception, match="(?i)timed out|timeout"):
            await client.call_tool("chat_completion", {"prompt": "q"}, read_timeout_seconds=0.6)
        await anyio.sleep(2.5)
    assert sim.state.hits["deepseek-chat+cut+drip-20"] == 1
    assert sim.state.hits["deepseek-chat+slow-300"] == 0
    audit = (tmp_path / "audit.jsonl").read_text()
    assert '"kept"' not in audit and '"cancelled"' in audit


QUICK = """\
providers:
  deepseek: {{kind: openai, base_url: "{url}/v1"}}
routes:
  default:
    targets: [{{provider: deepseek, model: deepseek-chat+drip-40}}]
  silent:
    targets: [{{provider: deepseek, model: deepseek-chat+slow-800}}]
retry: {{attempts: 1}}
"""


async def _kept(home: Path) -> None:
    """Until the audit log says an answer given up on was finished and kept."""
    with anyio.fail_after(5):
        while '"kept"' not in (home / "audit.jsonl").read_text():
            await anyio.sleep(0.02)


@pytest.mark.parametrize("mode", ["refresh", "skip"])
async def test_refresh_and_skip_go_upstream_instead_of_taking_a_kept_answer(
        sim: Any, tmp_path: Path, mode: str):
    server = create_server(parse_config(QUICK.format(url=sim.url), env={}), home=tmp_path,
                           env={})
    async with Client(server) as client:
        with pytest.raises(Exception, match="(?i)timed out|timeout"):
            await client.call_tool("chat_completion", {"prompt": "long story"},
                                   read_timeout_seconds=0.15)
        await _kept(tmp_path)
        again = await client.call_tool("chat_completion", {"prompt": "long story",
                                                           "cache": mode})
        then = await client.call_tool("chat_completion", {"prompt": "long story"})
    data, after = again.structured_content, then.structured_content
    assert data is not None and after is not None
    assert "late" not in data and data["cost_usd"] > 0
    assert sim.state.hits["deepseek-chat+drip-40"] == 2
    # refresh asked for a new answer: that one is served next, from the cache; skip left
    # the kept answer to the call it was kept for
    assert (after.get("late"), after["cached"]) == (
        (None, True) if mode == "refresh" else (True, False))


async def test_a_waiter_keeps_the_upstream_call_when_the_caller_it_joined_gives_up(
        sim: Any, tmp_path: Path):
    server = create_server(parse_config(QUICK.format(url=sim.url), env={}), home=tmp_path,
                           env={})
    waited: list[tuple[float, dict[str, Any]]] = []
    async with Client(server) as impatient, Client(server) as patient:
        async def wait_on_the_first() -> None:
            await anyio.sleep(0.1)  # joins the first call's flight before any text came
            started = time.monotonic()
            result = await patient.call_tool("chat_completion", {"prompt": "q",
                                                                 "route": "silent"})
            assert result.structured_content is not None
            waited.append((time.monotonic() - started, result.structured_content))

        async with anyio.create_task_group() as group:
            group.start_soon(wait_on_the_first)
            with pytest.raises(Exception, match="(?i)timed out|timeout"):
                await impatient.call_tool("chat_completion", {"prompt": "q", "route": "silent"},
                                          read_timeout_seconds=0.3)
    ((seconds, answer),) = waited
    # one upstream request, not aborted at 0.3 s and sent again: answered at ~0.8 s
    assert sim.state.hits["deepseek-chat+slow-800"] == 1
    assert sim.state.disconnects["deepseek-chat+slow-800"] == 0
    assert answer["cached"] is True and seconds < 0.95
