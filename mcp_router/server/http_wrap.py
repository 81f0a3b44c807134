"""What the router adds around the SDK's HTTP apps: the health check, bodies over the limit
(and SSE messages the SDK cannot parse) refused with a JSON-RPC error, half an emoji in a
body mended as over stdio, SSE streams that end once, and the server's own lifetime."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import anyio
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser, authorization_context
from mcp.types import (
    INVALID_REQUEST,
    PARSE_ERROR,
    ErrorData,
    JSONRPCError,
    JSONRPCNotification,
    jsonrpc_message_adapter,
)
from pydantic import ValidationError
from pydantic_core import PydanticSerializationError
from starlette.applications import Starlette
from starlette.authentication import UnauthenticatedUser
from starlette.datastructures import Headers, QueryParams
from starlette.middleware import Middleware
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mcp_router import __version__
from mcp_router.messages import well_formed
from mcp_router.server.oversized import (
    ID_SCAN_BYTES,
    leading_members,
    malformed,
    refusal,
    stray_id,
)

__all__ = ["BodyLimit", "HealthCheck", "limit_bodies", "within_lifetime"]

log = logging.getLogger("mcp_router")

DRAIN_BYTES = 64 * 1024 * 1024
"""How much of a body over the limit is read (and dropped) for its end, where a TypeScript
SDK client writes the request's id; past this its id is taken from its start alone."""

SSE_PATH = "/sse"  # the SDK's sse_app defaults, which http_app keeps
_ENDPOINT_SESSION = re.compile(rb"session_id=([0-9a-f]{32})")


class HealthCheck:
    """`GET /healthz` answers 200 without a token, for load balancers and container checks;
    it says only that the server is up, and which release."""

    PATH = "/healthz"

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == self.PATH \
                and scope["method"] in ("GET", "HEAD"):
            await JSONResponse({"status": "ok", "version": __version__})(scope, receive, send)
            return
        await self._app(scope, receive, send)


def within_lifetime(app: Starlette,
                    lifetime: Callable[[], AbstractAsyncContextManager[object]]) -> None:
    """Serve `app` inside `lifetime`: entered when the server starts and left when it stops,
    around the app's own lifespan (streamable HTTP's session manager)."""
    own = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(starlette: Starlette) -> AsyncIterator[None]:
        async with lifetime(), own(starlette):
            yield

    app.router.lifespan_context = lifespan


def limit_bodies(app: Starlette, limit: int, *, sse: bool) -> None:
    """Refuse bodies over `limit` with `BodyLimit`, placed after the SDK's authentication so a
    request without a valid token is still told 401 first."""
    app.user_middleware.append(Middleware(BodyLimit, limit=limit, sse=sse))


class BodyLimit:
    """Refuses a request body over `server.max_body_bytes` with a JSON-RPC error for its id
    that names the setting, where the SDK answers a bare 413 its own client cannot explain.

    Over streamable HTTP the error is the 413's body. An SSE client takes any status but 2xx
    for a dead connection, so there the POST is accepted and the error goes on the session's
    event stream, as the answer to the request would have. So does a message posted to an
    SSE session that the SDK could not parse (`_refused_message`). A body within the limit
    is read whole, to mend the half emoji the SDK would refuse (`_mended`).
    """

    def __init__(self, app: ASGIApp, limit: int, sse: bool) -> None:
        self._app, self._limit = app, limit
        self._streams = _EventStreams() if sse else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or isinstance(scope.get("user"), UnauthenticatedUser):
            await self._app(scope, receive, send)  # the SDK refuses a missing token first
            return
        if self._streams is not None and scope["method"] == "GET" and scope["path"] == SSE_PATH:
            await self._streams.serve(self._app, scope, receive, send)
            return
        declared = _content_length(scope)
        post = scope["method"] == "POST"
        stream = self._streams.find(scope) if self._streams is not None and post else None
        if declared is not None and declared <= self._limit and not post:
            await self._app(scope, receive, send)  # the server reads no more than declared
            return
        if declared is None or declared <= self._limit:  # read it (as the SDK would) to know
            body, more = await _read(receive, self._limit)
            if not more and len(body) <= self._limit:
                body = _mended(body)
                if stream is not None and await _refused_message(stream, body):
                    await Response("Accepted", status_code=202)(scope, receive, send)
                elif stream is None and (error := _batch(body) or _stray_id(body)) is not None:
                    await Response(_dumped(error), status_code=400,
                                   media_type="application/json")(scope, receive, send)
                else:
                    await self._app(scope, _replay(body, receive), send)
                return
        else:  # only the start, for the request's id
            body, more = await _read(receive, ID_SCAN_BYTES - 1)
        head, tail = body[:ID_SCAN_BYTES], b""
        if "id" not in leading_members(head):  # written last, as the TypeScript SDK does
            tail = await _tail(receive, body, more)
        await self._refuse(scope, receive, send, head, tail, declared)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, head: bytes,
                      tail: bytes, declared: int | None) -> None:
        size = f" of {declared:,} bytes" if declared is not None else ""
        message = (f"request body{size} is over the limit of {self._limit:,} bytes "
                   "(server.max_body_bytes): not read; send less, or raise "
                   "server.max_body_bytes in the server's config")
        log.warning("refused a %s: %s", scope["method"], message)
        error = refusal(head, message, tail)
        stream = self._streams.find(scope) if self._streams is not None else None
        if stream is not None:
            if error is not None:
                await stream.put(error)
            await Response("Accepted", status_code=202)(scope, receive, send)
            return
        error = error or JSONRPCError(jsonrpc="2.0", id=None,
                                      error=ErrorData(code=INVALID_REQUEST, message=message))
        await Response(_dumped(error), status_code=413, media_type="application/json")(
            scope, receive, send)


