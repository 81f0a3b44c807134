"""What every adapter shares: its state from config, the one async call, and the wire vocabulary."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, ClassVar, Protocol, runtime_checkable
from urllib.parse import urlsplit, urlunsplit

import httpx

from mcp_router.config import ProviderConfig
from mcp_router.errors import ProviderNotConfigured, ProviderProtocolError, ProviderStatusError
from mcp_router.messages import ChatRequest, Completion, ModelList, TextFn, Usage
from mcp_router.provider_keys import Scrubber, provider_secrets
from mcp_router.providers._http import (
    AnswerReader,
    DelayReader,
    ErrorAnswer,
    ErrorParser,
    JsonReply,
    Reclassified,
    StatusReader,
    Upstream,
    as_sent,
    get_json,
    no_answer,
    no_body_delay,
    post,
)
from mcp_router.providers._sse import SseEvent
from mcp_router.providers._stops import LocalStops
from mcp_router.token_estimate import utf8_size

PROBE = "models"
"""What a probe's errors name in place of a model: the endpoint it asked."""

# Neutral finish reasons beyond "stop" and "length" (OpenAI's words, which every wire maps
# to): a provider's filter withheld or cut the answer, or the model itself declined.
CONTENT_FILTER = "content_filter"
REFUSAL = "refusal"

MAX_TOKEN_COUNT = 10**9
"""The most tokens one field of a usage report may count. No model reads or writes a billion
tokens in one call; a larger count is a gateway's garbage, which would price as a fortune (and
SQLite stores no integer past 2**63)."""

OVER_OUTPUT_CAP = Reclassified(413, "max_tokens over this model's limit")
"""A 400 refusing a `max_tokens` above the model's own output cap, as a wire's `reclassify`
reads it: the next target may take the request, and this one is not at fault, so the status
is one the fallback table moves on from without retrying or marking the target."""


class WireError(ValueError):
    """A pure wire function met a body it cannot read; `send` adds the provider and model."""


class UpstreamError(Exception):
    """An error the upstream reported inside a successful answer (an error event in a stream,
    a finish_reason that says it failed partway). `partial` is the text that came with the
    report: generated, and billed, though the answer failed; `billed` the usage the answer
    reported, when it is known to have been billed whole."""

    def __init__(self, status: int, message: str, partial: str = "",
                 billed: Usage | None = None) -> None:
        self.status, self.partial, self.billed = status, partial, billed
        super().__init__(message)


class UnreadableUsage(ValueError):
    """A usage report holds a count that is no token count (`token_count`)."""


def token_count(raw: Mapping[str, Any], *path: str) -> int:
    """The token count at `path` in a usage report (0 when it is absent or null).

    Raises `UnreadableUsage` for anything else than an integer from 0 to `MAX_TOKEN_COUNT`:
    a negative count would price as a refund and give a budget headroom, a bool is JSON's
    true or false, and a larger count no model gives."""
    value: object = raw  # a JSON object: a dict (the ABC check would cost as much again)
    for key in path:
        if value is None:
            return 0
        if not isinstance(value, dict):
            raise UnreadableUsage(f"{'.'.join(path)}: {value!r} is no object")
        value = value.get(key)
    if value is None:
        return 0
    if type(value) is not int or not 0 <= value <= MAX_TOKEN_COUNT:  # JSON's true is a bool
        raise UnreadableUsage(f"{'.'.join(path)}: {value!r} is no token count")
    return value


def read_usage(raw: object, read: Callable[[Mapping[str, Any]], Usage]) -> Usage | None:
    """The usage `read` makes of the report `raw` with `token_count`; None when there is no
    report, or one that is no object or holds a count that is no token count. Such an answer
    is then charged at an estimate, as one that reports none is: its text did arrive, and a
    bad count must neither fail it nor be believed."""
    if not raw or not isinstance(raw, dict):
        return None
    try:
        return read(raw)
    except UnreadableUsage:
        return None


class StreamAccumulator(Protocol):
    """Builds one `Completion` from a stream's events; one instance per call."""

    def feed(self, event: SseEvent) -> str:
        """Take one event and return its text delta ("" when it carries none)."""
        ...

    def finish(self) -> Completion:
        """The whole answer; raises `WireError` when the stream's terminal event never came."""
        ...


