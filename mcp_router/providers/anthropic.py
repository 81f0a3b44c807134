"""The Anthropic /v1/messages wire; a stream is complete only at its `message_stop` event."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from mcp_router.messages import ChatRequest, Completion, Message, ModelList, Usage
from mcp_router.providers._adapter import (
    OVER_OUTPUT_CAP,
    REFUSAL,
    HttpAdapter,
    UpstreamError,
    Wire,
    WireError,
    error_body,
    loads_object,
    model_ids,
    read_usage,
    token_count,
)
from mcp_router.providers._http import Reclassified
from mcp_router.providers._sse import SseEvent
from mcp_router.providers._turns import CLOSING_USER_TURN

API_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 1024
"""The API requires `max_tokens`; a request that sets none gets this many."""

MAX_TEMPERATURE = 1.0
"""Anthropic accepts 0..1 where the neutral request allows 0..2; higher values are clamped,
so a request that suits other providers in a fallback chain does not fail here with a 400."""

# A Claude model id, as the API names it ("claude-opus-4-6", "claude-sonnet-4-5-20250929") or
# a gateway does ("anthropic/claude-opus-4.6", Bedrock's "anthropic.claude-opus-4-7-v1:0"):
# family, major and minor version. A date is no minor ("claude-opus-4-20250514" is 4.0).
_CLAUDE = re.compile(r"(?<![a-z0-9])claude-(opus|sonnet|haiku)-(\d+)(?:[.-](\d{1,2}))?(?!\d)")
_NO_PREFILL_SINCE = (4, 6)
"""Claude 4.6 and later refuse a conversation that ends with an assistant turn: 400 "This
model does not support assistant message prefill. The conversation must end with a user
message." (Anthropic, What's new in Claude 4.6, prefill removal)."""
_NO_SAMPLING_OPUS_SINCE = (4, 7)
"""Opus 4.7 and later refuse `temperature`, `top_p` and `top_k` with a 400 ("temperature is
deprecated for this model"); other families keep them until they are seen refused."""

_FINISH = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length",
           # the answer was cut where the context window ends: truncated, as by max_tokens
           "model_context_window_exceeded": "length", "refusal": REFUSAL}
_NO_CREDIT = "credit balance is too low"
# "max_tokens: 16000 > 4096, which is the maximum allowed number of output tokens for
# claude-3-haiku-20240307"
_OVER_OUTPUT_CAP = re.compile(r"max_tokens: \d+ > \d+, which is the maximum allowed number of "
                              r"output tokens")
_STATUS_BY_ERROR_TYPE = {
    "invalid_request_error": 400, "authentication_error": 401, "billing_error": 402,
    "permission_error": 403, "not_found_error": 404, "request_too_large": 413,
    "rate_limit_error": 429, "api_error": 500, "timeout_error": 504, "overloaded_error": 529,
}


def build_body(request: ChatRequest, model: str, stream: bool) -> dict[str, Any]:
    """System messages go to the top-level `system`; the rest must alternate roles.

    What Anthropic refuses with a 400 but other providers of a fallback chain take is
    adapted here, so the request does not end the route: see `_alternating`; blank stop
    sequences are left out and applied to the answer instead (`local_stops`); `top_p` is
    left out when a temperature is set; and Opus 4.7 and later get neither (`_refuses_sampling`).
    """
    body: dict[str, Any] = {
        "model": model,
        "max_tokens": request.max_tokens or DEFAULT_MAX_TOKENS,
        "messages": _alternating((m for m in request.messages if m.role != "system"),
                                 prefill=not _refuses_prefill(model)),
    }
    system = "\n\n".join(m.content for m in request.messages if m.role == "system")
    sampling = not _refuses_sampling(model)
    temperature = None if request.temperature is None or not sampling else min(
        request.temperature, MAX_TEMPERATURE)
    # "You should either alter temperature or top_p, but not both" (the Messages API docs),
    # and newer models (Sonnet 4.5, Opus 4.1) refuse both; the temperature is the one kept.
    top_p = request.top_p if temperature is None and sampling else None
    sent, _ = _split_stops(request)
    options = {"system": system or None, "temperature": temperature, "top_p": top_p,
               "stop_sequences": list(sent) or None}
    body.update({k: v for k, v in options.items() if v is not None})
    if stream:
        body["stream"] = True
    return body


