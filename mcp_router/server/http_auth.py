"""SDK wiring for a shared HTTP server: client tokens, Host/Origin checks, serving, stopping."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator, Mapping
from contextlib import AbstractAsyncContextManager, contextmanager
from pathlib import Path
from types import FrameType
from typing import Any, Protocol, runtime_checkable

import anyio
import uvicorn
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecurityMiddleware, TransportSecuritySettings
from pydantic import AnyHttpUrl
from sse_starlette.sse import AppStatus
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from mcp_router.access import find_client
from mcp_router.provider_keys import Scrubber, install_log_scrubber
from mcp_router.server.http_bind import (
    HttpTransport,
    listen,
    serving_at,
    transport_security,
)
from mcp_router.server.http_wrap import HealthCheck, limit_bodies, within_lifetime
from mcp_router.shared_config import ServerConfig

__all__ = ["SCOPE", "SHUTDOWN_GRACE_S", "ClientTokenVerifier", "HealthCheck",
           "HostOriginGuard", "Lasting", "auth_settings", "authenticated_client", "http_app",
           "serve_http"]

log = logging.getLogger("mcp_router")

SCOPE = "mcp-router"
SHUTDOWN_GRACE_S = 5
STOP_MARGIN_S = 0.5
"""Calls still running this long before the grace ends are stopped by the server itself, so
their hosts get an error that says why before uvicorn drops the connections."""


@runtime_checkable
class Lasting(Protocol):
    """A server whose state is held from the HTTP server's start to its stop."""

    def lifetime(self) -> AbstractAsyncContextManager[object]: ...


@runtime_checkable
class Stoppable(Protocol):
    """A server that knows its tool calls in flight and can end them with a reason."""

    @property
    def busy(self) -> bool: ...

    def stop_calls(self) -> None: ...
"""On SIGTERM, SIGHUP or Ctrl-C, how long calls in flight may still finish before they are
cancelled (and written to the ledger as cancelled): well inside the 10 s a container stop
waits before SIGKILL, which would lose their rows."""


class _Hashed(Protocol):
    @property
    def token_sha256(self) -> str: ...


class ClientTokenVerifier:
    """The SDK's TokenVerifier over the config's clients: a token maps to its client's name."""

    def __init__(self, clients: Mapping[str, _Hashed]) -> None:
        self._hashes = {name: c.token_sha256 for name, c in clients.items()}

    async def verify_token(self, token: str) -> AccessToken | None:
        name = find_client(token, self._hashes)
        if name is None:
            # Hosts read a 401 as a cue to start OAuth and say "failed to connect": the
            # server's log is where the user learns the token itself is wrong.
            log.warning("refused a request (401): its bearer token is not one the config's "
                        "clients have; `mcp-router token new <name>` issues one")
            return None
        # The hash stands in for the token so the raw secret is not kept in request state.
        return AccessToken(token=self._hashes[name], client_id=name, scopes=[SCOPE])


def auth_settings() -> AuthSettings:
    """Bearer tokens required on every MCP endpoint, checked by `ClientTokenVerifier`.

    Tokens are static and issued by `mcp-router token new`, so no OAuth metadata is
    advertised (resource_server_url None): a 401 carries `WWW-Authenticate: Bearer
    error="invalid_token"` without pointing clients at an authorization server that does
    not exist. `issuer_url` is required by the model and unused without one.
    """
    return AuthSettings(issuer_url=AnyHttpUrl("http://127.0.0.1"), resource_server_url=None,
                        required_scopes=[SCOPE])


def authenticated_client() -> str | None:
    """The client name of the HTTP request being served, if it carried a valid token."""
    token = get_access_token()
    return token.client_id if token is not None else None


class HostOriginGuard:
    """Runs the SDK's Host/Origin check before authentication.

    The SDK checks them inside the transport, after the bearer token, so a foreign page
    without a token would get 401 and learn that a server is there; here it gets 403 (bad
    Origin) or 421 (bad Host) first. The check itself is the SDK's own.
    """

    def __init__(self, app: ASGIApp, settings: TransportSecuritySettings) -> None:
        self._app, self._check = app, TransportSecurityMiddleware(settings)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            # is_post=False: the Content-Type rule stays with the transport, which knows
            # which requests carry JSON.
            refusal = await self._check.validate_request(Request(scope), is_post=False)
            if refusal is not None:
                await refusal(scope, receive, send)
                return
        await self._app(scope, receive, send)


def http_app(server: MCPServer[Any], transport: HttpTransport, *, host: str,
             config: ServerConfig) -> ASGIApp:
    """The ASGI app of `server` for `transport`: Host/Origin guard, health check, body limit,
    auth if set. A `Lasting` server's state lives as long as the app is served, over either
    transport, however its connections come and go."""
    security = transport_security(host, config)
    if transport == "sse":
        app = server.sse_app(max_request_body_size=config.max_body_bytes,
                             transport_security=security, host=host)
    else:
        app = server.streamable_http_app(max_request_body_size=config.max_body_bytes,
                                         session_idle_timeout=config.session_idle_s,
                                         max_sessions=config.max_sessions,
                                         transport_security=security, host=host)
    limit_bodies(app, config.max_body_bytes, sse=transport == "sse")
    if isinstance(server, Lasting):
        within_lifetime(app, server.lifetime)
    return HostOriginGuard(HealthCheck(app), security)


async def serve_http(server: MCPServer[Any], transport: HttpTransport, *, host: str, port: int,
                     config: ServerConfig, scrubber: Scrubber | None = None,
                     log_level: str | int = "INFO", tokens_from: Path | None = None) -> None:
    """Serve `http_app` with uvicorn until interrupted, as `MCPServer.run` would, giving the
    calls in flight `SHUTDOWN_GRACE_S` to finish. `log_level` (a `logging` level or its
    name, as MCP_ROUTER_LOG gives it) is uvicorn's too: WARNING drops its line per request.
    `tokens_from`: the config file, when its `clients:` need tokens (`serving_at`)."""
    if isinstance(log_level, str):  # uvicorn knows fewer names than logging (no WARN, FATAL)
        log_level = logging.getLevelNamesMapping()[log_level.upper()]
    # log_config=None: uvicorn's records go through our logging, to stderr, not its stdout
    # access log.
    uv_config = uvicorn.Config(http_app(server, transport, host=host, config=config),
                               host=host, port=port, log_level=log_level, log_config=None,
                               timeout_graceful_shutdown=SHUTDOWN_GRACE_S)
    if scrubber:
        # uvicorn.Config has just installed its own log handlers; filter those too.
        install_log_scrubber(scrubber)
    listening = listen(host, port)
    log.info("%s", serving_at(host, listening.getsockname()[1], transport, config,
                                 tokens_from))
    uv_server = _Server(uv_config)
    # SSE streams would otherwise close at the signal, cancelling every call in flight at
    # once; `_drain` closes them when the calls are done (or stopped at the grace's end).
    AppStatus.disable_automatic_graceful_drain()
    AppStatus.should_exit = False
    try:
        with listening:
            async with anyio.create_task_group() as group:
                group.start_soon(_drain, uv_server, server)
                await uv_server.serve(sockets=[listening])
                group.cancel_scope.cancel()
            if isinstance(server, Stoppable) and server.busy:
                # A second Ctrl-C forced the quit: uvicorn left the calls running. Stopped
                # now, while the ledger is open, each writes what it may have cost.
                server.stop_calls()
                await _until_idle(server, STOP_MARGIN_S)
    finally:  # the flag is the process's: leave it as found for any server started later
        AppStatus.should_exit = False
        AppStatus.enable_automatic_graceful_drain_mode()


async def _until_idle(server: Stoppable, seconds: float) -> None:
    """Return when `server` has no call in flight, or after `seconds`."""
    with anyio.move_on_after(seconds):
        while server.busy:
            await anyio.sleep(0.02)


_SIGHUP = getattr(signal, "SIGHUP", None)  # not on Windows
_STOPPING_SIGNALS = (signal.SIGINT, signal.SIGTERM) + ((_SIGHUP,) if _SIGHUP else ())
"""SIGHUP too: it comes when the terminal or SSH session running the server closes, and
uvicorn leaves it at its default, which ends the process before the calls in flight reach
the ledger."""


class _Server(uvicorn.Server):
    """uvicorn's server, but the process is left to end on its own after a signal: uvicorn
    raises the signal again once it has stopped, which kills the process before the calls a
    forced quit (a second Ctrl-C) left running are stopped and written to the ledger."""

    hung_up = False

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield  # only the main thread can take signals, as uvicorn's own does
            return
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in _STOPPING_SIGNALS}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # Noted for `_drain` to log: a signal handler may interrupt a logging call.
        self.hung_up = self.hung_up or (not self.should_exit and sig == _SIGHUP)
        super().handle_exit(sig, frame)


async def _drain(uv_server: _Server, server: MCPServer[Any]) -> None:
    """From SIGTERM, SIGHUP or Ctrl-C: let the calls in flight finish within the grace, stop
    those still running just before it ends (each host gets an error saying so), then close
    the SSE streams. Streamable HTTP requests end with their calls; uvicorn waits for them."""
    while not uv_server.should_exit:
        await anyio.sleep(0.1)
    if uv_server.hung_up:  # an admin may have meant "reload", as many daemons take it
        log.warning("SIGHUP: stopping as on SIGTERM, not reloading: start mcp-router again "
                    "to read a changed config")
    if isinstance(server, Stoppable):
        await _until_idle(server, SHUTDOWN_GRACE_S - STOP_MARGIN_S)
        if server.busy:
            log.warning("stopping the calls still running after %g s", SHUTDOWN_GRACE_S)
            server.stop_calls()
            await _until_idle(server, STOP_MARGIN_S / 2)  # their errors reach the hosts
    AppStatus.should_exit = True
