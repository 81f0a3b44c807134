"""SDK wiring for a shared HTTP server: client tokens, Host/Origin checks, bind policy, serving."""

from __future__ import annotations

import errno
import ipaddress
import logging
import signal
import socket
import threading
from collections.abc import Iterator, Mapping
from contextlib import AbstractAsyncContextManager, contextmanager
from typing import Any, Literal, Protocol, runtime_checkable

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
from mcp_router.errors import ListenError
from mcp_router.provider_keys import Scrubber, install_log_scrubber
from mcp_router.server.http_wrap import HealthCheck, limit_bodies, within_lifetime
from mcp_router.shared_config import ServerConfig

__all__ = ["ENDPOINT_PATHS", "SCOPE", "SHUTDOWN_GRACE_S", "ClientTokenVerifier", "HealthCheck",
           "HostOriginGuard", "Lasting", "auth_settings", "authenticated_client", "bind_refusal",
           "http_app", "is_loopback", "serve_http", "transport_security"]

log = logging.getLogger("mcp_router")

SCOPE = "mcp-router"
HttpTransport = Literal["sse", "streamable-http"]
ENDPOINT_PATHS: Mapping[HttpTransport, str] = {"sse": "/sse", "streamable-http": "/mcp"}
"""Where the SDK's apps take MCP requests."""
LOOPBACK_HOSTS = ["127.0.0.1:*", "localhost:*", "[::1]:*"]
LOOPBACK_ORIGINS = ["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"]
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
"""On SIGTERM or Ctrl-C, how long calls in flight may still finish before they are cancelled
(and written to the ledger as cancelled): well inside the 10 s a container stop waits before
SIGKILL, which would lose their rows."""


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


def is_loopback(host: str) -> bool:
    """Whether binding `host` keeps the server on this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def bind_refusal(host: str, has_clients: bool, server: ServerConfig) -> str | None:
    """Why an HTTP transport may not bind `host`, or None when it may."""
    if is_loopback(host):
        return None
    if not has_clients:
        return (f"refusing to bind {host}: beyond loopback every client needs a token; add "
                "`clients:` to the config (mcp-router token new NAME prints the lines)")
    if not server.allowed_hosts:
        return (f"refusing to bind {host}: list the Host values clients use under "
                "server.allowed_hosts (e.g. 'router.example.lan:*'); Host and Origin stay "
                "checked on every bind")
    return None


def transport_security(host: str, server: ServerConfig) -> TransportSecuritySettings:
    """Host/Origin checks, always on: loopback names and the address bound on loopback, plus
    the config's lists."""
    hosts, origins = list(server.allowed_hosts), list(server.allowed_origins)
    if is_loopback(host):
        # The address bound is how hosts reach it: 127.0.0.2 or a spelling of ::1 too.
        bound = f"{_url_host(host)}:*"
        extra = [] if bound in LOOPBACK_HOSTS else [bound]
        hosts = LOOPBACK_HOSTS + extra + hosts
        origins = LOOPBACK_ORIGINS + [f"http://{h}" for h in extra] + origins
    return TransportSecuritySettings(enable_dns_rebinding_protection=True,
                                     allowed_hosts=hosts, allowed_origins=origins)


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
                     log_level: str | int = "INFO") -> None:
    """Serve `http_app` with uvicorn until interrupted, as `MCPServer.run` would, giving the
    calls in flight `SHUTDOWN_GRACE_S` to finish. `log_level` (a `logging` level or its
    name, as MCP_ROUTER_LOG gives it) is uvicorn's too: WARNING drops its line per request."""
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
    listening = _listen(host, port)
    # uvicorn names the address; hosts need the endpoint's path too (and port 0's real port).
    url = f"http://{_url_host(host)}:{listening.getsockname()[1]}{ENDPOINT_PATHS[transport]}"
    log.info("serving MCP at %s; `mcp-router config <host> --url %s` prints a host's entry",
             url, url)
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


class _Server(uvicorn.Server):
    """uvicorn's server, but the process is left to end on its own after a signal: uvicorn
    raises the signal again once it has stopped, which kills the process before the calls a
    forced quit (a second Ctrl-C) left running are stopped and written to the ledger."""

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield  # only the main thread can take signals, as uvicorn's own does
            return
        previous = {sig: signal.signal(sig, self.handle_exit)
                    for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


async def _drain(uv_server: uvicorn.Server, server: MCPServer[Any]) -> None:
    """From SIGTERM or Ctrl-C: let the calls in flight finish within the grace, stop those
    still running just before it ends (each host gets an error saying so), then close the
    SSE streams. Streamable HTTP requests end with their calls; uvicorn waits for them."""
    while not uv_server.should_exit:
        await anyio.sleep(0.1)
    if isinstance(server, Stoppable):
        await _until_idle(server, SHUTDOWN_GRACE_S - STOP_MARGIN_S)
        if server.busy:
            log.warning("stopping the calls still running after %g s", SHUTDOWN_GRACE_S)
            server.stop_calls()
            await _until_idle(server, STOP_MARGIN_S / 2)  # their errors reach the hosts
    AppStatus.should_exit = True


def _listen(host: str, port: int) -> socket.socket:
    """A socket bound to `host:port`. Bound here rather than by uvicorn, which logs a bind
    failure and then its own shutdown, so the reason was not the last thing said."""
    address = _bare(host)
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address, port))
    except (OSError, OverflowError) as exc:  # OverflowError: a port beyond 0-65535
        sock.close()
        hint = ("another process is listening there (another mcp-router?); choose another "
                "--port" if getattr(exc, "errno", None) == errno.EADDRINUSE else
                "check --host names an address of this machine and --port is 0 to 65535")
        raise ListenError(f"cannot listen on {_url_host(host)}:{port}: "
                          f"{getattr(exc, 'strerror', None) or exc}; {hint}") from exc
    return sock


def _bare(host: str) -> str:
    """`host` without the brackets an IPv6 address takes in a URL (`[::1]`)."""
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def _url_host(host: str) -> str:
    address = _bare(host)
    return f"[{address}]" if ":" in address else address
