"""`mcp-router demo`: an offline session through all four tools, printed as a transcript."""

from __future__ import annotations

import sys
import tempfile
from typing import Any

import anyio
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from mcp_router.config import shipped_config
from mcp_router.simulator import start_simulator

STEPS: list[tuple[str, str, dict[str, Any]]] = [
    ("A plain answer on the default route", "chat_completion",
     {"prompt": "In one line: why do agents need a router for LLM calls?"}),
    ("The primary is down: retries, then fallback", "chat_completion",
     {"prompt": "Summarise the incident in one sentence.", "route": "degraded"}),
    ("A retired model (xAI grok-beta answers 404) is passed over", "chat_completion",
     {"prompt": "Plan a three-step migration.", "route": "complex_reasoning"}),
    ("An explicit model with an explicit fallback", "chat_completion",
     {"prompt": "Write a haiku about retries.", "model": "openai/gpt-4o",
      "fallbacks": ["google/gemini-1.5-pro"]}),
    ("Personal data is filtered before anything leaves the machine", "chat_completion",
     {"prompt": "Email jane.doe@example.com about SSN 123-45-6789.", "route": "coding"}),
    ("A dry run: the plan, with nothing sent", "chat_completion",
     {"prompt": "Plan a three-step migration.", "route": "complex_reasoning", "dry_run": True}),
    ("Providers and routes", "list_providers", {}),
    ("Provider health, from the calls just made", "provider_health", {}),
    ("What it cost", "cost_report", {"group_by": "provider"}),
]


def run_demo(out: Any = None) -> int:
    """Run the scripted session; returns 0 when every step behaved as the transcript says."""
    return anyio.run(_session, out or sys.stdout)


async def _session(out: Any) -> int:
    def say(text: str = "") -> None:
        print(text, file=out, flush=True)

    with start_simulator() as sim, tempfile.TemporaryDirectory() as home:
        server = StdioServerParameters(
            command=sys.executable,
            args=["-m", "mcp_router", "serve", "--config", str(shipped_config("demo.yaml"))],
            env={"MCP_ROUTER_SIM_URL": sim.url, "MCP_ROUTER_HOME": home,
                 "MCP_ROUTER_LOG": "WARNING"},
        )
        say(f"simulated upstream: {sim.url} (OpenAI, Anthropic and Gemini wire formats)")
        say("mcp-router: started over stdio with configs/demo.yaml\n")
        failures = 0
        async with Client(server, read_timeout_seconds=60) as client:
            for number, (title, tool, arguments) in enumerate(STEPS, 1):
                say(f"[{number}] {title}")
                say(f"    -> {tool}({_args(arguments)})")
                notes: list[str] = []
                result = await client.call_tool(tool, arguments,
                                                progress_callback=_collect(notes))
                if result.is_error:
                    failures += 1
                    text = " ".join(getattr(c, "text", "") for c in result.content)
                    say(f"    !! {text or 'error'}")
                else:
                    for line in RENDER[tool](result.structured_content or {}, notes):
                        say(f"    {line}")
                say()
        say("demo finished: " + ("every step answered" if not failures
                                 else f"{failures} step(s) failed"))
        return 1 if failures else 0


def _collect(notes: list[str]) -> Any:
    """A progress callback that keeps the messages, for the transcript."""

    async def progress(progress: float, total: float | None, message: str | None) -> None:
        if message:
            notes.append(message)

    return progress


def _args(arguments: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in arguments.items())


def _chat(result: dict[str, Any], notes: list[str]) -> list[str]:
    if result.get("dry_run"):
        return _plan(result["dry_run"])
    lines = [f"answer: {result['content']}",
             f"answered by {result['provider']}/{result['model']} "
             f"({'route ' + result['route'] if result['route'] else 'an explicit model'}) "
             f"in {result['latency_ms']:.0f} ms"]
    for a in result["attempts"]:
        why = f" - {a['error']}" if a.get("error") else ""
        lines.append(f"  attempt {a['provider']}/{a['model']}: {a['outcome']}{why}")
    usage = result["usage"]
    cost = ("unknown (" + str(result.get("cost_note")) + ")" if result["cost_usd"] is None
            else f"${result['cost_usd']:.6f}")
    lines.append(f"tokens in/out {usage['input_tokens']}/{usage['output_tokens']}, cost {cost}")
    if result["pii"]["counts"]:
        found = ", ".join(f"{k} x{v}" for k, v in result["pii"]["counts"].items())
        lines.append(f"PII: {found} ({result['pii']['action']}); the upstream saw placeholders")
    if notes:
        lines.append("progress: " + " | ".join(notes))
    return lines


def _plan(plan: dict[str, Any]) -> list[str]:
    lines = []
    for t in plan["targets"]:
        cost = "price unknown" if t["worst_case_usd"] is None else \
            f"worst case ${t['worst_case_usd']:.6f}"
        why = f" ({t['reason']})" if t["reason"] else ""
        lines.append(f"would {t['would']} {t['provider']}/{t['model']}{why}, {cost}")
    lines.append(f"cache hit: {'yes' if plan['cache_hit'] else 'no'}; nothing was sent")
    return lines


def _providers(result: dict[str, Any], _: list[str]) -> list[str]:
    lines = []
    for p in result["providers"]:
        key = "key not needed" if not p["api_key_env"] else (
            f"{p['api_key_env']} {'set' if p['configured'] else 'unset: skipped by routes'}")
        lines.append(f"{p['name']:<11} {p['kind']:<9} {key}")
    routes = ", ".join(r["name"] for r in result["routes"])
    lines.append(f"routes: {routes} (default: {result['default_route']})")
    return lines


def _health(result: dict[str, Any], _: list[str]) -> list[str]:
    lines = []
    for p in result["providers"]:
        if p["requests"] == 0:
            lines.append(f"{p['name']:<11} {p['state']}")
            continue
        rate = f"{p['success_rate'] * 100:.0f}%"
        p50 = "-" if p["p50_ms"] is None else f"{p['p50_ms']:.0f} ms"
        err = f", last error: {p['last_error']}" if p["last_error"] else ""
        lines.append(f"{p['name']:<11} {p['state']:<9} {_requests(p['requests'])}, {rate} ok, "
                     f"p50 {p50}{err}")
    return lines


def _costs(result: dict[str, Any], _: list[str]) -> list[str]:
    lines = [f"{r['key']:<11} {_requests(r['requests'])}, "
             f"{r['input_tokens']}/{r['output_tokens']} tokens, ${r['cost_usd']:.6f}"
             for r in result["rows"]]
    daily = result["budgets"]["daily"]
    lines.append(f"total ${result['total_usd']:.6f} over {_requests(result['requests'])}; "
                 f"daily budget ${daily['limit_usd']:.2f}, spent ${daily['spent_usd']:.6f}, "
                 f"remaining ${daily['remaining_usd']:.6f}")
    return lines


def _requests(n: int) -> str:
    return f"{n} request" if n == 1 else f"{n} requests"


RENDER = {"chat_completion": _chat, "list_providers": _providers,
          "provider_health": _health, "cost_report": _costs}
