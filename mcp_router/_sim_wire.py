"""What the simulated upstream shares across its formats: requests, answers, name knobs."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

Json = dict[str, Any]
_FILLER = " lorem ipsum dolor sit amet"


class BadRequest(ValueError):
    """The request breaks the vendor's schema; it is answered with a 400 in the vendor's shape."""


@dataclass(frozen=True)
class Prompt:
    """What one chat request asked for, whatever wire format it came in."""

    model: str
    texts: tuple[str, ...]
    last_user: str
    max_tokens: int | None = None
    stop: tuple[str, ...] = ()
    stream: bool = False
    include_usage: bool = False
    sse: bool = True


@dataclass(frozen=True)
class Answer:
    """The simulated completion and its usage, ready to be written in any format."""

    id: str
    model: str
    chunks: tuple[str, ...]
    finish: str  # "stop" | "length" | "stop_sequence"
    stop_sequence: str | None
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    usage: bool = True  # False: the `no-usage` knob (OpenAI wire only)

    @property
    def text(self) -> str:
        return "".join(self.chunks)


@dataclass(frozen=True)
class Frames:
    """A streamed answer split so that faults can drop its end: opening, deltas, terminal part."""

    head: tuple[bytes, ...]
    deltas: tuple[bytes, ...]
    tail: tuple[bytes, ...]
    media_type: str = "text/event-stream"


@dataclass(frozen=True)
class Knobs:
    """Faults and answer shapes asked for by the `+`-separated parts of a model name.

    Parts that are not knobs are ignored: `gpt-4o+slow-200` is gpt-4o answering after 200 ms.

        fail-<status>        always answer that status with the vendor's error body
        fail-<status>x<n>    the first n calls to this exact model name fail, later ones succeed
        retry-after-<s>      Retry-After seconds on a failure (429 sends 1 unless told)
        retry-after-date     send Retry-After as an HTTP date instead of seconds
        slow-<ms>            wait that long before the first byte
        drip-<ms>            wait that long between streamed deltas (a slow generation)
        hang                 never answer; wait until the client disconnects
        malformed            200 with a body (or an SSE data line) that is not JSON
        cut                  stop the stream before its terminal event; truncate a JSON body
        flaky-<pct>          answer 503 on pct% of calls, deterministically by call number
        tokens-<n>           an answer about n output tokens long
        cached-<n>           report n cached input tokens (capped at the input tokens)
        no-usage             OpenAI wire: send no usage, as compatible servers that ignore
                             stream_options do (no include_usage chunk, no JSON `usage`)
        grok-beta            404 with the vendor's not-found body (xAI retired it)
    """

    fail_status: int | None = None
    fail_times: int | None = None
    retry_after_s: int | None = None
    retry_after_date: bool = False
    slow_ms: int = 0
    drip_ms: int = 0
    hang: bool = False
    malformed: bool = False
    cut: bool = False
    flaky_pct: int = 0
    tokens: int | None = None
    cached: int = 0
    no_usage: bool = False
    retired: bool = False

    def failure(self, hit: int) -> int | None:
        """The status call number `hit` (from 1) of this model must fail with, if any."""
        if self.retired:
            return 404
        if self.fail_status and (self.fail_times is None or hit <= self.fail_times):
            return self.fail_status
        # Spreads exactly pct failures over every 100 calls, the same way on every run.
        if self.flaky_pct and (hit * self.flaky_pct) % 100 < self.flaky_pct:
            return 503
        return None


_KNOBS: tuple[tuple[re.Pattern[str], Callable[[re.Match[str]], dict[str, Any]]], ...] = (
    (re.compile(r"fail-(\d{3})(?:x(\d+))?"),
     lambda m: {"fail_status": int(m[1]), "fail_times": int(m[2]) if m[2] else None}),
    (re.compile(r"retry-after-date"), lambda m: {"retry_after_date": True}),
    (re.compile(r"retry-after-(\d+)"), lambda m: {"retry_after_s": int(m[1])}),
    (re.compile(r"slow-(\d+)"), lambda m: {"slow_ms": int(m[1])}),
    (re.compile(r"drip-(\d+)"), lambda m: {"drip_ms": int(m[1])}),
    (re.compile(r"flaky-(\d+)"), lambda m: {"flaky_pct": min(100, int(m[1]))}),
    (re.compile(r"tokens-(\d+)"), lambda m: {"tokens": int(m[1])}),
    (re.compile(r"cached-(\d+)"), lambda m: {"cached": int(m[1])}),
    (re.compile(r"hang|malformed|cut"), lambda m: {m[0]: True}),
    (re.compile(r"no-usage"), lambda m: {"no_usage": True}),
    (re.compile(r"(?:.*/)?grok-beta"), lambda m: {"retired": True}),
)


def parse_knobs(model: str) -> Knobs:
    """The knobs named by the parts of `model`; parts that are not knobs are ignored."""
    found: dict[str, Any] = {}
    for part in model.split("+"):
        for pattern, read in _KNOBS:
            if match := pattern.fullmatch(part):
                found |= read(match)
                break
    return Knobs(**found)


def estimate_tokens(text: str) -> int:
    """The simulator's token count for one text: a quarter of its characters, at least one."""
    return max(1, len(text) // 4)


def compose_answer(prompt: Prompt, answer_id: str, *, tokens: int | None = None,
                   cached: int = 0, usage: bool = True) -> Answer:
    """The deterministic answer to `prompt`, cut by its stop sequences and max_tokens."""
    text = f"Simulated answer from {prompt.model}: {prompt.last_user[:200]}"
    if tokens is not None:
        text = (text + _FILLER * (4 * tokens // len(_FILLER) + 1))[: 4 * tokens]
    finish, stop_sequence = "stop", None
    found = [(text.find(s), s) for s in prompt.stop if s and s in text]
    if found:
        index, stop_sequence = min(found)
        text, finish = text[:index], "stop_sequence"
    if prompt.max_tokens is not None and estimate_tokens(text) > prompt.max_tokens:
        text, finish = text[: 4 * prompt.max_tokens], "length"
    input_tokens = sum(estimate_tokens(t) for t in prompt.texts)
    return Answer(answer_id, prompt.model, _split(text), finish, stop_sequence, input_tokens,
                  estimate_tokens(text), min(cached, input_tokens), usage)


def _split(text: str, parts: int = 6) -> tuple[str, ...]:
    """Word-aligned pieces whose concatenation is exactly `text`."""
    words = text.split(" ")
    size = math.ceil(len(words) / parts)
    groups = [" ".join(words[i:i + size]) for i in range(0, len(words), size)]
    return tuple(g + " " for g in groups[:-1]) + (groups[-1],)


def text_of(content: object) -> str:
    """Text of a message content that is a string or a list of text blocks/parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p["text"] for p in content if isinstance(p, dict)
                       and isinstance(p.get("text"), str))
    return ""


def messages_of(items: object, field: str, content_key: str) -> tuple[tuple[str, ...], str]:
    """Texts of every message, and the last user message's text."""
    if not isinstance(items, list) or not items or not all(isinstance(m, dict) for m in items):
        raise BadRequest(f"{field}: must be a non-empty array of objects")
    texts = tuple(text_of(m.get(content_key)) for m in items)
    users = [t for m, t in zip(items, texts, strict=True) if m.get("role") == "user"]
    return texts, (users[-1] if users else "")


def stops_of(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    return tuple(s for s in value if isinstance(s, str)) if isinstance(value, list) else ()


def limit_of(value: object, field: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, int) and value > 0:
        return value
    raise BadRequest(f"{field}: must be a positive integer")


def object_of(body: Json, key: str) -> Json:
    value = body.get(key)
    return value if isinstance(value, dict) else {}


def model_of(body: Json) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("model: field required")
    return model


def sse_frame(data: Json | str, event: str | None = None, end: str = "\n\n") -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data)
    prefix = f"event: {event}\n" if event else ""
    return f"{prefix}data: {payload}{end}".encode()


class Wire(Protocol):
    """What the app needs from one vendor's wire format."""

    name: str
    id_prefix: str
    retry_after_ms: bool
    malformed_frame: bytes

    def header_problem(self, headers: Mapping[str, str]) -> str | None: ...
    def parse(self, body: Json, model: str, alt: str | None) -> Prompt: ...
    def answer(self, a: Answer) -> Json: ...
    def frames(self, a: Answer, prompt: Prompt) -> Frames: ...
    def error(self, status: int, message: str, retry_after: float | None) -> Json: ...
    def not_found(self, model: str) -> str: ...
    def models(self) -> Json: ...
