"""A ledger this user may read but not write is a matter of permissions, said with the fix
(chmod), never with the advice for a damaged file, which would drop its spend from the
budgets. Runs the real CLI as user nobody when run as root, as root ignores file modes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

NOBODY = 65534


def serve(home: Path) -> subprocess.CompletedProcess[str]:
    """`mcp-router serve` as a user other than root, stdin at its end: it opens its ledger
    and exits."""
    prefix: list[str] = []
    if os.geteuid() == 0:
        if (setpriv := shutil.which("setpriv")) is None:
            pytest.skip("run as root, and no setpriv to run as another user")
        prefix = [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    return subprocess.run([*prefix, sys.executable, "-m", "mcp_router", "serve"],
                          env={"PATH": os.environ["PATH"], "MCP_ROUTER_HOME": str(home)},
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)


@pytest.fixture
def home() -> Iterator[Path]:
    """A data directory holding a ledger, both this test's user's."""
    with tempfile.TemporaryDirectory() as base:  # pytest's 0700 tmp_path would stop nobody
        os.chmod(base, 0o755)
        home = Path(base) / "home"
        home.mkdir()
        if os.geteuid() == 0:
            os.chown(home, NOBODY, NOBODY)
        first = serve(home)
        assert first.returncode == 0, first.stderr
        yield home
        home.chmod(0o700)


def test_a_read_only_ledger_is_told_as_permissions_with_the_chmod(home: Path):
    ledger = home / "ledger.sqlite3"
    ledger.chmod(0o400)
    done = serve(home)
    assert done.returncode == 1
    assert done.stderr.startswith(f"mcp-router: the ledger {ledger} cannot be used (attempt to "
                                  f"write a readonly database): this user cannot write {ledger}")
    assert f"chmod u+w {ledger}" in done.stderr
    assert "damaged" not in done.stderr and "move it aside" not in done.stderr


def test_a_data_directory_that_is_not_writable_is_named_with_the_chmod(home: Path):
    home.chmod(0o555)
    done = serve(home)
    assert done.returncode == 1
    assert f"this user cannot write {home}." in done.stderr, done.stderr
    assert f"chmod u+w {home}," in done.stderr
    assert "damaged" not in done.stderr and "move it aside" not in done.stderr
