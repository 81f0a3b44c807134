"""A host or a service manager stops the server with SIGTERM: nothing paid for goes unrecorded.

Hosts end a stdio server by closing stdin or with SIGTERM, container and service managers
with SIGTERM followed by SIGKILL. The call in flight must reach the ledger (as cancelled),
and an answer staged for the cache must reach the disk, before the process is gone.
"""

from __future__ import annotations

import signal
import sqlite3
import sys
import time
from contextlib import suppress
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.client.sse import sse_client
from mcp.client.stdio import StdioServerParameters
from mcp.types import CallToolResult

from mcp_router.server.http_auth import SHUTDOWN_GRACE_S
from tests.fixtures.serve import HOST, StdioSession, serving

pytestmark = pytest.mark.slow
HANG = "deepseek-chat+hang"
DRIP = "deepseek-chat+drip-300+tokens-200"
CONFIG = """\
providers:
  deepseek: {{kind: openai, base_url: "{url}/v1"}}
routes:
  default:
    targets: [{{provider: deepseek, model: deepseek-chat}}]
  stuck:
    targets: [{{provider: deepseek, model: {hang}}}]
  slow:
    targets: [{{provider: deepseek, model: deepseek-chat+slow-1500}}]
  streaming:
    targets: [{{provider: deepseek, model: {drip}}}]
"""


@pytest.fixture
def config(sim: Any, tmp_path: Path) -> Path:
    path = tmp_path / "router.yaml"
    path.write_text(CONFIG.format(url=sim.url, hang=HANG, drip=DRIP))
    return path


def home_env(tmp_path: Path) -> dict[str, str]:
    return {"MCP_ROUTER_HOME": str(tmp_path / "home"), "MCP_ROUTER_LOG": "WARNING"}


