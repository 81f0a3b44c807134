"""The simulated upstream as an ASGI app: its routes, its state and how each fault is played."""

from __future__ import annotations

import json
import math
import threading
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import replace
from email.utils import formatdate
from functools import partial

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from mcp_router._sim_formats import AnthropicWire, GeminiWire, OpenAIWire
from mcp_router._sim_wire import (
    BadRequest,
    Json,
    Knobs,
    Prompt,
    Wire,
    compose_answer,
    parse_knobs,
)

__all__ = ["SimState", "create_app"]

OPENAI, ANTHROPIC, GEMINI = OpenAIWire(), AnthropicWire(), GeminiWire()

_SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "x-api-key",
                             "x-goog-api-key", "api-key"})
_REDACTED = "<redacted>"


class SimState:
    """Counters and settings shared by the app and the threads that drive it; writes hold a lock."""

    def __init__(self, latency_ms: float = 0.0, keep: int = 500) -> None:
        self._lock = threading.Lock()
        self.hits: Counter[str] = Counter()
        self.format_hits: Counter[str] = Counter()
        self.disconnects: Counter[str] = Counter()
        self.metadata_hits: Counter[str] = Counter()  # list-models calls, by wire format
        self._requests: deque[Json] = deque(maxlen=keep)
        self.latency_ms = latency_ms
        self._serial = 0

    @property
    def requests(self) -> list[Json]:
        """The last requests received: format, method, path, query, headers, body; no secrets."""
        with self._lock:
            return list(self._requests)

    def record(self, wire: str, model: str, seen: Json) -> tuple[int, int]:
        """Count one call; returns this model's call number and a serial for response ids."""
        with self._lock:
            self.hits[model] += 1
            self.format_hits[wire] += 1
            self._requests.append(seen)
            self._serial += 1
            return self.hits[model], self._serial

    def count_metadata(self, wire: str) -> None:
        """Count one list-models call (what health probes ask; it spends nothing)."""
        with self._lock:
            self.metadata_hits[wire] += 1

    def count_disconnect(self, model: str) -> None:
        """Note a client that left before its answer was complete."""
        with self._lock:
            self.disconnects[model] += 1

    def reset(self) -> None:
        """Forget every counter and recorded request; `latency_ms` is a setting and stays."""
        with self._lock:
            for counter in (self.hits, self.format_hits, self.disconnects, self.metadata_hits):
                counter.clear()
            self._requests.clear()

    def stats(self) -> Json:
        """A JSON-ready snapshot of the counters."""
        with self._lock:
            return {"hits": dict(self.hits), "format_hits": dict(self.format_hits),
                    "disconnects": dict(self.disconnects),
                    "metadata_hits": dict(self.metadata_hits), "latency_ms": self.latency_ms}


