"""The OpenAI-compatible /chat/completions wire: OpenRouter, OpenAI, DeepSeek, Together, xAI, vLLM.

A stream counts as complete at `data: [DONE]` or, for servers that omit it, at a clean end
after a chunk that carried a `finish_reason`. A stream that ends without either is cut.
Perplexity's sources are appended to the answer, and it gets conversations in the shape it
takes (`perplexity_body`; the rules are in `providers/perplexity.py`); deepseek-reasoner gets
the user's turn first and last (`_turns.edged`), as Perplexity does.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

import httpx

from mcp_router.config import ProviderConfig
from mcp_router.messages import ChatRequest, Completion, Message, ModelList, Usage
from mcp_router.providers._adapter import (
    CONTENT_FILTER,
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
from mcp_router.providers._turns import edged
from mcp_router.providers.perplexity import is_perplexity, sources, systems_first

OPENROUTER_HOST = "openrouter.ai"

# OpenAI's reasoning models, called by their own ids ("o3-mini", "gpt-5.1"), refuse
# `max_tokens` with a 400 ("Use 'max_completion_tokens' instead"). A vendor prefix
# ("openai/o3") means a gateway such as OpenRouter, which takes `max_tokens` and translates.
_COMPLETION_TOKENS_MODEL = re.compile(r"(?:o1|o3|o4|gpt-5)(?![0-9a-z])")

# xAI's reasoning models refuse `stop` with a 400 (docs.x.ai, Guides › Reasoning: "presencePenalty,
# frequencyPenalty and stop parameters are not supported by reasoning models"); they take
# `max_tokens` and `temperature` as the others do. "grok-4-fast-non-reasoning" is not one.
_NO_STOP_MODEL = re.compile(r"grok-(?:4(?![0-9])|3-mini|code-fast)(?!.*-non-reasoning)")

# DeepSeek's reasoner refuses a history whose first turn after the system messages, or whose
# last, is the assistant's (400 "The first message (except the system message) of
# deepseek-reasoner must be a user message…", "The last message of deepseek-reasoner must be a
# user message…"). Only DeepSeek's own API takes this id; gateways name the model otherwise
# (OpenRouter's "deepseek/deepseek-r1", Together's "deepseek-ai/DeepSeek-R1") and their rules
# are not DeepSeek's, so those ids are sent the history as given.
_USER_EDGED_MODEL = "deepseek-reasoner"

# A cap on output tokens the model cannot give, which another target may take: DeepSeek's
# "Invalid max_tokens value, the valid range of max_tokens is [1, 8192]", OpenAI's "max_tokens
# is too large: 16000. This model supports at most 4096 completion tokens…" (also for
# max_completion_tokens). vLLM's "… is too large: … maximum context length" is not matched.
_OVER_OUTPUT_CAP = re.compile(
    r"invalid max_tokens value, the valid range of max_tokens is \[|"
    r"max_(?:completion_)?tokens is too large: \d+\. this model supports at most \d+")

MAX_STOP = 4
"""Chat Completions takes at most this many stop strings and refuses more with a 400."""

_FAILED = {"insufficient_system_resource": (503, "the inference system ran out of resources"),
           "error": (502, "the upstream failed")}
"""Finish reasons that say the upstream failed partway (DeepSeek's, and OpenRouter's
normalised one), with the status the same failure is sent as when it comes before any text."""


def build_body(request: ChatRequest, model: str, stream: bool) -> dict[str, Any]:
    """The /chat/completions body; options the request leaves unset are left out.

    What one vendor refuses with a 400 but the other targets of a fallback chain take is
    adapted, so the request does not end the route. OpenAI's reasoning models get the
    output cap as `max_completion_tokens`, and no temperature or top_p (they take only the
    default, 1) and no stop (they take none), nor do xAI's reasoning models get a stop. Only
    the first `MAX_STOP` stop strings are sent; the rest, and those of a model that takes
    none, are applied to the answer (`local_stops`). Consecutive messages of one role are
    merged (`_alternating`), and deepseek-reasoner gets the user's turn first and last
    (`_turns.edged`).
    """
    turns = _alternating(request.messages)
    body: dict[str, Any] = {"model": model,
                            "messages": edged(turns) if model == _USER_EDGED_MODEL else turns}
    reasoning = _is_reasoning(model)
    sent, _ = _split_stops(request, model)
    options = {"max_completion_tokens" if reasoning else "max_tokens": request.max_tokens,
               "temperature": None if reasoning else request.temperature,
               "top_p": None if reasoning else request.top_p,
               "stop": list(sent) or None}
    body.update({k: v for k, v in options.items() if v is not None})
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


def local_stops(request: ChatRequest, model: str) -> tuple[str, ...]:
    """The stop strings `build_body` leaves out for `model`, for the adapter to apply."""
    return _split_stops(request, model)[1]


def _is_reasoning(model: str) -> bool:
    return _COMPLETION_TOKENS_MODEL.match(model) is not None


def _takes_no_stop(model: str) -> bool:
    return _is_reasoning(model) or _NO_STOP_MODEL.match(model) is not None


def _split_stops(request: ChatRequest, model: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The request's stop strings as (sent upstream, applied locally)."""
    stop = request.stop or ()
    if _takes_no_stop(model):
        return (), stop
    return stop[:MAX_STOP], stop[MAX_STOP:]


