"""`mcp-router` started from a terminal: it says a host is meant to drive it; Ctrl-C stops it."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.fixtures.configs import ONE_MODEL

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="pseudo-terminals are POSIX")

REPO = str(Path(__file__).resolve().parents[1])
CONFIG = ONE_MODEL
# The child takes the terminal as its controlling terminal, as a shell's job does, so the
# terminal turns a typed Ctrl-C into SIGINT for it.
ON_A_TERMINAL = ("import fcntl, os, sys, termios; fcntl.ioctl(0, termios.TIOCSCTTY, 0); "
                 "os.execv(sys.executable, [sys.executable, '-m', 'mcp_router', *sys.argv[1:]])")
INITIALIZE = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
              "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                         "clientInfo": {"name": "terminal", "version": "0"}}}


def read_until(master: int, wanted: bytes, seconds: float, seen: bytearray) -> bool:
    """Read the terminal's output into `seen` until it holds `wanted`, for `seconds` at most."""
    deadline = time.monotonic() + seconds
    while wanted not in seen and (left := deadline - time.monotonic()) > 0:
        if select.select([master], [], [], left)[0]:
            try:
                seen += os.read(master, 65536)
            except OSError:  # the child has gone and closed the terminal
                break
    return wanted in seen


def wait_exit(proc: subprocess.Popen[bytes], master: int, seen: bytearray,
              seconds: float) -> int | None:
    """The exit code, or None if the process is still running after `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return proc.returncode
        read_until(master, b"\0never", 0.05, seen)  # keep the terminal drained
    return None


@pytest.mark.slow
def test_ctrl_c_typed_at_the_terminal_stops_the_stdio_server(tmp_path: Path):
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG)
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": REPO,
           "MCP_ROUTER_HOME": str(tmp_path / "home"), "MCP_ROUTER_LOG": "WARNING"}
    master, terminal = os.openpty()
    proc = subprocess.Popen([sys.executable, "-c", ON_A_TERMINAL, "--config", str(config)],
                            stdin=terminal, stdout=terminal, stderr=terminal, env=env,
                            start_new_session=True)
    os.close(terminal)
    seen = bytearray()
    try:
        assert read_until(master, b"Ctrl-C stops.", 30, seen), seen.decode(errors="replace")
        # Serving: it answers a message typed at the terminal.
        os.write(master, json.dumps(INITIALIZE).encode() + b"\n")
        assert read_until(master, b'"result"', 30, seen), seen.decode(errors="replace")
        os.write(master, b"\x03")  # Ctrl-C, as typed
        code = wait_exit(proc, master, seen, 10)
        assert code == 130, seen.decode(errors="replace")
        assert b"Traceback" not in seen, seen.decode(errors="replace")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        os.close(master)
