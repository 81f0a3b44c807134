"""The snippets that add this server to Claude Desktop, Claude Code, Cursor and VS Code."""

from __future__ import annotations

import json
import shlex
import shutil
import sys
from pathlib import Path

from mcp_router.config import Config

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