def local_stops(request: ChatRequest, model: str) -> tuple[str, ...]:
    """The stop strings `build_body` leaves out, for the adapter to apply."""
    return _split_stops(request)[1]


def _split_stops(request: ChatRequest) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The request's stop strings as (sent upstream, applied locally): a whitespace-only one
    ("\n", the commonest) is refused with 400 "each stop sequence must contain
    non-whitespace", so it is applied to the answer instead. An empty one is no stop."""
    stop = request.stop or ()
    return (tuple(s for s in stop if s.strip()),
            tuple(s for s in stop if s and not s.strip()))


def _claude_version(model: str) -> tuple[str, tuple[int, int]] | None:
    """The family ("opus", "sonnet", "haiku") and (major, minor) version a model id names,
    or None for ids that name none (older "claude-3-5-sonnet", an alias of a gateway's)."""
    found = _CLAUDE.search(model)
    if found is None:
        return None
    family, major, minor = found.groups()
    return family, (int(major), int(minor or 0))


def _refuses_prefill(model: str) -> bool:
    """Whether `model` refuses a conversation that ends with the assistant (`_NO_PREFILL_SINCE`)."""
    named = _claude_version(model)
    return named is not None and named[1] >= _NO_PREFILL_SINCE


def _refuses_sampling(model: str) -> bool:
    """Whether `model` refuses `temperature` and `top_p` (`_NO_SAMPLING_OPUS_SINCE`)."""
    named = _claude_version(model)
    return named is not None and named[0] == "opus" and named[1] >= _NO_SAMPLING_OPUS_SINCE


def _alternating(messages: Iterable[Message], *, prefill: bool) -> list[dict[str, str]]:
    """Consecutive messages of one role merged into one, as the API demands alternation.

    Blank messages are left out before merging (the API takes empty content only in a final
    assistant turn, where it adds nothing). A final assistant turn is sent as a prefill,
    less its trailing whitespace, which the API refuses; for a model that refuses prefills
    it is followed by `CLOSING_USER_TURN`, as OpenAI-compatible APIs read such a history.
    """
    out: list[dict[str, str]] = []
    for message in messages:
        if not message.content.strip():
            continue
        if out and out[-1]["role"] == message.role:
            out[-1]["content"] += "\n\n" + message.content
        else:
            out.append({"role": message.role, "content": message.content})
    if out and out[-1]["role"] == "assistant":
        if prefill:
            out[-1]["content"] = out[-1]["content"].rstrip()
        else:
            out.append({"role": "user", "content": CLOSING_USER_TURN})
    return out


def parse_completion(data: dict[str, Any]) -> Completion:
    """A non-streamed message: its text blocks joined."""
    if data.get("type") == "error":
        raise _upstream_error(data)
    text = "".join(block.get("text") or "" for block in data["content"]
                   if block.get("type") == "text")
    usage = read_usage(data.get("usage"), _usage)
    return Completion(content=text, finish_reason=_finish_reason(data.get("stop_reason")),
                      usage=usage or Usage(), usage_reported=usage is not None,
                      upstream_model=data.get("model"))


