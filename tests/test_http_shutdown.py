"""A service manager stops an HTTP server with SIGTERM while hosts sit connected and idle: it
exits at once, with 0, and without an error in its log."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.fixtures.serve import serving
from tests.shared.served import connected

pytestmark = pytest.mark.slow
CONFIG = """\
providers:
  deepseek: {{kind: openai, base_url: "{url}/v1"}}
routes:
  default:
    targets: [{{provider: deepseek, model: deepseek-chat}}]
"""


@pytest.mark.parametrize("transport", ["sse", "streamable-http"])
def test_sigterm_with_an_idle_host_connected_stops_cleanly(sim: Any, tmp_path: Path,
                                                           transport: str):
    config = tmp_path / "router.yaml"
    config.write_text(CONFIG.format(url=sim.url))
    log = tmp_path / "stderr.log"
    env = {"MCP_ROUTER_HOME": str(tmp_path / "home"), "MCP_ROUTER_LOG": "INFO"}
    with serving(config, transport, env, log) as served:
        async def main() -> int:
            idle = anyio.Event()

            async def idle_host() -> None:
                async with connected(served.url) as host:
                    await host.call_tool("list_providers", {})
                    idle.set()
                    await anyio.sleep_forever()

            with anyio.fail_after(15):
                async with anyio.create_task_group() as tasks:
                    tasks.start_soon(idle_host)
                    await idle.wait()
                    served.process.send_signal(signal.SIGTERM)
                    while (code := served.process.poll()) is None:
                        await anyio.sleep(0.05)
                    tasks.cancel_scope.cancel()
                    return code

        code = anyio.run(main)
    text = log.read_text()
    assert code == 0, text
    assert "Traceback" not in text and " ERROR " not in text, text
