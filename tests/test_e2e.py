"""End to end: the real `mcp-router` process over stdio, streamable HTTP and SSE, and its CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client

from mcp_router.config import shipped_config
from tests.fixtures.serve import StdioSession, serving

pytestmark = pytest.mark.slow
DEMO = str(shipped_config("demo.yaml"))


def server_env(sim: Any, home: Path) -> dict[str, str]:
    return {"MCP_ROUTER_SIM_URL": sim.url, "MCP_ROUTER_HOME": str(home),
            "MCP_ROUTER_LOG": "WARNING"}


@pytest.fixture
def http_server(sim: Any, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    with serving(DEMO, request.param, server_env(sim, tmp_path), tmp_path / "stderr.log") as served:
        yield served.url


async def one_call_through(client: Client) -> dict[str, Any]:
    tools = await client.list_tools()
    assert len(tools.tools) == 4
    result = await client.call_tool("chat_completion",
                                    {"prompt": "end to end", "route": "complex_reasoning"})
    assert not result.is_error, result.content
    assert result.structured_content is not None
    return result.structured_content


@pytest.mark.anyio
async def test_stdio_subprocess_answers_through_the_fallback_chain(sim: Any, tmp_path: Path):
    params = StdioServerParameters(command=sys.executable,
                                   args=["-m", "mcp_router", "serve", "--config", DEMO],
                                   env=server_env(sim, tmp_path))
    with anyio.fail_after(60):
        async with Client(params) as client:
            result = await one_call_through(client)
    assert [(a["provider"], a["status"]) for a in result["attempts"]] == [
        ("xai", 404), ("anthropic", None)]
    assert result["provider"] == "anthropic"
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert tmp_path / "ledger.sqlite3" in written
    assert {p.name: oct(p.stat().st_mode & 0o077) for p in written} == {
        p.name: "0o0" for p in written}  # the user's alone, whatever the directory allows


@pytest.mark.anyio
@pytest.mark.parametrize("http_server", ["streamable-http", "sse"], indirect=True)
async def test_http_transports_answer_on_a_real_port(http_server: str):
    if http_server.endswith("/sse"):
        from mcp.client.sse import sse_client

        transport: Any = sse_client(http_server)
    else:
        transport = http_server
    with anyio.fail_after(60):
        async with Client(transport) as client:
            result = await one_call_through(client)
    assert result["provider"] == "anthropic"


@pytest.mark.anyio
@pytest.mark.parametrize("transport", ["stdio", "streamable-http", "sse"])
async def test_at_debug_no_transport_logs_a_prompt_or_an_answer(sim: Any, tmp_path: Path,
                                                                 transport: str):
    """README: even at DEBUG no log line carries a prompt or an answer (the SSE transport's
    sse_starlette logs every event it sends, the answers in them)."""
    env = {**server_env(sim, tmp_path), "MCP_ROUTER_LOG": "DEBUG"}
    log = tmp_path / "stderr.log"
    prompt = {"prompt": "say PROMPTMARK", "route": "complex_reasoning"}
    with anyio.fail_after(60):
        if transport == "stdio":
            params = StdioServerParameters(command=sys.executable, env={**os.environ, **env},
                                           args=["-m", "mcp_router", "serve", "--config", DEMO])
            with log.open("w") as errors:
                async with Client(stdio_client(params, errlog=errors)) as client:
                    result = await client.call_tool("chat_completion", prompt)
        else:
            from mcp.client.sse import sse_client

            with serving(DEMO, transport, env, log) as served:
                url = served.url
                async with Client(sse_client(url) if transport == "sse" else url) as client:
                    result = await client.call_tool("chat_completion", prompt)
    assert result.structured_content is not None
    assert "PROMPTMARK" in result.structured_content["content"]  # the simulator repeats it
    written = log.read_text()
    assert "DEBUG" in written
    assert [line for line in written.splitlines() if "PROMPTMARK" in line] == []


def test_servers_of_two_hosts_keep_to_one_budget(sim: Any, tmp_path: Path):
    config = tmp_path / "budget.yaml"
    config.write_text(f"""\
providers:
  deepseek: {{kind: openai, base_url: "{sim.url}/v1"}}
routes:
  default:
    targets: [{{provider: deepseek, model: deepseek-chat}}]
