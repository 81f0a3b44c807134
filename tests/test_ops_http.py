"""Running the shared HTTP server: MCP_ROUTER_LOG reaches uvicorn's loggers, and the
streamable-HTTP sessions a client abandons are bounded by `server.session_idle_s` and
`server.max_sessions`."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from mcp.server.mcpserver import MCPServer
from mcp.server.streamable_http_manager import DEFAULT_MAX_SESSIONS, DEFAULT_SESSION_IDLE_TIMEOUT

from mcp_router.config import parse_config
from mcp_router.errors import ConfigError
from mcp_router.server.http_auth import http_app
from mcp_router.shared_config import ServerConfig
from tests.fixtures.configs import ONE_MODEL
from tests.fixtures.serve import serving
from tests.shared.test_http_auth import INIT, MCP_HEADERS, ServerThread

INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}
LIST_TOOLS = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}


def test_sessions_are_kept_as_the_sdk_keeps_them_unless_the_config_says(tmp_path: Path):
    server = parse_config(ONE_MODEL, env={}).server
    assert (server.session_idle_s, server.max_sessions) == (DEFAULT_SESSION_IDLE_TIMEOUT,
                                                           DEFAULT_MAX_SESSIONS)
    unbounded = parse_config(ONE_MODEL + "server: {session_idle_s: null, max_sessions: null}\n",
                             env={}).server
    assert (unbounded.session_idle_s, unbounded.max_sessions) == (None, None)


@pytest.mark.parametrize(("setting", "message"), [
    ("session_idle_s: 0", "server.session_idle_s: Input should be greater than 0"),
    ("session_idle_s: -5", "server.session_idle_s: Input should be greater than 0"),
    ("session_idle_s: .inf", "server.session_idle_s: Input should be a finite number"),
    ("session_idle_s: 10 min", "server.session_idle_s: Input should be a valid number"),
    ("max_sessions: 0", "server.max_sessions: Input should be greater than 0"),
    ("max_sessions: 2.5", "server.max_sessions: Input should be a valid integer"),
])
def test_a_session_bound_that_cannot_be_kept_is_refused_by_key(setting: str, message: str):
    with pytest.raises(ConfigError, match=f":6: {message}"):
        parse_config(ONE_MODEL + f"server: {{{setting}}}\n", env={})


@pytest.fixture
def sessions_of(request: pytest.FixtureRequest) -> Iterator[str]:
    """The /mcp URL of a server run with the `ServerConfig` the test is parametrized with."""
    app = http_app(MCPServer("t"), "streamable-http", host="127.0.0.1", config=request.param)
    with ServerThread(app) as running:
        yield f"http://127.0.0.1:{running.port}/mcp"


def _open_session(url: str) -> httpx.Response:
    return httpx.post(url, json=INIT, headers=MCP_HEADERS, timeout=10)


def _post(url: str, session: str, message: dict[str, object]) -> httpx.Response:
    return httpx.post(url, json=message, headers={**MCP_HEADERS, "mcp-session-id": session},
                      timeout=10)


@pytest.mark.parametrize("sessions_of", [ServerConfig(session_idle_s=0.5)], indirect=True)
def test_a_session_left_idle_for_session_idle_s_is_closed(sessions_of: str,
                                                          caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.INFO, logger="mcp.server.streamable_http_manager")
    opened = _open_session(sessions_of)
    session = opened.headers["mcp-session-id"]
    assert _post(sessions_of, session, INITIALIZED).status_code == 202
    assert _post(sessions_of, session, LIST_TOOLS).status_code == 200
    # Any request would keep the session alive: wait (bounded) for the SDK to say it closed it.
    deadline = time.monotonic() + 5
    while f"Session {session} idle timeout" not in caplog.text:
        assert time.monotonic() < deadline, caplog.text
        time.sleep(0.05)
    assert _post(sessions_of, session, LIST_TOOLS).status_code == 404  # initialize anew


@pytest.mark.parametrize("sessions_of", [ServerConfig(max_sessions=1)], indirect=True)
def test_past_max_sessions_a_new_session_is_refused_until_one_ends(sessions_of: str):
    first = _open_session(sessions_of)
    assert first.status_code == 200
    assert _open_session(sessions_of).status_code == 503
    ended = httpx.delete(sessions_of, timeout=10, headers={
        **MCP_HEADERS, "mcp-session-id": first.headers["mcp-session-id"]})
    assert ended.status_code == 200
    assert _open_session(sessions_of).status_code == 200


@pytest.mark.parametrize(("level", "access_lines"), [("WARNING", False), ("INFO", True)])
def test_mcp_router_log_sets_uvicorn_s_level_too(level: str, access_lines: bool, tmp_path: Path):
    config = tmp_path / "config.yaml"
    config.write_text(ONE_MODEL)
    log = tmp_path / "stderr.log"
    env = {"MCP_ROUTER_LOG": level, "MCP_ROUTER_HOME": str(tmp_path / "home")}
    with serving(config, "streamable-http", env, log) as server:
        for _ in range(3):
            assert httpx.get(server.url.replace("/mcp", "/healthz"), timeout=10).is_success
        assert _open_session(server.url).status_code == 200
    text = log.read_text()
    assert ('"GET /healthz HTTP/1.1" 200' in text) is access_lines, text
    if not access_lines:  # nor uvicorn's start and stop lines, nor anyone's INFO
        assert " INFO " not in text, text
