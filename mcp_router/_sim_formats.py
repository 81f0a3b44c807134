"""The simulated upstream's three vendor formats: OpenAI chat completions, Anthropic
Messages and Gemini generateContent, each read and written as the vendor does."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from mcp_router._sim_wire import (
    Answer,
    BadRequest,
    Frames,
    Json,
    Prompt,
    estimate_tokens,
    limit_of,
    messages_of,
    model_of,
    object_of,
    sse_frame,
    stops_of,
    text_of,
)

__all__ = ["AnthropicWire", "GeminiWire", "OpenAIWire"]


class OpenAIWire:
    """OpenAI chat completions, also spoken by OpenRouter, DeepSeek, Together, xAI and others."""

    name = "openai"
    # What GET /v1/models names: the shipped configs' models of every vendor this wire
    # stands for (one simulator plays them all), less grok-beta, which xAI retired.
    listed = ("gpt-4o-mini", "gpt-4o", "gpt-3.5-turbo", "openai/gpt-3.5-turbo",
              "openai/gpt-4o-mini", "deepseek-chat", "deepseek-reasoner",
              "meta-llama/Llama-3.3-70B-Instruct-Turbo", "Qwen/Qwen2.5-Coder-32B-Instruct",
              "sonar", "sonar-pro")
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
        texts, last_user = messages_of(body.get("messages"), "messages", "content")
        return Prompt(model_of(body), texts, last_user,
                      limit_of(body.get("max_completion_tokens", body.get("max_tokens")),
                             "max_tokens"),
                      stops_of(body.get("stop")), bool(body.get("stream")),
                      bool(object_of(body, "stream_options").get("include_usage")))

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
        usage = {"usage": self._usage(a)} if a.usage else {}
        return self._base(a, "chat.completion") | {"choices": [choice]} | usage

    def frames(self, a: Answer, prompt: Prompt) -> Frames:
        def chunk(delta: Json, finish: str | None = None) -> bytes:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            usage = {"usage": None} if prompt.include_usage and a.usage else {}
            return sse_frame(self._base(a, "chat.completion.chunk") | {"choices": [choice]} | usage)

        usage = self._base(a, "chat.completion.chunk") | {"choices": [], "usage": self._usage(a)}
        tail = [chunk({}, self._finish[a.finish])]
        tail += [sse_frame(usage)] if prompt.include_usage and a.usage else []
        return Frames((chunk({"role": "assistant", "content": "", "refusal": None}),),
                      tuple(chunk({"content": c}) for c in a.chunks),
                      (*tail, sse_frame("[DONE]")))

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
    listed = ("claude-3-haiku-20240307", "claude-3-5-sonnet-20241022",
              "claude-3-opus-20240229", "claude-3-5-haiku-latest", "claude-sonnet-4-5")
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
        model = model_of(body)
        if not isinstance(body.get("max_tokens"), int):
            raise BadRequest("max_tokens: Field required")
        texts, last_user = messages_of(body.get("messages"), "messages", "content")
        system = text_of(body.get("system"))
        return Prompt(model, ((system,) if system else ()) + texts, last_user,
                      body["max_tokens"], stops_of(body.get("stop_sequences")),
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
            return sse_frame({"type": name, **data}, event=name)

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
    listed = ("gemini-1.5-flash", "gemini-1.5-pro", "gemini-2.0-flash", "gemini-2.5-pro")
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
        texts, last_user = messages_of(body.get("contents"), "contents", "parts")
        system = text_of(object_of(body, "systemInstruction").get("parts"))
        config = object_of(body, "generationConfig")
        return Prompt(model, ((system,) if system else ()) + texts, last_user,
                      limit_of(config.get("maxOutputTokens"), "maxOutputTokens"),
                      stops_of(config.get("stopSequences")),
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
            encoded = [sse_frame(b, end="\r\n\r\n") for b in bodies]
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