def _alternating(messages: Iterable[Message]) -> list[dict[str, str]]:
    """Consecutive user (or assistant) messages merged into one, joined by a blank line as
    the Anthropic wire joins them: Perplexity and deepseek-reasoner refuse two in a row with a
    400, and the others read the merged turn alike. System messages stay as they are.
    """
    out: list[dict[str, str]] = []
    for message in messages:
        last = out[-1] if out else None
        if last is not None and message.role != "system" and last["role"] == message.role:
            last["content"] = "\n\n".join(t for t in (last["content"], message.content)
                                           if t.strip())
        else:
            out.append({"role": message.role, "content": message.content})
    return out


def perplexity_body(request: ChatRequest, model: str, stream: bool) -> dict[str, Any]:
    """`build_body` with the conversation in the shape Perplexity takes, which refuses with a
    400 what the other vendors take (see `perplexity.systems_first` and `_turns.edged`)."""
    body = build_body(request.model_copy(update={"messages": systems_first(request.messages)}),
                      model, stream)
    body["messages"] = edged(body["messages"])
    return body


def parse_completion(data: dict[str, Any]) -> Completion:
    """A non-streamed chat.completion; the first choice is the answer.

    A refusal comes in `message.refusal` with `content` null: its text is the answer, and
    finish_reason "refusal" says what it is (the upstream says "stop"). One whose
    finish_reason says the upstream failed is raised as the failure it is (`_FAILED`).
    """
    _raise_in_band(data)
    choice = data["choices"][0]
    message = choice.get("message") or {}
    refusal = message.get("refusal")
    content = refusal or message.get("content") or ""
    _raise_failed(choice.get("finish_reason"), content)
    finish_reason = REFUSAL if refusal else _finish_reason(choice.get("finish_reason"))
    if content.strip():  # an empty answer stays empty: nothing cites them, nothing is cached
        content += sources(data)
    usage = read_usage(data.get("usage"), _usage)
    return Completion(content=content, finish_reason=finish_reason, usage=usage or Usage(),
                      usage_reported=usage is not None, upstream_model=data.get("model"))


