"""Paired A/B of two router checkouts: which is faster per call, and by how much.

    python tools/ab.py OLD_CHECKOUT NEW_CHECKOUT [--n 500] [--pin] [--extra-yaml TEXT]
                       [--new-yaml TEXT]

Both checkouts serve `chat_completion` over stdio with the bench's config (`bench.BENCH_CONFIG`,
plus `--extra-yaml` for both) against one simulated upstream at 0 ms. `--new-yaml` is added
for the new one only: with the same checkout twice, `--new-yaml "pii: {enabled: false}"`
measures what the PII filter costs. Calls are interleaved one by one (A, B, then B, A, ...),
so drift hits both alike, and the figure is the median of the per-call differences, new
minus old.

On a shared 2-core machine how the scheduler places the processes holds for a whole run and
biases it: the same code against itself gave -0.13 to -0.01 ms. `--pin` puts both servers on
CPU 1 and this process and the upstream on CPU 0, which gave -0.085 to +0.032 ms; repeat a
run, swapping the checkouts, before believing a difference under 0.1 ms. `tools/bench.py`
measures the overhead itself; this only compares two versions of it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from contextlib import AsyncExitStack
from pathlib import Path

import anyio
from mcp import Client
from mcp.client.stdio import StdioServerParameters

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import BENCH_CONFIG, Prompts, expected_answer, simulator  # noqa: E402

WARMUP = 30


def server(checkout: Path, config: Path, home: Path, sim_url: str,
           pin: bool) -> StdioServerParameters:
    """`mcp-router serve` from `checkout`'s sources, pinned to CPU 1 with `pin`."""
    command = [sys.executable, "-m", "mcp_router", "serve", "--config", str(config)]
    if pin:
        command = ["taskset", "-c", "1", *command]
    env = {"MCP_ROUTER_SIM_URL": sim_url, "MCP_ROUTER_HOME": str(home),
           "MCP_ROUTER_LOG": "WARNING", "PYTHONPATH": str(checkout)}
    return StdioServerParameters(command=command[0], args=command[1:], env=env,
                                 cwd=str(checkout))


async def compare(args: argparse.Namespace, sim_url: str, work: Path) -> None:
    configs = {"old": work / "old.yaml", "new": work / "new.yaml"}
    configs["old"].write_text(BENCH_CONFIG + args.extra_yaml)
    configs["new"].write_text(BENCH_CONFIG + args.extra_yaml + "\n" + args.new_yaml)
    ms: dict[str, list[float]] = {"old": [], "new": []}
    prompts = Prompts()
    async with AsyncExitStack() as stack:
        clients = {
            name: await stack.enter_async_context(Client(
                server(checkout, configs[name], work / name, sim_url, args.pin),
                read_timeout_seconds=60))
            for name, checkout in (("old", args.old), ("new", args.new))}
        for i in range(WARMUP + args.n):
            order = ("old", "new") if i % 2 else ("new", "old")
            for name in order:
                prompt = prompts.next()
                start = time.perf_counter()
                result = await clients[name].call_tool("chat_completion", {"prompt": prompt})
                taken = (time.perf_counter() - start) * 1000
                data = result.structured_content or {}
                if result.is_error or data.get("content") != expected_answer(prompt):
                    raise SystemExit(f"ab: {name} answered wrongly: {result.content}")
                if i >= WARMUP:
                    ms[name].append(taken)
    old, new = ms["old"], ms["new"]
    paired = [b - a for a, b in zip(old, new, strict=True)]
    print(f"old {args.old}: p50 {statistics.median(old):.3f} ms")
    print(f"new {args.new}: p50 {statistics.median(new):.3f} ms")
    print(f"new - old, median of {len(paired)} paired calls: {statistics.median(paired):+.3f} ms"
          f"{' (pinned)' if args.pin else ''}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("old", type=Path, help="a checkout of mcp-router (its root)")
    parser.add_argument("new", type=Path, help="another checkout, or the same one")
    parser.add_argument("--n", type=int, default=500, help="measured calls per checkout")
    parser.add_argument("--pin", action="store_true",
                        help="servers on CPU 1, this process and the upstream on CPU 0 (Linux)")
    parser.add_argument("--extra-yaml", default="", help="config text added for both servers")
    parser.add_argument("--new-yaml", default="", help="config text added for the new one")
    args = parser.parse_args()
    for checkout in (args.old, args.new):
        if not (checkout / "mcp_router" / "__init__.py").is_file():
            parser.error(f"{checkout} is not an mcp-router checkout")
    if args.pin:
        os.sched_setaffinity(0, {0})  # the simulator, started next, inherits it
    with simulator() as sim_url, tempfile.TemporaryDirectory() as work:
        anyio.run(compare, args, sim_url, Path(work))
    return 0


if __name__ == "__main__":
    sys.exit(main())
