"""`mcp-router config <host>` for a config that refers to `${VAR}`: each host's snippet passes
the variables to the bare environment the host starts the server with, and prints even when
this shell lacks them; a config named by a path that is not there points at the shipped copy."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from mcp_router.config import shipped_config
from mcp_router.snippets import client_snippet, snippet_config

DEMO = str(shipped_config("demo.yaml"))
# This shell without the variables the tests set themselves (a data directory exported
# here would go into every snippet).
SHELL = {k: v for k, v in os.environ.items()
         if k not in ("MCP_ROUTER_SIM_URL", "MCP_ROUTER_HOME")}


def run_cli(*args: str, env: dict[str, str] | None = None,
            cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mcp_router", *args], capture_output=True,
                          text=True, timeout=60, input="", cwd=cwd,
                          env={**SHELL, **(env or {})})


def printed(host: str, config: str, env: dict[str, str] | None = None) -> str:
    done = run_cli("config", host, "--config", config, env=env)
    assert done.returncode == 0, done.stderr
    return done.stdout


def as_a_host_starts_it(host: str, stdout: str, shell_env: dict[str, str]) -> tuple[
        str, list[str], dict[str, str]]:
    """The command, arguments and environment `host` starts the server with from `stdout`."""
    if host == "claude-code":  # the user's shell expands "$VAR"; `claude` records the words
        shell = subprocess.run(["bash", "-c", 'claude() { printf "%s\\n" "$@"; }; ' + stdout],
                               capture_output=True, text=True, env=shell_env, timeout=10)
        words = shell.stdout.splitlines()
        cut = words.index("--")
        env = dict(words[i + 1].split("=", 1) for i in range(cut) if words[i] == "-e")
        return words[cut + 1], words[cut + 2:], env
    snippet = json.loads(stdout)
    entry = (snippet.get("mcpServers") or snippet["servers"])["mcp-router"]
    return entry["command"], entry["args"], entry["env"]


@pytest.mark.slow
@pytest.mark.anyio
@pytest.mark.parametrize("host", ["claude-desktop", "cursor", "vscode", "claude-code"])
async def test_each_snippet_starts_a_server_that_reaches_the_address_the_config_names(
        host: str, sim: Any, tmp_path: Path):
    shell = {**SHELL, "MCP_ROUTER_SIM_URL": sim.url}
    command, args, env = as_a_host_starts_it(host, printed(host, DEMO, shell), shell)
    assert env["MCP_ROUTER_SIM_URL"] == sim.url
    env = {k: v for k, v in env.items() if "${input:" not in v}  # what VS Code asks for
    params = StdioServerParameters(command=command, args=args,
                                   env={**env, "MCP_ROUTER_HOME": str(tmp_path)})
    with anyio.fail_after(60):
        async with Client(params) as client:
            result = await client.call_tool("chat_completion", {"prompt": "from a bare env"})
    assert not result.is_error, result.content
    assert result.structured_content is not None
    assert result.structured_content["provider"] == "openrouter"


def test_snippets_print_when_this_shell_lacks_a_variable_the_config_names():
    desktop = json.loads(printed("claude-desktop", DEMO))["mcpServers"]["mcp-router"]
    assert desktop["env"]["MCP_ROUTER_SIM_URL"] == "<your MCP_ROUTER_SIM_URL>"
    cursor = json.loads(printed("cursor", DEMO))["mcpServers"]["mcp-router"]
    assert cursor["env"] == desktop["env"]
    vscode = json.loads(printed("vscode", DEMO))
    assert {"type": "promptString", "id": "mcp_router_sim_url",
            "description": "MCP_ROUTER_SIM_URL", "password": False} in vscode["inputs"]
    assert vscode["servers"]["mcp-router"]["env"]["MCP_ROUTER_SIM_URL"] == (
        "${input:mcp_router_sim_url}")
    done = run_cli("config", "claude-code", "--config", DEMO)
    assert ' -e MCP_ROUTER_SIM_URL="$MCP_ROUTER_SIM_URL" ' in done.stdout
    assert done.stderr.startswith("The config refers to MCP_ROUTER_SIM_URL, not set in this "
                                  "shell: export it before you run the command.\n")


def test_a_variable_in_a_header_is_passed_as_a_secret(tmp_path: Path):
    config = tmp_path / "gateway.yaml"
    config.write_text("providers:\n"
                      "  gw: {kind: openai, base_url: '${GW_URL}/v1',\n"
                      "       headers: {X-Gateway-Token: '${GW_TOKEN}'}}\n"
                      "routes:\n  default:\n    targets: [{provider: gw, model: m}]\n")
    shell = {"GW_URL": "http://gw.internal:9000", "GW_TOKEN": "gw-secret-123"}
    outputs = {h: printed(h, str(config), shell) for h in ("claude-desktop", "vscode")}
    assert all("gw-secret-123" not in out for out in outputs.values())
    desktop = json.loads(outputs["claude-desktop"])["mcpServers"]["mcp-router"]
    assert desktop["env"] == {"GW_TOKEN": "<your GW_TOKEN>", "GW_URL": "http://gw.internal:9000"}
    vscode = json.loads(outputs["vscode"])
    assert vscode["inputs"] == [{"type": "promptString", "id": "gw_token",
                                 "description": "GW_TOKEN", "password": True}]
    assert vscode["servers"]["mcp-router"]["env"] == {"GW_TOKEN": "${input:gw_token}",
                                                      "GW_URL": "http://gw.internal:9000"}


BASE_URL_CREDENTIALS = """\
providers:
  gw: {kind: openai, base_url: "http://gwuser:${GW_PASS}@${GW_HOST}/v1"}
  fn: {kind: openai, base_url: "https://fn.test/api?code=${FN_CODE}"}
  az: {kind: openai, base_url: "${AZ_URL}"}
