"""The SDK wiring on a real port: token auth, Host/Origin checks, the bind policy."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
import pytest
import uvicorn
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.server.mcpserver import MCPServer
from starlette.types import ASGIApp

from mcp_router.access import hash_token, new_token
from mcp_router.errors import ListenError
from mcp_router.server.http_auth import (
    ClientTokenVerifier,
    auth_settings,
    authenticated_client,
    http_app,
    serve_http,
)
from mcp_router.server.http_bind import (
    bind_refusal,
    is_loopback,
    serving_at,
    transport_security,
)
from mcp_router.shared_config import ClientConfig, ServerConfig

ALICE, BOB = new_token(), new_token()
CLIENTS = {"alice": ClientConfig(token_sha256=hash_token(ALICE)),
           "bob": ClientConfig(token_sha256=hash_token(BOB))}
INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                   "clientInfo": {"name": "probe", "version": "0"}}}
MCP_HEADERS = {"Accept": "application/json, text/event-stream"}


@pytest.mark.anyio
async def test_verifier_names_the_client_of_a_right_token_and_refuses_others():
    verifier = ClientTokenVerifier(CLIENTS)
    token = await verifier.verify_token(BOB)
    assert token is not None
    assert (token.client_id, token.scopes, token.expires_at) == ("bob", ["mcp-router"], None)
    assert BOB not in token.model_dump_json()
    assert await verifier.verify_token(BOB[:-1]) is None
    assert await verifier.verify_token("") is None


class ServerThread:
    """An ASGI app served by uvicorn on 127.0.0.1 from a background thread."""

    def __init__(self, app: ASGIApp) -> None:
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.port = self.socket.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", ws="none",
                                                    timeout_graceful_shutdown=1))
        self.thread = threading.Thread(target=self.server.run, args=([self.socket],),
                                       daemon=True)

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "did not start"
            time.sleep(0.01)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.socket.close()


def tiny_server() -> MCPServer[Any]:
    server: MCPServer[Any] = MCPServer("t", token_verifier=ClientTokenVerifier(CLIENTS),
                                       auth=auth_settings())

    @server.tool()
    def whoami() -> str:
        """The name of the client that called."""
        return authenticated_client() or "nobody"

    return server


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    app = http_app(tiny_server(), "streamable-http", host="127.0.0.1",
                   config=ServerConfig(max_body_bytes=10_000))
    with ServerThread(app) as running:
        yield f"http://127.0.0.1:{running.port}/mcp"


def post(url: str, token: str | None = None, **headers: str) -> httpx.Response:
    auth = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return httpx.post(url, json=INIT, headers={**MCP_HEADERS, **auth, **headers}, timeout=10)


def test_no_token_is_401_with_www_authenticate(url: str):
    response = post(url)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith('Bearer error="invalid_token"')


@pytest.mark.parametrize("token", [BOB + "x", "mcpr_nope", hash_token(ALICE), "-"])
def test_a_wrong_token_is_401(url: str, token: str):
    response = post(url, token)
    assert response.status_code == 401
    assert "WWW-Authenticate" in response.headers


def test_a_right_token_opens_a_session(url: str):
    response = post(url, ALICE)
    assert response.status_code == 200, response.text
    assert "mcp-session-id" in response.headers


@pytest.mark.parametrize("token", [None, ALICE])
def test_a_foreign_origin_is_403_with_or_without_a_token(url: str, token: str | None):
    assert post(url, token, Origin="http://evil.example").status_code == 403


def test_a_foreign_host_is_refused(url: str):
    assert post(url, ALICE, Host="evil.example").status_code == 421


def test_a_loopback_origin_is_allowed(url: str):
    port = url.split(":")[2].split("/")[0]
    assert post(url, ALICE, Origin=f"http://localhost:{port}").status_code == 200


def test_an_oversized_body_is_413(url: str):
    response = httpx.post(url, content=b"{" + b" " * 20_000 + b"}",
                          headers={**MCP_HEADERS, "Authorization": f"Bearer {ALICE}",
                                   "Content-Type": "application/json"}, timeout=10)
    assert response.status_code == 413


@pytest.mark.anyio
@pytest.mark.parametrize(("token", "name"), [(ALICE, "alice"), (BOB, "bob")])
async def test_the_mcp_client_with_a_token_reaches_tools_that_see_its_name(
        url: str, token: str, name: str):
    with anyio.fail_after(30):
        async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}) as http, \
                Client(streamable_http_client(url, http_client=http)) as client:
            result = await client.call_tool("whoami", {})
    assert not result.is_error
    assert result.structured_content == {"result": name}


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.0.0.2", True), ("localhost", True), ("::1", True),
    ("[::1]", True), ("0.0.0.0", False), ("::", False), ("192.168.1.5", False),
    ("router.lan", False)])
def test_loopback_is_recognised(host: str, loopback: bool):
    assert is_loopback(host) is loopback


def test_binding_beyond_loopback_needs_tokens_and_a_host_allow_list():
    lan = ServerConfig(allowed_hosts=["router.lan:*"])
    assert bind_refusal("127.0.0.1", False, ServerConfig()) is None
    refusal = bind_refusal("0.0.0.0", False, lan)
    assert refusal is not None and refusal.startswith("refusing to bind 0.0.0.0")
    assert "clients:" in refusal
    refusal = bind_refusal("0.0.0.0", True, ServerConfig())
    assert refusal is not None and "server.allowed_hosts" in refusal
    assert bind_refusal("0.0.0.0", True, lan) is None


def test_host_and_origin_checks_are_on_for_every_bind():
    lan = ServerConfig(allowed_hosts=["router.lan:*"], allowed_origins=["https://app.lan"])
    loop = transport_security("127.0.0.1", lan)
    assert loop.enable_dns_rebinding_protection
    assert loop.allowed_hosts == ["127.0.0.1:*", "localhost:*", "[::1]:*", "router.lan:*"]
    wide = transport_security("0.0.0.0", lan)
    assert wide.enable_dns_rebinding_protection
    # Loopback names on every bind, for a container's own health check: a rebinding page
    # presents its own name, never these.
    assert wide.allowed_hosts == ["127.0.0.1:*", "localhost:*", "[::1]:*", "router.lan:*"]
    assert wide.allowed_origins == ["http://127.0.0.1:*", "http://localhost:*",
                                    "http://[::1]:*", "https://app.lan"]


def test_on_a_wildcard_bind_loopback_and_the_listed_names_are_served_and_others_refused():
    app = http_app(tiny_server(), "streamable-http", host="0.0.0.0",
                   config=ServerConfig(allowed_hosts=["router.lan:*"]))
    with ServerThread(app) as running:
        base = f"http://127.0.0.1:{running.port}"
        assert httpx.get(f"{base}/healthz", timeout=10).status_code == 200
        for name in ("127.0.0.1", "localhost", "router.lan"):
            answer = post(f"{base}/mcp", ALICE, Host=f"{name}:{running.port}")
            assert answer.status_code == 200, (name, answer.text)
        assert post(f"{base}/mcp", ALICE, Host=f"evil.example:{running.port}").status_code == 421


@pytest.mark.parametrize(("host", "allowed", "said"), [
    ("127.0.0.1", [], "serving MCP at http://127.0.0.1:8000/mcp; `mcp-router config <host> "
                      "--url http://127.0.0.1:8000/mcp` prints a host's entry"),
    ("0.0.0.0", ["router.lan:*", "10.0.0.5:8000"],
     "serving MCP on every address of this machine, port 8000: `mcp-router config <host> "
     "--url http://127.0.0.1:8000/mcp` prints a host's entry on this machine; on another "
     "machine, a name server.allowed_hosts lists: http://router.lan:8000/mcp"),
    ("::", ["router.lan:8443"],
     "serving MCP on every address of this machine, port 8000: `mcp-router config <host> "
     "--url http://[::1]:8000/mcp` prints a host's entry on this machine; on another "
     "machine, a name server.allowed_hosts lists: http://router.lan:8443/mcp"),
    ("10.0.0.5", ["router.lan:*"], "serving MCP at http://10.0.0.5:8000/mcp; `mcp-router "
                                   "config <host> --url http://router.lan:8000/mcp` prints"),
    ("10.0.0.5", ["router.lan:*", "10.0.0.5:*"], "`mcp-router config <host> --url "
                                                 "http://10.0.0.5:8000/mcp` prints"),
])
def test_the_log_gives_hosts_a_url_whose_host_the_server_takes(host: str, allowed: list[str],
                                                                said: str):
    line = serving_at(host, 8000, "streamable-http", ServerConfig(allowed_hosts=allowed))
    assert said in line


def test_the_sse_app_refuses_missing_tokens_and_foreign_origins_too():
    app = http_app(tiny_server(), "sse", host="127.0.0.1", config=ServerConfig())
    with ServerThread(app) as running:
        url = f"http://127.0.0.1:{running.port}/sse"
        response = httpx.get(url, timeout=10)
        assert response.status_code == 401 and "WWW-Authenticate" in response.headers
        assert httpx.get(url, headers={"Origin": "http://evil.example"},
                         timeout=10).status_code == 403
        wrong = httpx.post(f"http://127.0.0.1:{running.port}/messages/?session_id=x",
                           json=INIT, headers={"Authorization": "Bearer mcpr_nope"}, timeout=10)
        assert wrong.status_code == 401


@pytest.mark.anyio
async def test_a_port_in_use_is_refused_saying_so_before_anything_else():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ListenError, match=f"cannot listen on 127.0.0.1:{port}: Address "
                                              "already in use; .*choose another --port"):
            await serve_http(tiny_server(), "streamable-http", host="127.0.0.1", port=port,
                             config=ServerConfig())


@pytest.mark.anyio
async def test_a_wrong_token_is_logged_without_the_token(caplog: pytest.LogCaptureFixture):
    verifier = ClientTokenVerifier(CLIENTS)
    with caplog.at_level(logging.WARNING, logger="mcp_router"):
        assert await verifier.verify_token(BOB[:-1]) is None
    assert "bearer token is not one the config's clients have" in caplog.text
    assert BOB[:-1] not in caplog.text


def test_the_command_the_log_gives_names_the_config_whose_clients_need_a_token():
    line = serving_at("127.0.0.1", 8000, "sse", ServerConfig(),
                      tokens_from=Path("/srv/team policy.yaml"))
    assert ("`mcp-router config <host> --config '/srv/team policy.yaml' --url "
            "http://127.0.0.1:8000/sse` prints a host's entry") in line
