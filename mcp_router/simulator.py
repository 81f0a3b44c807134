"""A simulated LLM upstream on 127.0.0.1: three vendor wire formats, faults chosen by model name.

The fault knobs are parts of the model name; `Knobs` in `_sim_wire` lists them.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import anyio
import uvicorn
from starlette.applications import Starlette

from mcp_router._sim_app import SimState, create_app
from mcp_router._sim_wire import Knobs, parse_knobs
from mcp_router.errors import ListenError

__all__ = ["Knobs", "RunningSimulator", "SimState", "create_app", "parse_knobs", "serve",
           "start_simulator"]


def _bind(host: str, port: int) -> socket.socket:
    """A socket bound to a loopback address; any other host is refused (ValueError), and a
    port that cannot be bound is said in one line (ListenError)."""
    address = "127.0.0.1" if host == "localhost" else host
    try:
        loopback = ipaddress.ip_address(address).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(f"the simulator only binds to loopback addresses, not {host!r}")
    # With proto left at 0 asyncio skips TCP_NODELAY, and Nagle adds ~40 ms to every answer.
    sock = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET,
                         socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address, port))
        sock.listen(128)  # connections queue from now on, so a printed URL is usable at once
    except (OSError, OverflowError) as exc:
        sock.close()
        # As `mcp-router serve` says it (server.http_auth), in one line.
        hint = ("another process is listening there (another mcp-router?); choose another "
                "--port" if getattr(exc, "errno", None) == errno.EADDRINUSE else
                "choose another --port")
        shown = f"[{address}]" if ":" in address else address
        raise ListenError(f"cannot listen on {shown}:{port}: "
                          f"{getattr(exc, 'strerror', None) or exc}; {hint}") from exc
    return sock


def _url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class _Server(uvicorn.Server):
    """uvicorn on loopback that tells calls waiting on their client to give up at shutdown."""

    def __init__(self, app: Starlette) -> None:
        # Without a bound, one hung call would hold shutdown until its client gives up.
        super().__init__(uvicorn.Config(app, host="127.0.0.1", log_level="warning",
                                        lifespan="off", ws="none", access_log=False,
                                        timeout_graceful_shutdown=1))
        self._app = app

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        self._app.state.closing = anyio.Event()
        await super().startup(sockets)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self._app.state.closing.set()
        await super().shutdown(sockets)


def serve(host: str = "127.0.0.1", port: int = 0, state: SimState | None = None,
          latency_ms: float = 0.0) -> None:
    """Serve the simulator until interrupted; port 0 picks a free port. The URL goes to stderr."""
    sock = _bind(host, port)
    state = state if state is not None else SimState()
    if latency_ms:
        state.latency_ms = latency_ms
    print(f"simulated upstream on {_url(sock)}", file=sys.stderr, flush=True)
    try:
        _Server(create_app(state)).run(sockets=[sock])
    finally:
        sock.close()


class RunningSimulator:
    """The simulator served by uvicorn on a background thread with its own event loop."""

    def __init__(self, port: int = 0, state: SimState | None = None) -> None:
        self.state = state if state is not None else SimState()
        self._socket = _bind("127.0.0.1", port)
        self.url = _url(self._socket)
        self._server = _Server(create_app(self.state))
        self._thread = threading.Thread(target=self._server.run, args=([self._socket],),
                                        name=f"simulator {self.url}", daemon=True)

    @property
    def base_urls(self) -> Mapping[str, str]:
        """Base URL per wire format, as each vendor's client expects it."""
        return {"openai": f"{self.url}/v1", "anthropic": self.url, "gemini": f"{self.url}/v1beta"}

    def start(self, timeout: float = 10.0) -> RunningSimulator:
        """Start serving and return once the server accepts connections."""
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the simulator did not start on {self.url}")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Ask uvicorn to exit, wait for its thread, and release the port."""
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._socket.close()

    def __enter__(self) -> RunningSimulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


@contextmanager
def start_simulator(port: int = 0, state: SimState | None = None) -> Iterator[RunningSimulator]:
    """Run the simulator in the background for the `with` block."""
    with RunningSimulator(port, state) as running:
        yield running
