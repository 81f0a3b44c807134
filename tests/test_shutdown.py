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
from mcp.client.stdio import StdioServerParameters

from mcp_router.server.http_auth import SHUTDOWN_GRACE_S
from tests.fixtures.serve import HOST, StdioSession, serving

pytestmark = pytest.mark.slow
HANG = "deepseek-chat+hang"
CONFIG = """\
providers:
  deepseek: {{kind: openai, base_url: "{url}/v1"}}
routes:
  default:
    targets: [{{provider: deepseek, model: deepseek-chat}}]
  stuck:
    targets: [{{provider: deepseek, model: {hang}}}]
"""


@pytest.fixture
def config(sim: Any, tmp_path: Path) -> Path:
    path = tmp_path / "router.yaml"
    path.write_text(CONFIG.format(url=sim.url, hang=HANG))
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


def test_sigterm_over_http_cancels_a_stuck_call_after_the_grace_and_records_it(
        sim: Any, config: Path, tmp_path: Path):
    with serving(config, "streamable-http", home_env(tmp_path), tmp_path / "stderr.log") as served:
        async def stuck_call() -> None:
            # the server's going answers with an error or drops the connection: either will do
            with suppress(Exception):
                async with Client(served.url) as client:
                    await client.call_tool("chat_completion", {"prompt": "q", "route": "stuck"})

        async def main() -> float:
            with anyio.fail_after(30):
                async with anyio.create_task_group() as tasks:
                    tasks.start_soon(stuck_call)
                    while sim.state.hits[HANG] == 0:
                        await anyio.sleep(0.02)
                    served.process.send_signal(signal.SIGTERM)
                    started = time.monotonic()
                    while served.process.poll() is None:
                        await anyio.sleep(0.05)
                    tasks.cancel_scope.cancel()  # the client sees its connection go
                    return time.monotonic() - started

        took = anyio.run(main)
    assert SHUTDOWN_GRACE_S - 0.5 < took < SHUTDOWN_GRACE_S + 5
    assert ledger(tmp_path) == [("cancelled", HANG)]
