"""A team's shared server over a real streamable HTTP port: tokens, limits, audit, secrets."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from mcp_router import __version__
from mcp_router.access import hash_token, new_token
from tests.fixtures.serve import serving

pytestmark = pytest.mark.slow
SECRET = "sk-sim-THE-PROVIDER-KEY-0123456789abcdef"
ALICE, BOB, CAROL = new_token(), new_token(), new_token()
INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                   "clientInfo": {"name": "probe", "version": "0"}}}

CONFIG = """\
providers:
  deepseek: {{kind: openai, base_url: "{url}/v1", api_key_env: SIM_KEY}}
  anthropic: {{kind: anthropic, base_url: "{url}", api_key_env: SIM_KEY}}
routes:
  default:
    targets: [{{provider: deepseek, model: deepseek-chat}}]
  coding:
    targets: [{{provider: deepseek, model: deepseek-chat}}]
  leaky:
    targets: [{{provider: deepseek, model: deepseek-chat+fail-401}}]
  dear:
    targets: [{{provider: anthropic, model: claude-3-opus-20240229}}]
  long:
    targets: [{{provider: deepseek, model: deepseek-chat+tokens-1500}}]
cache: {{enabled: false}}
output: {{max_result_tokens: 2000, page_chars: 2500}}
clients:
  alice:
    token_sha256: {alice}
    routes: [coding, leaky]
    rate_per_min: 2
    budgets: {{daily_usd: 0.001}}
  bob:
    token_sha256: {bob}
    cost_report: all
""" + f"""\
  carol:
    token_sha256: {hash_token(CAROL)}
    rate_per_min: 2
