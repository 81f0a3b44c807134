"""`mcp-router config <host> --url`: each host's snippet, as the host would use it, reaches a
real shared server with the client's token."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from mcp_router.access import hash_token, new_token
from mcp_router.snippets import MCP_REMOTE
from tests.fixtures.serve import serving

pytestmark = pytest.mark.slow
TOKEN = new_token()
CONFIG = """\
providers:
  deepseek: {{kind: openai, base_url: "{url}/v1"}}
routes:
  default:
    targets: [{{provider: deepseek, model: deepseek-chat}}]
clients:
  alice: {{token_sha256: {hash}}}
"""


class Team(NamedTuple):
    url: str
    config: Path


@pytest.fixture
def team(sim: Any, tmp_path: Path) -> Iterator[Team]:
    config = tmp_path / "team.yaml"
    config.write_text(CONFIG.format(url=sim.url, hash=hash_token(TOKEN)))
    env = {"MCP_ROUTER_HOME": str(tmp_path / "home"), "MCP_ROUTER_LOG": "WARNING"}
    with serving(config, "streamable-http", env, tmp_path / "stderr.log") as served:
        yield Team(served.url, config)


def run_config(host: str, url: str,
               config: Path | None = None) -> subprocess.CompletedProcess[str]:
    extra = ["--config", str(config)] if config else []
    return subprocess.run([sys.executable, "-m", "mcp_router", "config", host, "--url", url,
                           *extra], capture_output=True, text=True, timeout=60)


def snippet(host: str, url: str, config: Path | None = None) -> str:
    done = run_config(host, url, config)
    assert done.returncode == 0, done.stderr
    return done.stdout


async def answered(url: str, headers: dict[str, str]) -> str:
    with anyio.fail_after(30):
        async with httpx2.AsyncClient(headers=headers) as http, \
                Client(streamable_http_client(url, http_client=http)) as client:
            result = await client.call_tool("chat_completion", {"prompt": "from my editor"})
    assert not result.is_error, result.content
    assert result.structured_content is not None
    return str(result.structured_content["content"])


@pytest.mark.anyio
async def test_vscode_and_cursor_entries_reach_the_server_with_the_token(team: Team):
    vscode = json.loads(snippet("vscode", team.url, team.config))
    [asked] = vscode["inputs"]
    assert asked["password"] is True
    server = vscode["servers"]["mcp-router"]
    assert (server["type"], server["url"]) == ("http", team.url)
    headers = {k: v.replace(f"${{input:{asked['id']}}}", TOKEN)
               for k, v in server["headers"].items()}
    assert (await answered(team.url, headers)).endswith("from my editor")

    cursor = json.loads(snippet("cursor", team.url, team.config))["mcpServers"]["mcp-router"]
    headers = {k: v.replace("${env:MCP_ROUTER_TOKEN}", TOKEN)
               for k, v in cursor["headers"].items()}
    assert (await answered(cursor["url"], headers)).endswith("from my editor")


@pytest.mark.anyio
async def test_the_claude_code_command_reaches_the_server_with_the_token(team: Team):
    words = shlex.split(snippet("claude-code", team.url, team.config))
    assert words[:6] == ["claude", "mcp", "add", "--transport", "http", "--scope"]
    assert words[7:9] == ["mcp-router", team.url]
    assert words[9] == "--header"
    name, _, value = words[10].partition(": ")
    headers = {name: value.replace("$MCP_ROUTER_TOKEN", TOKEN)}  # as the shell expands it
    assert (await answered(team.url, headers)).endswith("from my editor")


@pytest.mark.skipif(shutil.which("npx") is None, reason="npx (Node.js) is not installed")
@pytest.mark.anyio
async def test_claude_desktop_reaches_the_server_through_mcp_remote(team: Team):
    entry = json.loads(snippet("claude-desktop", team.url, team.config))["mcpServers"][
        "mcp-router"]
    assert entry["command"] == "npx" and entry["args"][1].startswith("mcp-remote@")
    env = {**os.environ, **{k: v.replace("<your mcp-router token>", TOKEN)
                            for k, v in entry["env"].items()}}
    params = StdioServerParameters(command=entry["command"], args=entry["args"], env=env)
    with anyio.fail_after(120):  # npx may fetch mcp-remote first
        async with Client(params, read_timeout_seconds=60) as client:
            tools = (await client.list_tools()).tools
    assert {t.name for t in tools} >= {"chat_completion", "cost_report"}


def test_a_loopback_server_without_clients_needs_no_token():
    url = "http://127.0.0.1:8000/sse"
    cursor = json.loads(snippet("cursor", url))["mcpServers"]["mcp-router"]
    assert cursor == {"url": url}
    vscode = json.loads(snippet("vscode", url))
    assert vscode == {"servers": {"mcp-router": {"type": "sse", "url": url}}}
    assert "--header" not in snippet("claude-code", url)
    desktop = json.loads(snippet("claude-desktop", url))["mcpServers"]["mcp-router"]
    assert desktop["args"] == ["-y", MCP_REMOTE, url] and "env" not in desktop


def test_a_server_beyond_this_machine_gets_the_token_and_plain_http_allowed():
    url = "http://router.internal:8000/mcp"
    desktop = json.loads(snippet("claude-desktop", url))["mcpServers"]["mcp-router"]
    assert desktop["args"] == ["-y", MCP_REMOTE, url, "--allow-http", "--header",
                               "Authorization:${AUTH_HEADER}"]
    assert desktop["env"] == {"AUTH_HEADER": "Bearer <your mcp-router token>"}
    assert "Authorization" in json.loads(snippet("cursor", url))["mcpServers"]["mcp-router"][
        "headers"]


@pytest.mark.anyio
async def test_a_url_without_a_path_gets_the_endpoint_and_reaches_the_server(team: Team):
    bare = team.url.removesuffix("/mcp")
    for given in (bare, bare + "/"):
        done = run_config("vscode", given, team.config)
        assert done.returncode == 0, done.stderr
        assert done.stderr.splitlines()[0] == (
            f"mcp-router config: --url has no path: using {team.url}, the server's streamable "
            "HTTP endpoint (an SSE server's is /sse)")
        server = json.loads(done.stdout)["servers"]["mcp-router"]
        assert server["url"] == team.url
    headers = {"Authorization": f"Bearer {TOKEN}"}
    assert (await answered(server["url"], headers)).endswith("from my editor")


@pytest.mark.parametrize("url", ["127.0.0.1:8000", "localhost:8000/mcp", "ftp://router/mcp",
                                 "http:///mcp", "http://router.internal:80OO/mcp"])
def test_a_url_that_is_no_server_address_is_refused_saying_the_form_expected(url: str):
    done = run_config("claude-code", url)
    assert (done.returncode, done.stdout) == (2, "")
    [said] = done.stderr.splitlines()
    assert said.startswith(f"mcp-router config: --url {url!r} ")
    assert said.endswith("expected http://HOST:PORT/mcp, or http://HOST:PORT/sse for an SSE "
                         "server")
