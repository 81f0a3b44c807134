"""The command as a shell runs it: a reader that goes away, a log level it cannot read and a
port already taken end in a line on stderr, never a traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.configs import ONE_MODEL

CONFIG = ONE_MODEL


@pytest.fixture
def config(tmp_path: Path) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG)
    return str(path)


def run(*args: str, env: dict[str, str] | None = None,
        stdout: int = subprocess.PIPE) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("MCP_ROUTER_")}
    return subprocess.run([sys.executable, "-m", "mcp_router", *args], stdout=stdout,
                          stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
                          timeout=60, env={**base, **(env or {})})


def with_reader_gone(*args: str) -> subprocess.CompletedProcess[str]:
    """Run with stdout a pipe nobody reads any more, as `| head -1` leaves it."""
    reader, writer = os.pipe()
    os.close(reader)
    try:
        return run(*args, stdout=writer)
    finally:
        os.close(writer)


@pytest.mark.parametrize(("command", "code"), [
    pytest.param(["check-config", "--config", "{config}"], 1, id="check-config"),
    pytest.param(["config", "cursor", "--config", "{config}"], 1, id="config"),
    pytest.param(["token", "new", "ci-bot"], 1, id="token"),
    pytest.param(["--help"], 0, id="help"),  # argparse itself lets a failed write of help go
    pytest.param(["--version"], 0, id="version"),
])
def test_a_reader_that_has_gone_ends_the_command_quietly(command: list[str], code: int,
                                                         config: str):
    done = with_reader_gone(*(arg.format(config=config) for arg in command))
    assert done.stderr.count("\n") <= 1, done.stderr  # `config` says where its snippet goes
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, done.stderr
    assert done.returncode == code


@pytest.mark.slow
def test_the_demo_ends_quietly_when_its_reader_has_gone(tmp_path: Path):
    done = with_reader_gone("demo")
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, done.stderr
    assert done.returncode == 1


@pytest.mark.parametrize("value", ["", "  "])
def test_an_empty_mcp_router_log_means_the_default_level(value: str, config: str):
    done = run("check-config", "--config", config, env={"MCP_ROUTER_LOG": value})
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.startswith(f"{config}: ok\n")


def test_an_unknown_mcp_router_log_is_warned_of_and_the_command_runs(config: str):
    done = run("check-config", "--config", config, env={"MCP_ROUTER_LOG": "bogus"})
    assert (done.returncode, done.stderr) == (0, (
        "mcp-router: MCP_ROUTER_LOG='bogus' is not a log level (DEBUG, INFO, WARNING or "
        "ERROR); logging at INFO\n"))
    assert done.stdout.startswith(f"{config}: ok\n")


@pytest.mark.slow
def test_simulate_and_serve_say_a_busy_port_in_the_same_line(config: str, tmp_path: Path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        simulate = run("simulate", "--port", str(port))
        serve = run("serve", "--transport", "streamable-http", "--port", str(port),
                    "--config", config, env={"MCP_ROUTER_HOME": str(tmp_path / "home"),
                                             "MCP_ROUTER_LOG": "WARNING"})
    said = (f"mcp-router: cannot listen on 127.0.0.1:{port}: Address already in use; another "
            "process is listening there (another mcp-router?); choose another --port")
    for done in (simulate, serve):
        assert done.returncode == 1
        assert done.stderr.strip().splitlines()[-1] == said, done.stderr
        assert "Traceback" not in done.stderr
