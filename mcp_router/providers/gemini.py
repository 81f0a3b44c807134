"""The Gemini generateContent wire; a stream is complete once a chunk carries a `finishReason`.

Gemini sends no end marker: a stream whose chunks never carried a `finishReason` (nor a
`promptFeedback.blockReason`, for a refused prompt) was cut.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from mcp_router.messages import ChatRequest, Completion, Message, ModelList, Usage
from mcp_router.providers._adapter import (
    CONTENT_FILTER,
    OVER_OUTPUT_CAP,
    REFUSAL,
    HttpAdapter,
    UpstreamError,
    Wire,
    WireError,
    loads_object,
    model_ids,
    read_usage,
    token_count,
)
from mcp_router.providers._http import Reclassified
from mcp_router.providers._sse import SseEvent
from mcp_router.providers._turns import OPENING_USER_TURN

# Candidate.FinishReason (ai.google.dev API reference). Those not named here (OTHER,
# FINISH_REASON_UNSPECIFIED, MALFORMED_FUNCTION_CALL, IMAGE_OTHER, NO_IMAGE, the tool-call
# ones, any added later) give no reason: an answer with text ended as "stop", one without
# failed (`_finish_reason`).
_FINISH = {"STOP": "stop", "MAX_TOKENS": "length",
           # "the response candidate content was flagged for using an unsupported language"
           "LANGUAGE": REFUSAL,
           **dict.fromkeys(["SAFETY", "PROHIBITED_CONTENT", "BLOCKLIST", "SPII", "RECITATION",
                            "IMAGE_SAFETY", "IMAGE_PROHIBITED_CONTENT", "IMAGE_RECITATION"],
                           CONTENT_FILTER)}
# Gemma refuses `systemInstruction` (400 "Developer instruction is not enabled for
# models/gemma-3-27b-it"; google/adk-python#3900), so its system text opens the first user turn.
_NO_SYSTEM_INSTRUCTION_MODEL = "gemma-"
# "Unable to submit request because it has a maxOutputTokens value of 655360 but the supported
# range is from 1 (inclusive) to 8193 (exclusive)." (stackblitz-labs/bolt.diy#955)
_OVER_OUTPUT_CAP = re.compile(r"maxOutputTokens value of \d+ but the supported range is")
MAX_STOP = 5
"""generateContent takes at most this many `stopSequences`; the rest are applied locally."""
_RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"
_DURATION = re.compile(r"(\d+(?:\.\d+)?)s")  # google.protobuf.Duration in JSON: "34s", "1.5s"


def build_body(request: ChatRequest, model: str, stream: bool) -> dict[str, Any]:
    """Contents with roles user/model, `systemInstruction`, `generationConfig`.

    The model and `stream` are not part of the body: both live in the URL. Blank messages
    are left out, as the Anthropic wire leaves them out: generateContent refuses an empty
    text part with a 400 (which would end a fallback chain others could answer), and a
    `systemInstruction` with nothing left in it is not sent; Gemma, which refuses one, gets its
    text at the start of the first user turn, joined by a blank line. Only the first `MAX_STOP`
    stop strings are sent, as more are refused with a 400; the rest are applied to the answer
    (`local_stops`).
    """
    body: dict[str, Any] = {
        "contents": _contents(m for m in request.messages if m.role != "system"),
    }
    system = [m.content for m in request.messages if m.role == "system" and m.content.strip()]
    if system and model.removeprefix("models/").startswith(_NO_SYSTEM_INSTRUCTION_MODEL):
        _open_with(body["contents"], "\n\n".join(system))
    elif system:
        body["systemInstruction"] = {"parts": [{"text": text} for text in system]}
    sent = (request.stop or ())[:MAX_STOP]
    config = {"maxOutputTokens": request.max_tokens, "temperature": request.temperature,
              "topP": request.top_p, "stopSequences": list(sent) or None}
    config = {k: v for k, v in config.items() if v is not None}
    if config:
        body["generationConfig"] = config
    return body


def local_stops(request: ChatRequest, model: str) -> tuple[str, ...]:
    """The stop strings `build_body` leaves out, for the adapter to apply."""
    return (request.stop or ())[MAX_STOP:]


def _contents(messages: Iterable[Message]) -> list[dict[str, Any]]:
    """Consecutive messages of one role become parts of one turn, as Gemini wants alternation.

    Blank messages are dropped first, so the turns on either side of one may merge, and a
    history that then opens with the model's turn gets `OPENING_USER_TURN` before it.
    """
    out: list[dict[str, Any]] = []
    for message in messages:
        if not message.content.strip():
            continue
        role = "model" if message.role == "assistant" else "user"
        if out and out[-1]["role"] == role:
            out[-1]["parts"].append({"text": message.content})
        else:
            out.append({"role": role, "parts": [{"text": message.content}]})
    if out and out[0]["role"] == "model":
        out.insert(0, {"role": "user", "parts": [{"text": OPENING_USER_TURN}]})
    return out


def _open_with(contents: list[dict[str, Any]], text: str) -> None:
    """`text` put at the start of `contents`' first turn (a user turn, see `_contents`), joined
    to its first part by a blank line; a user turn of its own when there is none."""
    if not contents:
        contents.append({"role": "user", "parts": [{"text": text}]})
        return
    first = contents[0]["parts"][0]
    first["text"] = f"{text}\n\n{first['text']}"


def parse_completion(data: dict[str, Any]) -> Completion:
    """A GenerateContentResponse; the first candidate is the answer."""
    _raise_in_band(data)
    text, finish_reason = _read_chunk(data)
    usage = read_usage(data.get("usageMetadata"), _usage)
    return Completion(content=text, finish_reason=finish_reason, usage=usage or Usage(),
                      usage_reported=usage is not None, upstream_model=data.get("modelVersion"))


class GeminiStream:
    """Accumulates streamed GenerateContentResponse chunks; the last usageMetadata counts."""

    def __init__(self) -> None:
        self._parts: list[str] = []
        self._finish_reason: str | None = None
        self._usage: dict[str, Any] = {}
        self._model: str | None = None

    def feed(self, event: SseEvent) -> str:
        chunk = loads_object(event.data)
        _raise_in_band(chunk)
        text, finish_reason = _read_chunk(chunk, answered=any(p.strip() for p in self._parts))
        self._finish_reason = finish_reason or self._finish_reason
        self._usage = chunk.get("usageMetadata") or self._usage
        self._model = chunk.get("modelVersion") or self._model
        self._parts.append(text)
        return text

    def finish(self) -> Completion:
        if self._finish_reason is None:
            raise WireError("stream cut: no chunk carried a finishReason")
        return self.so_far()

    def so_far(self) -> Completion:
        usage = read_usage(self._usage, _usage)
        return Completion(content="".join(self._parts), finish_reason=self._finish_reason,
                          usage=usage or Usage(), usage_reported=usage is not None,
                          upstream_model=self._model)


def _read_chunk(data: dict[str, Any], answered: bool = False) -> tuple[str, str | None]:
    """The text (thought parts left out) and neutral finish reason of the first candidate;
    `answered` says earlier chunks of a stream carried text (see `_finish_reason`)."""
    candidates = data.get("candidates") or []
    if not candidates:
        # a refused prompt: no candidate at all, and a blockReason (of any kind) says why
        blocked = (data.get("promptFeedback") or {}).get("blockReason")
        return "", CONTENT_FILTER if blocked else None
    candidate = candidates[0]
    parts = (candidate.get("content") or {}).get("parts") or []
    text = "".join(part.get("text") or "" for part in parts if not part.get("thought"))
    return text, _finish_reason(candidate.get("finishReason"), text, answered)


def parse_error(status: int, body: str) -> str:
    """`{"error": {"code", "message", "status"}}`, also when wrapped in a one-element list."""
    error = _error_object(body)
    if isinstance(error.get("message"), str):
        return str(error["message"])
    return body.strip()


def reclassify(status: int, body: str) -> Reclassified | None:
    """Gemini's 400s that are about the account, not the request, as 401; a `maxOutputTokens`
    over the model's range as `OVER_OUTPUT_CAP`, which another target may take.

    An invalid key is `INVALID_ARGUMENT` with reason `API_KEY_INVALID`; billing or region
    ("free tier not available in your country") is `FAILED_PRECONDITION`. Both get 401, not
    403: a 401 marks the whole provider misconfigured, a 403 only the one target, and neither
    problem is about a model, so every other model of the provider would fail the same way.
    """
    if status != 400:
        return None
    error = _error_object(body)
    details = error.get("details")
    reasons = [d.get("reason") for d in details if isinstance(d, dict)] \
        if isinstance(details, list) else []
    if "API_KEY_INVALID" in reasons:
        return Reclassified(401, "API_KEY_INVALID")
    if error.get("status") == "FAILED_PRECONDITION":
        return Reclassified(401, "FAILED_PRECONDITION")
    message = error.get("message")
    if isinstance(message, str) and _OVER_OUTPUT_CAP.search(message):
        return OVER_OUTPUT_CAP
    return None


def body_delay(status: int, body: str) -> float | None:
    """The `retryDelay` of the body's `google.rpc.RetryInfo` detail, in seconds.

    Gemini's 429 (and some 503s) say when to come back only there, never in a Retry-After
    header; "34s" and "45.837906927s" are both seen. None when there is no such detail.
    """
    details = _error_object(body).get("details")
    for detail in details if isinstance(details, list) else []:
        if isinstance(detail, dict) and detail.get("@type") == _RETRY_INFO:
            delay = detail.get("retryDelay")
            match = _DURATION.fullmatch(delay.strip()) if isinstance(delay, str) else None
            return float(match.group(1)) if match else None
    return None


def _error_object(body: str) -> dict[str, Any]:
    """The body's `error` object ({} when there is none), also inside a one-element list."""
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if isinstance(data, list) and data:
        data = data[0]
    error = data.get("error") if isinstance(data, dict) else None
    return error if isinstance(error, dict) else {}


