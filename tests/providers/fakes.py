"""A scripted upstream for wire tests: records what the adapter sent, answers what the test set."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx

KEY = "sk-test-SECRET-0123456789"

# Headers httpx adds on its own; everything else on a request is the adapter's doing.
_HTTPX_HEADERS = {"host", "accept", "accept-encoding", "connection", "user-agent",
                  "content-length"}

Responder = Callable[[httpx.Request], httpx.Response]

HTTPX_ON_TRIO = "ignore:Async generator 'httpx.:ResourceWarning"
"""A `filterwarnings` mark for tests that close a stream before its end on trio (the
`virtual_time` marker): httpx leaves its own byte generators to the garbage collector, which
trio warns of (encode/httpx#3686). asyncio, which the server runs on, closes them quietly."""


class FakeUpstream:
    """The handler of an `httpx.MockTransport`: keeps every request, answers via `responder`."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.responder: Responder = lambda request: json_response({})

    def answer(self, response: httpx.Response | Responder) -> None:
        """Answer the next request with `response` (or what `response(request)` returns)."""
        if isinstance(response, httpx.Response):
            self.responder = lambda request: response
        else:
            self.responder = response

    def fail(self, error: type[httpx.TransportError], message: str) -> None:
        """Fail the next request the way httpx does when the network does."""

        def raise_(request: httpx.Request) -> httpx.Response:
            raise error(message, request=request)

        self.responder = raise_

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.responder(request)

    @property
    def request(self) -> httpx.Request:
        """The one request the test expected."""
        assert len(self.requests) == 1, self.requests
        return self.requests[0]


def sent_headers(request: httpx.Request) -> dict[str, str]:
    """The request's headers minus the ones httpx adds by itself."""
    return {k: v for k, v in request.headers.items() if k not in _HTTPX_HEADERS}


def sent_json(request: httpx.Request) -> Any:
    return json.loads(request.content)


def key_appears_outside(request: httpx.Request, header: str) -> bool:
    """Whether the key shows up anywhere but in `header`: URL, other headers, body."""
    others = [v for k, v in request.headers.items() if k != header.lower()]
    return any(KEY in text for text in [str(request.url), *others,
                                         request.content.decode()])


def json_response(data: Any, status: int = 200,
                  headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, json=data, headers=headers)


def sse_body(*events: Any) -> bytes:
    """Event-stream text: each item is a data object, `"[DONE]"`, or `(event name, data)`."""
    lines = []
    for item in events:
        name, data = item if isinstance(item, tuple) else (None, item)
        if name:
            lines.append(f"event: {name}")
        lines.append(f"data: {data if isinstance(data, str) else json.dumps(data)}")
        lines.append("")
    return ("\n".join(lines) + "\n").encode()


def sse_response(*events: Any) -> httpx.Response:
    return httpx.Response(200, content=sse_body(*events),
                          headers={"content-type": "text/event-stream; charset=utf-8"})


def dying_sse_response(*events: Any) -> httpx.Response:
    """An event stream whose connection dies after `events`, as a dropped peer does."""

    async def body() -> AsyncIterator[bytes]:
        yield sse_body(*events)
        raise httpx.RemoteProtocolError("peer closed connection without sending complete "
                                        "message body (incomplete chunked read)")

    return httpx.Response(200, content=body(), headers={"content-type": "text/event-stream"})


class TextSink:
    """An `on_text` callback that keeps the deltas in order."""

    def __init__(self) -> None:
        self.deltas: list[str] = []

    async def __call__(self, delta: str) -> None:
        self.deltas.append(delta)
