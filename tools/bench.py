"""Latency of `chat_completion` over stdio beside a direct upstream call and a bare MCP server.

    python tools/bench.py [--n 300] [--warmup 30] [--latencies 0,50]

Every variant is measured in one run against one simulated upstream, in blocks that rotate
between variants, so a noisy machine's drift hits all of them alike. The router's own
overhead is `router - bare`: both are MCP stdio servers driven by the same client code, and
the bare one only forwards the request. The `floor` row is that bare server answering with
a `chat_completion`-shaped result, which splits the overhead into what the result contract
costs (floor - bare) and what the routing core costs (router - floor); the `lean` row is the
router with its optional steps off (cache, PII filter, audit log), which splits the routing
core once more. The router serves stdio on its own transport (`mcp_router.server.stdio`), the bare
server on the SDK's; the `piped` row is the bare server on the router's transport, so
`bare - piped` is what the transport saves and `router - piped` what the routing core costs
on equal transports. A row is one entry of `VARIANTS`: an async context manager that starts
what it needs and yields `call(prompt) -> content`.
Exit code 0 whatever the numbers (a measurement); 1 when a call fails or answers wrongly.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import (
    AbstractAsyncContextManager,
    AsyncExitStack,
    asynccontextmanager,
    contextmanager,
)
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.types import CallToolResult

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bare_server import MODEL, stream_chat  # noqa: E402

TARGET_P50_MS = 0.3
BARE_SERVER = Path(__file__).resolve().parent / "_bare_server.py"
BENCH_CONFIG = f"""\
providers:
  bench:
    kind: openai
    base_url: ${{MCP_ROUTER_SIM_URL}}/v1
    models: [{MODEL}]
    timeout_s: 30
routes:
  default:
    strategy: single
    targets:
      - {{provider: bench, model: {MODEL}}}
default_route: default
"""

LEAN_CONFIG = BENCH_CONFIG + """\
cache: {enabled: false}
pii: {enabled: false}
audit: {enabled: false}
"""
"""The bench config with the response cache, the PII filter and the audit log off: what the
routing core, the ledger and the budgets cost without the optional steps."""

Call = Callable[[str], Awaitable[str]]
"""One measured call: prompt in, the verified answer text out."""


class BenchError(Exception):
    """A call failed or answered something other than the simulator's answer."""


@dataclass(frozen=True)
class Env:
    """What the variants share: the upstream, the router's config and data directory."""

    sim_url: str
    config: Path
    lean_config: Path
    home: Path

    @property
    def server_env(self) -> dict[str, str]:
        env = {"MCP_ROUTER_SIM_URL": self.sim_url, "MCP_ROUTER_HOME": str(self.home),
               "MCP_ROUTER_LOG": "WARNING"}
        # Passed on so another checkout can be measured: PYTHONPATH=/that/checkout bench.py
        if "PYTHONPATH" in os.environ:
            env["PYTHONPATH"] = os.environ["PYTHONPATH"]
        return env


def expected_answer(prompt: str) -> str:
    return f"Simulated answer from {MODEL}: {prompt}"


def _structured(result: CallToolResult, tool: str) -> dict[str, Any]:
    if result.is_error:
        text = result.content[0].text if result.content else "no message"  # type: ignore[union-attr]
        raise BenchError(f"{tool} returned isError: {text}")
    return result.structured_content or {}


def _checked(content: object, prompt: str, variant: str) -> str:
    if content != expected_answer(prompt):
        raise BenchError(f"{variant}: unexpected answer {content!r}")
    return str(content)


def _stdio(args: list[str], env: Env, home: str = "") -> Client:
    """A client of a stdio server; `home` names the server's own data directory (ledger,
    cache, audit log) under the shared one, so no variant writes into another's files."""
    server_env = env.server_env | {"MCP_ROUTER_HOME": str(env.home / home)}
    params = StdioServerParameters(command=sys.executable, args=args, env=server_env)
    return Client(params, read_timeout_seconds=60)


@asynccontextmanager
async def direct(env: Env) -> AsyncIterator[Call]:
    """httpx straight to the upstream: the same body and SSE read as the router's adapter."""
    async with httpx.AsyncClient(timeout=httpx.Timeout(60, connect=5)) as http:
        async def call(prompt: str) -> str:
            answer = await stream_chat(http, f"{env.sim_url}/v1", prompt)
            return _checked(answer["content"], prompt, "direct")
        yield call


