"""cost_report reads the ledger in a worker thread: other calls are answered meanwhile."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from mcp_router.clock import LoopClock
from mcp_router.config import parse_config
from mcp_router.server import create_server
from tests.ledger.conftest import HeldWall

pytestmark = pytest.mark.anyio

CONFIG = """\
providers:
  deepseek: {{kind: openai, base_url: "{url}/v1"}}
routes:
  default: {{targets: [{{provider: deepseek, model: deepseek-chat}}]}}
cache: {{enabled: false}}
"""


async def test_a_chat_call_is_answered_while_cost_report_reads_the_ledger(sim: Any,
                                                                         tmp_path: Path):
    clock = HeldWall(LoopClock())
    server = create_server(parse_config(CONFIG.format(url=sim.url), env={}), home=tmp_path,
                           env={}, clock=clock)
    reports: list[dict[str, Any] | None] = []
    async with Client(server) as client:
        await client.call_tool("chat_completion", {"prompt": "before"})

        async def report() -> None:
            reports.append((await client.call_tool("cost_report", {})).structured_content)

        with anyio.fail_after(5):
            async with anyio.create_task_group() as calls:
                clock.hold()
                calls.start_soon(report)
                while not clock.reached.is_set():  # the report waits in its worker thread
                    await anyio.sleep(0.01)
                answer = await client.call_tool("chat_completion", {"prompt": "meanwhile"})
                assert (answer.is_error, reports) == (False, [])
                clock.release()
    [done] = reports
    assert done is not None and done["requests"] == 2  # its reading began after both