def _raise_in_band(data: dict[str, Any]) -> None:
    error = data.get("error")
    if error is None:
        return
    code = error.get("code") if isinstance(error, dict) else None
    status = code if isinstance(code, int) and 400 <= code < 600 else 500
    message = error.get("message") if isinstance(error, dict) else str(error)
    raise UpstreamError(status, message or "error reported in the response")


def _usage(raw: Mapping[str, Any]) -> Usage:
    """The `usageMetadata` object (`read_usage` reads it: a bad count makes it no report)."""
    # promptTokenCount already includes the cached tokens; thinking models bill
    # thoughtsTokenCount as output, reported apart from candidatesTokenCount
    output = token_count(raw, "candidatesTokenCount") + token_count(raw, "thoughtsTokenCount")
    return Usage(input_tokens=token_count(raw, "promptTokenCount"), output_tokens=output,
                 cached_input_tokens=token_count(raw, "cachedContentTokenCount"))


def _finish_reason(value: str | None, text: str, answered: bool) -> str | None:
    """The neutral word for a `finishReason`. One that names no reason (`_FINISH` lacks it)
    ended an answer with text as "stop"; an answer with none failed, as an upstream error
    (a 502: retried, then the next target) rather than an empty success no
    `retry.fallback_on_finish` could move on from."""
    if not value:
        return None
    if value in _FINISH:
        return _FINISH[value]
    if answered or text.strip():
        return "stop"
    raise UpstreamError(502, f"no answer: generation ended for no reason it names "
                        f"(finishReason {value})", text)


