"""The only place that catches httpx errors: POST JSON or GET metadata; return JSON or SSE."""

from __future__ import annotations

import json
import math
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from typing import Any

import anyio
import httpx

from mcp_router.errors import (
    ProviderNotConfigured,
    ProviderProtocolError,
    ProviderStatusError,
    ProviderTimeout,
    ProviderUnavailable,
)
from mcp_router.messages import Completion
from mcp_router.provider_keys import Scrubber
from mcp_router.providers._sse import SseEvent, SseParser

ErrorParser = Callable[[int, str], str]
"""Extracts a human message from an error body: `(status, body text) -> message`."""


@dataclass(frozen=True)
class Reclassified:
    """The status an error body means when it is not the one sent, and the body's word for why."""

    status: int
    why: str


StatusReader = Callable[[int, str], Reclassified | None]
"""Reads an error body for a status other than the one sent: `(status, body) -> Reclassified`,
or None to keep it. Some vendors send account problems (a wrong key, no credit) as 400,
which the fallback table reads as "the request is wrong" and ends the route on."""


def as_sent(status: int, body: str) -> Reclassified | None:
    """The `StatusReader` of wires whose statuses mean what they say."""
    return None


DelayReader = Callable[[int, str], float | None]
"""Reads the seconds to wait that an error body gives: `(status, body) -> seconds`, or None.
Some vendors (Gemini) say when to come back only in the body, never in a Retry-After header."""


def no_body_delay(status: int, body: str) -> float | None:
    """The `DelayReader` of wires that give a delay only in headers."""
    return None


_MAX_MESSAGE = 500


@dataclass(frozen=True)
class Upstream:
    """Who an exchange is with, for error messages, and the credentials (the key, a secret
    header's value) that must never appear in one."""

    provider: str
    model: str
    secrets: Scrubber | None = None

    def clean(self, text: str) -> str:
        """`text` without the credentials, then cut short (in that order, so no prefix of one
        survives)."""
        if self.secrets:
            text = self.secrets.scrub(text)
        return text if len(text) <= _MAX_MESSAGE else text[:_MAX_MESSAGE] + "..."


@dataclass(frozen=True)
class JsonReply:
    """A successful answer whose body was one JSON object."""

    data: dict[str, Any]
    ttfb_ms: float


@dataclass(frozen=True)
class SseReply:
    """A successful answer streamed as server-sent events; iterate `events` inside `post`."""

    events: AsyncIterator[SseEvent]
    ttfb_ms: float


@dataclass(frozen=True)
class ErrorAnswer:
    """An error status whose body is an answer after all (`post`'s `answer_error`): a prompt a
    vendor's filter blocked, which others answer as an empty "content_filter" completion."""

    answer: Completion
    ttfb_ms: float


Reply = JsonReply | SseReply | ErrorAnswer

AnswerReader = Callable[[int, str], Completion | None]
"""Reads an error body as the answer it stands for: `(status, body) -> answer`, or None."""


def no_answer(status: int, body: str) -> Completion | None:
    """The `AnswerReader` of wires whose error statuses are all failures."""
    return None


@asynccontextmanager
async def post(http: httpx.AsyncClient, url: str, *, headers: Mapping[str, str],
               body: dict[str, Any], timeout_s: float, upstream: Upstream,
               parse_error: ErrorParser, reclassify: StatusReader = as_sent,
               body_delay: DelayReader = no_body_delay,
               answer_error: AnswerReader = no_answer) -> AsyncIterator[Reply]:
    """POST `body` as JSON and yield the reply, chosen by the response's content type.

    The content type decides, not what was asked for, so a server that answers a stream
    request with plain JSON still works. `ttfb_ms` is the time until the response headers
    arrived. An error status is raised, unless `answer_error` reads its body as an answer
    (`ErrorAnswer`). Raises only `ProviderError` subclasses, also while `events` is iterated.
    """
    start = anyio.current_time()
    response = await _send(http, "POST", url, headers, body, timeout_s, upstream)
    ttfb_ms = (anyio.current_time() - start) * 1000
    events: AsyncGenerator[SseEvent, None] | None = None
    try:
        if response.status_code >= 400:
            text = await _error_body(response)
            answer = answer_error(response.status_code, text)
            if answer is not None:
                yield ErrorAnswer(answer, ttfb_ms)
                return
            raise _status_error(response, text, upstream, parse_error, reclassify, body_delay)
        if _is_event_stream(response):
            events = _events(response, upstream)
            yield SseReply(events, ttfb_ms)
        else:
            yield JsonReply(await _read_json(response, upstream), ttfb_ms)
    finally:
        if events is not None:
            await events.aclose()
        await response.aclose()


async def get_json(http: httpx.AsyncClient, url: str, *, headers: Mapping[str, str],
                   timeout_s: float, upstream: Upstream, parse_error: ErrorParser,
                   reclassify: StatusReader = as_sent,
                   body_delay: DelayReader = no_body_delay) -> Any:
    """GET `url` and return its JSON body, an object or an array (Together lists its models
    as a bare array); raises only `ProviderError` subclasses."""
    response = await _send(http, "GET", url, headers, None, timeout_s, upstream)
    try:
        if response.status_code >= 400:
            raise _status_error(response, await _error_body(response), upstream, parse_error,
                                reclassify, body_delay)
        return await _read_any_json(response, upstream)
    finally:
        await response.aclose()