class _FrameResponse(StreamingResponse):
    """Streams prepared frames, each after its wait, and reports a client that leaves before
    the last one."""

    def __init__(self, frames: tuple[tuple[float, bytes], ...], media_type: str,
                 on_disconnect: Callable[[], None]) -> None:
        super().__init__((), media_type=media_type, headers={"cache-control": "no-cache"})
        self._frames, self._on_disconnect, self._complete = frames, on_disconnect, False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code,
                    "headers": self.raw_headers})
        async with anyio.create_task_group() as group:
            group.start_soon(_then_cancel, group.cancel_scope, partial(self._write, send))
            group.start_soon(_then_cancel, group.cancel_scope,
                             partial(_until_disconnect, receive))
        if not self._complete:
            self._on_disconnect()

    async def _write(self, send: Send) -> None:
        for wait, frame in self._frames:
            await anyio.sleep(wait)  # also a checkpoint, so a client that left is noticed
            await send({"type": "http.response.body", "body": frame, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        self._complete = True


def _paced(head: tuple[bytes, ...], rest: tuple[bytes, ...], pieces: int,
           drip_s: float) -> tuple[tuple[float, bytes], ...]:
    """Each frame with the wait before it. `drip` falls only between the answer's text pieces,
    the first `pieces` frames after the head (Gemini's last piece travels in the tail, with
    its finishReason), so every wire has the same timing; the other frames go at once."""
    return (*((0.0, frame) for frame in head),
            *((drip_s if 0 < index < pieces else 0.0, frame) for index, frame in enumerate(rest)))


async def _then_cancel(scope: anyio.CancelScope, wait: Callable[[], Awaitable[object]]) -> None:
    await wait()
    scope.cancel()


async def _until_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _wait(request: Request, seconds: float | None) -> str:
    """Wait `seconds` (None: forever); "left" or "closing" if the client or server goes first."""
    closing: anyio.Event | None = getattr(request.app.state, "closing", None)
    with anyio.move_on_after(seconds) as timer:
        async with anyio.create_task_group() as group:
            group.start_soon(_then_cancel, group.cancel_scope,
                             partial(_until_disconnect, request.receive))
            if closing is not None:
                group.start_soon(_then_cancel, group.cancel_scope, closing.wait)
    if timer.cancelled_caught:
        return "stayed"
    return "closing" if closing is not None and closing.is_set() else "left"


def _retry_after(wire: Wire, knobs: Knobs, status: int) -> tuple[int | None, dict[str, str]]:
    """The Retry-After seconds and headers for a failure, if it carries any."""
    if status != 429 and knobs.retry_after_s is None and not knobs.retry_after_date:
        return None, {}
    seconds = 1 if knobs.retry_after_s is None else knobs.retry_after_s
    if knobs.retry_after_date:
        # Rounded up so the date is never sooner than the seconds asked for.
        return seconds, {"retry-after": formatdate(math.ceil(time.time()) + seconds,
                                                   usegmt=True)}
    extra = {"retry-after-ms": str(seconds * 1000)} if wire.retry_after_ms else {}
    return seconds, {"retry-after": str(seconds)} | extra


def _error(wire: Wire, status: int, message: str, knobs: Knobs | None = None) -> Response:
    seconds, headers = _retry_after(wire, knobs, status) if knobs else (None, {})
    return JSONResponse(wire.error(status, message, seconds), status_code=status,
                        headers=headers)


def _whole(body: Json, knobs: Knobs) -> Response:
    raw = json.dumps(body).encode()
    if knobs.malformed:
        raw = b"Simulated upstream: this body is not JSON\n"
    elif knobs.cut:
        raw = raw[: len(raw) // 2]
    return Response(raw, media_type="application/json")


def _seen(request: Request, wire: str, raw: bytes, body: object) -> Json:
    """What the upstream received, minus credentials, for tests to inspect."""
    return {
        "format": wire, "method": request.method, "path": request.url.path,
        "query": {k: _REDACTED if k == "key" else v for k, v in request.query_params.items()},
        "headers": {k: _REDACTED if k in _SECRET_HEADERS else v
                    for k, v in request.headers.items()},
        "body": body if body is not None else raw.decode("utf-8", "replace"),
    }


def _json_or_none(raw: bytes) -> object:
    try:
        return json.loads(raw)
    except ValueError:
        return None


async def _chat(request: Request, wire: Wire, path_model: str = "",
                stream: bool = False) -> Response:
    """Answer one chat call: record it, delay, validate, apply faults, then answer."""
    state: SimState = request.app.state.sim
    raw = await request.body()
    body = _json_or_none(raw)
    model = path_model or (str(body.get("model") or "") if isinstance(body, dict) else "")
    hit, serial = state.record(wire.name, model, _seen(request, wire.name, raw, body))
    knobs = parse_knobs(model)
    delay = None if knobs.hang else (state.latency_ms + knobs.slow_ms) / 1000
    outcome = await _wait(request, delay) if delay is None or delay > 0 else "stayed"
    if outcome == "closing":
        return _error(wire, 503, "The simulated upstream is shutting down.")
    if outcome == "left":
        state.count_disconnect(model)
        return Response(status_code=499)  # nobody reads it; the client has gone
    if not isinstance(body, dict):
        return _error(wire, 400, "The request body is not valid JSON.")
    problem = wire.header_problem(request.headers)
    if problem:
        return _error(wire, 400, problem)
    try:
        prompt = wire.parse(body, model, request.query_params.get("alt"))
    except BadRequest as exc:
        return _error(wire, 400, str(exc))
    status = knobs.failure(hit)
    if status is not None:
        message = wire.not_found(model) if status == 404 else f"Simulated HTTP {status} ({model})"
        return _error(wire, status, message, knobs)
    prompt = replace(prompt, stream=True) if stream else prompt
    return _respond(wire, prompt, knobs, f"{wire.id_prefix}{serial:08d}",
                    lambda: state.count_disconnect(model))


def _respond(wire: Wire, prompt: Prompt, knobs: Knobs, answer_id: str,
             on_disconnect: Callable[[], None]) -> Response:
    """The answer, whole or streamed, broken the way the knobs ask."""
    answer = compose_answer(prompt, answer_id, tokens=knobs.tokens, cached=knobs.cached,
                            usage=not knobs.no_usage)
    if not prompt.stream:
        return _whole(wire.answer(answer), knobs)
    frames = wire.frames(answer, prompt)
    if knobs.malformed:
        rest = (*frames.deltas[:1], wire.malformed_frame)  # the broken frame is the 2nd piece
    elif knobs.cut:
        rest = frames.deltas[:2]
    else:
        rest = (*frames.deltas, *frames.tail)
    paced = _paced(frames.head, rest, len(answer.chunks), knobs.drip_ms / 1000)
    return _FrameResponse(paced, frames.media_type, on_disconnect)


async def _gemini_call(request: Request) -> Response:
    model, _, action = request.path_params["rest"].rpartition(":")
    if not model or action not in ("generateContent", "streamGenerateContent"):
        path = request.path_params["rest"]
        return _error(GEMINI, 404, f"Method {path} is not found for API version v1beta.")
    return await _chat(request, GEMINI, model, stream=action == "streamGenerateContent")


async def _v1_models(request: Request) -> Response:
    # Anthropic and OpenAI share this path; only Anthropic clients send anthropic-version.
    wire: Wire = ANTHROPIC if "anthropic-version" in request.headers else OPENAI
    request.app.state.sim.count_metadata(wire.name)
    return JSONResponse(wire.models())


async def _gemini_models(request: Request) -> Response:
    request.app.state.sim.count_metadata(GEMINI.name)
    return JSONResponse(GEMINI.models())


async def _stats(request: Request) -> Response:
    return JSONResponse(request.app.state.sim.stats())


async def _requests(request: Request) -> Response:
    """The last requests received, as the simulator keeps them (keys redacted): what a
    tester checks to see what the router sent upstream."""
    return JSONResponse(request.app.state.sim.requests)


async def _reset(request: Request) -> Response:
    request.app.state.sim.reset()
    return JSONResponse({"reset": True})


def _milliseconds(value: object) -> float | None:
    """A latency setting as float: a finite number, 0 or more; None for anything else (JSON
    as Python reads it also has NaN, Infinity, and integers too large for a float)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        ms = float(value)
    except OverflowError:
        return None
    return ms if math.isfinite(ms) and ms >= 0 else None


async def _latency(request: Request) -> Response:
    body = _json_or_none(await request.body())
    ms = _milliseconds(body.get("ms") if isinstance(body, dict) else None)
    if ms is None:
        return JSONResponse({"error": 'expected {"ms": <finite number, 0 or more>}'},
                            status_code=400)
    request.app.state.sim.latency_ms = ms
    return JSONResponse({"latency_ms": ms})


def create_app(state: SimState | None = None) -> Starlette:
    """The simulator as an ASGI app; `state` is shared with the caller when given."""
    app = Starlette(routes=[
        Route("/v1/chat/completions", partial(_chat, wire=OPENAI), methods=["POST"]),
        Route("/v1/messages", partial(_chat, wire=ANTHROPIC), methods=["POST"]),
        Route("/v1/models", _v1_models, methods=["GET"]),
        Route("/v1beta/models", _gemini_models, methods=["GET"]),
        Route("/v1beta/models/{rest:path}", _gemini_call, methods=["POST"]),
        Route("/_sim/stats", _stats, methods=["GET"]),
        Route("/_sim/requests", _requests, methods=["GET"]),
        Route("/_sim/reset", _reset, methods=["POST"]),
        Route("/_sim/latency", _latency, methods=["POST"]),
    ])
    app.state.sim = state if state is not None else SimState()
    return app