"""


@pytest.fixture
def server(sim: Any, tmp_path: Path) -> Iterator[tuple[str, Path, Path]]:
    config = tmp_path / "team.yaml"
    config.write_text(CONFIG.format(url=sim.url, alice=hash_token(ALICE), bob=hash_token(BOB)))
    home, stderr = tmp_path / "home", tmp_path / "stderr.log"
    env = {"SIM_KEY": SECRET, "MCP_ROUTER_HOME": str(home), "MCP_ROUTER_LOG": "INFO"}
    with serving(config, "streamable-http", env, stderr) as served:
        yield served.url, home, stderr


def post(url: str, token: str | None = None, **headers: str) -> httpx.Response:
    if token:
        headers["Authorization"] = f"Bearer {token}"
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    return httpx.post(url, json=body, headers={"Accept": "application/json, text/event-stream",
                                               **headers}, timeout=10)


@asynccontextmanager
async def connected(url: str, token: str) -> AsyncIterator[Client]:
    with anyio.fail_after(30):
        async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}) as http, \
                Client(streamable_http_client(url, http_client=http)) as client:
            yield client


async def call(url: str, token: str, **arguments: Any) -> Any:
    async with connected(url, token) as client:
        return await client.call_tool("chat_completion", {"prompt": "hi", **arguments})


def test_no_token_or_a_wrong_one_is_401_and_a_foreign_origin_is_403(server: Any):
    url = server[0]
    for token in (None, "mcpr_wrong", hash_token(ALICE)):
        refused = post(url, token)
        assert refused.status_code == 401
        assert refused.headers["WWW-Authenticate"].startswith("Bearer")
    assert post(url, ALICE, Origin="http://evil.example").status_code == 403
    assert post(url, ALICE).status_code not in (401, 403)


def test_the_command_the_log_gives_prints_an_entry_that_sends_the_token(server: Any,
                                                                         tmp_path: Path):
    url, _, stderr = server
    said = stderr.read_text()
    assert f"serving MCP at {url}; `mcp-router config <host> --config " in said
    command = re.search(r"`mcp-router (config <host> .*?)` prints a host's entry", said)
    assert command is not None, said
    # run as logged, from another directory, where the shipped config (no clients) is found
    argv = shlex.split(command.group(1).replace("<host>", "cursor"))
    printed = subprocess.run([sys.executable, "-m", "mcp_router", *argv], cwd=tmp_path / "home",
                             capture_output=True, text=True, check=True).stdout
    entry = json.loads(printed)["mcpServers"]["mcp-router"]
    assert entry["url"] == url
    assert entry["headers"]["Authorization"].startswith("Bearer ")


def test_on_a_wildcard_bind_the_log_gives_a_url_that_is_served_and_healthz_answers_locally(
        sim: Any, tmp_path: Path):
    config = tmp_path / "team.yaml"
    config.write_text(CONFIG.format(url=sim.url, alice=hash_token(ALICE), bob=hash_token(BOB))
                      + 'server: {allowed_hosts: ["router.internal:*"]}\n')
    env = {"SIM_KEY": SECRET, "MCP_ROUTER_HOME": str(tmp_path / "home"),
           "MCP_ROUTER_LOG": "INFO"}
    stderr = tmp_path / "stderr.log"
    with serving(config, "streamable-http", env, stderr, ["--host", "0.0.0.0"]) as served:
        port = served.url.split(":")[2].split("/")[0]
        said = stderr.read_text()
        local = f"http://127.0.0.1:{port}/mcp"
        assert f"--url {local}` prints a host's entry on this machine" in said, said
        assert f"on another machine, a name server.allowed_hosts lists: " \
               f"http://router.internal:{port}/mcp" in said
        def opened(host: str) -> int:
            return httpx.post(local, json=INIT, timeout=10, headers={
                "Accept": "application/json, text/event-stream", "Host": f"{host}:{port}",
                "Authorization": f"Bearer {ALICE}"}).status_code

        assert [opened(h) for h in ("127.0.0.1", "localhost", "router.internal")] == [200] * 3
        assert opened("evil.example") == 421
        assert httpx.get(f"http://localhost:{port}/healthz", timeout=10).status_code == 200


def test_the_health_check_answers_without_a_token_but_not_to_a_foreign_page(server: Any):
    base = server[0].removesuffix("/mcp")
    health = httpx.get(f"{base}/healthz", timeout=10)
    assert health.status_code == 200
    assert health.json() == {"status": "ok", "version": __version__}
    foreign = httpx.get(f"{base}/healthz", headers={"Origin": "http://evil.example"},
                        timeout=10)
    assert foreign.status_code == 403


@pytest.mark.anyio
async def test_clients_get_their_own_routes_budgets_rate_and_audit_lines(server: Any):
    url, home, stderr = server
    denied = await call(url, ALICE, route="general_chat")
    assert denied.is_error and "may not use route 'general_chat'" in denied.content[0].text
    answered = await call(url, ALICE, route="coding", max_tokens=20)
    assert not answered.is_error and answered.structured_content["provider"] == "deepseek"
    # alice's own $0.001 a day cannot hold this worst case; bob has no budget of his own
    over = await call(url, ALICE, route="coding", max_tokens=4000)
    assert over.is_error and "daily budget of $0.001" in over.content[0].text
    bobs = await call(url, BOB, route="coding", max_tokens=4000)
    assert not bobs.is_error
    leaked = await call(url, BOB, route="leaky")
    assert leaked.is_error and "HTTP 401" in leaked.content[0].text
    limited = await call(url, ALICE, route="coding", max_tokens=20)
    assert limited.is_error and "rate limit of 2 calls per minute" in limited.content[0].text
    misspelt = await call(url, BOB, route="coding", max_token=20)
    assert misspelt.is_error and "max_token: unknown argument" in misspelt.content[0].text

    lines = [json.loads(line) for line in (home / "audit.jsonl").read_text().splitlines()]
    calls = [(e["client"], e["outcome"]) for e in lines if e["tool"] == "chat_completion"]
    assert calls == [("alice", "denied"), ("alice", "ok"), ("alice", "over_budget"),
                     ("bob", "ok"), ("bob", "error"), ("alice", "rate_limited"),
                     ("bob", "invalid")]
    assert all(e["trace_id"] for e in lines if e["tool"] == "chat_completion"
               and e["outcome"] != "invalid")  # each matches its ledger rows
    assert all("prompt" not in e and "answer" not in e for e in lines)
    ok = lines[1]
    assert (ok["route"], ok["provider"], ok["model"]) == ("coding", "deepseek", "deepseek-chat")
    assert ok["trace_id"] and ok["cost_usd"]

    written = [p for p in home.rglob("*") if p.is_file()] + [stderr]
    for path in written:
        assert SECRET.encode() not in path.read_bytes(), path
    assert all(SECRET not in json.dumps(r.model_dump(mode="json"))
               for r in (denied, answered, over, bobs, leaked, limited, misspelt))


@pytest.mark.anyio
async def test_a_client_kept_to_some_routes_is_served_by_its_first_when_it_names_none(
        server: Any):
    url = server[0]
    answered = await call(url, ALICE, max_tokens=20)
    assert not answered.is_error and answered.structured_content["route"] == "coding"
    unknown = await call(url, ALICE, model="no-such-model")  # told it is unknown, not denied
    assert unknown.is_error and "model: 'no-such-model' is not provider/model with a known " \
        "provider, nor a model a provider lists" in unknown.content[0].text


@pytest.mark.anyio
async def test_a_call_refused_for_its_arguments_uses_none_of_the_client_s_rate(server: Any):
    url, home, _ = server
    typos = [await call(url, CAROL, route="codnig"),
             await call(url, CAROL, route="coding", model="deepseek/deepseek-chat")]
    answered = [await call(url, CAROL, route="coding", max_tokens=20) for _ in range(2)]

    told = ["route: unknown route 'codnig'; routes are: default, coding, leaky, dear, long",
            "route: give either 'route' or 'model', not both"]
    assert all(r.is_error and r.content[0].text.endswith(said)
               for r, said in zip(typos, told, strict=True)), typos
    assert [r.is_error for r in answered] == [False, False]  # carol may make 2 a minute
    lines = [json.loads(line) for line in (home / "audit.jsonl").read_text().splitlines()]
    assert [e["outcome"] for e in lines] == ["invalid", "invalid", "ok", "ok"]


@pytest.mark.anyio
async def test_a_probe_counts_against_the_client_s_rate_and_a_plain_health_read_does_not(
        server: Any):
    url, home, _ = server
    async with connected(url, CAROL) as carol:
        probes = [await carol.call_tool("provider_health", {"probe": True}) for _ in range(3)]
        read = await carol.call_tool("provider_health", {})
        chat = await carol.call_tool("chat_completion", {"prompt": "hi"})

    assert [p.is_error for p in probes] == [False, False, True]
    assert "over its rate limit of 2 calls per minute" in probes[2].content[0].text
    assert not read.is_error and chat.is_error  # the probes used carol's two calls
    lines = [json.loads(line) for line in (home / "audit.jsonl").read_text().splitlines()]
    assert [(e["tool"], e["outcome"]) for e in lines] == [
        ("provider_health", "ok"), ("provider_health", "ok"),
        ("provider_health", "rate_limited"), ("provider_health", "ok"),
        ("chat_completion", "rate_limited")]


@pytest.mark.anyio
async def test_a_client_s_cost_report_shows_its_own_calls_and_budget_unless_it_may_see_all(
        server: Any):
    url = server[0]
    for token, route in ((ALICE, "coding"), (BOB, "dear")):
        assert not (await call(url, token, route=route, max_tokens=20)).is_error
    reports = {}
    for name, token in (("alice", ALICE), ("bob", BOB)):
        async with connected(url, token) as client:
            reports[name] = (await client.call_tool("cost_report", {"group_by": "client"})
                             ).structured_content
    alice, bob = reports["alice"], reports["bob"]
    assert (alice["scope"], [r["key"] for r in alice["rows"]]) == ("alice", ["alice"])
    assert alice["budgets"]["daily"]["limit_usd"] == 0.001  # her own, not the team's (none)
    assert alice["total_usd"] == alice["budgets"]["daily"]["spent_usd"] > 0
    assert (bob["scope"], sorted(r["key"] for r in bob["rows"])) == ("all", ["alice", "bob"])
    assert bob["total_usd"] > alice["total_usd"]


@pytest.mark.anyio
async def test_a_client_kept_to_its_own_calls_sees_health_errors_without_upstream_words(
        server: Any):
    url = server[0]
    assert (await call(url, ALICE, route="leaky")).is_error  # the upstream answers 401
    seen = {}
    for name, token in (("alice", ALICE), ("bob", BOB)):
        async with connected(url, token) as client:
            health = (await client.call_tool("provider_health", {"provider": "deepseek"})
                      ).structured_content
        (seen[name],) = health["providers"]
    assert seen["alice"]["state"] == seen["bob"]["state"] == "open"  # figures are the team's
    assert seen["alice"]["last_error"] == "HTTP 401 [message withheld]"
    assert seen["bob"]["last_error"].startswith("HTTP 401: ")  # cost_report: all sees words
    assert len(seen["bob"]["last_error"]) > len("HTTP 401: ")
    assert all("withheld" in (t["reason"] or "withheld") for t in seen["alice"]["targets"])


@pytest.mark.anyio
async def test_a_long_answer_s_pages_are_read_by_its_own_client_only(server: Any):
    url = server[0]
    long = await call(url, BOB, route="long", max_tokens=4000)
    uri = long.structured_content["full_text"]
    async with connected(url, BOB) as bob:
        page = await bob.read_resource(uri)
    assert page.contents[0].text.startswith(long.structured_content["content"][:100])
    async with connected(url, ALICE) as alice:
        with pytest.raises(Exception, match="no page 1 of answer"):
            await alice.read_resource(uri)


@pytest.mark.anyio
async def test_a_client_kept_to_its_own_calls_is_refused_by_the_team_budget_without_its_figures(
        sim: Any, tmp_path: Path):
    config = tmp_path / "team.yaml"
    config.write_text(CONFIG.format(url=sim.url, alice=hash_token(ALICE), bob=hash_token(BOB))
                      + "budgets: {daily_usd: 0.00001}\n")
    env = {"SIM_KEY": SECRET, "MCP_ROUTER_HOME": str(tmp_path / "home")}
    with serving(config, "streamable-http", env, tmp_path / "stderr.log") as served:
        # A dry run costs nothing, so it must not be a free way to read the team's spend.
        plan = await call(served.url, ALICE, route="coding", max_tokens=4000, dry_run=True)
        refused = await call(served.url, ALICE, route="coding", max_tokens=4000)
        bobs = await call(served.url, BOB, route="coding", max_tokens=4000)
    (target,) = plan.structured_content["dry_run"]["targets"]
    told = [target["reason"], refused.content[0].text]
    assert refused.is_error and all("the team's daily budget would be exceeded by this call, "
                                    "which may cost up to $" in said for said in told), told
    assert not any(figure in said for said in told
                   for figure in ("spent", "reserved", "left", "$0.00001 ")), told
    assert bobs.is_error and "daily budget of $0.00001 would be exceeded: spent $0 (+ $0 " \
        "reserved by calls in flight)" in bobs.content[0].text  # cost_report: all sees them


def test_binding_beyond_loopback_without_tokens_is_refused(tmp_path: Path, sim: Any):
    config = tmp_path / "open.yaml"
    config.write_text(CONFIG.format(url=sim.url, alice=hash_token(ALICE),
                                    bob=hash_token(BOB)).split("clients:")[0])
    done = subprocess.run([sys.executable, "-m", "mcp_router", "serve", "--config", str(config),
                           "--transport", "streamable-http", "--host", "0.0.0.0"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "refusing to bind 0.0.0.0" in done.stderr


@pytest.mark.anyio
async def test_a_probe_refused_for_its_provider_uses_none_of_the_rate_and_is_audited_so(
        server: Any):
    url, home, _ = server
    async with connected(url, CAROL) as carol:  # 2 calls a minute
        typos = [await carol.call_tool("provider_health", {"probe": True, "provider": "nope"})
                 for _ in range(2)]
        chat = await carol.call_tool("chat_completion", {"prompt": "hi", "route": "coding",
                                                         "max_tokens": 20})
    assert all(t.is_error and "unknown provider 'nope'" in t.content[0].text for t in typos)
    assert not chat.is_error, chat.content[0].text
    lines = [json.loads(x) for x in (home / "audit.jsonl").read_text().splitlines()]
    assert [e["outcome"] for e in lines if e["tool"] == "provider_health"] == ["invalid"] * 2
