"""The Gemini adapter against a scripted upstream: what it sends, what it makes of replies."""

from __future__ import annotations

import httpx
import pytest

from mcp_router.config import ProviderConfig
from mcp_router.errors import ProviderProtocolError, ProviderStatusError
from mcp_router.messages import Adapter, ChatRequest, Completion, Message, Usage
from mcp_router.providers import make_provider
from mcp_router.providers.gemini import parse_error
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
    messages=(Message(role="system", content="Be brief."),
              Message(role="user", content="Hi"),
              Message(role="assistant", content="Hello."),
              Message(role="user", content="Tell me"),
              Message(role="user", content="a joke")),
    max_tokens=64, temperature=0.5, top_p=0.8, stop=("END",),
)
WIRE_BODY = {
    "contents": [{"role": "user", "parts": [{"text": "Hi"}]},
                 {"role": "model", "parts": [{"text": "Hello."}]},
                 {"role": "user", "parts": [{"text": "Tell me"}, {"text": "a joke"}]}],
    "systemInstruction": {"parts": [{"text": "Be brief."}]},
    "generationConfig": {"maxOutputTokens": 64, "temperature": 0.5, "topP": 0.8,
                         "stopSequences": ["END"]},
}
HI = ChatRequest(messages=(Message(role="user", content="Hi"),))


def gemini(http: httpx.AsyncClient, *, stream: bool | None = True) -> Adapter:
    cfg = ProviderConfig(kind="gemini", base_url="https://gemini.test/v1beta",
                         api_key_env="GEMINI_API_KEY", stream=stream)
    return make_provider("google", cfg, http, KEY)


def candidate(text: str, finish: str | None = None) -> dict:
    content = {"role": "model", "parts": [{"text": text}]}
    return {"content": content, **({"finishReason": finish} if finish else {})}


def without_ttfb(completion: Completion) -> Completion:
    assert completion.ttfb_ms is not None and completion.ttfb_ms >= 0
    return completion.model_copy(update={"ttfb_ms": None})


async def test_by_default_a_request_goes_to_generate_content_with_the_key_only_in_its_header(
        http: httpx.AsyncClient, upstream: FakeUpstream) -> None:
    upstream.answer(json_response({
        "candidates": [{"content": {"role": "model", "parts": [
            {"text": "Let me think", "thought": True}, {"text": "Why did"}, {"text": " the"}]},
            "finishReason": "STOP"}],
        "usageMetadata": {"promptTokenCount": 40, "candidatesTokenCount": 6,
                          "thoughtsTokenCount": 10, "cachedContentTokenCount": 32},
        "modelVersion": "gemini-1.5-flash-002",
    }))

    completion = await gemini(http, stream=None).send(REQUEST, "gemini-1.5-flash")  # unset

    request = upstream.request
    assert str(request.url) == "https://gemini.test/v1beta/models/gemini-1.5-flash:generateContent"
    assert sent_headers(request) == {"x-goog-api-key": KEY, "content-type": "application/json"}
    assert not key_appears_outside(request, "x-goog-api-key")
    assert sent_json(request) == WIRE_BODY
    assert without_ttfb(completion) == Completion(
        content="Why did the", finish_reason="stop",
        usage=Usage(input_tokens=40, output_tokens=16, cached_input_tokens=32),
        upstream_model="gemini-1.5-flash-002")


async def test_a_streamed_answer_passes_each_delta_on_in_order_and_keeps_the_last_usage(
        http: httpx.AsyncClient, upstream: FakeUpstream) -> None:
    upstream.answer(sse_response(
        {"candidates": [candidate("Hel")], "modelVersion": "gemini-1.5-flash-002",
         "usageMetadata": {"promptTokenCount": 4}},
        {"candidates": [candidate("lo")]},
        {"candidates": [candidate("", "MAX_TOKENS")],
         "usageMetadata": {"promptTokenCount": 4, "candidatesTokenCount": 2}},
    ))
    sink = TextSink()

    completion = await gemini(http).send(REQUEST, "models/gemini-1.5-flash", on_text=sink)

    assert str(upstream.request.url) == (
        "https://gemini.test/v1beta/models/gemini-1.5-flash:streamGenerateContent?alt=sse")
    assert sent_json(upstream.request) == WIRE_BODY
    assert sink.deltas == ["Hel", "lo"]
    assert without_ttfb(completion) == Completion(
        content="Hello", finish_reason="length", usage=Usage(input_tokens=4, output_tokens=2),
        upstream_model="gemini-1.5-flash-002")


async def test_a_request_without_options_or_system_sends_only_contents(
        http: httpx.AsyncClient, upstream: FakeUpstream) -> None:
    upstream.answer(json_response({"candidates": [candidate("ok", "STOP")]}))

    await gemini(http).send(HI, "gemini-pro")

    assert sent_json(upstream.request) == {"contents": [{"role": "user",
                                                         "parts": [{"text": "Hi"}]}]}


async def test_a_stream_without_a_finish_reason_is_a_protocol_error(
        http: httpx.AsyncClient, upstream: FakeUpstream) -> None:
    upstream.answer(sse_response({"candidates": [candidate("Hel")]},
                                 {"candidates": [candidate("lo")]}))

    with pytest.raises(ProviderProtocolError) as caught:
        await gemini(http).send(HI, "gemini-pro")

    assert "finishReason" in caught.value.detail


@pytest.mark.parametrize("block_reason", ["SAFETY", "PROHIBITED_CONTENT", "OTHER"])
async def test_a_blocked_prompt_completes_empty_as_content_filter(
        http: httpx.AsyncClient, upstream: FakeUpstream, block_reason: str) -> None:
    upstream.answer(sse_response({"promptFeedback": {"blockReason": block_reason},
                                  "usageMetadata": {"promptTokenCount": 7}}))

    completion = await gemini(http).send(HI, "gemini-pro")

    assert without_ttfb(completion) == Completion(content="", finish_reason="content_filter",
                                                  usage=Usage(input_tokens=7))