@runtime_checkable
class StopsEarly(StreamAccumulator, Protocol):
    """A `StreamAccumulator` whose answer can end at a local stop string: the stream of a wire
    with `local_stops`."""

    def so_far(self) -> Completion:
        """The answer as read so far, terminal event or not; its usage only if it came."""
        ...


def sends_every_stop(request: ChatRequest, model: str) -> tuple[str, ...]:
    """The `local_stops` of wires whose body carries all of a request's stop strings."""
    return ()


@dataclass(frozen=True)
class Wire:
    """The pure half of one wire protocol: neutral ↔ JSON, stream accumulation, error bodies.

    `local_stops(request, model)` names the stop strings `build_body` leaves out for that
    model; `send` cuts the answer at them instead, and ends a stream at them (so `new_stream`
    must make a `StopsEarly`). `body_delay` reads a wait an error body gives, for when no
    Retry-After header does. `blocked_prompt(status, body)` reads an error that is an answer:
    a prompt the provider's filter blocked, sent as a 400 by some vendors and as an empty
    "content_filter" answer by others, so that every wire gives the second.
    """

    build_body: Callable[[ChatRequest, str, bool], dict[str, Any]]
    parse_completion: Callable[[dict[str, Any]], Completion]
    new_stream: Callable[[], StreamAccumulator]
    parse_error: ErrorParser
    parse_models: Callable[[Any], ModelList | None]
    reclassify: StatusReader = as_sent
    body_delay: DelayReader = no_body_delay
    local_stops: Callable[[ChatRequest, str], tuple[str, ...]] = sends_every_stop
    blocked_prompt: AnswerReader = no_answer