async def _refused_message(stream: _EventStream, body: bytes) -> bool:
    """Whether `body`, posted to an SSE session, is no message the SDK takes (or a request
    whose id it would drop, `_stray_id`), and so has been answered on the session's stream
    with an error for its id.

    The SDK's SSE transport would log its validation error with a traceback at ERROR, and at
    DEBUG its dispatcher the error's repr: both quote the body, a prompt. It would then
    answer 400, which an SSE client takes for a dead connection (the SDK's stops posting).
    Here the log says what is wrong without a value sent, and the request alone fails."""
    try:
        jsonrpc_message_adapter.validate_json(body, by_name=False)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
    else:
        if (stray := _stray_id(body)) is not None:
            await stream.put(stray)
            return True
        return False
    if first["type"] == "json_invalid":  # its message gives the position, not the text
        problem = f"Parse error: the message is not JSON: {first['ctx']['error']}"
        error = refusal(body[:ID_SCAN_BYTES], problem, body[-ID_SCAN_BYTES:])
        if error is not None:
            error.error.code = PARSE_ERROR
    else:  # JSON, so what is wrong is its shape
        error = malformed(body)
        problem = error.error.message if error is not None else \
            "Invalid message: no JSON-RPC 2.0 request, notification or response"
    log.warning("refused a message on an SSE session: %s", problem)
    if error is not None:
        await stream.put(error)
    return True


def _batch(body: bytes) -> JSONRPCError | None:
    """The -32600 for a JSON array of messages, which the SDK answers with a validation
    error quoting the values posted; None for anything else."""
    return malformed(body) if body.lstrip()[:1] == b"[" else None


_ODD_ID = re.compile(rb'"id"\s*:\s*(?:[^"\d\s-]|-?\d+[.eE])')
"""An `"id"` member whose value is no string or integer: `null`, `true`, `1.5`, `1e3`, `{`."""


def _stray_id(body: bytes) -> JSONRPCError | None:
    """The -32600 for a request whose id is no string or integer, which the SDK's parser
    takes for a notification and so never answers (the host waits for its timeout); None
    otherwise. A body is read again only when an `"id"` member of such a value shows in it."""
    if _ODD_ID.search(body) is None:
        return None
    try:
        message = jsonrpc_message_adapter.validate_json(body, by_name=False)
    except ValidationError:
        return None  # the SDK says what is wrong
    return stray_id(body) if isinstance(message, JSONRPCNotification) else None


def _dumped(error: JSONRPCError) -> str:
    """`error` as JSON. An id with a lone surrogate, echoed from a body not mended (over the
    limit, or not JSON), is written with U+FFFD as over stdio: pydantic cannot write it."""
    try:
        return error.model_dump_json(by_alias=True, exclude_unset=True)
    except PydanticSerializationError:
        return well_formed(json.dumps(error.model_dump(
            mode="json", by_alias=True, exclude_unset=True), ensure_ascii=False))


_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]")
_ESCAPE = re.compile(rb"(\\u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2})"
                     rb"|(\\u[dD][89a-fA-F][0-9a-fA-F]{2})|\\.", re.DOTALL)