@pytest.mark.parametrize("reason", ["SAFETY", "PROHIBITED_CONTENT", "BLOCKLIST", "SPII",
                                    "RECITATION"])
async def test_an_answer_stopped_by_a_filter_finishes_as_content_filter(
        http: httpx.AsyncClient, upstream: FakeUpstream, reason: str) -> None:
    upstream.answer(json_response({"candidates": [candidate("Once upon", reason)]}))

    completion = await gemini(http, stream=False).send(HI, "gemini-pro")

    assert (completion.content, completion.finish_reason) == ("Once upon", "content_filter")


async def test_an_empty_answer_ended_for_no_named_reason_is_an_upstream_failure(
        http: httpx.AsyncClient, upstream: FakeUpstream) -> None:
    upstream.answer(json_response({"candidates": [candidate("", "MALFORMED_FUNCTION_CALL")]}))

    with pytest.raises(ProviderStatusError) as caught:
        await gemini(http, stream=False).send(HI, "gemini-pro")

    assert (caught.value.provider, caught.value.model, caught.value.status) == (
        "google", "gemini-pro", 502)


def google_error(status: str, message: str, reason: str | None = None) -> dict:
    details = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason,
                "domain": "googleapis.com"}] if reason else []
    return {"error": {"code": 400, "message": message, "status": status, "details": details}}


async def test_an_invalid_key_sent_as_400_is_a_401_that_says_what_was_sent(
        http: httpx.AsyncClient, upstream: FakeUpstream) -> None:
    upstream.answer(json_response(google_error(
        "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.",
        "API_KEY_INVALID"), 400))

    with pytest.raises(ProviderStatusError) as caught:
        await gemini(http).send(HI, "gemini-pro")

    assert (caught.value.status, caught.value.detail) == (
        401, "HTTP 401: sent as HTTP 400 (API_KEY_INVALID): "
             "API key not valid. Please pass a valid API key.")


async def test_a_billing_or_region_precondition_sent_as_400_is_a_401(
        http: httpx.AsyncClient, upstream: FakeUpstream) -> None:
    # Gemini's troubleshooting page: 400 FAILED_PRECONDITION when the free tier is not
    # available in the caller's country and billing is not enabled.
    upstream.answer(json_response([google_error(
        "FAILED_PRECONDITION", "User location is not supported for the API use.")], 400))

    with pytest.raises(ProviderStatusError) as caught:
        await gemini(http, stream=False).send(HI, "gemini-pro")

    assert (caught.value.status, caught.value.detail) == (
        401, "HTTP 401: sent as HTTP 400 (FAILED_PRECONDITION): "
             "User location is not supported for the API use.")


async def test_a_400_about_the_request_itself_stays_a_400(
        http: httpx.AsyncClient, upstream: FakeUpstream) -> None:
    upstream.answer(json_response(google_error(
        "INVALID_ARGUMENT", "Invalid value at 'generation_config.top_p'"), 400))

    with pytest.raises(ProviderStatusError) as caught:
        await gemini(http).send(HI, "gemini-pro")

    assert (caught.value.status, caught.value.detail) == (
        400, "HTTP 400: Invalid value at 'generation_config.top_p'")


async def test_a_probe_with_an_invalid_key_is_refused_as_401(
        http: httpx.AsyncClient, upstream: FakeUpstream) -> None:
    upstream.answer(json_response(google_error(
        "INVALID_ARGUMENT", "API key not valid.", "API_KEY_INVALID"), 400))

    with pytest.raises(ProviderStatusError) as caught:
        await gemini(http).probe()

    assert caught.value.status == 401


@pytest.mark.parametrize(("body", "message"), [
    ('{"error": {"code": 429, "message": "Resource exhausted", "status": "RESOURCE_EXHAUSTED"}}',
     "Resource exhausted"),
    ('[{"error": {"code": 400, "message": "API key not valid"}}]', "API key not valid"),
    ("Not Found", "Not Found"),
])
def test_error_messages_are_read_from_the_error_object(body: str, message: str) -> None:
    assert parse_error(400, body) == message


@pytest.mark.parametrize(("stream", "path"), [
    (False, "models/gemini-1.5-flash:generateContent?key=AIzaKEY0123456789"),
    (True, "models/gemini-1.5-flash:streamGenerateContent?alt=sse&key=AIzaKEY0123456789"),
])
async def test_a_key_in_the_base_url_s_query_stays_in_the_query_of_every_request(
        http: httpx.AsyncClient, upstream: FakeUpstream, stream: bool, path: str) -> None:
    answer = {"candidates": [candidate("ok", "STOP")]}
    upstream.answer(lambda request: (
        json_response({"models": [{"name": "models/gemini-1.5-flash"}]})
        if request.url.path.endswith("/models") else
        sse_response(answer) if stream else json_response(answer)))
    cfg = ProviderConfig(kind="gemini", stream=stream,
                         base_url="https://gemini.test/v1beta?key=AIzaKEY0123456789")
    adapter = make_provider("google", cfg, http, None)

    await adapter.send(HI, "gemini-1.5-flash")
    listed = await adapter.probe()

    assert [str(r.url) for r in upstream.requests] == [
        f"https://gemini.test/v1beta/{path}",
        "https://gemini.test/v1beta/models?pageSize=1000&key=AIzaKEY0123456789"]
    assert listed is not None and "gemini-1.5-flash" in listed.ids