routes:
  default:
    targets: [{provider: gw, model: m}]
"""


def test_a_base_url_credential_is_passed_as_a_secret_and_its_address_as_it_is(tmp_path: Path):
    config = tmp_path / "gateways.yaml"
    config.write_text(BASE_URL_CREDENTIALS)
    shell = {"GW_PASS": "GWPASS-0123456789", "GW_HOST": "gw.internal:9000",
             "FN_CODE": "AzFnCODE-0123456789==", "AZ_URL": "https://az.test/v1?sv=1&sig=SIG-0123"}
    secret = ["AZ_URL", "FN_CODE", "GW_PASS"]
    outputs = {h: client_snippet(h, snippet_config(config), config, shell)[1]
               for h in ("claude-desktop", "cursor", "vscode")}
    for out in outputs.values():
        assert not any(value in out for value in ("GWPASS", "AzFnCODE", "SIG-0123")), out
    desktop = json.loads(outputs["claude-desktop"])["mcpServers"]["mcp-router"]
    assert desktop["env"] == {"GW_HOST": "gw.internal:9000",
                              **{k: f"<your {k}>" for k in secret}}
    vscode = json.loads(outputs["vscode"])
    assert vscode["inputs"] == [{"type": "promptString", "id": k.lower(), "description": k,
                                 "password": True} for k in secret]
    assert vscode["servers"]["mcp-router"]["env"] == {
        "GW_HOST": "gw.internal:9000", **{k: f"${{input:{k.lower()}}}" for k in secret}}


@pytest.mark.parametrize("host", ["claude-desktop", "cursor"])
def test_a_header_placeholder_left_in_a_snippet_stops_the_server_naming_it(host: str,
                                                                          tmp_path: Path):
    config = tmp_path / "gateway.yaml"
    config.write_text("providers:\n"
                      "  gw: {kind: openai, base_url: 'http://127.0.0.1:9/v1',\n"
                      "       api_key_env: GW_KEY, headers: {X-Virtual-Key: '${GW_VKEY}'}}\n"
                      "routes:\n  default:\n    targets: [{provider: gw, model: m}]\n")
    done = run_cli("config", host, "--config", str(config))
    assert done.stderr.strip().endswith(
        "A placeholder left in place for GW_VKEY (used in a provider's headers or base_url, "
        "not a key) stops the server with an error naming it.")
    env = json.loads(done.stdout)["mcpServers"]["mcp-router"]["env"]
    assert env == {"GW_KEY": "<your GW_KEY>", "GW_VKEY": "<your GW_VKEY>"}
    served = run_cli("serve", "--config", str(config),
                     env={**env, "GW_KEY": "gw-key-123", "MCP_ROUTER_HOME": str(tmp_path)})
    assert served.returncode == 1
    assert served.stderr.strip().splitlines()[-1] == (
        f"mcp-router: config error: {config}:3: providers.gw.headers.X-Virtual-Key: "
        "environment variable GW_VKEY holds a placeholder in angle brackets, not a value: "
        "put the value in its place (in the host config's env block, if `mcp-router config` "
        "printed it)")


@pytest.mark.parametrize("command", ["serve", "check-config"])
def test_serving_still_refuses_a_config_whose_variable_is_unset(command: str):
    done = run_cli(command, "--config", DEMO)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        f"mcp-router: config error: {DEMO}:8: providers.openrouter.base_url: "
        "environment variable MCP_ROUTER_SIM_URL is not set")


@pytest.mark.parametrize("command", ["serve", "check-config", "config claude-desktop"])
def test_a_missing_config_named_like_a_shipped_one_points_at_the_shipped_copy(command: str,
                                                                             tmp_path: Path):
    done = run_cli(*command.split(), "--config", "configs/demo.yaml", cwd=tmp_path,
                   env={"MCP_ROUTER_SIM_URL": "http://127.0.0.1:9"})
    assert (done.returncode, done.stdout) == (1, "")
    missing = "configs/demo.yaml: cannot read config: No such file or directory"
    if command.startswith("config"):  # the snippet names the file absolutely
        missing = f"{tmp_path.resolve()}/{missing}"
    assert done.stderr.strip().splitlines()[-1] == (
        f"mcp-router: config error: {missing}; a copy ships with mcp-router: "
        f"{shipped_config('demo.yaml').absolute()}")
    other = run_cli(*command.split(), "--config", "configs/team.yaml", cwd=tmp_path)
    assert other.stderr.strip().endswith("cannot read config: No such file or directory")


def test_the_snippet_starts_the_install_that_printed_it_not_the_first_on_path(tmp_path: Path):
    elsewhere = tmp_path / "bin"
    elsewhere.mkdir()
    (elsewhere / "mcp-router").write_text("#!/bin/sh\necho another install\n")
    (elsewhere / "mcp-router").chmod(0o755)
    path = os.pathsep.join([str(elsewhere), os.environ.get("PATH", "")])
    entry = json.loads(printed("cursor", DEMO, env={"PATH": path}))["mcpServers"]["mcp-router"]
    own = Path(sys.executable).parent / "mcp-router"
    expected = [str(own)] if own.is_file() else [sys.executable, "-m", "mcp_router"]
    assert [entry["command"], *entry["args"]] == [*expected, "serve", "--config",
                                                  str(Path(DEMO).resolve())]


@pytest.mark.parametrize("host", ["claude-desktop", "cursor", "vscode", "claude-code"])
def test_each_snippet_carries_this_shells_data_directory_as_an_absolute_path(host: str,
                                                                            tmp_path: Path):
    shell = {**SHELL, "MCP_ROUTER_HOME": "team ledger", "MCP_ROUTER_SIM_URL": "http://sim"}
    done = run_cli("config", host, "--config", DEMO, env=shell, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    _, _, env = as_a_host_starts_it(host, done.stdout, shell)
    home = str(tmp_path.resolve() / "team ledger")
    assert env["MCP_ROUTER_HOME"] == home
    assert f"keeps its ledger, budgets and cache in {home}" in done.stderr
    if host == "vscode":  # an address: written as it is, never asked for
        assert "mcp_router_home" not in {i["id"] for i in json.loads(done.stdout)["inputs"]}


@pytest.mark.parametrize("host", ["cursor", "claude-code"])
def test_without_a_data_directory_in_this_shell_the_snippet_names_none(host: str):
    shell = {**SHELL, "MCP_ROUTER_SIM_URL": "http://sim"}
    _, _, env = as_a_host_starts_it(host, printed(host, DEMO, shell), shell)
    assert "MCP_ROUTER_HOME" not in env


@pytest.mark.slow
@pytest.mark.anyio
async def test_a_server_a_host_starts_keeps_its_ledger_where_this_shell_does(sim: Any,
                                                                            tmp_path: Path):
    home = tmp_path / "ledger home"
    shell = {**SHELL, "MCP_ROUTER_SIM_URL": sim.url, "MCP_ROUTER_HOME": str(home)}
    command, args, env = as_a_host_starts_it("cursor", printed("cursor", DEMO, shell), shell)
    # Nothing else from this shell; the host's own default data directory is elsewhere.
    default = {"HOME": str(tmp_path / "user"), "XDG_DATA_HOME": str(tmp_path / "user" / "data")}
    params = StdioServerParameters(command=command, args=args, env={**default, **env})
    with anyio.fail_after(60):
        async with Client(params) as client:
            result = await client.call_tool("chat_completion", {"prompt": "from a bare env"})
    assert not result.is_error, result.content
    with sqlite3.connect(home / "ledger.sqlite3") as db:
        assert db.execute("SELECT count(*) FROM calls").fetchone() == (1,)