def loads_object(text: str) -> dict[str, Any]:
    """One JSON object from an event's data; anything else is a `WireError`."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise WireError(f"malformed JSON in stream: {exc}") from exc
    if not isinstance(data, dict):
        raise WireError(f"malformed JSON in stream: expected an object, got {type(data).__name__}")
    return data


def model_ids(items: object, field: str, prefix: str = "") -> frozenset[str] | None:
    """The `field` of every object in `items` (less `prefix`), or None when `items` is not a
    list of such objects: a list-models answer this wire does not know."""
    if not isinstance(items, list):
        return None
    ids = [item.get(field) for item in items if isinstance(item, dict)]
    if len(ids) != len(items) or not all(isinstance(i, str) for i in ids):
        return None
    return frozenset(i.removeprefix(prefix) for i in ids if isinstance(i, str))


def error_body(body: str) -> dict[str, Any] | None:
    """The error body as a JSON object, or None when it is not one (an HTML page, plain text)."""
    try:
        data = json.loads(body)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


class HttpAdapter:
    """One provider's endpoint, key and headers; subclasses give the URL, auth and `wire`.

    Headers layer as `default_headers` < config `headers` < `auth_headers()`: config may
    override a default (say, a newer API version), but the auth header made from the key
    variable wins, as the key variable is the declared source of the credential.
    """

    wire: Wire  # a class's own, or one an instance picks for the vendor it talks to
    default_headers: ClassVar[dict[str, str]] = {}
    streams_by_default: ClassVar[bool] = True  # when the config says nothing of `stream`

    def __init__(self, provider: str, cfg: ProviderConfig, http: httpx.AsyncClient,
                 api_key: str | None) -> None:
        self.provider = provider
        self.http = http
        # A query in the base URL (`?key=…`, `?api-version=…`) goes after each path the wire
        # adds, not before it.
        base = urlsplit(cfg.base_url)
        self.base_url = urlunsplit(base._replace(query="")).rstrip("/")
        self._query = base.query
        self.headers = dict(cfg.headers)
        self.api_key = api_key or None
        self.api_key_env = cfg.api_key_env
        # Never in an error message: the key, and credentials in headers or the base URL.
        self._secrets = Scrubber([*([self.api_key] if self.api_key else []),
                                  *provider_secrets(cfg)])
        self.stream = self.streams_by_default if cfg.stream is None else cfg.stream
        self.timeout_s = cfg.timeout_s
        self.configured = (cfg.api_key_env is None and cfg.api_key_file is None) or \
            self.api_key is not None
        self._merged: dict[str, str] | None = None

    def url(self, model: str) -> str:
        """Where a request for `model` goes, for this adapter's `stream` setting."""
        raise NotImplementedError

    def auth_headers(self) -> dict[str, str]:
        """The headers that carry the key (empty without one)."""
        raise NotImplementedError

    def probe_url(self) -> str:
        """The wire's list-models endpoint: metadata only, so a probe never spends tokens."""
        raise NotImplementedError

    def key_probe_url(self) -> str | None:
        """An endpoint that checks the key, for a vendor whose list-models endpoint answers
        without one (None: the list-models GET checks the key itself)."""
        return None

    async def probe(self) -> ModelList | None:
        """One GET of the list-models endpoint with the key; never sends a completion. Where
        that list is public (`key_probe_url`), a GET of an endpoint that checks the key comes
        first, so a success still vouches for the key.

        Returns the models it named (None for an answer that is no list this wire knows).
        Raises what `send` raises for the same failure (401 for a wrong key, a timeout for a
        dead host); an unconfigured adapter raises `ProviderNotConfigured` without a request.
        """
        if not self.configured:
            raise ProviderNotConfigured(self.provider, PROBE, f"{self.api_key_env} is not set")
        key_url = self.key_probe_url()
        if key_url is not None:
            await self._get(key_url)  # its status says it all: the body is not read
        return self.wire.parse_models(await self._get(self.probe_url()))

    async def _get(self, url: str) -> Any:
        """GET one of the probe's endpoints with the key; its JSON body."""
        return await get_json(self.http, self._located(url),
                              headers=self._headers(), timeout_s=self.timeout_s,
                              upstream=Upstream(self.provider, PROBE, self._secrets),
                              parse_error=self.wire.parse_error,
                              reclassify=self.wire.reclassify, body_delay=self.wire.body_delay)

    def _located(self, url: str) -> str:
        """`url` with the base URL's own query added to whatever query the wire gave it."""
        if not self._query:
            return url
        return f"{url}{'&' if '?' in url else '?'}{self._query}"

    def _headers(self) -> dict[str, str]:
        """Every request's headers, layered once: nothing they are made of changes later."""
        if self._merged is None:
            self._merged = _merge_headers(_merge_headers(self.default_headers, self.headers),
                                          self.auth_headers())
        return self._merged

    async def send(self, request: ChatRequest, model: str,
                   on_text: TextFn | None = None) -> Completion:
        """One upstream call; never retries, raises only `ProviderError` subclasses.

        With `on_text`, each text delta is passed on as it arrives; when the upstream
        answers plain JSON, the whole text is passed on once. Stop strings the wire left out
        of the body are applied here: no text from the first one on is passed on or kept,
        and a stream is read no further (see `_drain`).
        """
        if not self.configured:
            raise ProviderNotConfigured(self.provider, model, f"{self.api_key_env} is not set")
        upstream = Upstream(self.provider, model, self._secrets)
        body = self.wire.build_body(request, model, self.stream)
        stops = LocalStops(self.wire.local_stops(request, model))
        reading = _Reading(upstream)
        async with post(self.http, self._located(self.url(model)), headers=self._headers(),
                        body=body, timeout_s=self.timeout_s, upstream=upstream,
                        parse_error=self.wire.parse_error, reclassify=self.wire.reclassify,
                        body_delay=self.wire.body_delay,
                        answer_error=self.wire.blocked_prompt) as reply:
            if isinstance(reply, ErrorAnswer):
                return reply.answer  # a blocked prompt (`Wire.blocked_prompt`)
            if isinstance(reply, JsonReply):
                completion = await self._parse(reply.data, reading, on_text, stops)
            else:
                completion = await self._drain(reply.events, reading, on_text, stops)
        with reading:
            _answered(completion)
        completion.ttfb_ms = reply.ttfb_ms  # a new object of this call's own: no copy needed
        return completion

    async def _parse(self, data: dict[str, Any], reading: _Reading, on_text: TextFn | None,
                     stops: LocalStops) -> Completion:
        """The JSON answer, passed on whole. One that says the upstream failed partway still
        passes on the text it carried before the failure is raised, as a stream passes on its
        deltas before an error event: the upstream billed that text, and a failed attempt is
        charged for the text passed on."""
        try:
            with reading:
                completion = _stopped(self.wire.parse_completion(data), stops)
        except ProviderStatusError as error:
            if on_text is not None and _partial(error):
                await on_text(stops.before(_partial(error)))
            raise
        if on_text is not None and completion.content:
            await on_text(completion.content)
        return completion

    async def _drain(self, events: AsyncIterator[SseEvent], reading: _Reading,
                     on_text: TextFn | None, stops: LocalStops) -> Completion:
        """The streamed answer. At a local stop string it is complete, as an upstream's own
        stop would end it: reading ends there and `post` closes the stream, so the upstream
        (which never saw the stop) stops generating and billing, and nothing it sends after
        (a tail past the timeout, a cut, a bad chunk) can fail the answer. Its usage counts
        if it came already; otherwise it is estimated from all the text read."""
        accumulator = self.wire.new_stream()
        held = stops.passing(on_text) if stops else None
        passing = held or on_text  # no stop to hold text back for: deltas go straight on
        async for event in events:
            try:
                with reading:
                    delta = accumulator.feed(event)
            except ProviderStatusError as error:  # the text of the failing chunk counts too
                if passing is not None and _partial(error):
                    await passing(_partial(error))
                raise
            if delta and passing is not None:
                await passing(delta)
                if held is not None and held.stopped:
                    with reading:
                        completion = _read_so_far(accumulator)
                    return _stopped(completion, stops)
        with reading:
            completion = accumulator.finish()
        if held is not None:
            await held.flush()
        return completion


