"""Over HTTP the router's state lives as long as the server, whatever the transport: hosts
connecting and leaving (SSE opens the MCP lifespan once per connection) neither forget
circuits and health figures, nor cancel an answer kept for a host that left, nor stop the
probes."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.fixtures.clock import FakeClock
from tests.shared.served import connected, served

pytestmark = pytest.mark.anyio
TRANSPORTS = ["sse", "streamable-http"]

FAILING_PRIMARY = """\
providers:
  deepseek: {{kind: openai, base_url: "{url}/v1"}}
routes:
  default:
    targets:
      - {{provider: deepseek, model: deepseek-chat+fail-503}}
      - {{provider: deepseek, model: deepseek-chat}}
retry: {{attempts: 1}}
cache: {{enabled: false}}
"""
# Five text pieces, a drip apart: the answer is still streaming (about 1.2 s) when the
# dropped connection is noticed.
STREAMING = "deepseek-chat+drip-300"
KEPT = """\
providers:
  deepseek: {{kind: openai, base_url: "{url}/v1"}}
routes:
  default:
    targets: [{{provider: deepseek, model: {model}}}]
cache: {{enabled: false}}
"""
PROBED = """\
providers:
  deepseek: {{kind: openai, base_url: "{url}/v1"}}
routes:
  default:
    targets: [{{provider: deepseek, model: deepseek-chat}}]
health: {{probe_interval_s: 30}}
cache: {{enabled: false}}
"""


def ledger(home: Path) -> list[str]:
    with sqlite3.connect(home / "ledger.sqlite3") as db:
        return [row[0] for row in db.execute("SELECT outcome FROM calls ORDER BY id")]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_host_that_comes_back_finds_the_health_figures_and_the_open_circuit(
        sim: Any, tmp_path: Path, transport: str):
    with served(FAILING_PRIMARY.format(url=sim.url), transport, tmp_path) as url:
        with anyio.fail_after(30):
            async with connected(url) as host:  # five 503s in a row open the primary's circuit
                for i in range(5):
                    await host.call_tool("chat_completion", {"prompt": f"q{i}"})
            async with connected(url) as host:  # the last host left; one comes back
                after = (await host.call_tool("provider_health", {})).structured_content
                later = (await host.call_tool("chat_completion", {"prompt": "later"}))
    assert after is not None
    [deepseek] = after["providers"]
    assert deepseek["requests"] == 10 and deepseek["state"] != "unknown", deepseek
    assert later.structured_content is not None
    assert [a["outcome"] for a in later.structured_content["attempts"]] == ["skipped", "ok"]
    assert sim.state.hits["deepseek-chat+fail-503"] == 5  # the open circuit spared it


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_an_answer_streaming_when_the_host_s_connection_drops_is_kept_for_it(
        sim: Any, tmp_path: Path, transport: str):
    home = tmp_path / "home"
    with served(KEPT.format(url=sim.url, model=STREAMING), transport, home) as url:
        streaming = anyio.Event()

        async def progress(value: float, total: float | None, message: str | None) -> None:
            if "tokens received" in (message or ""):
                streaming.set()

        async def dropped() -> None:
            async with connected(url) as host, anyio.create_task_group() as tasks:
                tasks.start_soon(lambda: host.call_tool(
                    "chat_completion", {"prompt": "story"}, progress_callback=progress))
                await streaming.wait()
                tasks.cancel_scope.cancel()  # the host gives up and its connection goes

        with anyio.fail_after(30):
            async with connected(url, "bystander"):  # another host stays connected
                await dropped()
                while not ledger(home):  # the answer streams to its end on the server
                    await anyio.sleep(0.02)
                async with connected(url) as host:
                    again = await host.call_tool("chat_completion", {"prompt": "story"})
    assert again.structured_content is not None
    assert (again.structured_content.get("late"), again.structured_content["cost_usd"]) == (True, 0)
    assert sim.state.hits[STREAMING] == 1
    assert ledger(home) == ["ok", "cache_hit"]


class SteppedClock(FakeClock):
    """A fake clock whose `sleep` returns only when the test steps it (from any thread)."""

    def __init__(self) -> None:
        super().__init__()
        self._steps = 0
        self._lock = threading.Lock()

    def step(self) -> None:
        with self._lock:
            self._steps += 1

    async def sleep(self, seconds: float) -> None:
        while True:
            with self._lock:
                if self._steps:
                    self._steps -= 1
                    break
            await anyio.sleep(0.005)
        self.advance(seconds)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_probes_go_on_while_a_host_stays_after_the_first_one_left(
        sim: Any, tmp_path: Path, transport: str):
    clock = SteppedClock()

    def probes() -> int:
        return sum(sim.state.metadata_hits.values())

    async def next_round(seen: int) -> int:
        clock.step()  # probe_interval_s has passed
        with anyio.fail_after(3):
            while probes() == seen:
                await anyio.sleep(0.01)
        return probes()

    async def host(name: str, joined: anyio.Event, leave: anyio.Event, gone: anyio.Event) -> None:
        async with connected(url, name) as client:
            await client.call_tool("list_providers", {})
            joined.set()
            await leave.wait()
        gone.set()

    with served(PROBED.format(url=sim.url), transport, tmp_path, clock=clock) as url:
        first, second = [anyio.Event() for _ in range(3)], [anyio.Event() for _ in range(3)]
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(host, "first", *first)
                await first[0].wait()
                tasks.start_soon(host, "second", *second)
                await second[0].wait()
                first[1].set()  # the host that came first leaves; the second stays
                await first[2].wait()
                rounds = [probes()]
                for _ in range(3):
                    rounds.append(await next_round(rounds[-1]))
                second[1].set()
    assert rounds[0] > 0 and rounds == sorted(set(rounds)), rounds