cache: {{enabled: false}}
budgets: {{daily_usd: 0.000006}}
""")
    env = server_env(sim, tmp_path)
    editor = StdioSession(config, env)  # started first: its figures come from an empty ledger
    desktop = StdioSession(config, env)
    try:
        spent = desktop.call(1, prompt="hello", max_tokens=5)
        assert not spent.get("isError") and spent["structuredContent"]["cost_usd"] > 0
        refused = editor.call(1, prompt="hello", max_tokens=5)
    finally:
        codes = [editor.close(), desktop.close()]
    assert refused["isError"] is True
    text = refused["content"][0]["text"]
    assert "daily budget of $0.000006 would be exceeded: spent $0.00000238" in text
    assert codes == [0, 0]


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mcp_router", *args], capture_output=True,
                          text=True, timeout=60, env={**os.environ, **(env or {})})


def test_http_bind_beyond_loopback_is_refused():
    done = run_cli("serve", "--transport", "streamable-http", "--host", "0.0.0.0")
    assert done.returncode == 2
    assert "refusing to bind 0.0.0.0" in done.stderr


def test_serve_says_in_one_line_when_its_data_directory_cannot_be_used(sim: Any,
                                                                      tmp_path: Path):
    home = tmp_path / "home"
    home.write_text("a file where the data directory should be")
    done = subprocess.run([sys.executable, "-m", "mcp_router", "serve", "--config", DEMO],
                          input="", capture_output=True, text=True, timeout=60,
                          env={**os.environ, **server_env(sim, home)})
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith(
        f"mcp-router: cannot use the data directory {home} (")
    assert "Traceback" not in done.stderr


def test_check_config_prints_routes_and_fails_on_a_broken_file(tmp_path: Path):
    ok = run_cli("check-config", env={"MCP_ROUTER_CONFIG": ""})
    assert ok.returncode == 0
    assert "OPENROUTER_API_KEY" in ok.stdout and "default (default): fallback" in ok.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("providers:\n  a: {kind: openai, base_url: x}\nroutes:\n  default:\n"
                   "    targets: [{provider: b, model: m}]\n")
    broken = run_cli("check-config", "--config", str(bad))
    assert broken.returncode == 1
    assert f"{bad}:5: routes.default.targets.0.provider: unknown provider 'b'" in broken.stderr


@pytest.mark.skipif(sys.platform == "win32", reason="no pseudo-terminals")
def test_started_from_a_terminal_it_says_what_it_is_for(tmp_path: Path):
    import pty
    import select
    import time

    config = tmp_path / "one.yaml"
    config.write_text("providers:\n  a: {kind: openai, base_url: http://127.0.0.1:9}\n"
                      "routes:\n  default:\n    targets: [{provider: a, model: m}]\n")
    terminal, typed_into = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "mcp_router", "serve", "--config",
                             str(config)], stdin=typed_into, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE,
                            env={**os.environ, "MCP_ROUTER_HOME": str(tmp_path / "home")})
    said = b""
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + 20
        while b"Ctrl-C" not in said and time.monotonic() < deadline:
            if select.select([proc.stderr], [], [], deadline - time.monotonic())[0]:
                said += os.read(proc.stderr.fileno(), 4096)
    finally:
        proc.kill()
        proc.wait(timeout=10)
        if proc.stderr is not None:
            proc.stderr.close()
        os.close(terminal)
        os.close(typed_into)
    hint = said.decode().splitlines()[-1]
    assert hint.startswith("mcp-router: serving MCP over stdin and stdout"), said
    assert "mcp-router config <host>" in hint and "mcp-router demo" in hint


def test_check_config_counts_keys_as_the_server_does(tmp_path: Path):
    key = tmp_path / "together.key"
    key.write_text("tg-0123456789\n")
    key.chmod(0o600)
    config = tmp_path / "keys.yaml"
    config.write_text("providers:\n"
                      "  a: {kind: openai, base_url: http://a, api_key_env: A_KEY}\n"
                      "  t: {kind: openai, base_url: http://t, api_key_file: together.key}\n"
                      "routes:\n  default:\n    targets: [{provider: a, model: m}]\n")
    done = run_cli("check-config", "--config", str(config), env={"A_KEY": "<your A_KEY>"})
    assert done.returncode == 0, done.stderr
    assert "[A_KEY NOT SET (skipped)]" in done.stdout
    assert "[key file together.key set]" in done.stdout
    assert "A_KEY holds a placeholder" in done.stderr


@pytest.mark.parametrize("client", ["claude-desktop", "cursor", "vscode"])
def test_client_snippets_are_valid_json_that_start_the_server(client: str):
    done = run_cli("config", client)
    assert done.returncode == 0
    snippet = json.loads(done.stdout)
    servers = snippet.get("mcpServers") or snippet["servers"]
    entry = servers["mcp-router"]
    assert entry["args"][-3:-1] == ["serve", "--config"]
    assert "OPENROUTER_API_KEY" in entry["env"]
    assert "sk-" not in done.stdout


def test_claude_code_snippet_is_one_command():
    done = run_cli("config", "claude-code")
    assert done.stdout.startswith("claude mcp add mcp-router --scope user -e ")
    assert " -- " in done.stdout and "serve --config" in done.stdout


def test_demo_runs_offline_and_explains_each_step():
    done = subprocess.run([sys.executable, "-m", "mcp_router", "demo"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "attempt openrouter/openai/gpt-3.5-turbo+fail-503: error - HTTP 503" in out
    assert "attempt xai/grok-beta: error - HTTP 404" in out
    assert "attempt openai/gpt-4o: skipped - no API key configured" in out
    assert "demo finished: every step answered" in out


INSPECTOR = ["npx", "-y", "@modelcontextprotocol/inspector@2.12.0", "--cli"]
Target = tuple[list[str], list[str]]  # what goes right after --cli, and what goes last
TOOL_CALLS = [
    ("chat_completion", ["prompt=hello", "route=complex_reasoning"], "provider", "anthropic"),
    ("list_providers", [], "default_route", "default"),
    ("provider_health", ["provider=xai"], "providers", None),
    ("cost_report", ["group_by=model"], "period", "today"),
]
needs_npx = pytest.mark.skipif(shutil.which("npx") is None,
                               reason="npx (Node.js) is not installed")


def inspector(target: Target, method: list[str]) -> dict[str, Any]:
    head, tail = target
    done = subprocess.run([*INSPECTOR, *head, "-q", "--format", "json", *method, *tail],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return dict(json.loads(done.stdout)["result"])


def stdio_target(sim: Any, home: Path) -> Target:
    return [], ["-e", f"MCP_ROUTER_SIM_URL={sim.url}", "-e", f"MCP_ROUTER_HOME={home}", "--",
                sys.executable, "-m", "mcp_router", "serve", "--config", DEMO]


def checked_call(target: Target, tool: str, args: list[str], field: str,
                 expected: str | None) -> None:
    method = ["--method", "tools/call", "--tool-name", tool]
    for arg in args:
        method += ["--tool-arg", arg]
    result = inspector(target, method)
    assert not result.get("isError"), result
    structured = result["structuredContent"]
    assert structured[field] == expected if expected is not None else structured[field]


@needs_npx
def test_mcp_inspector_cli_lists_the_four_tools_with_schemas(sim: Any, tmp_path: Path):
    result = inspector(stdio_target(sim, tmp_path), ["--method", "tools/list"])
    tools = {t["name"]: t for t in result["tools"]}
    assert set(tools) == {"chat_completion", "list_providers", "cost_report", "provider_health"}
    assert all(t["outputSchema"]["type"] == "object" for t in tools.values())


@needs_npx
@pytest.mark.parametrize(("tool", "args", "field", "expected"), TOOL_CALLS,
                         ids=[c[0] for c in TOOL_CALLS])
def test_mcp_inspector_cli_calls_each_tool_over_stdio(sim: Any, tmp_path: Path, tool: str,
                                                      args: list[str], field: str,
                                                      expected: str | None):
    checked_call(stdio_target(sim, tmp_path), tool, args, field, expected)


@needs_npx
@pytest.mark.parametrize("http_server", ["streamable-http"], indirect=True)
def test_mcp_inspector_cli_lists_and_calls_each_tool_over_http(http_server: str):
    target: Target = ([http_server, "--transport", "http"], [])
    assert len(inspector(target, ["--method", "tools/list"])["tools"]) == 4
    for tool, args, field, expected in TOOL_CALLS:
        checked_call(target, tool, args, field, expected)


def test_token_new_prints_the_token_once_and_only_its_hash_for_the_config():
    done = run_cli("token", "new", "alice")
    assert done.returncode == 0
    token = next(w for w in done.stdout.split() if w.startswith("mcpr_"))
    from mcp_router.access import hash_token

    assert hash_token(token) in done.stdout
    assert done.stdout.count(token) == 1
