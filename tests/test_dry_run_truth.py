"""A dry run says what the real call made right after it does: the last resort of an all-open
route is asked, a kept answer is served, and a skip reason says the circuit's state once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from mcp_router.config import parse_config
from mcp_router.server import create_server

pytestmark = pytest.mark.anyio

ALL_FAILING = """\
providers:
  sim: {{kind: openai, base_url: "{url}/v1"}}
routes:
  default: {{targets: [{{provider: sim, model: a+fail-503}}, {{provider: sim, model: b+fail-503}}]}}
retry: {{attempts: 1}}
prices:
  sim/*: {{input_per_mtok: 1.0, output_per_mtok: 2.0}}
cache: {{enabled: false}}
"""
DRIPPING = """\
providers:
  deepseek: {{kind: openai, base_url: "{url}/v1"}}
routes:
  default:
    targets: [{{provider: deepseek, model: deepseek-chat+drip-120}}]
cache: {{enabled: false}}
"""


def server(text: str, sim: Any, home: Path) -> Any:
    return create_server(parse_config(text.format(url=sim.url), env={}), home=home, env={})


async def open_both_circuits(client: Client) -> None:
    """Five failed calls in a row: a opens first, then b, so a reopens soonest."""
    for i in range(5):
        assert (await client.call_tool("chat_completion", {"prompt": f"q{i}"})).is_error


async def test_with_every_circuit_open_the_dry_run_asks_the_one_reopening_soonest(
        sim: Any, tmp_path: Path) -> None:
    async with Client(server(ALL_FAILING, sim, tmp_path)) as client:
        await open_both_circuits(client)
        dry = (await client.call_tool("chat_completion", {"prompt": "next", "dry_run": True}
                                      )).structured_content
        real = await client.call_tool("chat_completion", {"prompt": "next"})

    assert dry is not None
    plan = dry["dry_run"]
    [a, b] = plan["targets"]
    assert (a["model"], a["would"], b["model"], b["would"]) == (
        "a+fail-503", "ask", "b+fail-503", "skip")
    assert a["reason"].startswith("every target's circuit is open; this one reopens soonest")
    assert a["worst_case_usd"] > 0 and plan["worst_case_usd"] == a["worst_case_usd"]
    assert "would fail" not in dry["cost_note"]
    # ... and the real call asks a, once, as the plan said.
    assert real.is_error and "a+fail-503: error" in real.content[0].text  # type: ignore[union-attr]
    assert (sim.state.hits["a+fail-503"], sim.state.hits["b+fail-503"]) == (6, 5)


async def test_a_skipped_open_circuit_says_its_state_once(sim: Any, tmp_path: Path) -> None:
    async with Client(server(ALL_FAILING, sim, tmp_path)) as client:
        await open_both_circuits(client)
        dry = (await client.call_tool("chat_completion", {"prompt": "next", "dry_run": True}
                                      )).structured_content

    assert dry is not None
    skipped = dry["dry_run"]["targets"][1]
    assert skipped["reason"].startswith("circuit open until ")
    assert skipped["reason"].endswith("(5 failures in a row; last: HTTP 503: Service Unavailable)")
    assert skipped["reason"].count("circuit open") == 1
    assert dry["dry_run"]["targets"][0]["reason"].count("circuit open until") == 1


TRIAL = """\
providers:
  p: {{kind: openai, base_url: "{url}/v1"}}
  q: {{kind: openai, base_url: "{url}/v1"}}
routes:
  default:
    targets:
      - {{provider: p, model: "slowtrial+fail-429x1+retry-after-1+slow-1000"}}
      - {{provider: q, model: backup}}
retry: {{attempts: 1}}
cache: {{enabled: false}}
"""


async def test_a_target_whose_half_open_trial_is_in_flight_is_skipped_by_the_dry_run_too(
        sim: Any, tmp_path: Path) -> None:
    async with Client(server(TRIAL, sim, tmp_path)) as client:
        await client.call_tool("chat_completion", {"prompt": "one"})  # 429, Retry-After: 1
        await anyio.sleep(1.1)  # the hold-off is over: the next call is the one trial
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(client.call_tool, "chat_completion", {"prompt": "trial"})
            await anyio.sleep(0.3)  # the trial is in flight (the upstream takes 1 s)
            real = (await client.call_tool("chat_completion", {"prompt": "beside"})
                    ).structured_content
            dry = (await client.call_tool("chat_completion", {"prompt": "beside",
                                                              "dry_run": True})
                   ).structured_content

    assert real is not None and dry is not None
    asked, planned = real["attempts"][0], dry["dry_run"]["targets"][0]
    assert (asked["provider"], asked["outcome"]) == ("p", "skipped")
    assert (planned["would"], planned["reason"]) == ("skip", asked["error"])
    assert asked["error"].startswith("circuit half-open, its trial call is in flight")


async def test_the_dry_run_predicts_the_kept_answer_and_leaves_it_kept(
        sim: Any, tmp_path: Path) -> None:
    async with Client(server(DRIPPING, sim, tmp_path)) as client:
        with pytest.raises(Exception, match="(?i)timed out|timeout"):
            await client.call_tool("chat_completion", {"prompt": "long story"},
                                   read_timeout_seconds=0.3)
        await anyio.sleep(1.5)  # the stream drips to its end on the server's side
        dry = (await client.call_tool("chat_completion", {"prompt": "long story",
                                                          "dry_run": True})).structured_content
        refresh = (await client.call_tool("chat_completion", {
            "prompt": "long story", "dry_run": True, "cache": "refresh"})).structured_content
        real = (await client.call_tool("chat_completion", {"prompt": "long story"})
                ).structured_content

    assert dry is not None and refresh is not None and real is not None
    assert dry["dry_run"]["cache_hit"] is True
    assert "kept" in dry["cost_note"]
    assert refresh["dry_run"]["cache_hit"] is False  # `refresh` asks anew, as the real call
    # The dry run took nothing: the real call still gets the kept answer, asking no one.
    assert (real["late"], real["cost_usd"]) == (True, 0)
    assert sim.state.hits["deepseek-chat+drip-120"] == 1
