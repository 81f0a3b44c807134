"""A router's HTTP app served by uvicorn in this process, on any loopback address, and MCP
clients for either transport: end-to-end over a real port without a subprocess."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, cast

import httpx2
import uvicorn
from mcp import Client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import Implementation

from mcp_router.clock import Clock
from mcp_router.config import parse_config
from mcp_router.server import create_server
from mcp_router.server.http_auth import http_app
from mcp_router.server.http_bind import ENDPOINT_PATHS, HttpTransport


@contextmanager
def served(config: str, transport: str, home: Path, *, host: str = "127.0.0.1",
           clock: Clock | None = None) -> Iterator[str]:
    """The endpoint URL of a router for `config` (YAML) over `transport`, until the block
    ends."""
    parsed = parse_config(config, env={})
    server = create_server(parsed, home=home, env={}, keys={}, clock=clock)
    kind = cast(HttpTransport, transport)
    app = http_app(server, kind, host=host, config=parsed.server)
    with serving_app(app, host) as port:
        yield f"http://{host}:{port}{ENDPOINT_PATHS[kind]}"


@contextmanager
def serving_app(app: Any, host: str = "127.0.0.1") -> Iterator[int]:
    """Serve the ASGI `app` on `host` (lifespan included) from a thread; yields the port."""
    sock = socket.socket()
    sock.bind((host, 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", ws="none",
                                           timeout_graceful_shutdown=1))
    thread = threading.Thread(target=server.run, args=([sock],), daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "did not start"
            time.sleep(0.01)
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@asynccontextmanager
async def connected(url: str, name: str = "test-host") -> AsyncIterator[Client]:
    """An MCP client of `url`, over SSE when it ends in /sse, else streamable HTTP."""
    info = Implementation(name=name, version="1")
    if url.endswith(ENDPOINT_PATHS["sse"]):
        async with Client(sse_client(url), client_info=info) as client:
            yield client
        return
    async with httpx2.AsyncClient(timeout=30) as http, \
            Client(streamable_http_client(url, http_client=http), client_info=info) as client:
        yield client