@asynccontextmanager
async def _forwarding(env: Env, tool: str, variant: str, *flags: str) -> AsyncIterator[Call]:
    """`tools/_bare_server.py` (with `flags`) over stdio, asked through its tool `tool`."""
    async with _stdio([str(BARE_SERVER), *flags], env) as client:
        async def call(prompt: str) -> str:
            data = _structured(await client.call_tool(tool, {"prompt": prompt}), tool)
            return _checked(data.get("content"), prompt, variant)
        yield call


def bare(env: Env) -> AbstractAsyncContextManager[Call]:
    """The floor: an MCP stdio server whose one tool makes that same upstream call."""
    return _forwarding(env, "forward", "bare")


def piped(env: Env) -> AbstractAsyncContextManager[Call]:
    """The bare server on the router's own stdio transport: the same floor, minus the SDK's
    thread hand-offs, so `router - piped` is the routing core's cost on equal transports."""
    return _forwarding(env, "forward", "piped", "--pipes")


def floor(env: Env) -> AbstractAsyncContextManager[Call]:
    """The contract's floor: the bare server answering with a `chat_completion`-shaped result."""
    return _forwarding(env, "forward_result", "floor")


@asynccontextmanager
async def _router(env: Env, config: Path, variant: str) -> AsyncIterator[Call]:
    """`mcp-router serve` over stdio with `config`: one provider, one single route."""
    async with _stdio(["-m", "mcp_router", "serve", "--config", str(config)], env,
                      home=variant) as client:
        async def call(prompt: str) -> str:
            data = _structured(await client.call_tool("chat_completion", {"prompt": prompt}),
                               "chat_completion")
            if data.get("provider") != "bench":
                raise BenchError(f"{variant}: answered by {data.get('provider')!r}, not 'bench'")
            return _checked(data.get("content"), prompt, variant)
        yield call


def router(env: Env) -> AbstractAsyncContextManager[Call]:
    """The router as shipped: cache, PII filter and audit log on, as by default."""
    return _router(env, env.config, "router")


def lean(env: Env) -> AbstractAsyncContextManager[Call]:
    """The router with the cache, PII filter and audit log off (`LEAN_CONFIG`)."""
    return _router(env, env.lean_config, "lean")


HIT_PROMPT = "the same question every time, so the cache answers"


@asynccontextmanager
async def hit(env: Env) -> AsyncIterator[Call]:
    """`mcp-router serve` answering one repeated prompt from its cache (after the first call)."""
    async with _stdio(["-m", "mcp_router", "serve", "--config", str(env.config)], env,
                      home="hit") as client:
        await client.call_tool("chat_completion", {"prompt": HIT_PROMPT})

        async def call(prompt: str) -> str:
            data = _structured(await client.call_tool("chat_completion", {"prompt": HIT_PROMPT}),
                               "chat_completion")
            if data.get("cached") is not True:
                raise BenchError("hit: the answer did not come from the cache")
            return _checked(data.get("content"), HIT_PROMPT, "hit")
        yield call


VARIANTS: dict[str, Callable[[Env], AbstractAsyncContextManager[Call]]] = {
    "direct": direct, "bare": bare, "piped": piped, "floor": floor, "router": router,
    "lean": lean, "hit": hit,
}


@dataclass
class Samples:
    """Milliseconds per call, and per-block medians for paired (same-round) comparisons.

    `cpu_s` is the CPU time (user + system) the variant's server process spent over the
    `cpu_calls` measured calls: steadier than wall time on a busy machine, as time spent
    waiting for a core is not in it.
    """

    ms: list[float] = field(default_factory=list)
    block_p50: list[float] = field(default_factory=list)
    cpu_s: float = 0.0
    cpu_calls: int = 0

    @property
    def cpu_ms(self) -> float | None:
        """Server CPU milliseconds per call; None without a server process to read."""
        return 1000 * self.cpu_s / self.cpu_calls if self.cpu_calls else None

    @property
    def p50(self) -> float:
        return statistics.median(self.ms)

    @property
    def p99(self) -> float:
        return statistics.quantiles(self.ms, n=100, method="inclusive")[98]

    @property
    def mean(self) -> float:
        return statistics.fmean(self.ms)