def _answered(completion: Completion) -> None:
    """Raises the upstream failure an answer with no text and no finish reason is: a 200 that
    ended (a Gemini body with no candidate, a stream of only [DONE], or only message_start and
    message_stop) without answering or saying why. A 502, retried and then the next target, as
    `gemini._finish_reason` makes an empty answer ended for a reason it does not name; an empty
    answer that says why it ended ("stop", "content_filter") is an answer. The usage it
    reported, if any, was billed."""
    if completion.finish_reason is None and not completion.content.strip():
        raise UpstreamError(502, "no answer: the upstream's answer had no text and no finish "
                            "reason", billed=completion.usage if completion.usage_reported
                            else None)


def _partial(error: ProviderStatusError) -> str:
    """The text an in-band failure report came with (`UpstreamError.partial`), if any."""
    cause = error.__cause__
    return cause.partial if isinstance(cause, UpstreamError) else ""


def _read_so_far(accumulator: StreamAccumulator) -> Completion:
    if not isinstance(accumulator, StopsEarly):  # a wire's bug, so not one `_Reading` takes
        raise NotImplementedError(f"{type(accumulator).__name__} cannot end at a stop string")
    return accumulator.so_far()


def _stopped(completion: Completion, stops: LocalStops) -> Completion:
    """`completion` cut at its first local stop string, finished by "stop" as an upstream's
    own stop would be (a refusal stays one); unchanged when it holds none. The size of the
    uncut text stays on it: the upstream generated, and bills, all of it."""
    text = completion.content
    content = stops.cut(text) if stops else None
    if content is None:
        return completion
    reason = REFUSAL if completion.finish_reason == REFUSAL else "stop"
    return completion.model_copy(update={
        "content": content, "finish_reason": reason, "generated_chars": len(text),
        "generated_utf8_bytes": utf8_size(text)})


def _merge_headers(base: dict[str, str], override: dict[str, str]) -> dict[str, str]:
    """`base` then `override`, matching names case-insensitively as HTTP does."""
    overridden = {name.lower() for name in override}
    return {**{k: v for k, v in base.items() if k.lower() not in overridden}, **override}


class _Reading:
    """Translates what the pure wire functions raise into the provider error tree.

    Lookup and type errors mean a body of the wrong shape (a missing key, a string where
    an object belongs); only the pure parsing runs under this, so no caller bug hides here.
    One instance serves every event of a call (a class, not a generator: it is entered
    once per streamed event).
    """

    __slots__ = ("_upstream",)

    def __init__(self, upstream: Upstream) -> None:
        self._upstream = upstream

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        upstream = self._upstream
        if isinstance(exc, UpstreamError):
            raise ProviderStatusError(upstream.provider, upstream.model, exc.status,
                                      upstream.clean(str(exc)), billed=exc.billed) from exc
        if isinstance(exc, WireError):
            raise ProviderProtocolError(upstream.provider, upstream.model,
                                        upstream.clean(str(exc))) from exc
        if isinstance(exc, ValueError | LookupError | TypeError | AttributeError):
            raise ProviderProtocolError(upstream.provider, upstream.model, upstream.clean(
                f"unexpected response shape: {type(exc).__name__}: {exc}")) from exc
