"""The OpenAI-compatible adapter against a scripted upstream: what it sends and reads."""

from __future__ import annotations

import httpx
import pytest

from mcp_router.config import ProviderConfig
from mcp_router.errors import ProviderProtocolError, ProviderStatusError
from mcp_router.messages import Adapter, ChatRequest, Completion, Message, Usage
from mcp_router.providers import make_provider
from mcp_router.providers.openai import parse_error
from tests.providers.fakes import (
    KEY,
    FakeUpstream,
    TextSink,
    json_response,
    key_appears_outside,
    sent_headers,
    sent_json,
    sse_response,
)

pytestmark = pytest.mark.anyio

REQUEST = ChatRequest(
    messages=(Message(role="system", content="Be brief."), Message(role="user", content="Hi")),
    max_tokens=50, temperature=0.2, top_p=0.9, stop=("\n\n",),
)
WIRE_MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
WIRE_OPTIONS = {"max_tokens": 50, "temperature": 0.2, "top_p": 0.9, "stop": ["\n\n"]}


def openrouter(http: httpx.AsyncClient, *, stream: bool = True, api_key_env: str | None = "KEY",
               headers: dict[str, str] | None = None) -> Adapter:
    cfg = ProviderConfig(kind="openai", base_url="https://openrouter.test/api/v1/",
                         api_key_env=api_key_env, headers=headers or {}, stream=stream)
    return make_provider("openrouter", cfg, http, KEY if api_key_env else None)


def chunk(content: str | None = None, finish: str | None = None, **extra: object) -> dict:
    delta = {} if content is None else {"content": content}
    return {"object": "chat.completion.chunk", "model": "openai/gpt-3.5-turbo-0125",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}


def without_ttfb(completion: Completion) -> Completion:
    assert completion.ttfb_ms is not None and completion.ttfb_ms >= 0
    return completion.model_copy(update={"ttfb_ms": None})


async def test_a_json_request_carries_the_options_and_the_key_only_as_a_bearer_token(
        http: httpx.AsyncClient, upstream: FakeUpstream) -> None:
    upstream.answer(json_response({
        "model": "openai/gpt-3.5-turbo-0125",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello!"},
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 3,
                  "prompt_tokens_details": {"cached_tokens": 8}},
    }))

    completion = await openrouter(http, stream=False).send(REQUEST, "openai/gpt-3.5-turbo")

    request = upstream.request
    assert (request.method, str(request.url)) == (
        "POST", "https://openrouter.test/api/v1/chat/completions")
    assert sent_headers(request) == {"authorization": f"Bearer {KEY}",
                                     "content-type": "application/json"}
    assert not key_appears_outside(request, "authorization")
    assert sent_json(request) == {"model": "openai/gpt-3.5-turbo", "messages": WIRE_MESSAGES,
                                  **WIRE_OPTIONS}
    assert without_ttfb(completion) == Completion(
        content="Hello!", finish_reason="stop",
        usage=Usage(input_tokens=12, output_tokens=3, cached_input_tokens=8),
        upstream_model="openai/gpt-3.5-turbo-0125")


async def test_a_streamed_answer_passes_each_delta_on_in_order_and_counts_usage(
        http: httpx.AsyncClient, upstream: FakeUpstream) -> None:
    upstream.answer(sse_response(
        chunk(""), chunk("Hel"), chunk("lo"), chunk(None, "length"),
        {"model": "openai/gpt-3.5-turbo-0125", "choices": [],
         "usage": {"prompt_tokens": 12, "completion_tokens": 2}},
        "[DONE]",
    ))
    sink = TextSink()

    completion = await openrouter(http).send(REQUEST, "openai/gpt-3.5-turbo", on_text=sink)

    assert sent_json(upstream.request) == {
        "model": "openai/gpt-3.5-turbo", "messages": WIRE_MESSAGES, **WIRE_OPTIONS,
        "stream": True, "stream_options": {"include_usage": True}}
    assert sink.deltas == ["Hel", "lo"]
    assert without_ttfb(completion) == Completion(
        content="Hello", finish_reason="length",
        usage=Usage(input_tokens=12, output_tokens=2),
        upstream_model="openai/gpt-3.5-turbo-0125")


async def test_a_request_sends_only_the_options_that_were_set(
        http: httpx.AsyncClient, upstream: FakeUpstream) -> None:
    upstream.answer(json_response({"choices": [{"message": {"content": "ok"},
                                                "finish_reason": "stop"}]}))

    await openrouter(http, stream=False).send(
        ChatRequest(messages=(Message(role="user", content="Hi"),)), "m")

    assert sent_json(upstream.request) == {"model": "m",
                                           "messages": [{"role": "user", "content": "Hi"}]}


async def test_a_json_answer_to_a_stream_request_completes_and_passes_the_text_on_once(
        http: httpx.AsyncClient, upstream: FakeUpstream) -> None:
    upstream.answer(json_response({"choices": [{"message": {"content": "Whole answer"},
                                                "finish_reason": "stop"}]}))
    sink = TextSink()

    completion = await openrouter(http).send(REQUEST, "m", on_text=sink)

    assert sink.deltas == ["Whole answer"]
    assert without_ttfb(completion) == Completion(content="Whole answer", finish_reason="stop",
                                                  usage_reported=False)


async def test_a_stream_that_ends_cleanly_after_a_finish_reason_but_without_done_is_complete(
        http: httpx.AsyncClient, upstream: FakeUpstream) -> None:
    upstream.answer(sse_response(chunk("Hi"), chunk(None, "stop")))

    completion = await openrouter(http).send(REQUEST, "m")

    # The include_usage chunk comes after the finish_reason one: a stream cut between them is
    # a whole answer that reports no usage, which the spend step charges at an estimate.
    assert without_ttfb(completion) == Completion(
        content="Hi", finish_reason="stop", upstream_model="openai/gpt-3.5-turbo-0125",
        usage_reported=False)


async def test_a_stream_that_ends_before_done_and_before_a_finish_reason_is_a_protocol_error(
        http: httpx.AsyncClient, upstream: FakeUpstream) -> None:
    upstream.answer(sse_response(chunk("Half an ans")))

    with pytest.raises(ProviderProtocolError) as caught:
        await openrouter(http).send(REQUEST, "m")

    assert (caught.value.provider, caught.value.model) == ("openrouter", "m")
    assert "stream cut" in caught.value.detail


async def test_an_error_chunk_inside_a_stream_is_a_status_error_with_its_code(
        http: httpx.AsyncClient, upstream: FakeUpstream) -> None:
    upstream.answer(sse_response(
        chunk("Hel"), {"error": {"code": 429, "message": "Rate limited upstream"}}))

    with pytest.raises(ProviderStatusError) as caught:
        await openrouter(http).send(REQUEST, "m")

    assert (caught.value.status, caught.value.detail) == (429, "HTTP 429: Rate limited upstream")


async def test_an_error_without_an_http_code_inside_a_200_body_is_a_502(
        http: httpx.AsyncClient, upstream: FakeUpstream) -> None:
    upstream.answer(json_response({"error": {"code": "server_error", "message": "boom"}}))

    with pytest.raises(ProviderStatusError) as caught:
        await openrouter(http, stream=False).send(REQUEST, "m")

    assert (caught.value.status, caught.value.detail) == (502, "HTTP 502: boom")


async def test_a_provider_without_a_key_variable_sends_no_authorization(
        http: httpx.AsyncClient, upstream: FakeUpstream) -> None:
    upstream.answer(json_response({"choices": [{"message": {"content": "ok"}}]}))
    adapter = openrouter(http, api_key_env=None, stream=False)

    await adapter.send(REQUEST, "llama3")

    assert adapter.configured
    assert sent_headers(upstream.request) == {"content-type": "application/json"}


async def test_config_headers_are_sent_but_cannot_replace_the_key_header(
        http: httpx.AsyncClient, upstream: FakeUpstream) -> None:
    upstream.answer(json_response({"choices": [{"message": {"content": "ok"}}]}))
    adapter = openrouter(http, stream=False, headers={"x-portkey-virtual-key": "vk-1",
                                                      "AUTHORIZATION": "Bearer stale"})

    await adapter.send(REQUEST, "m")

    assert sent_headers(upstream.request) == {
        "x-portkey-virtual-key": "vk-1", "authorization": f"Bearer {KEY}",
        "content-type": "application/json"}


async def test_deepseek_cache_hits_count_as_cached_input(
        http: httpx.AsyncClient, upstream: FakeUpstream) -> None:
    upstream.answer(json_response({
        "choices": [{"message": {"content": "ok"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 100, "completion_tokens": 5, "prompt_cache_hit_tokens": 64}}))

    completion = await openrouter(http, stream=False).send(REQUEST, "deepseek-chat")

    assert completion.usage == Usage(input_tokens=100, output_tokens=5, cached_input_tokens=64)


@pytest.mark.parametrize(("body", "message"), [
    ('{"error": {"message": "Invalid model", "type": "invalid_request_error"}}', "Invalid model"),
    ('{"error": "Model not found"}', "Model not found"),
    ('{"message": "Too many requests"}', "Too many requests"),
    ('{"detail": "Not authenticated"}', "Not authenticated"),
    ("<html>Bad Gateway</html>", "<html>Bad Gateway</html>"),
    ("", ""),
])
def test_error_messages_are_read_from_every_vendor_body_shape(body: str, message: str) -> None:
    assert parse_error(400, body) == message


def openai(http: httpx.AsyncClient) -> Adapter:
    cfg = ProviderConfig(kind="openai", base_url="https://api.openai.test/v1",
                         api_key_env="OPENAI_API_KEY", stream=False)
    return make_provider("openai", cfg, http, KEY)


def answered(message: dict, finish: str = "stop") -> httpx.Response:
    return json_response({"choices": [{"index": 0, "message": message, "finish_reason": finish}]})


@pytest.mark.parametrize("model", ["o1", "o1-mini", "o3", "o3-mini", "o4-mini-2025-04-16",
                                   "gpt-5", "gpt-5-mini", "gpt-5.1"])
async def test_openai_reasoning_models_get_max_completion_tokens_and_no_sampling_or_stop(
        http: httpx.AsyncClient, upstream: FakeUpstream, model: str) -> None:
    # They answer max_tokens with 400 "Use 'max_completion_tokens' instead", a temperature
    # or top_p other than the default 1 with a 400 too, and any stop with "Unsupported
    # parameter: 'stop'" (the stop strings are applied locally: test_local_stops.py).
    upstream.answer(answered({"content": "ok"}))

    await openai(http).send(REQUEST, model)

    assert sent_json(upstream.request) == {"model": model, "messages": WIRE_MESSAGES,
                                           "max_completion_tokens": 50}


@pytest.mark.parametrize("model", ["gpt-4o-mini", "gpt-4.1", "openai/o3", "openai/gpt-5",
                                   "deepseek-chat", "olmo-2-13b"])
async def test_other_models_and_vendor_prefixed_ids_keep_max_tokens(
        http: httpx.AsyncClient, upstream: FakeUpstream, model: str) -> None:
    upstream.answer(answered({"content": "ok"}))

    await openai(http).send(REQUEST, model)

    assert sent_json(upstream.request) == {"model": model, "messages": WIRE_MESSAGES,
                                           **WIRE_OPTIONS}


async def test_a_refusal_is_the_answer_with_finish_reason_refusal(
        http: httpx.AsyncClient, upstream: FakeUpstream) -> None:
    upstream.answer(answered({"role": "assistant", "content": None,
                              "refusal": "I'm sorry, I can't help with that."}))

    completion = await openai(http).send(REQUEST, "gpt-4o")

    assert (completion.content, completion.finish_reason) == (
        "I'm sorry, I can't help with that.", "refusal")


async def test_a_streamed_refusal_is_passed_on_and_finishes_as_refusal(
        http: httpx.AsyncClient, upstream: FakeUpstream) -> None:
    def refusal(text: str) -> dict:
        return {"choices": [{"index": 0, "delta": {"refusal": text}, "finish_reason": None}]}

    upstream.answer(sse_response(
        {"choices": [{"index": 0, "delta": {"role": "assistant", "content": None,
                                            "refusal": None}, "finish_reason": None}]},
        refusal("I'm sorry, "), refusal("I can't."), chunk(finish="stop"), "[DONE]"))
    sink = TextSink()

    completion = await openrouter(http).send(REQUEST, "gpt-4o", on_text=sink)

    assert sink.deltas == ["I'm sorry, ", "I can't."]
    assert (completion.content, completion.finish_reason) == ("I'm sorry, I can't.", "refusal")


async def test_a_content_filter_stop_keeps_the_neutral_content_filter_reason(
        http: httpx.AsyncClient, upstream: FakeUpstream) -> None:
    upstream.answer(answered({"content": None}, finish="content_filter"))

    completion = await openai(http).send(REQUEST, "gpt-4o")

    assert (completion.content, completion.finish_reason) == ("", "content_filter")


# xAI's documented example: reasoning beside completion_tokens (total = 32 + 9 + 94), and
# OpenAI's shape for an o-series model: reasoning already inside completion_tokens.
XAI_USAGE = {"prompt_tokens": 32, "completion_tokens": 9, "total_tokens": 135,
             "completion_tokens_details": {"reasoning_tokens": 94}}
OPENAI_USAGE = {"prompt_tokens": 32, "completion_tokens": 103, "total_tokens": 135,
                "completion_tokens_details": {"reasoning_tokens": 94}}
REASONED = [(XAI_USAGE, "grok-3-mini"), (OPENAI_USAGE, "o3-mini")]


@pytest.mark.parametrize(("usage", "model"), REASONED)
async def test_reasoning_tokens_are_output_whether_or_not_completion_tokens_include_them(
        http: httpx.AsyncClient, upstream: FakeUpstream, usage: dict, model: str) -> None:
    upstream.answer(json_response({
        "choices": [{"message": {"content": "101 is prime."}, "finish_reason": "stop"}],
        "usage": usage}))

    completion = await openrouter(http, stream=False).send(REQUEST, model)

    assert completion.usage == Usage(input_tokens=32, output_tokens=9 + 94)


@pytest.mark.parametrize(("usage", "model"), REASONED)
async def test_a_stream_s_usage_chunk_counts_reasoning_tokens_as_output_once(
        http: httpx.AsyncClient, upstream: FakeUpstream, usage: dict, model: str) -> None:
    upstream.answer(sse_response(
        chunk("101 is prime."), chunk(None, "stop"),
        {"model": model, "choices": [], "usage": usage}, "[DONE]"))

    completion = await openrouter(http).send(REQUEST, model)

    assert completion.usage == Usage(input_tokens=32, output_tokens=9 + 94)


async def test_reasoning_tokens_that_do_not_add_up_to_the_total_are_not_added_again(
        http: httpx.AsyncClient, upstream: FakeUpstream) -> None:
    # no total to tell the shape by: completion_tokens is taken as it is, as before
    upstream.answer(json_response({
        "choices": [{"message": {"content": "ok"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 32, "completion_tokens": 103,
                  "completion_tokens_details": {"reasoning_tokens": 94}}}))

    completion = await openrouter(http, stream=False).send(REQUEST, "o3-mini")

    assert completion.usage == Usage(input_tokens=32, output_tokens=103)