def ledger(tmp_path: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(tmp_path / "home" / "ledger.sqlite3") as db:
        return list(db.execute("SELECT outcome, model FROM calls ORDER BY id"))


def wait_until(condition: Any, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_sigterm_over_stdio_records_the_call_in_flight_and_keeps_the_staged_answer(
        sim: Any, config: Path, tmp_path: Path):
    host = StdioSession(config, home_env(tmp_path))
    try:
        assert host.call(1, prompt="remember me")["structuredContent"]["cached"] is False
        host.ask(2, prompt="never answered", route="stuck")
        wait_until(lambda: sim.state.hits[HANG] == 1)
        host.proc.send_signal(signal.SIGTERM)
        assert host.proc.wait(timeout=10) == 0
    finally:
        host.close()
    assert ledger(tmp_path) == [("ok", "deepseek-chat"), ("cancelled", HANG)]
    wait_until(lambda: sim.state.disconnects[HANG] == 1)

    # The answer was staged in memory when the signal came; the next process has it on disk.
    params = StdioServerParameters(command=sys.executable, env=home_env(tmp_path),
                                   args=["-m", "mcp_router", "serve", "--config", str(config)])

    async def ask_again() -> dict[str, Any]:
        with anyio.fail_after(30):
            # the same client name: the cache keeps each client's answers apart
            async with Client(params, client_info=HOST) as client:
                result = await client.call_tool("chat_completion", {"prompt": "remember me"})
        assert result.structured_content is not None
        return result.structured_content

    assert anyio.run(ask_again)["cached"] is True


def stopped_during(served: Any, sim: Any, route: str, model: str,
                   signum: signal.Signals = signal.SIGTERM) -> tuple[Any, float]:
    """A call on `route` with `signum` sent once `model` was asked: what the host got (a
    result, or the exception), and how long the server took to exit after the signal."""
    outcome: list[Any] = []

    async def call() -> None:
        transport: Any = sse_client(served.url) if served.url.endswith("/sse") else served.url
        try:
            async with Client(transport) as client:
                await client.list_tools()  # the SDK's client asks for it after a call
                outcome.append(await client.call_tool("chat_completion",
                                                      {"prompt": "q", "route": route}))
        except Exception as exc:  # the connection going: a host meets this too
            outcome.append(exc)

    async def main() -> float:
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(call)
                while sim.state.hits[model] == 0:
                    await anyio.sleep(0.02)
                served.process.send_signal(signum)
                started = time.monotonic()
                while served.process.poll() is None:
                    await anyio.sleep(0.05)
                took = time.monotonic() - started
                while not outcome:
                    await anyio.sleep(0.05)
                return took

    took = anyio.run(main)
    return outcome[0], took


# SIGHUP as well: it comes when the terminal or SSH session running the server closes.
@pytest.mark.parametrize("name", ["SIGTERM", "SIGHUP"])
@pytest.mark.parametrize("transport", ["streamable-http", "sse"])
def test_sigterm_or_sighup_over_http_lets_a_call_in_flight_finish_within_the_grace(
        sim: Any, config: Path, tmp_path: Path, transport: str, name: str):
    if not hasattr(signal, name):
        pytest.skip(f"no {name} here")
    signum = signal.Signals[name]
    log = tmp_path / "stderr.log"
    with serving(config, transport, home_env(tmp_path), log) as served:
        result, took = stopped_during(served, sim, "slow", "deepseek-chat+slow-1500", signum)
        code = served.process.poll()

    assert isinstance(result, CallToolResult) and not result.is_error, result
    assert result.structured_content is not None
    assert result.structured_content["model"] == "deepseek-chat+slow-1500"
    assert took < SHUTDOWN_GRACE_S
    assert code == 0
    assert ledger(tmp_path) == [("ok", "deepseek-chat+slow-1500")]
    # Some send SIGHUP meaning "reload": the log says it is not one.
    assert ("SIGHUP: stopping as on SIGTERM, not reloading" in log.read_text()) \
        is (name == "SIGHUP")


@pytest.mark.parametrize("transport", ["streamable-http", "sse"])
def test_a_call_still_running_at_the_end_of_the_grace_is_told_the_server_is_stopping(
        sim: Any, config: Path, tmp_path: Path, transport: str):
    log = tmp_path / "stderr.log"
    with serving(config, transport, home_env(tmp_path), log) as served:
        result, took = stopped_during(served, sim, "stuck", HANG)

    assert isinstance(result, CallToolResult) and result.is_error, result
    assert "the server is stopping" in result.content[0].text  # type: ignore[union-attr]
    assert SHUTDOWN_GRACE_S - 1 < took < SHUTDOWN_GRACE_S + 2
    assert ledger(tmp_path) == [("cancelled", HANG)]
    assert "Traceback" not in log.read_text()


def test_a_forced_quit_still_writes_the_calls_in_flight_to_the_ledger(
        sim: Any, config: Path, tmp_path: Path):
    # SIGTERM, then Ctrl-C inside the grace, as uvicorn's "CTRL+C to force quit" invites.
    with serving(config, "streamable-http", home_env(tmp_path), tmp_path / "stderr.log") as served:
        async def call(route: str) -> None:
            with suppress(Exception):
                async with Client(served.url) as client:
                    await client.call_tool("chat_completion", {"prompt": route, "route": route})

        async def main() -> int:
            with anyio.fail_after(30):
                async with anyio.create_task_group() as tasks:
                    tasks.start_soon(call, "stuck")
                    tasks.start_soon(call, "streaming")
                    while sim.state.hits[HANG] == 0 or sim.state.hits[DRIP] == 0:
                        await anyio.sleep(0.02)
                    await anyio.sleep(0.5)  # the streaming one is being paid for by now
                    served.process.send_signal(signal.SIGTERM)
                    await anyio.sleep(0.5)
                    served.process.send_signal(signal.SIGINT)
                    while (code := served.process.poll()) is None:
                        await anyio.sleep(0.05)
                    tasks.cancel_scope.cancel()
                    return code

        code = anyio.run(main)
    assert code == 0
    assert sorted(ledger(tmp_path)) == [("cancelled", DRIP), ("cancelled", HANG)]
    with sqlite3.connect(tmp_path / "home" / "ledger.sqlite3") as db:
        [(streamed_cost,)] = db.execute("SELECT cost_usd FROM calls WHERE model = ?", (DRIP,))
    assert streamed_cost is not None  # what streamed before the quit, charged at an estimate