class OpenAIStream:
    """Accumulates chat.completion.chunk events (first choice only) into one Completion.

    `delta.refusal` text is passed on like content, and makes the finish_reason "refusal".
    A finish_reason that says the upstream failed (`_FAILED`) is raised with the chunk. The
    `sources` are passed on once, as the last delta: with the chunk that finishes the
    answer, or with a later one when they come only there.
    """

    def __init__(self) -> None:
        self._parts: list[str] = []
        self._finish_reason: str | None = None
        self._usage: Usage | None = None
        self._model: str | None = None
        self._done = False
        self._refused = False
        self._sources = ""  # the latest chunk's that named them
        self._sourced = False

    def feed(self, event: SseEvent) -> str:
        if self._done:
            return ""
        if event.data.strip() == "[DONE]":
            self._done = True
            return ""
        chunk = loads_object(event.data)
        _raise_in_band(chunk)
        self._model = chunk.get("model") or self._model
        if chunk.get("usage"):  # the include_usage chunk, after the finish_reason one
            self._usage = read_usage(chunk["usage"], _usage)
        text = ""
        for choice in chunk.get("choices") or []:
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            refusal = delta.get("refusal") or ""
            self._refused = self._refused or bool(refusal)
            text += (delta.get("content") or "") + refusal
            if finish_reason := choice.get("finish_reason"):
                _raise_failed(finish_reason, text)
                self._finish_reason = _finish_reason(finish_reason)
        if self._sources or "citations" in chunk or "search_results" in chunk:  # Perplexity
            text += self._sources_due(chunk, text)
        self._parts.append(text)
        return text

    def _sources_due(self, chunk: dict[str, Any], text: str) -> str:
        """The answer's `sources` once it is finished and they are known; "" before, after
        they were given once, and for an answer with no text (`text` is this chunk's), which
        cites nothing and must stay empty for the cache to turn it away."""
        self._sources = sources(chunk) or self._sources
        if self._sourced or self._finish_reason is None or not self._sources:
            return ""
        if not (text.strip() or any(part.strip() for part in self._parts)):
            return ""
        self._sourced = True
        return self._sources

    def finish(self) -> Completion:
        if not (self._done or self._finish_reason):
            raise WireError("stream cut: it ended before [DONE] and without a finish_reason")
        return self.so_far()

    def so_far(self) -> Completion:
        finish_reason = REFUSAL if self._refused else self._finish_reason
        return Completion(content="".join(self._parts), finish_reason=finish_reason,
                          usage=self._usage or Usage(), usage_reported=self._usage is not None,
                          upstream_model=self._model)


def parse_error(status: int, body: str) -> str:
    """`{"error": {"message"}}`, or the `{"error": "text"}` / `{"message"}` some vendors send."""
    data = error_body(body)
    return (_error_message(data) if data else "") or body.strip()


def reclassify(status: int, body: str) -> Reclassified | None:
    """An exhausted balance, sent as 429 `insufficient_quota`, as 401; a `max_tokens` over the
    model's output cap, sent as 400, as `OVER_OUTPUT_CAP`.

    Waiting does not clear an exhausted balance, so it is no rate limit to retry; as
    Anthropic's "credit balance is too low" is, it is read as 401, which marks the whole
    provider misconfigured. A cap this model cannot give is no fault of the request, which
    another target may take: a 400 would end the route.
    """
    if status == 400 and _OVER_OUTPUT_CAP.search(parse_error(status, body).lower()):
        return OVER_OUTPUT_CAP
    if status != 429:
        return None
    data = error_body(body)
    error = data.get("error") if data else None
    if isinstance(error, dict) and "insufficient_quota" in (error.get("code"), error.get("type")):
        return Reclassified(401, "insufficient_quota")
    return None


def blocked_prompt(status: int, body: str) -> Completion | None:
    """A prompt a provider's filter blocked, sent as an error, as the empty "content_filter"
    answer a Gemini blocked prompt is: Azure OpenAI's 400 whose `error.code` is
    "content_filter", and OpenRouter's moderation 403 (`_flagged_by_moderation`).

    A 400 would tell the fallback table the request is wrong, and end the route; a 403 would
    mark the target misconfigured for every later caller. Both are a filter refusing one
    prompt, which `retry.fallback_on_finish` decides on. Neither reports usage, so the input
    is charged as an estimate (Azure bills the prompt it judged).
    """
    if status not in (400, 403):
        return None
    data = error_body(body)
    error = data.get("error") if data else None
    if not isinstance(error, dict):
        return None
    blocked = error.get("code") == CONTENT_FILTER if status == 400 \
        else _flagged_by_moderation(error)
    if not blocked:
        return None
    return Completion(content="", finish_reason=CONTENT_FILTER, usage_reported=False)


def _flagged_by_moderation(error: dict[str, Any]) -> bool:
    """OpenRouter's 403 "Your chosen model requires moderation and your input was flagged"
    (openrouter.ai/docs/api/reference/errors-and-debugging): its `metadata` names the
    `reasons` and the `flagged_input`, and its message says the model "requires moderation".
    Any other 403 is about the key or the model."""
    metadata = error.get("metadata")
    if isinstance(metadata, dict) and ("flagged_input" in metadata or "reasons" in metadata):
        return True
    message = error.get("message")
    return isinstance(message, str) and "requires moderation" in message.lower()