async def _send(http: httpx.AsyncClient, method: str, url: str, headers: Mapping[str, str],
                body: dict[str, Any] | None, timeout_s: float,
                upstream: Upstream) -> httpx.Response:
    """Send and wait for the response headers; failures here mean nothing was answered.

    A header value httpx cannot encode (a key pasted with a typographic quote, which the
    config checks refuse at load) is the provider's config, not a bug: nothing is sent, and
    the route moves on to its next target."""
    try:
        request = http.build_request(method, url, json=body, headers=dict(headers),
                                     timeout=_timeout(http, timeout_s))
        return await http.send(request, stream=True)
    except UnicodeEncodeError as exc:
        if exc.object not in headers.values():
            raise  # not a header: the body is made of well-formed text, so a bug
        char = (f"the character U+{ord(exc.object[exc.start]):04X}"
                if exc.start < len(exc.object) else "a character")
        raise ProviderNotConfigured(upstream.provider, upstream.model, (
            f"a header (its key or one from the config) holds {char}, which an HTTP header "
            "cannot carry: set it again in plain ASCII")) from exc
    except (httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
        # Not sent: no connection was had, so the upstream cannot have billed the request.
        raise ProviderUnavailable(upstream.provider, upstream.model,
                                  upstream.clean(f"cannot reach upstream: {exc!r}")) from exc
    except httpx.TimeoutException as exc:
        raise ProviderTimeout(upstream.provider, upstream.model,
                              upstream.clean(f"no answer within {timeout_s:g}s: {exc!r}")) from exc
    except (httpx.TransportError, httpx.InvalidURL) as exc:
        raise ProviderUnavailable(upstream.provider, upstream.model,
                                  upstream.clean(f"cannot reach upstream: {exc!r}")) from exc


def _timeout(http: httpx.AsyncClient, timeout_s: float) -> httpx.Timeout:
    """Per-attempt limits: `timeout_s` for each read, write and pool wait.

    Connecting keeps the shared client's shorter limit, so a dead host fails fast and the
    next target still gets its time.
    """
    connect = http.timeout.connect
    connect = timeout_s if connect is None else min(connect, timeout_s)
    return httpx.Timeout(timeout_s, connect=connect)


def _is_event_stream(response: httpx.Response) -> bool:
    media_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
    return media_type == "text/event-stream"


async def _error_body(response: httpx.Response) -> str:
    """An error response's body as text; "" when it is lost on the way (the status alone is
    the answer then, and a lost body adds nothing)."""
    try:
        return (await response.aread()).decode("utf-8", errors="replace")
    except (httpx.TransportError, httpx.DecodingError):
        return ""


def _status_error(response: httpx.Response, text: str, upstream: Upstream,
                  parse_error: ErrorParser, reclassify: StatusReader,
                  body_delay: DelayReader) -> ProviderStatusError:
    """The error for a response with an error status and body `text`; the status is the one
    its body means, and the message keeps the one sent (`HTTP 401: sent as HTTP 400
    (API_KEY_INVALID): …`). The wait is the headers' Retry-After, else the one the body
    gives."""
    status = response.status_code
    message = parse_error(status, text).strip() or _reason(status)
    retry_after = parse_retry_after(response.headers, time.time())
    if retry_after is None:
        retry_after = body_delay(status, text)
    meant = reclassify(status, text)
    if meant is not None:
        message, status = f"sent as HTTP {status} ({meant.why}): {message}", meant.status
    return ProviderStatusError(upstream.provider, upstream.model, status, upstream.clean(message),
                               retry_after=retry_after)


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "error"


async def _read_json(response: httpx.Response, upstream: Upstream) -> dict[str, Any]:
    data = await _read_any_json(response, upstream)
    if not isinstance(data, dict):
        raise ProviderProtocolError(upstream.provider, upstream.model,
                                    f"malformed JSON body: expected an object, got "
                                    f"{type(data).__name__}")
    return data


async def _read_any_json(response: httpx.Response, upstream: Upstream) -> Any:
    try:
        raw = await response.aread()
    except httpx.TimeoutException as exc:
        raise ProviderTimeout(upstream.provider, upstream.model,
                              upstream.clean(f"body stalled: {exc!r}")) from exc
    except (httpx.TransportError, httpx.DecodingError) as exc:
        raise ProviderProtocolError(upstream.provider, upstream.model,
                                    upstream.clean(f"body cut: {exc!r}")) from exc
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise ProviderProtocolError(upstream.provider, upstream.model,
                                    upstream.clean(f"malformed JSON body: {exc}")) from exc
    return data


async def _events(response: httpx.Response,
                  upstream: Upstream) -> AsyncGenerator[SseEvent, None]:
    """The response's events; a connection that dies here is a cut stream, never an end."""
    parser = SseParser()
    try:
        async for chunk in response.aiter_bytes():
            for event in parser.feed(chunk):
                yield event
        for event in parser.close():
            yield event
    except httpx.TimeoutException as exc:
        raise ProviderTimeout(upstream.provider, upstream.model,
                              upstream.clean(f"stream stalled: {exc!r}")) from exc
    except (httpx.TransportError, httpx.DecodingError) as exc:
        raise ProviderProtocolError(upstream.provider, upstream.model,
                                    upstream.clean(f"stream cut: {exc!r}")) from exc


def parse_retry_after(headers: Mapping[str, str], now: float) -> float | None:
    """Seconds to wait from `retry-after-ms`, else `Retry-After` (seconds or an HTTP date).

    `now` is epoch seconds, for the date form. A date in the past gives 0; a header that is
    absent, negative or unreadable gives None.
    """
    millis = _non_negative(headers.get("retry-after-ms"))
    if millis is not None:
        return millis / 1000
    value = headers.get("retry-after")
    if value is None:
        return None
    seconds = _non_negative(value)
    if seconds is not None:
        return seconds
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # "-0000" means UTC with unknown origin; still UTC
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


def _non_negative(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None
