"""Where an HTTP server may listen and what it accepts and says there: the bind policy, the
Host/Origin lists, the listening socket, and the URL the log gives for hosts."""

from __future__ import annotations

import errno
import ipaddress
import shlex
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from mcp.server.transport_security import TransportSecuritySettings

from mcp_router.errors import ListenError
from mcp_router.shared_config import ServerConfig

__all__ = ["ENDPOINT_PATHS", "LOOPBACK_HOSTS", "LOOPBACK_ORIGINS", "HttpTransport",
           "bind_refusal", "is_loopback", "listen", "serving_at", "transport_security"]

HttpTransport = Literal["sse", "streamable-http"]
ENDPOINT_PATHS: Mapping[HttpTransport, str] = {"sse": "/sse", "streamable-http": "/mcp"}
"""Where the SDK's apps take MCP requests."""
LOOPBACK_HOSTS = ["127.0.0.1:*", "localhost:*", "[::1]:*"]
LOOPBACK_ORIGINS = ["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"]


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
    """Host/Origin checks, always on: loopback names on any bind, the address bound on
    loopback, plus the config's lists.

    Loopback names are taken on a wildcard bind too, for a container's own health check and
    hosts on the same machine: a DNS-rebinding page presents its own name as Host and
    Origin, never 127.0.0.1 or localhost."""
    hosts, origins = list(server.allowed_hosts), list(server.allowed_origins)
    extra = []
    if is_loopback(host) and (bound := f"{_url_host(host)}:*") not in LOOPBACK_HOSTS:
        extra = [bound]  # how hosts reach 127.0.0.2 or another spelling of ::1
    hosts = LOOPBACK_HOSTS + extra + hosts
    origins = LOOPBACK_ORIGINS + [f"http://{h}" for h in extra] + origins
    return TransportSecuritySettings(enable_dns_rebinding_protection=True,
                                     allowed_hosts=hosts, allowed_origins=origins)


def serving_at(host: str, port: int, transport: HttpTransport, server: ServerConfig,
               tokens_from: Path | None = None) -> str:
    """The log line saying where the server listens and a URL to give hosts, one whose Host
    the server takes: uvicorn names the address alone, without the endpoint's path or port
    0's real port, and beyond loopback the address bound may be no name allowed_hosts lists
    (0.0.0.0 never is). `tokens_from` is the config file whose `clients:` make the server ask
    for a token: the command it gives names it, as `mcp-router config` reads another config
    (the shipped one, without clients) and would print an entry without the token header."""
    path = ENDPOINT_PATHS[transport]
    named = [f"http://{_with_port(entry, port)}{path}" for entry in server.allowed_hosts]
    config = f" --config {shlex.quote(str(tokens_from))}" if tokens_from is not None else ""
    advice = f"`mcp-router config <host>{config} --url {{}}` prints a host's entry"
    if _is_unspecified(host):
        local = f"http://{'[::1]' if ':' in _bare(host) else '127.0.0.1'}:{port}{path}"
        elsewhere = (f"; on another machine, a name server.allowed_hosts lists: {named[0]}"
                     if named else "")
        return (f"serving MCP on every address of this machine, port {port}: "
                f"{advice.format(local)} on this machine{elsewhere}")
    address = _url_host(host)
    url = given = f"http://{address}:{port}{path}"
    if not is_loopback(host) and named and \
            not {f"{address}:*", f"{address}:{port}"} & set(server.allowed_hosts):
        given = named[0]  # the Host check refuses the address itself
    return f"serving MCP at {url}; {advice.format(given)}"


def _with_port(allowed_host: str, port: int) -> str:
    """An allowed_hosts entry as a URL's host and port: `name:*` takes any port."""
    return f"{allowed_host[:-2]}:{port}" if allowed_host.endswith(":*") else allowed_host


def _is_unspecified(host: str) -> bool:
    """Whether binding `host` listens on every address of the machine (0.0.0.0, ::)."""
    try:
        return ipaddress.ip_address(_bare(host)).is_unspecified
    except ValueError:
        return False


def listen(host: str, port: int) -> socket.socket:
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
