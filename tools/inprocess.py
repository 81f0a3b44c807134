"""The router's own cost per call in one process, free of the scheduler noise of `bench.py`.

    python tools/inprocess.py [--calls 50] [--rounds 30] [--extra-yaml 'pii: {enabled: false}']

`bench.py` times real stdio servers, as hosts meet them; on a shared 2-core machine where four
processes take turns, the figure moves by more than the router's own cost. Here everything runs
in one process, on one event loop: the SDK's in-memory client calls the router, the bare
forwarding server and the floor (`tools/_bare_server.py`), and each one's upstream call is
answered by `httpx.MockTransport` with the same bytes: one streamed answer, recorded from the
simulator's app at start. So no variant pays for an upstream, and what differs between the
rows is the Python each runs per call: the router's routing core and its result contract.
Rounds of `--calls` calls rotate between the variants; the medians of the rounds are printed
with their differences. Same-code runs gave router - bare 0.75 to 0.79 ms on a quiet machine,
up to 0.94 ms with another job running: steadier than `bench.py`, not free of noise.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import httpx
from mcp.client import Client

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bare_server import MODEL, chat_body, create_bare_server  # noqa: E402

from mcp_router.config import parse_config  # noqa: E402
from mcp_router.server import create_server  # noqa: E402
from mcp_router.simulator import create_app  # noqa: E402

BASE_URL = "http://sim.invalid"
CONFIG = f"""\
providers:
  bench: {{kind: openai, base_url: "{BASE_URL}/v1", models: [{MODEL}], timeout_s: 30}}
routes:
  default: {{strategy: single, targets: [{{provider: bench, model: {MODEL}}}]}}
"""

Call = Callable[[int], Awaitable[object]]


async def recorded_answer() -> httpx.MockTransport:
    """A transport that answers every request with the simulator's streamed answer to one."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app())) as sim:
        answer = await sim.post(f"{BASE_URL}/v1/chat/completions", json=chat_body("a question"))
    answer.raise_for_status()
    headers, body = {"content-type": answer.headers["content-type"]}, answer.content
    return httpx.MockTransport(lambda request: httpx.Response(200, headers=headers,
                                                               content=body))


async def measure(calls: int, rounds: int, extra_yaml: str) -> dict[str, list[float]]:
    transport = await recorded_answer()
    with tempfile.TemporaryDirectory() as home:
        router = create_server(parse_config(CONFIG + extra_yaml, env={}), home=Path(home),
                               env={}, transport=transport)
        bare = create_bare_server(f"{BASE_URL}/v1", transport=transport)
        logging.getLogger("httpx").setLevel(logging.WARNING)  # the bare server's INFO lines
        async with Client(router) as to_router, Client(bare) as to_bare:
            variants: dict[str, Call] = {
                "router": lambda i: to_router.call_tool("chat_completion",
                                                        {"prompt": f"call {i}"}),
                "bare": lambda i: to_bare.call_tool("forward", {"prompt": f"call {i}"}),
                "floor": lambda i: to_bare.call_tool("forward_result", {"prompt": f"call {i}"}),
            }
            serial = 0
            for call in variants.values():  # warm up: imports, caches, the first connection
                for _ in range(calls):
                    serial += 1
                    await call(serial)
            per_call: dict[str, list[float]] = {name: [] for name in variants}
            for _ in range(rounds):
                for name, call in variants.items():
                    started = time.perf_counter()
                    for _ in range(calls):
                        serial += 1
                        await call(serial)
                    per_call[name].append((time.perf_counter() - started) / calls * 1000)
    return per_call


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=50, help="calls per variant per round")
    parser.add_argument("--rounds", type=int, default=30, help="rounds, rotating the variants")
    parser.add_argument("--extra-yaml", default="",
                        help="appended to the router's config, e.g. 'pii: {enabled: false}'")
    args = parser.parse_args()
    per_call = anyio.run(measure, args.calls, args.rounds, args.extra_yaml.replace("\\n", "\n"))
    median = {name: statistics.median(ms) for name, ms in per_call.items()}
    for name, ms in median.items():
        print(f"  {name:<7} {ms:.3f} ms a call (median of {args.rounds} rounds)")
    print(f"  router - bare  {median['router'] - median['bare']:.3f} ms "
          f"(the router's own cost, contract included)")
    print(f"  router - floor {median['router'] - median['floor']:.3f} ms "
          f"(the routing core alone)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