def parse_models(body: object) -> ModelList | None:
    """`{"models": [{"name": "models/…"}], "nextPageToken"}`: names less "models/"; the
    whole list when no next page is named."""
    if not isinstance(body, dict):
        return None
    ids = model_ids(body.get("models"), "name", prefix="models/")
    return None if ids is None else ModelList(ids, complete=not body.get("nextPageToken"))


class GeminiAdapter(HttpAdapter):
    """POST {base_url}/models/{model}:generateContent, or with `stream: true` in the
    provider's config :streamGenerateContent?alt=sse.

    Plain generateContent is the default: it is the endpoint the architecture's contract
    names, and the one a Gemini-compatible gateway is surest to serve. Probes GET
    {base_url}/models?pageSize=1000.
    """

    wire = Wire(build_body, parse_completion, GeminiStream, parse_error, parse_models,
                reclassify, body_delay, local_stops)
    streams_by_default = False

    def url(self, model: str) -> str:
        model = model.removeprefix("models/")  # accept the API's own "models/…" resource name
        if self.stream:
            return f"{self.base_url}/models/{model}:streamGenerateContent?alt=sse"
        return f"{self.base_url}/models/{model}:generateContent"

    def probe_url(self) -> str:
        return f"{self.base_url}/models?pageSize=1000"  # the most a page holds (default 50)

    def auth_headers(self) -> dict[str, str]:
        return {"x-goog-api-key": self.api_key} if self.api_key else {}
