"""How the simulated upstream reads requests and writes answers: vendor formats, name knobs."""

from __future__ import annotations

import json
import math
import re
import time
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
                   cached: int = 0) -> Answer:
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
                  estimate_tokens(text), min(cached, input_tokens))


def _split(text: str, parts: int = 6) -> tuple[str, ...]:
    """Word-aligned pieces whose concatenation is exactly `text`."""
    words = text.split(" ")
    size = math.ceil(len(words) / parts)
    groups = [" ".join(words[i:i + size]) for i in range(0, len(words), size)]
    return tuple(g + " " for g in groups[:-1]) + (groups[-1],)


def _text_of(content: object) -> str:
    """Text of a message content that is a string or a list of text blocks/parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p["text"] for p in content if isinstance(p, dict)
                       and isinstance(p.get("text"), str))
    return ""


def _messages(items: object, field: str, content_key: str) -> tuple[tuple[str, ...], str]:
    """Texts of every message, and the last user message's text."""
    if not isinstance(items, list) or not items or not all(isinstance(m, dict) for m in items):
        raise BadRequest(f"{field}: must be a non-empty array of objects")
    texts = tuple(_text_of(m.get(content_key)) for m in items)
    users = [t for m, t in zip(items, texts, strict=True) if m.get("role") == "user"]
    return texts, (users[-1] if users else "")


