"""$MCP_ROUTER_HOME as a host's JSON `env` block hands it over, unexpanded: `~` and `$NAME`
name one absolute data directory, for the ledger, the audit log and the cache alike."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mcp_router.config import data_home
from mcp_router.errors import DataError


def serve(home: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """`mcp-router serve` over stdio with stdin at its end: it opens its data and exits."""
    return subprocess.run([sys.executable, "-m", "mcp_router", "serve"], cwd=cwd,
                          env={"PATH": os.environ["PATH"], "MCP_ROUTER_HOME": home, **env},
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("written", ["~/mr", "$HOME/mr", "${HOME}/mr"])
def test_a_home_written_with_tilde_or_home_is_one_directory_under_home(tmp_path: Path,
                                                                       written: str):
    user, cwd = tmp_path / "user", tmp_path / "cwd"
    user.mkdir()
    cwd.mkdir()
    done = serve(written, cwd, HOME=str(user))
    assert done.returncode == 0, done.stderr
    assert list(cwd.iterdir()) == []  # no literal ./~ or ./$HOME beside the server
    assert (user / "mr" / "ledger.sqlite3").is_file()
    assert (user / "mr" / "cache").is_dir()


def test_a_relative_home_is_warned_of_with_the_directory_it_names(tmp_path: Path):
    done = serve("team/mr", tmp_path, MCP_ROUTER_LOG="WARNING")
    assert done.returncode == 0, done.stderr
    assert (f"MCP_ROUTER_HOME=team/mr is relative, taken as {tmp_path}/team/mr: a server "
            "started in another directory would keep another ledger; give an absolute path"
            ) in done.stderr
    assert (tmp_path / "team" / "mr" / "ledger.sqlite3").is_file()


@pytest.mark.parametrize(("written", "env", "home"), [
    ("~/mr", {"HOME": "/u/ann"}, "/u/ann/mr"),
    ("~", {"HOME": "/u/ann"}, "/u/ann"),
    ("$TEAM/ledger", {"TEAM": "/srv/team"}, "/srv/team/ledger"),
    ("${TEAM}/mr/../ledger", {"TEAM": "/srv/team"}, "/srv/team/ledger"),
    ("/data/mcp$", {}, "/data/mcp$"),  # a $ naming no variable is kept
])
def test_tilde_and_variables_are_read_from_the_environment_given(written: str,
                                                                 env: dict[str, str],
                                                                 home: str):
    assert data_home({"MCP_ROUTER_HOME": written, **env}) == Path(home)


def test_a_relative_home_is_made_absolute_against_the_working_directory():
    assert data_home({"MCP_ROUTER_HOME": "team/mr"}) == Path.cwd() / "team" / "mr"


@pytest.mark.parametrize(("written", "env", "problem"), [
    ("$TEAM_DIR/mr", {}, "TEAM_DIR is not set in the server's environment (a host's env "
                         "block expands nothing): set TEAM_DIR there, or "),
    ("${TEAM_DIR}/mr", {"TEAM_DIR": ""}, "TEAM_DIR is empty in the server's environment (a "
                                         "host's env block expands nothing): set TEAM_DIR "
                                         "there, or "),
    ("${TEAM_DIR:-/tmp}/mr", {}, "only $NAME and ${NAME} are expanded (no defaults or other "
                                 "shell forms): "),
    ("~nosuchuser_x/mr", {}, "there is no user 'nosuchuser_x' whose home ~nosuchuser_x "
                             "could name: "),
])
def test_a_home_whose_variable_cannot_be_read_is_refused_by_name(written: str,
                                                                 env: dict[str, str],
                                                                 problem: str):
    with pytest.raises(DataError) as info:
        data_home({"MCP_ROUTER_HOME": written, **env})
    assert str(info.value) == (f"MCP_ROUTER_HOME={written}: {problem}give the data directory "
                               "as an absolute path")


def test_serve_stops_on_an_unset_variable_in_the_home_and_creates_nothing(tmp_path: Path):
    done = serve("$TEAM_DIR/mr", tmp_path)
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "mcp-router: MCP_ROUTER_HOME=$TEAM_DIR/mr: TEAM_DIR is not set in the server's "
        "environment (a host's env block expands nothing): set TEAM_DIR there, or give the "
        "data directory as an absolute path")
    assert list(tmp_path.iterdir()) == []