def parse_models(body: object) -> ModelList | None:
    """`{"data": [{"id"}]}` (OpenAI, OpenRouter, DeepSeek, xAI), or the bare array Together
    answers with."""
    ids = model_ids(body.get("data") if isinstance(body, dict) else body, "id")
    return None if ids is None else ModelList(ids)


def _error_message(data: dict[str, Any]) -> str:
    error = data.get("error")
    if isinstance(error, dict):
        error = error.get("message")
    if isinstance(error, str) and error:
        return error
    message = data.get("message") or data.get("detail")
    return message if isinstance(message, str) else ""


def _raise_failed(finish_reason: object, partial: str) -> None:
    """An answer that ended with a finish reason in `_FAILED` is that failure, raised with
    the text that came before it."""
    if not isinstance(finish_reason, str) or finish_reason.lower() not in _FAILED:
        return
    status, why = _FAILED[finish_reason.lower()]
    raise UpstreamError(status, f"the answer was cut off: {why} "
                        f"(finish_reason {finish_reason})", partial)


def _raise_in_band(data: dict[str, Any]) -> None:
    """Gateways (OpenRouter) report an upstream failure inside a 200 body or chunk."""
    error = data.get("error")
    if error is None:
        return
    code = error.get("code") if isinstance(error, dict) else None
    # a non-HTTP code (e.g. "server_error") means the gateway's own upstream failed: a 502
    status = code if isinstance(code, int) and 400 <= code < 600 else 502
    raise UpstreamError(status, _error_message(data) or "error reported in the response")


def _usage(raw: Mapping[str, Any]) -> Usage:
    """The `usage` object (`read_usage` reads it: a bad count makes it no report)."""
    # DeepSeek reports cache hits as prompt_cache_hit_tokens instead of the details object
    cached = token_count(raw, "prompt_tokens_details", "cached_tokens") or \
        token_count(raw, "prompt_cache_hit_tokens")
    prompt = token_count(raw, "prompt_tokens")
    return Usage(input_tokens=prompt, output_tokens=_output_tokens(raw, prompt),
                 cached_input_tokens=cached)


def _output_tokens(raw: Mapping[str, Any], prompt: int) -> int:
    """Completion tokens with the reasoning tokens billed as output.

    OpenAI counts reasoning inside `completion_tokens`; xAI reports it beside them, so its
    `total_tokens` is prompt + completion + reasoning. The total tells which one was sent.
    """
    completion = token_count(raw, "completion_tokens")
    reasoning = token_count(raw, "completion_tokens_details", "reasoning_tokens")
    if reasoning > 0 and raw.get("total_tokens") == prompt + completion + reasoning:
        return completion + reasoning
    return completion


def _finish_reason(value: str | None) -> str | None:
    # OpenAI's own values ("stop", "length", "content_filter", "tool_calls") are the
    # neutral vocabulary the other wires map to
    return value.lower() if value else None


WIRE = Wire(build_body, parse_completion, OpenAIStream, parse_error, parse_models,
            reclassify, local_stops=local_stops, blocked_prompt=blocked_prompt)
PERPLEXITY_WIRE = replace(WIRE, build_body=perplexity_body)


class OpenAIAdapter(HttpAdapter):
    """POST {base_url}/chat/completions with `Authorization: Bearer <key>` when there is a key.

    Probes GET {base_url}/models, at openrouter.ai after GET {base_url}/key. Perplexity
    (`is_perplexity`) gets its conversations in the shape it takes (`PERPLEXITY_WIRE`); every
    other vendor the bodies of `WIRE`.
    """

    wire = WIRE

    def __init__(self, provider: str, cfg: ProviderConfig, http: httpx.AsyncClient,
                 api_key: str | None) -> None:
        super().__init__(provider, cfg, http, api_key)
        if is_perplexity(provider, self.base_url):
            self.wire = PERPLEXITY_WIRE

    def url(self, model: str) -> str:
        return f"{self.base_url}/chat/completions"

    def probe_url(self) -> str:
        return f"{self.base_url}/models"

    def key_probe_url(self) -> str | None:
        # OpenRouter's /models is a public catalogue: it answers 200 to a revoked key. Its
        # /key (the key's own limits and usage, free) answers 401 to one. Keyed on the host,
        # so a proxy or the simulator standing in for OpenRouter keeps its plain /models.
        if urlsplit(self.base_url).hostname == OPENROUTER_HOST:
            return f"{self.base_url}/key"
        return None

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
