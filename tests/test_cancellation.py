"""A host that gives up: the upstream request is aborted, nothing held, nothing cached."""

from __future__ import annotations

import json
import random
import sqlite3
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from mcp import Client

from mcp_router.clock import LoopClock
from mcp_router.config import parse_config
from mcp_router.messages import ChatCall
from mcp_router.server import create_server
from mcp_router.wiring import open_router

pytestmark = pytest.mark.anyio

CONFIG = """\
providers:
  deepseek: {{kind: openai, base_url: "{url}/v1"}}
routes:
  default:
    targets: [{{provider: deepseek, model: deepseek-chat+hang}}]
budgets: {{daily_usd: 5}}
"""


async def wait_for(condition: Any, seconds: float = 5.0) -> bool:
    """Poll without blocking the loop: the in-memory server runs on it too."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        await anyio.sleep(0.02)
    return False


async def test_cancelling_aborts_upstream_and_charges_only_the_prompt_it_was_sent(
        sim: Any, tmp_path: Path):
    config = parse_config(CONFIG.format(url=sim.url), env={})
    async with httpx.AsyncClient() as http:
        with open_router(config, http=http, keys={}, home=tmp_path, clock=LoopClock(),
                         rng=random.Random(0)) as router:
            with anyio.move_on_after(0.5):
                await router.complete(ChatCall(prompt="never answered"))
            assert router.spend.budgets.reserved == 0
            [row] = router.spend.ledger.recent()
            assert (row.outcome, row.provider, row.estimated) == ("cancelled", "deepseek", True)
            # the streamed answer showed no text yet: the prompt it read, at our estimate
            # (14 characters at 3 a token, and 4 for the message)
            assert (row.usage.input_tokens, row.usage.output_tokens) == (9, 0)
            assert row.cost_usd is not None and row.cost_usd > 0
            assert router.spend.budgets.spent_today == row.cost_usd
            plan = await router.complete(ChatCall(prompt="never answered", dry_run=True))
            assert plan.dry_run is not None and plan.dry_run.cache_hit is False
    assert await wait_for(lambda: sim.state.disconnects["deepseek-chat+hang"] == 1)


async def test_a_host_timeout_cancels_the_tool_call_upstream(sim: Any, tmp_path: Path):
    server = create_server(parse_config(CONFIG.format(url=sim.url), env={}), home=tmp_path,
                           env={})
    async with Client(server) as client:
        with pytest.raises(Exception, match="(?i)timed out|timeout"):
            await client.call_tool("chat_completion", {"prompt": "q"}, read_timeout_seconds=0.4)
        assert await wait_for(lambda: sim.state.disconnects["deepseek-chat+hang"] == 1)
        report = (await client.call_tool("cost_report", {})).structured_content
    assert report is not None and report["requests"] == 1  # the cancelled attempt's row
    # the call has its audit line, under the trace id of its ledger row
    audit = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    [cancelled] = [e for e in audit if e["tool"] == "chat_completion"]
    with closing(sqlite3.connect(tmp_path / "ledger.sqlite3")) as ledger:
        [(trace_id,)] = ledger.execute("SELECT trace_id FROM calls").fetchall()
    assert (cancelled["outcome"], cancelled["trace_id"]) == ("cancelled", trace_id)


async def test_cost_report_shows_the_money_calls_in_flight_hold(sim: Any, tmp_path: Path):
    server = create_server(parse_config(CONFIG.format(url=sim.url), env={}), home=tmp_path,
                           env={})
    async with Client(server) as client:
        async with anyio.create_task_group() as calls:
            calls.start_soon(client.call_tool, "chat_completion", {"prompt": "q"})  # hangs
            assert await wait_for(lambda: sim.state.hits["deepseek-chat+hang"] == 1)
            held = (await client.call_tool("cost_report", {})).structured_content
            calls.cancel_scope.cancel()
        after = (await client.call_tool("cost_report", {})).structured_content
    assert held is not None and after is not None
    assert held["budgets"]["daily"]["reserved_usd"] > 0  # why a new call may not fit
    assert held["budgets"]["daily"]["remaining_usd"] == 5  # nothing spent yet
    assert after["budgets"]["daily"]["reserved_usd"] == 0