class AnthropicStream:
    """Accumulates message_start / content_block_delta / message_delta up to message_stop."""

    def __init__(self) -> None:
        self._parts: list[str] = []
        self._usage: dict[str, Any] = {}
        self._counted = False  # message_delta's usage came: the output tokens are counted
        self._stop_reason: str | None = None
        self._model: str | None = None
        self._stopped = False

    def feed(self, event: SseEvent) -> str:
        data = loads_object(event.data)
        kind = data.get("type") or event.event
        if kind == "content_block_delta":
            delta = data["delta"]
            text = delta["text"] if delta.get("type") == "text_delta" else ""
            self._parts.append(text)
            return text
        if kind == "message_start":
            message = data["message"]
            self._model = message.get("model")
            self._merge_usage(message.get("usage"))
        elif kind == "message_delta":
            self._stop_reason = (data.get("delta") or {}).get("stop_reason") or self._stop_reason
            self._merge_usage(data.get("usage"))
            self._counted = self._counted or bool(data.get("usage"))
        elif kind == "message_stop":
            self._stopped = True
        elif kind == "error":
            raise _upstream_error(data)
        return ""

    def _merge_usage(self, usage: dict[str, Any] | None) -> None:
        # message_delta's usage is cumulative and may correct message_start's (gateways such
        # as OpenRouter send input_tokens 0 at the start and the real count at the end)
        self._usage.update({k: v for k, v in (usage or {}).items() if v is not None})

    def finish(self) -> Completion:
        if not self._stopped:
            raise WireError("stream cut: it ended before message_stop")
        return self._answer(usage_reported=bool(self._usage))

    def so_far(self) -> Completion:
        """The answer as read so far. message_start's usage counts the input but only the
        first output tokens, so before message_delta's count it is no usage report: the
        cost is then estimated from all the text read, as for a stream that reports none."""
        return self._answer(usage_reported=self._counted)

    def _answer(self, *, usage_reported: bool) -> Completion:
        usage = read_usage(self._usage, _usage) if usage_reported else None
        return Completion(content="".join(self._parts),
                          finish_reason=_finish_reason(self._stop_reason),
                          usage=usage or Usage(), usage_reported=usage is not None,
                          upstream_model=self._model)


def parse_error(status: int, body: str) -> str:
    """`{"type": "error", "error": {"type", "message"}}` → the message."""
    data = error_body(body)
    error = data.get("error") if data else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return str(error["message"])
    return body.strip()


def reclassify(status: int, body: str) -> Reclassified | None:
    """An empty credit balance, sent as 400 invalid_request_error, as 401; a `max_tokens` over
    the model's output cap, sent as 400 too, as `OVER_OUTPUT_CAP`.

    401 rather than 403: a 401 marks the whole provider misconfigured and a 403 only the one
    target, and no model of the account can be used until credit is bought. A cap this model
    cannot give is no fault of the request, which another target may take.
    """
    if status != 400:
        return None
    message = parse_error(status, body)
    if _NO_CREDIT in message.lower():
        return Reclassified(401, "credit balance too low")
    return OVER_OUTPUT_CAP if _OVER_OUTPUT_CAP.search(message) else None


def parse_models(body: object) -> ModelList | None:
    """`{"data": [{"id"}], "has_more"}`: a page, the whole list when `has_more` is false."""
    if not isinstance(body, dict):
        return None
    ids = model_ids(body.get("data"), "id")
    return None if ids is None else ModelList(ids, complete=not body.get("has_more"))


def _upstream_error(data: dict[str, Any]) -> UpstreamError:
    error = data.get("error") or {}
    status = _STATUS_BY_ERROR_TYPE.get(str(error.get("type")), 500)
    return UpstreamError(status, error.get("message") or error.get("type") or "stream error")


def _usage(raw: Mapping[str, Any]) -> Usage:
    """The `usage` object (`read_usage` reads it: a bad count makes it no report)."""
    # Anthropic's input_tokens EXCLUDES cache reads and cache writes; the neutral
    # input_tokens is every prompt token, with the cache reads as its cached subset
    cache_read = token_count(raw, "cache_read_input_tokens")
    cache_write = token_count(raw, "cache_creation_input_tokens")
    return Usage(input_tokens=token_count(raw, "input_tokens") + cache_read + cache_write,
                 output_tokens=token_count(raw, "output_tokens"), cached_input_tokens=cache_read)


def _finish_reason(value: str | None) -> str | None:
    return _FINISH.get(value, value.lower()) if value else None


class AnthropicAdapter(HttpAdapter):
    """POST {base_url}/v1/messages with `x-api-key` and `anthropic-version`.

    Probes GET {base_url}/v1/models?limit=1000.
    """

    wire = Wire(build_body, parse_completion, AnthropicStream, parse_error, parse_models,
                reclassify, local_stops=local_stops)
    default_headers = {"anthropic-version": API_VERSION}

    def url(self, model: str) -> str:
        return f"{self.base_url}/v1/messages"

    def probe_url(self) -> str:
        return f"{self.base_url}/v1/models?limit=1000"  # the most a page holds (default 20)

    def auth_headers(self) -> dict[str, str]:
        return {"x-api-key": self.api_key} if self.api_key else {}