class Prompts:
    """Distinct prompts of one length, so no cache ever answers and all bodies weigh the same."""

    def __init__(self) -> None:
        self._serial = 0

    def next(self) -> str:
        self._serial += 1
        tag, n = "", self._serial
        for _ in range(6):  # letters, not digits: nothing a PII detector could take for a number
            n, digit = divmod(n, 26)
            tag = chr(ord("a") + digit) + tag
        return f"Benchmark call {tag}: answer in one short line."


def _children() -> set[int]:
    """This process's child processes, from Linux's /proc (empty where it cannot tell)."""
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return set()
    found: set[int] = set()
    for task in tasks:
        try:
            found.update(int(pid) for pid in
                         Path(f"/proc/self/task/{task}/children").read_text().split())
        except OSError:
            continue
    return found


def _cpu_s(pids: set[int]) -> float:
    """User + system CPU seconds `pids` have used so far, from /proc/<pid>/stat."""
    ticks = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


async def measure(calls: dict[str, Call], servers: dict[str, set[int]], prompts: Prompts,
                  n: int, warmup: int, block: int) -> dict[str, Samples]:
    """`warmup` calls each, then blocks of `block` calls per variant, rotating the order.

    `servers` are the process ids of each variant's server, whose CPU time is read around
    each block.
    """
    names = list(calls)
    for name in names:
        for _ in range(warmup):
            await calls[name](prompts.next())
    samples = {name: Samples() for name in names}
    for r in range(-(-n // block)):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            size = min(block, n - r * block)
            taken = []
            cpu_before = _cpu_s(servers[name])
            for _ in range(size):
                prompt = prompts.next()
                start = time.perf_counter()
                await calls[name](prompt)
                taken.append((time.perf_counter() - start) * 1000)
            samples[name].ms.extend(taken)
            samples[name].block_p50.append(statistics.median(taken))
            if servers[name]:
                samples[name].cpu_s += _cpu_s(servers[name]) - cpu_before
                samples[name].cpu_calls += size
    return samples


def report(latency_ms: float, samples: dict[str, Samples]) -> None:
    print(f"\nupstream latency {latency_ms:g} ms ({len(samples['router'].ms)} calls per variant)")
    print(f"  {'variant':<8} {'p50 ms':>9} {'p99 ms':>9} {'mean ms':>9}")
    for name, s in samples.items():
        print(f"  {name:<8} {s.p50:>9.3f} {s.p99:>9.3f} {s.mean:>9.3f}")
    ours, bare_, direct_ = samples["router"], samples["bare"], samples["direct"]
    contract, cached = samples["floor"], samples["hit"]
    paired = [a - b for a, b in zip(ours.block_p50, bare_.block_p50, strict=True)]
    print(f"  router overhead (router - bare): p50 {ours.p50 - bare_.p50:.2f} ms, "
          f"p99 {ours.p99 - bare_.p99:.2f} ms; ratio router/bare p50 = {ours.p50 / bare_.p50:.3f}")
    print(f"  per-block p50 differences: median {statistics.median(paired):.2f} ms, "
          f"range {min(paired):.2f} .. {max(paired):.2f} ms over {len(paired)} blocks")
    print(f"  of which: the result contract (floor - bare) p50 {contract.p50 - bare_.p50:.2f} ms, "
          f"the routing core (router - floor) p50 {ours.p50 - contract.p50:.2f} ms")
    slim = samples["lean"]
    print(f"  the optional steps (cache lookup, PII filter, audit log: router - lean) p50 "
          f"{ours.p50 - slim.p50:.2f} ms; without them (lean - bare) p50 "
          f"{slim.p50 - bare_.p50:.2f} ms")
    on_pipes = samples["piped"]
    print(f"  the router's stdio transport saves (bare - piped) p50 "
          f"{bare_.p50 - on_pipes.p50:.2f} ms; the routing core on equal transports "
          f"(router - piped) p50 {ours.p50 - on_pipes.p50:.2f} ms")
    print(f"  MCP itself (bare - direct): p50 {bare_.p50 - direct_.p50:.2f} ms; "
          f"ratio bare/direct p50 = {bare_.p50 / direct_.p50:.3f}")
    if ours.cpu_ms is not None and bare_.cpu_ms is not None and contract.cpu_ms is not None:
        cpu = ", ".join(f"{name} {s.cpu_ms:.2f}" for name, s in samples.items()
                        if s.cpu_ms is not None)
        print(f"  server CPU ms per call: {cpu}; router - bare {ours.cpu_ms - bare_.cpu_ms:.2f}, "
              f"router - floor {ours.cpu_ms - contract.cpu_ms:.2f}")
    overhead = ours.p50 - bare_.p50
    verdict = "PASS" if overhead <= TARGET_P50_MS else "MISS"
    print(f"  {verdict}: router overhead p50 {overhead:.2f} ms vs target <= {TARGET_P50_MS} ms")
    verdict = "PASS" if cached.p50 <= bare_.p50 else "MISS"
    print(f"  {verdict}: cache hit p50 {cached.p50:.2f} ms vs bare forwarding call "
          f"{bare_.p50:.2f} ms; ratio hit/bare = {cached.p50 / bare_.p50:.3f} "
          f"(target <= 1 at 0 ms upstream)")


async def run(args: argparse.Namespace, sim_url: str, workdir: Path) -> None:
    config, lean_config = workdir / "bench.yaml", workdir / "lean.yaml"
    config.write_text(BENCH_CONFIG)
    lean_config.write_text(LEAN_CONFIG)
    env = Env(sim_url=sim_url, config=config, lean_config=lean_config, home=workdir / "home")
    prompts = Prompts()
    async with httpx.AsyncClient() as control, _entered(env) as (calls, servers):
        for latency in args.latencies:
            reply = await control.post(f"{sim_url}/_sim/latency", json={"ms": latency})
            reply.raise_for_status()
            report(latency, await measure(calls, servers, prompts, args.n, args.warmup,
                                          args.block))


@asynccontextmanager
async def _entered(env: Env) -> AsyncIterator[tuple[dict[str, Call], dict[str, set[int]]]]:
    """Every variant started at once, with the processes it started; stopped (servers
    terminated) on the way out."""
    calls: dict[str, Call] = {}
    servers: dict[str, set[int]] = {}
    async with AsyncExitStack() as stack:
        for name, make in VARIANTS.items():
            before = _children()
            calls[name] = await stack.enter_async_context(make(env))
            servers[name] = _children() - before
        yield calls, servers


@contextmanager
def simulator() -> Iterator[str]:
    """The simulated upstream in its own process, so it never shares a GIL with a variant."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "mcp_router", "simulate", "--port", "0"],
        stderr=subprocess.PIPE, text=True, env=os.environ | {"MCP_ROUTER_LOG": "WARNING"})
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()  # "simulated upstream on http://127.0.0.1:PORT"
        if "simulated upstream on " not in line:
            raise BenchError(f"the simulator did not start: {line.strip() or 'no output'}")
        threading.Thread(target=shutil.copyfileobj, args=(proc.stderr, sys.stderr),
                         daemon=True).start()
        yield line.rsplit(" ", 1)[1].strip()
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--n", type=int, default=300, help="measured calls per variant")
    parser.add_argument("--warmup", type=int, default=30, help="unmeasured calls per variant")
    parser.add_argument("--block", type=int, default=50, help="calls per variant per round")
    parser.add_argument("--latencies", type=lambda s: [float(x) for x in s.split(",")],
                        default=[0.0, 50.0], help="simulated upstream latencies in ms")
    return parser


def _bench_error(exc: BaseException) -> BenchError | None:
    """The BenchError in `exc`, also when task groups wrapped it in exception groups."""
    if isinstance(exc, BenchError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            if (found := _bench_error(inner)) is not None:
                return found
    return None


def main() -> int:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind: servers get terminated
    args = _parser().parse_args()
    print(f"python {platform.python_version()} ({sys.executable}), {os.cpu_count()} cpus, "
          f"{platform.system()} {platform.machine()}; {args.n} calls per variant per latency "
          f"after {args.warmup} warm-up, blocks of {args.block}, concurrency 1")
    spec = importlib.util.find_spec("mcp_router")
    print(f"router under test: {Path(spec.origin).parent if spec and spec.origin else '?'}")
    started = time.perf_counter()
    try:
        with simulator() as sim_url, tempfile.TemporaryDirectory() as workdir:
            print(f"simulated upstream {sim_url} (own process); variants: {', '.join(VARIANTS)}")
            anyio.run(run, args, sim_url, Path(workdir))
    except Exception as exc:  # the boundary: a failed call is reported, anything else raised
        error = _bench_error(exc)
        if error is None:
            raise
        print(f"bench: error: {error}", file=sys.stderr)
        return 1
    print(f"\ntotal {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
