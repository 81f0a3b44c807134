"""Progress notifications belong to a live request: none after the host gave up on it."""

from __future__ import annotations

import time
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
    targets: [{{provider: deepseek, model: deepseek-chat+drip-300+tokens-200}}]
cache: {{enabled: false}}
"""


async def test_no_progress_comes_for_a_call_the_host_gave_up_while_its_answer_is_kept(
        sim: Any, tmp_path: Path) -> None:
    # The answer is streaming when the host's timeout fires: the router keeps it coming (to
    # serve the host's retry), but a progress token of an ended request is an error to the
    # TypeScript SDK most hosts run on.
    server = create_server(parse_config(CONFIG.format(url=sim.url), env={}), home=tmp_path,
                           env={})
    heard: list[tuple[float, str]] = []

    async def progress(value: float, total: float | None, message: str | None) -> None:
        heard.append((time.monotonic(), message or ""))

    async with Client(server) as client:
        with pytest.raises(Exception, match="(?i)timed out|timeout"):
            await client.call_tool("chat_completion", {"prompt": "x"},
                                   read_timeout_seconds=0.8, progress_callback=progress)
        gave_up = time.monotonic()
        await anyio.sleep(2.5)  # the kept answer streams to its end meanwhile
        again = await client.call_tool("chat_completion", {"prompt": "x"})

    assert [message for at, message in heard if at < gave_up]  # it did report while live
    assert [message for at, message in heard if at > gave_up + 0.05] == []
    assert again.structured_content and again.structured_content["late"] is True
