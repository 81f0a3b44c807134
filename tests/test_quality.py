"""The project's own checks run with the suite: lint, types and the import layering."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


@pytest.mark.parametrize("command", [
    ["ruff", "check", "."],
    ["lint-imports"],
    ["mypy"],
], ids=lambda c: c[0])
def test_the_tree_passes(command: list[str]):
    done = subprocess.run([str(BIN / command[0]), *command[1:]], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]


# ARCHITECTURE.md: "`mcp` is imported only by server.py (and cli.py for running), `httpx` only
# by providers/ and server.py, `diskcache` only by cache.py".
ONLY_IN = {"mcp": {"server", "cli"}, "httpx": {"server", "providers"}, "diskcache": {"cache"}}


def test_each_third_party_package_is_forbidden_to_every_module_the_architecture_keeps_it_from():
    package = ROOT / "mcp_router"
    modules = {p.stem for p in package.glob("*.py") if p.stem != "__init__"} | {
        p.parent.name for p in package.glob("*/__init__.py")}
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    forbidden = {c["forbidden_modules"][0]: {m.removeprefix("mcp_router.")
                                             for m in c["source_modules"]}
                 for c in contracts["contracts"] if c["type"] == "forbidden"}
    assert {name: modules - sources for name, sources in forbidden.items()} == ONLY_IN
