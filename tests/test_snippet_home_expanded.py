"""`mcp-router config <host>` with MCP_ROUTER_HOME written as a host's env block hands it over
(`~/mr`, `$HOME/mr`): the snippet names the directory the server will use, not `./~/mr`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mcp_router.config import shipped_config


@pytest.mark.parametrize("written", ["~/mr", "$HOME/mr"])
def test_the_snippet_carries_the_expanded_data_directory(tmp_path: Path, written: str):
    user, cwd = tmp_path / "user", tmp_path / "cwd"
    user.mkdir()
    cwd.mkdir()
    env = {"PATH": os.environ["PATH"], "HOME": str(user), "MCP_ROUTER_HOME": written,
           "MCP_ROUTER_SIM_URL": "http://sim"}
    done = subprocess.run([sys.executable, "-m", "mcp_router", "config", "cursor", "--config",
                           str(shipped_config("demo.yaml"))], cwd=cwd, env=env, input="",
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    snippet = json.loads(done.stdout)["mcpServers"]["mcp-router"]["env"]
    assert snippet["MCP_ROUTER_HOME"] == str(user / "mr")
    assert f"keeps its ledger, budgets and cache in {user / 'mr'}," in done.stderr
