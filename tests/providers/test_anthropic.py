"""The Anthropic adapter against a scripted upstream: what it sends, what it makes of replies."""

from __future__ import annotations

import httpx
import pytest

from mcp_router.config import ProviderConfig
from mcp_router.errors import ProviderProtocolError, ProviderStatusError
from mcp_router.messages import Adapter, ChatRequest, Completion, Message, Usage
from mcp_router.providers import make_provider
from mcp_router.providers.anthropic import parse_error
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

CONVERSATION = ChatRequest(messages=(
    Message(role="system", content="Be brief."),
    Message(role="user", content="Hi"),
    Message(role="user", content="Anyone there?"),
    Message(role="assistant", content="Yes."),
    Message(role="system", content="Answer in English."),
    Message(role="user", content="Good"),
))
WIRE_CONVERSATION = {
    "system": "Be brief.\n\nAnswer in English.",
    "messages": [{"role": "user", "content": "Hi\n\nAnyone there?"},
                 {"role": "assistant", "content": "Yes."},
                 {"role": "user", "content": "Good"}],
}
HI = ChatRequest(messages=(Message(role="user", content="Hi"),), max_tokens=20)


def anthropic(http: httpx.AsyncClient, *, stream: bool = True,
              headers: dict[str, str] | None = None) -> Adapter:
    cfg = ProviderConfig(kind="anthropic", base_url="https://anthropic.test",
                         api_key_env="ANTHROPIC_API_KEY", headers=headers or {}, stream=stream)
    return make_provider("anthropic", cfg, http, KEY)


def without_ttfb(completion: Completion) -> Completion:
    assert completion.ttfb_ms is not None and completion.ttfb_ms >= 0
    return completion.model_copy(update={"ttfb_ms": None})


async def test_a_json_request_moves_system_out_merges_turns_and_sends_the_key_as_x_api_key(
        http: httpx.AsyncClient, upstream: FakeUpstream) -> None:
    upstream.answer(json_response({
        "type": "message", "model": "claude-3-haiku-20240307", "stop_reason": "end_turn",
        "content": [{"type": "text", "text": "Hello"}, {"type": "text", "text": " there"}],
        "usage": {"input_tokens": 10, "output_tokens": 4},
    }))

    completion = await anthropic(http, stream=False).send(CONVERSATION, "claude-3-haiku")

    request = upstream.request
    assert str(request.url) == "https://anthropic.test/v1/messages"
    assert sent_headers(request) == {"x-api-key": KEY, "anthropic-version": "2023-06-01",
                                     "content-type": "application/json"}
    assert not key_appears_outside(request, "x-api-key")
    assert sent_json(request) == {"model": "claude-3-haiku", "max_tokens": 1024,
                                  **WIRE_CONVERSATION}
    assert without_ttfb(completion) == Completion(
        content="Hello there", finish_reason="stop",
        usage=Usage(input_tokens=10, output_tokens=4), upstream_model="claude-3-haiku-20240307")


async def test_options_map_to_anthropic_names_and_temperature_is_clamped_to_one(
        http: httpx.AsyncClient, upstream: FakeUpstream) -> None:
    upstream.answer(json_response({"content": [], "stop_reason": "stop_sequence"}))
    request = HI.model_copy(update={"temperature": 1.7, "stop": ("END",)})

    await anthropic(http).send(request, "claude")

    assert sent_json(upstream.request) == {
        "model": "claude", "max_tokens": 20, "messages": [{"role": "user", "content": "Hi"}],
        "temperature": 1.0, "stop_sequences": ["END"], "stream": True}


async def test_top_p_alone_is_sent_but_with_a_temperature_only_the_temperature_is(
        http: httpx.AsyncClient, upstream: FakeUpstream) -> None:
    # Newer Claude models answer both with 400 "cannot both be specified for this model".
    upstream.answer(json_response({"content": [], "stop_reason": "end_turn"}))
    adapter = anthropic(http, stream=False)

    await adapter.send(HI.model_copy(update={"top_p": 0.5}), "claude")
    await adapter.send(HI.model_copy(update={"temperature": 0.2, "top_p": 0.5}), "claude")

    sent = [sent_json(request) for request in upstream.requests]
    assert [(body.get("temperature"), body.get("top_p")) for body in sent] == [
        (None, 0.5), (0.2, None)]


async def test_blank_stop_sequences_are_left_out(
        http: httpx.AsyncClient, upstream: FakeUpstream) -> None:
    # Anthropic answers 400 "each stop sequence must contain non-whitespace".
    upstream.answer(json_response({"content": [], "stop_reason": "end_turn"}))
    adapter = anthropic(http, stream=False)

    await adapter.send(HI.model_copy(update={"stop": ("\n", "", "END", " \n\n")}), "claude")
    await adapter.send(HI.model_copy(update={"stop": ("\n",)}), "claude")

    sent = [sent_json(request) for request in upstream.requests]
    assert [body.get("stop_sequences") for body in sent] == [["END"], None]


async def test_a_prefill_loses_its_trailing_whitespace(
        http: httpx.AsyncClient, upstream: FakeUpstream) -> None:
    # Anthropic answers 400 "final assistant content cannot end with trailing whitespace".
    upstream.answer(json_response({"content": [], "stop_reason": "end_turn"}))
    request = ChatRequest(messages=(Message(role="user", content="List three fruits. "),
                                    Message(role="assistant", content="1. ")))

    await anthropic(http, stream=False).send(request, "claude")

    assert sent_json(upstream.request)["messages"] == [
        {"role": "user", "content": "List three fruits. "},
        {"role": "assistant", "content": "1."}]


async def test_blank_turns_are_left_out_and_the_rest_still_alternates(
        http: httpx.AsyncClient, upstream: FakeUpstream) -> None:
    # Anthropic answers 400 "all messages must have non-empty content except for the
    # optional final assistant message"; OpenAI-style histories carry such turns.
    upstream.answer(json_response({"content": [], "stop_reason": "end_turn"}))
    request = ChatRequest(messages=(Message(role="user", content="Hi"),
                                    Message(role="assistant", content=""),
                                    Message(role="user", content="Still there?"),
                                    Message(role="assistant", content="Yes."),
                                    Message(role="user", content="Good"),
                                    Message(role="assistant", content=" ")))

    await anthropic(http, stream=False).send(request, "claude")

    assert sent_json(upstream.request)["messages"] == [
        {"role": "user", "content": "Hi\n\nStill there?"},
        {"role": "assistant", "content": "Yes."},
        {"role": "user", "content": "Good"}]


@pytest.mark.parametrize(("stop_reason", "finish_reason"), [
    ("model_context_window_exceeded", "length"), ("refusal", "refusal")])
async def test_context_window_stops_are_length_and_refusals_stay_refusals(
        http: httpx.AsyncClient, upstream: FakeUpstream, stop_reason: str,
        finish_reason: str) -> None:
    upstream.answer(json_response({"content": [{"type": "text", "text": "Part"}],
                                   "stop_reason": stop_reason}))

    completion = await anthropic(http, stream=False).send(HI, "claude")

    assert (completion.content, completion.finish_reason) == ("Part", finish_reason)


CREDIT = ("Your credit balance is too low to access the Anthropic API. Please go to Plans & "
          "Billing to upgrade or purchase credits.")


async def test_a_credit_balance_too_low_sent_as_400_is_a_401_that_says_what_was_sent(
        http: httpx.AsyncClient, upstream: FakeUpstream) -> None:
    upstream.answer(json_response({"type": "error", "error": {
        "type": "invalid_request_error", "message": CREDIT}}, 400))

    with pytest.raises(ProviderStatusError) as caught:
        await anthropic(http).send(HI, "claude")

    assert (caught.value.status, caught.value.detail) == (
        401, f"HTTP 401: sent as HTTP 400 (credit balance too low): {CREDIT}")


async def test_other_invalid_requests_stay_400(
        http: httpx.AsyncClient, upstream: FakeUpstream) -> None:
    upstream.answer(json_response({"type": "error", "error": {
        "type": "invalid_request_error", "message": "max_tokens: Field required"}}, 400))

    with pytest.raises(ProviderStatusError) as caught:
        await anthropic(http).send(HI, "claude")

    assert (caught.value.status, caught.value.detail) == (
        400, "HTTP 400: max_tokens: Field required")


async def test_cache_reads_and_writes_count_in_input_and_reads_count_as_cached(
        http: httpx.AsyncClient, upstream: FakeUpstream) -> None:
    upstream.answer(json_response({
        "content": [{"type": "text", "text": "ok"}], "stop_reason": "max_tokens",
        "usage": {"input_tokens": 5, "cache_read_input_tokens": 100,
                  "cache_creation_input_tokens": 20, "output_tokens": 7},
    }))

    completion = await anthropic(http, stream=False).send(HI, "claude")

    assert (completion.usage, completion.finish_reason) == (
        Usage(input_tokens=125, output_tokens=7, cached_input_tokens=100), "length")


async def test_a_streamed_answer_passes_each_delta_on_in_order_and_counts_usage(
        http: httpx.AsyncClient, upstream: FakeUpstream) -> None:
    upstream.answer(sse_response(
        ("message_start", {"type": "message_start", "message": {
            "model": "claude-3-haiku-20240307", "content": [], "stop_reason": None,
            "usage": {"input_tokens": 9, "cache_read_input_tokens": 3, "output_tokens": 1}}}),
        ("content_block_start", {"type": "content_block_start", "index": 0,
                                 "content_block": {"type": "text", "text": ""}}),
        ("ping", {"type": "ping"}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                 "delta": {"type": "text_delta", "text": "Hel"}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                 "delta": {"type": "text_delta", "text": "lo"}}),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "max_tokens"},
                           "usage": {"output_tokens": 2}}),
        ("message_stop", {"type": "message_stop"}),
    ))
    sink = TextSink()

    completion = await anthropic(http).send(CONVERSATION, "claude-3-haiku", on_text=sink)

    assert sent_json(upstream.request) == {"model": "claude-3-haiku", "max_tokens": 1024,
                                           **WIRE_CONVERSATION, "stream": True}
    assert sink.deltas == ["Hel", "lo"]
    assert without_ttfb(completion) == Completion(
        content="Hello", finish_reason="length",
        usage=Usage(input_tokens=12, output_tokens=2, cached_input_tokens=3),
        upstream_model="claude-3-haiku-20240307")


async def test_a_stream_that_ends_before_message_stop_is_a_protocol_error(
        http: httpx.AsyncClient, upstream: FakeUpstream) -> None:
    upstream.answer(sse_response(
        ("message_start", {"type": "message_start", "message": {"usage": {}}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                 "delta": {"type": "text_delta", "text": "Hel"}}),
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"}}),
    ))

    with pytest.raises(ProviderProtocolError) as caught:
        await anthropic(http).send(HI, "claude")

    assert "message_stop" in caught.value.detail


async def test_an_overloaded_error_event_inside_a_stream_is_a_529(
        http: httpx.AsyncClient, upstream: FakeUpstream) -> None:
    upstream.answer(sse_response(
        ("message_start", {"type": "message_start", "message": {"usage": {}}}),
        ("error", {"type": "error",
                   "error": {"type": "overloaded_error", "message": "Overloaded"}}),
    ))

    with pytest.raises(ProviderStatusError) as caught:
        await anthropic(http).send(HI, "claude")

    assert (caught.value.status, caught.value.detail, caught.value.retry_after) == (
        529, "HTTP 529: Overloaded", None)


async def test_config_headers_may_override_the_api_version_but_not_the_key(
        http: httpx.AsyncClient, upstream: FakeUpstream) -> None:
    upstream.answer(json_response({"content": [], "stop_reason": "end_turn"}))
    adapter = anthropic(http, headers={"Anthropic-Version": "2024-01-01", "X-Api-Key": "stale",
                                       "anthropic-beta": "prompt-caching-2024-07-31"})

    await adapter.send(HI, "claude")

    assert sent_headers(upstream.request) == {
        "anthropic-version": "2024-01-01", "anthropic-beta": "prompt-caching-2024-07-31",
        "x-api-key": KEY, "content-type": "application/json"}


@pytest.mark.parametrize(("body", "message"), [
    ('{"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}',
     "Overloaded"),
    ('{"type": "error", "error": {"type": "not_found_error"}}',
     '{"type": "error", "error": {"type": "not_found_error"}}'),
    ("upstream connect error", "upstream connect error"),
])
def test_error_messages_are_read_from_the_error_object(body: str, message: str) -> None:
    assert parse_error(529, body) == message