def _stops(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    return tuple(s for s in value if isinstance(s, str)) if isinstance(value, list) else ()


def _limit(value: object, field: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, int) and value > 0:
        return value
    raise BadRequest(f"{field}: must be a positive integer")


def _object(body: Json, key: str) -> Json:
    value = body.get(key)
    return value if isinstance(value, dict) else {}


def _model(body: Json) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("model: field required")
    return model


def _sse(data: Json | str, event: str | None = None, end: str = "\n\n") -> bytes:
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


class OpenAIWire:
    """OpenAI chat completions, also spoken by OpenRouter, DeepSeek, Together, xAI and others."""

    name = "openai"
    listed = ("gpt-4o-mini", "gpt-4o", "gpt-3.5-turbo")
    id_prefix = "chatcmpl-sim"
    retry_after_ms = True
    malformed_frame = b'data: {"id": "chatcmpl-sim", "choices": [{"delta": \n\n'
    _finish = {"stop": "stop", "stop_sequence": "stop", "length": "length"}
    _types = {400: ("invalid_request_error", None),
              401: ("invalid_request_error", "invalid_api_key"),
              403: ("invalid_request_error", "unsupported_country_region_territory"),
              404: ("invalid_request_error", "model_not_found"),
              429: ("requests", "rate_limit_exceeded")}

    def header_problem(self, headers: Mapping[str, str]) -> str | None:
        return None

    def parse(self, body: Json, model: str, alt: str | None) -> Prompt:
        texts, last_user = _messages(body.get("messages"), "messages", "content")
        return Prompt(_model(body), texts, last_user,
                      _limit(body.get("max_completion_tokens", body.get("max_tokens")),
                             "max_tokens"),
                      _stops(body.get("stop")), bool(body.get("stream")),
                      bool(_object(body, "stream_options").get("include_usage")))

    def _usage(self, a: Answer) -> Json:
        return {"prompt_tokens": a.input_tokens, "completion_tokens": a.output_tokens,
                "total_tokens": a.input_tokens + a.output_tokens,
                "prompt_tokens_details": {"cached_tokens": a.cached_tokens, "audio_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0}}

    def _base(self, a: Answer, kind: str) -> Json:
        return {"id": a.id, "object": kind, "created": int(time.time()), "model": a.model,
                "system_fingerprint": "fp_simulated"}

    def answer(self, a: Answer) -> Json:
        message = {"role": "assistant", "content": a.text, "refusal": None}
        choice = {"index": 0, "message": message, "logprobs": None,
                  "finish_reason": self._finish[a.finish]}
        return self._base(a, "chat.completion") | {"choices": [choice], "usage": self._usage(a)}

    def frames(self, a: Answer, prompt: Prompt) -> Frames:
        def chunk(delta: Json, finish: str | None = None) -> bytes:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            usage = {"usage": None} if prompt.include_usage else {}
            return _sse(self._base(a, "chat.completion.chunk") | {"choices": [choice]} | usage)

        usage = self._base(a, "chat.completion.chunk") | {"choices": [], "usage": self._usage(a)}
        tail = [chunk({}, self._finish[a.finish])]
        tail += [_sse(usage)] if prompt.include_usage else []
        return Frames((chunk({"role": "assistant", "content": "", "refusal": None}),),
                      tuple(chunk({"content": c}) for c in a.chunks),
                      (*tail, _sse("[DONE]")))

    def error(self, status: int, message: str, retry_after: float | None) -> Json:
        kind, code = self._types.get(status, ("server_error" if status >= 500
                                              else "invalid_request_error", None))
        return {"error": {"message": message, "type": kind, "param": None, "code": code}}

    def not_found(self, model: str) -> str:
        return f"The model `{model}` does not exist or you do not have access to it."

    def models(self) -> Json:
        return {"object": "list", "data": [{"id": n, "object": "model", "created": 1700000000,
                                            "owned_by": "simulator"} for n in self.listed]}


class AnthropicWire:
    """Anthropic Messages API."""

    name = "anthropic"
    listed = ("claude-3-5-haiku-latest", "claude-sonnet-4-5")
    id_prefix = "msg_sim"
    retry_after_ms = False
    malformed_frame = (b'event: content_block_delta\n'
                       b'data: {"type": "content_block_delta", "index": 0, "delta": {\n\n')
    _stop = {"stop": "end_turn", "length": "max_tokens", "stop_sequence": "stop_sequence"}
    _types = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
              404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error",
              500: "api_error", 503: "overloaded_error", 504: "timeout_error",
              529: "overloaded_error"}

    def header_problem(self, headers: Mapping[str, str]) -> str | None:
        return None if "anthropic-version" in headers else "anthropic-version: header is required"

    def parse(self, body: Json, model: str, alt: str | None) -> Prompt:
        model = _model(body)
        if not isinstance(body.get("max_tokens"), int):
            raise BadRequest("max_tokens: Field required")
        texts, last_user = _messages(body.get("messages"), "messages", "content")
        system = _text_of(body.get("system"))
        return Prompt(model, ((system,) if system else ()) + texts, last_user,
                      body["max_tokens"], _stops(body.get("stop_sequences")),
                      bool(body.get("stream")))

    def _usage(self, a: Answer, output_tokens: int) -> Json:
        # Anthropic's input_tokens excludes cache reads: the three counts add up to the prompt.
        return {"input_tokens": a.input_tokens - a.cached_tokens,
                "cache_creation_input_tokens": 0, "cache_read_input_tokens": a.cached_tokens,
                "output_tokens": output_tokens}

    def _message(self, a: Answer, content: list[Json], stop: str | None, out: int) -> Json:
        return {"id": a.id, "type": "message", "role": "assistant", "model": a.model,
                "content": content, "stop_reason": stop,
                "stop_sequence": a.stop_sequence if stop else None, "usage": self._usage(a, out)}

    def answer(self, a: Answer) -> Json:
        return self._message(a, [{"type": "text", "text": a.text}], self._stop[a.finish],
                             a.output_tokens)

    def frames(self, a: Answer, prompt: Prompt) -> Frames:
        def event(name: str, **data: Any) -> bytes:
            return _sse({"type": name, **data}, event=name)

        stop = self._stop[a.finish]
        head = (event("message_start", message=self._message(a, [], None, 1)),
                event("content_block_start", index=0, content_block={"type": "text", "text": ""}),
                event("ping"))
        deltas = tuple(event("content_block_delta", index=0,
                             delta={"type": "text_delta", "text": c}) for c in a.chunks)
        tail = (event("content_block_stop", index=0),
                event("message_delta", delta={"stop_reason": stop,
                                              "stop_sequence": a.stop_sequence},
                      usage={"output_tokens": a.output_tokens}),
                event("message_stop"))
        return Frames(head, deltas, tail)

    def error(self, status: int, message: str, retry_after: float | None) -> Json:
        kind = self._types.get(status, "api_error" if status >= 500 else "invalid_request_error")
        return {"type": "error", "error": {"type": kind, "message": message}}

    def not_found(self, model: str) -> str:
        return f"model: {model}"

    def models(self) -> Json:
        data = [{"type": "model", "id": n, "display_name": n.replace("-", " ").title(),
                 "created_at": "2025-01-01T00:00:00Z"} for n in self.listed]
        return {"data": data, "has_more": False, "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None}


class GeminiWire:
    """Google Gemini generateContent / streamGenerateContent (v1beta)."""

    name = "gemini"
    listed = ("gemini-2.0-flash", "gemini-2.5-pro")
    id_prefix = "sim-"
    retry_after_ms = False
    malformed_frame = b'data: {"candidates": [{"content": \r\n\r\n'
    _finish = {"stop": "STOP", "stop_sequence": "STOP", "length": "MAX_TOKENS"}
    _status = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
               404: "NOT_FOUND", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL",
               503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}

    def header_problem(self, headers: Mapping[str, str]) -> str | None:
        return None

    def parse(self, body: Json, model: str, alt: str | None) -> Prompt:
        texts, last_user = _messages(body.get("contents"), "contents", "parts")
        system = _text_of(_object(body, "systemInstruction").get("parts"))
        config = _object(body, "generationConfig")
        return Prompt(model, ((system,) if system else ()) + texts, last_user,
                      _limit(config.get("maxOutputTokens"), "maxOutputTokens"),
                      _stops(config.get("stopSequences")),
                      sse=alt == "sse")

    def _usage(self, a: Answer, output_tokens: int) -> Json:
        usage = {"promptTokenCount": a.input_tokens, "candidatesTokenCount": output_tokens,
                 "totalTokenCount": a.input_tokens + output_tokens}
        # Gemini leaves zero-valued fields out of its JSON.
        return usage | ({"cachedContentTokenCount": a.cached_tokens} if a.cached_tokens else {})

    def _response(self, a: Answer, text: str, finish: str | None, output_tokens: int) -> Json:
        candidate: Json = {"content": {"parts": [{"text": text}], "role": "model"}, "index": 0}
        candidate |= {"finishReason": finish} if finish else {}
        return {"candidates": [candidate], "usageMetadata": self._usage(a, output_tokens),
                "modelVersion": a.model, "responseId": a.id}

    def answer(self, a: Answer) -> Json:
        return self._response(a, a.text, self._finish[a.finish], a.output_tokens)

    def frames(self, a: Answer, prompt: Prompt) -> Frames:
        # Every chunk repeats usageMetadata with running counts; only the last has finishReason.
        seen, bodies = "", []
        for index, piece in enumerate(a.chunks):
            seen += piece
            last = index == len(a.chunks) - 1
            bodies.append(self._response(a, piece, self._finish[a.finish] if last else None,
                                         a.output_tokens if last else estimate_tokens(seen)))
        if prompt.sse:
            encoded = [_sse(b, end="\r\n\r\n") for b in bodies]
            return Frames((), tuple(encoded[:-1]), (encoded[-1],))
        # Without alt=sse the stream is one JSON array, written element by element.
        parts = [json.dumps(b).encode() for b in bodies]
        return Frames((b"[",), tuple(p + b",\r\n" for p in parts[:-1]), (parts[-1] + b"]",),
                      media_type="application/json")

    def error(self, status: int, message: str, retry_after: float | None) -> Json:
        error: Json = {"code": status, "message": message,
                       "status": self._status.get(status, "INTERNAL" if status >= 500
                                                  else "FAILED_PRECONDITION")}
        if status == 429 and retry_after is not None:
            error["details"] = [{"@type": "type.googleapis.com/google.rpc.RetryInfo",
                                 "retryDelay": f"{retry_after:g}s"}]
        return {"error": error}

    def not_found(self, model: str) -> str:
        return (f"models/{model} is not found for API version v1beta, or is not supported "
                "for generateContent.")

    def models(self) -> Json:
        return {"models": [{"name": f"models/{n}", "version": "simulated",
                            "displayName": n.replace("-", " ").title(),
                            "inputTokenLimit": 1048576, "outputTokenLimit": 8192,
                            "supportedGenerationMethods": ["generateContent", "countTokens"]}
                           for n in self.listed]}
