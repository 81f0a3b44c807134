"""A ledger this user may read but not write is a matter of permissions, said with the fix
(chmod), never with the advice for a damaged file, which would drop its spend from the
budgets; a damaged ledger, or a directory in its place, is said in one line with its fix.
Runs the real CLI as user nobody when run as root, as root ignores file modes."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import closing
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


def test_a_ledger_damaged_past_its_schema_is_refused_in_one_line_with_the_advice(home: Path):
    """Its header and schema open; the budget guards' start-up sums are what find the damage,
    and they are read before the server starts, not inside it as a traceback."""
    ledger = home / "ledger.sqlite3"
    with closing(sqlite3.connect(ledger)) as conn, conn:
        conn.executemany("INSERT INTO calls (ts, day, month, trace_id, provider, model, outcome, "
                         "input_tokens, output_tokens, cached_input_tokens, cost_usd, "
                         "latency_ms, metadata) VALUES (?, date(), strftime('%Y-%m'), ?, 'p', "
                         "'m', 'ok', 1, 1, 0, '0.01', 1.0, ?)",
                         [(time.time(), f"t{i}", "x" * 200) for i in range(50)])
    size = ledger.stat().st_size
    with ledger.open("r+b") as f:  # every page but the header and schema's: zeros
        f.seek(4096)
        f.write(bytes(size - 4096))
    done = serve(home)
    assert done.returncode == 1
    assert done.stderr == (f"mcp-router: cannot read the ledger {ledger}: database disk image "
                           "is malformed; if it is damaged, stop the servers that use it and "
                           "move it aside: they start a new one (the spend it holds then no "
                           "longer counts against the budgets)\n")


def test_a_directory_in_the_ledgers_place_is_named_with_what_to_do(home: Path):
    ledger = home / "ledger.sqlite3"
    ledger.unlink()
    ledger.mkdir()
    done = serve(home)
    assert done.returncode == 1
    assert done.stderr == (f"mcp-router: the ledger {ledger} is a directory, so it cannot be "
                           "used; move it out of the way, and a new ledger is started\n")
