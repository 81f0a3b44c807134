"""An answer a host gave up on while it was being paid for runs on in the keeper: a stopping
server gives it the grace its calls get, and when it cannot finish (cut at the grace's end,
the connection closing, or the upstream failing) its `lost` audit line still says what it
cost, as the ledger has it for the given-up call's trace."""

from __future__ import annotations

import json
import signal
import sqlite3
import time
from contextlib import closing, suppress
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.client.sse import sse_client

from mcp_router.config import parse_config
from mcp_router.server import create_server
from mcp_router.server.http_auth import SHUTDOWN_GRACE_S
from tests.fixtures.serve import serving

# The simulator streams the answer to "story" in 5 pieces, `drip` ms apart; the router
# reports progress on the first piece at least 0.5 s into the call.
STREAM = "a+drip-300"  # about 1.2 s of streaming: done within the grace
LONG = "a+drip-2500"  # about 10 s: still streaming when the grace ends
CUT = "a+slow-600+drip-600+cut"  # progress on its first piece, a second, then cut
CONFIG = """\
providers:
  sim: {{kind: openai, base_url: "{url}/v1"}}
routes:
  default: {{targets: [{{provider: sim, model: "{model}"}}]}}
retry: {{attempts: 1}}
cache: {{enabled: false}}
prices:
  sim/*: {{input_per_mtok: 1000, output_per_mtok: 1000}}
"""


def audit_lines(home: Path) -> list[dict[str, Any]]:
    path = home / "audit.jsonl"
    if not path.exists():
        return []
    return [e for e in map(json.loads, path.read_text().splitlines())
            if e["tool"] == "chat_completion"]


def outcomes(home: Path) -> list[str]:
    return [line["outcome"] for line in audit_lines(home)]


def ledger_costs(home: Path) -> dict[str, Decimal]:
    """Each trace's charged total, from the ledger."""
    with closing(sqlite3.connect(home / "ledger.sqlite3")) as ledger:
        rows = ledger.execute("SELECT trace_id, SUM(cost_usd) FROM calls GROUP BY trace_id")
        return {trace: Decimal(str(cost)) for trace, cost in rows.fetchall()}


def given_up_and_then(home: Path, outcome: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The given-up call's `cancelled` line and the line its answer had later, whose cost
    is what the ledger charged under their trace."""
    cancelled, later = audit_lines(home)
    assert (cancelled["outcome"], later["outcome"]) == ("cancelled", outcome)
    assert later["trace_id"] == cancelled["trace_id"]
    charged = ledger_costs(home)[cancelled["trace_id"]]
    assert charged > 0
    assert (cancelled["cost_usd"], Decimal(later["cost_usd"])) == ("0", charged)
    return cancelled, later


async def until(condition: Any, seconds: float = 10.0) -> None:
    with anyio.fail_after(seconds):
        while not condition():
            await anyio.sleep(0.02)


def in_process(sim: Any, home: Path, model: str) -> Any:
    return create_server(parse_config(CONFIG.format(url=sim.url, model=model), env={}),
                         home=home, env={})


async def give_up_while_streaming(client: Client) -> None:
    """Call the model and give up once its answer streams: it is being paid for."""
    streaming = anyio.Event()

    async def progress(value: float, total: float | None, message: str | None) -> None:
        if "tokens received" in (message or ""):
            streaming.set()

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tasks:
            async def call() -> None:
                await client.call_tool("chat_completion", {"prompt": "story"},
                                       progress_callback=progress)

            tasks.start_soon(call)
            await streaming.wait()
            tasks.cancel_scope.cancel()


@pytest.mark.anyio
async def test_a_kept_answer_whose_upstream_fails_has_its_charge_in_a_lost_line(
        sim: Any, tmp_path: Path):
    async with Client(in_process(sim, tmp_path, CUT)) as client:
        await give_up_while_streaming(client)
        await until(lambda: len(outcomes(tmp_path)) == 2)
    _, lost = given_up_and_then(tmp_path, "lost")
    assert "stream cut" in lost["error"], lost
    assert lost["model"] is None and lost["provider"] is None


@pytest.mark.anyio
async def test_a_kept_answer_keeps_the_server_busy_until_its_calls_are_stopped(
        sim: Any, tmp_path: Path):
    server = in_process(sim, tmp_path, LONG)
    async with Client(server) as client:
        await give_up_while_streaming(client)
        await until(lambda: outcomes(tmp_path) == ["cancelled"])
        assert server.busy  # no tool call runs, but the answer is still being paid for
        server.stop_calls()
        await until(lambda: not server.busy and len(outcomes(tmp_path)) == 2)
    _, lost = given_up_and_then(tmp_path, "lost")
    assert "the server stopped" in lost["error"], lost


@pytest.mark.anyio
async def test_a_kept_answer_cut_by_its_connection_closing_has_its_charge_in_a_lost_line(
        sim: Any, tmp_path: Path):
    # Over stdio (or in process) the keeper is the connection's: it ends with it.
    async with Client(in_process(sim, tmp_path, LONG)) as client:
        await give_up_while_streaming(client)
    given_up_and_then(tmp_path, "lost")
    assert sim.state.disconnects[LONG] == 1


def sigterm_while_kept(sim: Any, tmp_path: Path, model: str, transport: str) -> float:
    """Serve `model`, give up on a call while its answer streams, then SIGTERM the server:
    how long it took to exit."""
    config = tmp_path / "router.yaml"
    config.write_text(CONFIG.format(url=sim.url, model=model))
    env = {"MCP_ROUTER_HOME": str(tmp_path / "home"), "MCP_ROUTER_LOG": "WARNING"}
    with serving(config, transport, env, tmp_path / "stderr.log") as served:
        async def main() -> float:
            with anyio.fail_after(30):
                endpoint: Any = sse_client(served.url) if transport == "sse" else served.url
                with suppress(Exception):  # the connection going as the server stops
                    async with Client(endpoint) as client:
                        await give_up_while_streaming(client)
                        await until(lambda: outcomes(tmp_path / "home") == ["cancelled"])
                        served.process.send_signal(signal.SIGTERM)
                        started = time.monotonic()
                while served.process.poll() is None:
                    await anyio.sleep(0.05)
                return time.monotonic() - started

        took = anyio.run(main)
        assert served.process.returncode == 0
    assert "Traceback" not in (tmp_path / "stderr.log").read_text()
    return took


@pytest.mark.slow
@pytest.mark.parametrize("transport", ["streamable-http", "sse"])
def test_sigterm_lets_a_kept_answer_finish_within_the_grace_with_its_kept_line(
        sim: Any, tmp_path: Path, transport: str):
    took = sigterm_while_kept(sim, tmp_path, STREAM, transport)
    assert took < SHUTDOWN_GRACE_S
    given_up_and_then(tmp_path / "home", "kept")
    assert sim.state.disconnects[STREAM] == 0


@pytest.mark.slow
def test_sigterm_ends_a_kept_answer_at_the_grace_with_its_charge_in_a_lost_line(
        sim: Any, tmp_path: Path):
    took = sigterm_while_kept(sim, tmp_path, LONG, "streamable-http")
    assert SHUTDOWN_GRACE_S - 1 < took < SHUTDOWN_GRACE_S + 2
    _, lost = given_up_and_then(tmp_path / "home", "lost")
    assert "the server stopped" in lost["error"], lost