def _mended(body: bytes) -> bytes:
    """`body` with each lone UTF-16 surrogate escape (`"\\ud83d"`, half an emoji a
    JavaScript host cut) written `"\\ufffd"`, when it is otherwise valid JSON.

    The SDK's reader refuses such a body as -32700 with no id, so the host cannot tell which
    call failed and waits for it until its timeout; over stdio the text arrives as U+FFFD
    (`messages.well_formed`), and so here. The escape's replacement is as long, so the
    Content-Length the SDK checks still holds, and every other byte is the host's."""
    if _SURROGATE.search(body) is None:  # the common case: no escape of a surrogate
        return body
    # Outside strings valid JSON has no backslash, so the escapes match from the start.
    mended = _ESCAPE.sub(lambda m: m[0] if m[2] is None else rb"\ufffd", body)
    if mended == body:  # whole emoji only, which the SDK reads
        return body
    try:
        json.loads(body)  # takes a lone surrogate, as pydantic's reader does not
    except (ValueError, RecursionError):  # the SDK's own error says what is wrong
        return body
    return mended


class _EventStreams:
    """The SSE app's event streams by session id, each with the client it was opened for."""

    def __init__(self) -> None:
        self._open: dict[str, _EventStream] = {}

    async def serve(self, app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
        stream = _EventStream(send, _owner(scope), self._open)
        try:
            await app(scope, receive, stream.forward)
        finally:
            stream.close()

    def find(self, scope: Scope) -> _EventStream | None:
        """The stream of the session a POST names, if the POST comes from its client."""
        session_id = QueryParams(scope.get("query_string", b"")).get("session_id", "")
        stream = self._open.get(session_id.replace("-", "").lower())
        return stream if stream is not None and stream.owner == _owner(scope) else None


class _EventStream:
    """One SSE response. Once it has ended nothing more is sent on it: at shutdown the SDK's
    `handle_sse` answers again after its stream closed, which uvicorn logs as an error."""

    def __init__(self, send: Send, owner: object, registry: dict[str, _EventStream]) -> None:
        self._send, self.owner, self._registry = send, owner, registry
        self._session: str | None = None
        self._started = self._ended = False
        self._lock = anyio.Lock()

    async def forward(self, message: Message) -> None:
        async with self._lock:
            if self._ended or (message["type"] == "http.response.start" and self._started):
                return
            self._started = True
            if message["type"] == "http.response.body":
                self._ended = not message.get("more_body", False)
                self._note_session(message.get("body", b""))
            await self._send(message)

    async def put(self, error: JSONRPCError) -> None:
        """Send `error` to the client as a message event."""
        data = _dumped(error).encode()
        async with self._lock:
            if self._started and not self._ended:
                await self._send({"type": "http.response.body", "more_body": True,
                                  "body": b"event: message\r\ndata: " + data + b"\r\n\r\n"})

    def close(self) -> None:
        self._ended = True
        if self._session is not None:
            self._registry.pop(self._session, None)

    def _note_session(self, body: bytes) -> None:
        # The first event names the endpoint the client posts to, with its session id.
        if self._session is None and (found := _ENDPOINT_SESSION.search(body)):
            self._session = found.group(1).decode()
            self._registry[self._session] = self


def _owner(scope: Scope) -> object:
    user = scope.get("user")
    return authorization_context(user) if isinstance(user, AuthenticatedUser) else None


def _content_length(scope: Scope) -> int | None:
    try:
        return int(Headers(scope=scope)["content-length"])
    except (KeyError, ValueError):
        return None


async def _read(receive: Receive, limit: int) -> tuple[bytes, bool]:
    """Read the body until it ends or is past `limit` bytes: what was read, and whether more
    of it is still to come."""
    body, more = bytearray(), True
    while more and len(body) <= limit:
        message = await receive()
        body += message.get("body", b"")
        more = _more(message)
    return bytes(body), more


async def _tail(receive: Receive, body: bytes, more: bool) -> bytes:
    """The last ID_SCAN_BYTES of a body that begins with `body`, dropping the rest of it as
    it comes; empty when it goes on past DRAIN_BYTES, whose end is not waited for."""
    tail, drained = body[-ID_SCAN_BYTES:], 0
    while more:
        if drained > DRAIN_BYTES:
            return b""
        message = await receive()
        chunk = message.get("body", b"")
        drained += len(chunk)
        tail = (tail + chunk[-ID_SCAN_BYTES:])[-ID_SCAN_BYTES:]
        more = _more(message)
    return tail


def _more(message: Message) -> bool:
    # Anything but more of the body (a disconnect) says nothing more will come.
    return message["type"] == "http.request" and bool(message.get("more_body", False))


def _replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that gives `body` whole, then whatever `receive` gives."""
    given = False

    async def replay() -> Message:
        nonlocal given
        if given:
            return await receive()
        given = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay
