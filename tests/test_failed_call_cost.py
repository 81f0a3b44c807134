"""What a call that ends without an answer was charged is told where its answer's cost would
be: in its audit line (as the ledger has it for its trace) and in the error its caller gets.
The error's upstream words (which can quote the prompt) reach the caller, not the server log,
nor an audit line without content."""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from contextlib import closing
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from mcp import Client
from mcp.types import CallToolResult, TextContent

from mcp_router.config import parse_config
from mcp_router.errors import (
    AllTargetsFailed,
    ProviderProtocolError,
    ProviderStatusError,
    ProviderUnavailable,
)
from mcp_router.messages import Attempt
from mcp_router.server import create_server

pytestmark = pytest.mark.anyio

CONFIG = """\
providers:
  sim: {{kind: openai, base_url: "{url}/v1"}}
routes:
  default: {{targets: [{{provider: sim, model: "{model}"}}]}}
retry: {{attempts: 1}}
prices:
  sim/*: {{input_per_mtok: 1000, output_per_mtok: 1000}}
"""


def server(sim: Any, home: Path, model: str) -> Any:
    return create_server(parse_config(CONFIG.format(url=sim.url, model=model), env={}),
                         home=home, env={})


def error_text(result: CallToolResult) -> str:
    assert result.is_error and isinstance(result.content[0], TextContent)
    return result.content[0].text


def audit_lines(home: Path) -> list[dict[str, Any]]:
    path = home / "audit.jsonl"
    if not path.exists():
        return []
    return [e for e in map(json.loads, path.read_text().splitlines())
            if e["tool"] == "chat_completion"]


def ledger_costs(home: Path) -> dict[str, Decimal]:
    """Each trace's charged total, from the ledger."""
    with closing(sqlite3.connect(home / "ledger.sqlite3")) as ledger:
        rows = ledger.execute("SELECT trace_id, SUM(cost_usd) FROM calls GROUP BY trace_id")
        return {trace: Decimal(str(cost)) for trace, cost in rows.fetchall()}


async def test_a_cut_stream_tells_its_charge_in_the_error_and_the_audit_line(
        sim: Any, tmp_path: Path):
    async with Client(server(sim, tmp_path, "a+cut")) as client:
        result = await client.call_tool("chat_completion", {"prompt": "hello",
                                                            "max_tokens": 100})
    message = error_text(result)
    [line] = audit_lines(tmp_path)
    charged = ledger_costs(tmp_path)[line["trace_id"]]
    assert charged > 0
    assert (line["outcome"], Decimal(line["cost_usd"])) == ("error", charged)
    # the error's own words are kept; the charge follows the list of attempts
    assert message.startswith("Error executing tool chat_completion: all targets failed:\n"
                              "  - sim/a+cut: error (stream cut")
    assert message.endswith(f"\ncharged ${charged.normalize():f} for attempts that reached a "
                            f"provider (estimated)")


async def test_a_refused_call_tells_no_charge_and_its_audit_line_says_0(
        sim: Any, tmp_path: Path):
    async with Client(server(sim, tmp_path, "a+fail-400")) as client:
        result = await client.call_tool("chat_completion", {"prompt": "hello"})
    assert "charged" not in error_text(result)
    [line] = audit_lines(tmp_path)
    assert (line["outcome"], line["cost_usd"]) == ("error", "0")  # as a free answer's is


async def test_a_cancelled_call_has_its_charge_in_its_audit_line(sim: Any, tmp_path: Path):
    async with Client(server(sim, tmp_path, "a+hang")) as client:
        with pytest.raises(Exception, match="(?i)timed out|timeout"):
            await client.call_tool("chat_completion", {"prompt": "q"}, read_timeout_seconds=0.4)
        deadline = time.monotonic() + 5
        while not audit_lines(tmp_path) and time.monotonic() < deadline:
            await anyio.sleep(0.02)
    [line] = audit_lines(tmp_path)
    charged = ledger_costs(tmp_path)[line["trace_id"]]
    assert charged > 0  # the prompt it was sent, at our estimate
    assert (line["outcome"], Decimal(line["cost_usd"])) == ("cancelled", charged)


async def test_a_late_answers_audit_line_says_it_was_late_and_free(sim: Any, tmp_path: Path):
    async with Client(server(sim, tmp_path, "a+drip-100")) as client:
        with anyio.move_on_after(0.25):  # the host gives up while the answer streams
            await client.call_tool("chat_completion", {"prompt": "hello", "max_tokens": 100})
        deadline = time.monotonic() + 5
        while [e["outcome"] for e in audit_lines(tmp_path)] != ["cancelled", "kept"] and \
                time.monotonic() < deadline:
            await anyio.sleep(0.02)
        again = (await client.call_tool("chat_completion", {"prompt": "hello",
                                                            "max_tokens": 100}))
    result = again.structured_content
    assert result is not None and (result["late"], result["cached"]) == (True, False)
    cancelled, kept, late = audit_lines(tmp_path)
    assert (cancelled["outcome"], kept["outcome"], late["outcome"]) == (
        "cancelled", "kept", "ok")
    # the late answer's line: no new charge, not from the response cache, marked late
    assert (late["trace_id"], late["late"], late["cached"], late["cost_usd"]) == (
        result["trace_id"], True, False, "0")
    # the given-up call's answer ran on: its kept line has the cost, counted once
    costs = ledger_costs(tmp_path)
    assert (cancelled["cost_usd"], Decimal(kept["cost_usd"])) == (
        "0", costs[cancelled["trace_id"]])
    assert "late" not in cancelled and "late" not in kept


async def test_a_dry_runs_audit_line_says_nothing_was_sent(sim: Any, tmp_path: Path):
    """A dry run names the target it would ask first; without its flag the line would read as
    that target answering for $0."""
    home = tmp_path / "home"
    async with Client(server(sim, home, "gpt-4o")) as client:
        planned = await client.call_tool("chat_completion", {"prompt": "hi", "dry_run": True})
        answered = await client.call_tool("chat_completion", {"prompt": "hi"})
    assert not planned.is_error and not answered.is_error
    dry, real = audit_lines(home)
    assert (dry["dry_run"], dry["provider"], dry["cost_usd"]) == (True, "sim", "0")
    assert "dry_run" not in real
    assert dry["trace_id"] not in ledger_costs(home)  # nothing was charged, nothing sent


PROMPT = "PROMPTMARK quarterly numbers for the acquisition of Initech"
ECHO_CONFIG = """\
providers:
  vllm: {kind: openai, base_url: "http://vllm.test/v1", stream: false}
  down: {kind: openai, base_url: "http://down.test/v1", stream: false}
routes:
  default: {targets: [{provider: vllm, model: m}]}
  chain: {targets: [{provider: down, model: m}, {provider: vllm, model: m}]}
retry: {attempts: 1}
audit: {include_content: %s}
"""


def echoes_the_prompt(request: httpx.Request) -> httpx.Response:
    """A FastAPI upstream (vLLM, LiteLLM) refusing a request: 422 with pydantic's `input`,
    the request's messages; another upstream failing with the body it got."""
    body = json.loads(request.content)
    if request.url.host == "down.test":
        return httpx.Response(500, json={"error": {"message": f"cannot serve {body}"}})
    return httpx.Response(422, json={"detail": [{"type": "extra_forbidden", "loc": ["body", "x"],
                                                 "msg": "Extra inputs are not permitted",
                                                 "input": body["messages"]}]})


async def echoed_calls(home: Path, include_content: bool) -> list[str]:
    config = parse_config(ECHO_CONFIG % str(include_content).lower(), env={})
    server = create_server(config, home=home, env={},
                           transport=httpx.MockTransport(echoes_the_prompt))
    async with Client(server) as client:
        return [error_text(await client.call_tool("chat_completion",
                                                  {"prompt": PROMPT, "route": route}))
                for route in ("default", "chain")]


async def test_an_upstream_echo_of_the_prompt_reaches_the_caller_but_not_log_or_audit(
        tmp_path: Path, caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.DEBUG)
    refused, failed = await echoed_calls(tmp_path, include_content=False)
    assert PROMPT in refused and PROMPT in failed  # the caller's own request: hosts read it
    lines = audit_lines(tmp_path)
    assert [line["error"] for line in lines] == [
        "vllm/m: HTTP 422 Unprocessable Entity",
        "vllm/m: HTTP 422 Unprocessable Entity; attempts of this call:\n"
        "  - down/m: error (HTTP 500 Internal Server Error)\n"
        "  - vllm/m: error (HTTP 422 Unprocessable Entity)"]
    assert "PROMPTMARK" not in caplog.text
    # one line of the router's own per failed call, by trace id, and the SDK's line cut
    assert [r.getMessage() for r in caplog.records if r.name == "mcp_router"] == [
        f"chat_completion error (trace {line['trace_id']}): {line['error']!r}"
        for line in lines]
    assert [r.getMessage() for r in caplog.records if r.name.startswith("mcp.server")
            and "failed" in r.getMessage()] == [
        "Tool 'chat_completion' failed (mcp_router's line for the call says why)"] * 2


async def test_an_audit_log_with_content_keeps_the_upstream_s_words(tmp_path: Path):
    await echoed_calls(tmp_path, include_content=True)
    assert all("PROMPTMARK" in line["error"] for line in audit_lines(tmp_path))


def test_an_error_in_its_own_words_keeps_what_failed_and_how_but_no_upstream_text():
    attempts = [
        Attempt(provider="a", model="m", outcome="error", status=529, error="HTTP 529: busy"),
        Attempt(provider="b", model="m", outcome="error",
                error="cannot reach upstream: ConnectError('[Errno 111] Connection refused')"),
        Attempt(provider="c", model="m", outcome="error", error="no answer within 30s"),
        Attempt(provider="f", model="m", outcome="error",
                error="unexpected response shape: ValueError: PROMPTMARK"),
        Attempt(provider="d", model="m", outcome="skipped",
                error="misconfigured (HTTP 401: Unauthorized); skipped until the config "
                      "changes or a probe succeeds"),
    ]
    assert AllTargetsFailed(attempts).own_words() == (
        "all targets failed:\n"
        "  - a/m: error (HTTP 529)\n"
        "  - b/m: error (cannot reach upstream: ConnectError('[Errno 111] Connection "
        "refused'))\n"  # this machine's own failure: the operator needs its cause
        "  - c/m: error (no answer within 30s)\n"
        "  - f/m: error (unexpected response shape)\n"
        "  - d/m: skipped (misconfigured (HTTP 401: Unauthorized); skipped until the config "
        "changes or a probe succeeds)")
    refused = ProviderStatusError("e", "m", 400, "PROMPTMARK is not allowed")
    assert refused.own_words() == "e/m: HTTP 400 Bad Request"


def test_an_error_in_its_own_words_keeps_no_bytes_a_transport_error_quotes_from_upstream():
    quoted = ProviderProtocolError("p", "m", "body cut: RemoteProtocolError(\"illegal chunk "
                                   "header: bytearray(b'{\\\"error\\\": \\\"PROMPTMARK\\\"}')\")")
    refused = ProviderUnavailable("p", "m", "cannot reach upstream: ConnectError('[SSL: "
                                  "CERTIFICATE_VERIFY_FAILED] certificate verify failed')")
    ours = ProviderProtocolError("p", "m", "stream cut: it ended before message_stop")
    assert quoted.own_words() == "p/m: body cut: RemoteProtocolError"
    assert refused.own_words() == refused.args[0] and ours.own_words() == ours.args[0]
