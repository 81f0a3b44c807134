"""The snippets that add this server to Claude Desktop, Claude Code, Cursor and VS Code."""

from __future__ import annotations

import json
import shlex
import shutil
import sys
from pathlib import Path
from urllib.parse import urlsplit

from mcp_router.config import Config
from mcp_router.server.http_auth import is_loopback

WHERE = {
    "claude-desktop": "Add to claude_desktop_config.json (Settings > Developer > Edit Config), "
                      "put your keys in place of the <...> values (one left in place counts "
                      "as no key), then restart Claude Desktop.",
    "cursor": "Add to ~/.cursor/mcp.json (or .cursor/mcp.json in a project), put your keys in "
              "place of the <...> values (one left in place counts as no key).",
    "vscode": "Save as .vscode/mcp.json in your workspace; VS Code asks for each key once and "
              "stores it securely.",
    "claude-code": "Run in a shell where your provider keys are exported:",
}


MCP_REMOTE = "mcp-remote@0.15"
"""The stdio-to-HTTP bridge Claude Desktop needs, at the release line tested with."""

TOKEN_VAR = "MCP_ROUTER_TOKEN"
"""Where the remote snippets expect the client's token (from `mcp-router token new`)."""

_DESKTOP = ("Add to claude_desktop_config.json (Settings > Developer > Edit Config); Claude "
            "Desktop reaches HTTP servers through the mcp-remote bridge (needs Node.js 18+). ")
_CURSOR = "Add to ~/.cursor/mcp.json (or .cursor/mcp.json in a project)."
REMOTE_WHERE = {  # (without a token, with one)
    "claude-desktop": (_DESKTOP + "Restart Claude Desktop.",
                       _DESKTOP + "Put your token (from `mcp-router token new`) in place of "
                                  "<...>, then restart Claude Desktop."),
    "cursor": (_CURSOR, _CURSOR + f" Cursor reads the token from ${TOKEN_VAR} in its "
                                  "environment; or put the token itself in place of ${env:...}."),
    "vscode": ("Save as .vscode/mcp.json in your workspace.",
               "Save as .vscode/mcp.json in your workspace; VS Code asks for your token once "
               "and stores it securely."),
    "claude-code": ("Run:", f"Run in a shell where ${TOKEN_VAR} holds your token (from "
                            "`mcp-router token new`):"),
}


def _command(config_path: Path) -> list[str]:
    """An absolute command line that works without the venv being activated."""
    script = shutil.which("mcp-router")
    prefix = [script] if script else [sys.executable, "-m", "mcp_router"]
    return [*prefix, "serve", "--config", str(config_path)]


def _key_vars(config: Config) -> list[str]:
    return sorted({p.api_key_env for p in config.providers.values() if p.api_key_env})


def client_snippet(client: str, config: Config, config_path: Path) -> tuple[str, str]:
    """The text to paste (or run) for `client`, and a hint saying where it goes."""
    command, *args = _command(config_path)
    keys = _key_vars(config)
    if client == "claude-code":
        env = " ".join(f"-e {k}=\"${k}\"" for k in keys)
        body = (f"claude mcp add mcp-router --scope user {env} -- "
                f"{shlex.join([command, *args])}")
    elif client == "vscode":
        body = json.dumps({
            "inputs": [{"type": "promptString", "id": k.lower(), "description": k,
                        "password": True} for k in keys],
            "servers": {"mcp-router": {"type": "stdio", "command": command, "args": args,
                                       "env": {k: f"${{input:{k.lower()}}}" for k in keys}}},
        }, indent=2)
    else:
        body = json.dumps({"mcpServers": {"mcp-router": {
            "command": command, "args": args, "env": {k: f"<your {k}>" for k in keys}}}},
            indent=2)
    return WHERE[client], body


def remote_snippet(client: str, url: str, token: bool) -> tuple[str, str]:
    """The text that connects `client` to a server already serving over HTTP at `url`, and
    where it goes; with `token`, each request carries the client's bearer token."""
    transport = "sse" if urlsplit(url).path.rstrip("/").endswith("/sse") else "http"
    hint = REMOTE_WHERE[client][token]
    if client == "claude-code":
        header = f' --header "Authorization: Bearer ${TOKEN_VAR}"' if token else ""
        return hint, (f"claude mcp add --transport {transport} --scope user mcp-router "
                      f"{shlex.quote(url)}{header}")
    if client == "claude-desktop":
        args = ["-y", MCP_REMOTE, url]
        if urlsplit(url).scheme == "http" and not serves_here(url):
            args.append("--allow-http")
        entry: dict[str, object] = {"command": "npx", "args": args}
        if token:  # no spaces in args: some hosts split them (mcp-remote's README)
            args += ["--header", "Authorization:${AUTH_HEADER}"]
            entry["env"] = {"AUTH_HEADER": "Bearer <your mcp-router token>"}
        return hint, json.dumps({"mcpServers": {"mcp-router": entry}}, indent=2)
    if client == "cursor":
        entry = {"url": url}
        if token:
            entry["headers"] = {"Authorization": f"Bearer ${{env:{TOKEN_VAR}}}"}
        return hint, json.dumps({"mcpServers": {"mcp-router": entry}}, indent=2)
    server: dict[str, object] = {"type": transport, "url": url}
    snippet: dict[str, object] = {"servers": {"mcp-router": server}}
    if token:
        server["headers"] = {"Authorization": "Bearer ${input:mcp_router_token}"}
        snippet = {"inputs": [{"type": "promptString", "id": "mcp_router_token",
                               "description": "mcp-router token", "password": True}],
                   **snippet}
    return hint, json.dumps(snippet, indent=2)


def serves_here(url: str) -> bool:
    """Whether `url` names this machine (localhost or a loopback address)."""
    return is_loopback(urlsplit(url).hostname or "")
