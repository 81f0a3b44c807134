"""What the adapters make of vendor answers that are not what they look like: a finish_reason
that reports a failure, a blocked prompt sent as a 400, more stop strings than a wire takes,
and Perplexity's sources beside the text that cites them."""

from __future__ import annotations

import httpx
import pytest

from mcp_router.config import ProviderConfig
from mcp_router.errors import ProviderStatusError
from mcp_router.messages import Adapter, ChatRequest, Completion, Message, Usage
from mcp_router.providers import make_provider
from tests.providers.fakes import (
    KEY,
    FakeUpstream,
    TextSink,
    json_response,
    sent_json,
    sse_response,
)

pytestmark = pytest.mark.anyio

HI = ChatRequest(messages=(Message(role="user", content="Hi"),))


def compatible(http: httpx.AsyncClient, provider: str, *, stream: bool) -> Adapter:
    cfg = ProviderConfig(kind="openai", base_url=f"https://{provider}.test/v1",
                         api_key_env="KEY", stream=stream)
    return make_provider(provider, cfg, http, KEY)


def gemini(http: httpx.AsyncClient, *, stream: bool) -> Adapter:
    cfg = ProviderConfig(kind="gemini", base_url="https://gemini.test/v1beta",
                         api_key_env="GEMINI_API_KEY", stream=stream)
    return make_provider("google", cfg, http, KEY)


def answer(content: str, finish: str, **extra: object) -> dict:
    return {"model": "deepseek-chat", "object": "chat.completion",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                         "finish_reason": finish}], **extra}


def chunk(content: str | None = None, finish: str | None = None, **extra: object) -> dict:
    delta = {} if content is None else {"content": content}
    return {"object": "chat.completion.chunk", "model": "deepseek-chat",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}


def without_ttfb(completion: Completion) -> Completion:
    return completion.model_copy(update={"ttfb_ms": None})


# 1. A finish_reason that says the upstream failed partway


@pytest.mark.parametrize(("finish", "status"), [("insufficient_system_resource", 503),
                                                ("error", 502)])
async def test_a_json_answer_whose_finish_reason_reports_a_failure_is_that_failure(
        http: httpx.AsyncClient, upstream: FakeUpstream, finish: str, status: int) -> None:
    upstream.answer(json_response(answer("The first three steps are: 1.", finish,
                                         usage={"prompt_tokens": 10, "completion_tokens": 8})))
    sink = TextSink()

    with pytest.raises(ProviderStatusError) as caught:
        await compatible(http, "deepseek", stream=False).send(HI, "deepseek-chat", sink)

    assert caught.value.status == status
    assert f"(finish_reason {finish})" in caught.value.reason
    # passed on before the failure, as a stream's deltas are: the charge counts this text
    assert sink.deltas == ["The first three steps are: 1."]


@pytest.mark.parametrize(("finish", "status"), [("insufficient_system_resource", 503),
                                                ("error", 502)])
async def test_a_stream_whose_finish_reason_reports_a_failure_is_that_failure(
        http: httpx.AsyncClient, upstream: FakeUpstream, finish: str, status: int) -> None:
    upstream.answer(sse_response(chunk("The first three"), chunk(" steps", finish),
                                 chunk(usage={"prompt_tokens": 10, "completion_tokens": 5}),
                                 "[DONE]"))
    sink = TextSink()

    with pytest.raises(ProviderStatusError) as caught:
        await compatible(http, "openrouter", stream=True).send(HI, "deepseek-chat", sink)

    assert caught.value.status == status
    assert sink.deltas == ["The first three", " steps"]  # the failing chunk's text counts too


async def test_the_ordinary_finish_reasons_still_finish_an_answer(
        http: httpx.AsyncClient, upstream: FakeUpstream) -> None:
    upstream.answer(sse_response(chunk("Par"), chunk("is", "length"), "[DONE]"))

    completion = await compatible(http, "deepseek", stream=True).send(HI, "deepseek-chat")

    assert (completion.content, completion.finish_reason) == ("Paris", "length")


# 2. Gemini takes at most five stop strings

SIX_STOPS = ChatRequest(messages=HI.messages, stop=("\n\n", "###", "Q:", "User:", "END", "STOP"))


async def test_gemini_is_sent_five_stop_strings_and_its_answer_is_cut_at_the_sixth(
        http: httpx.AsyncClient, upstream: FakeUpstream) -> None:
    upstream.answer(json_response({
        "candidates": [{"content": {"role": "model", "parts": [{"text": "Paris.STOP more"}]},
                        "finishReason": "STOP"}],
        "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 4}}))
    sink = TextSink()

    completion = await gemini(http, stream=False).send(SIX_STOPS, "gemini-2.5-flash", sink)

    assert sent_json(upstream.request)["generationConfig"] == {
        "stopSequences": ["\n\n", "###", "Q:", "User:", "END"]}
    assert (completion.content, completion.finish_reason, sink.deltas) == (
        "Paris.", "stop", ["Paris."])
    assert completion.usage == Usage(input_tokens=5, output_tokens=4)


async def test_a_gemini_stream_ends_at_the_sixth_stop_string_with_the_usage_it_had(
        http: httpx.AsyncClient, upstream: FakeUpstream) -> None:
    def part(text: str, **extra: object) -> dict:
        return {"candidates": [{"content": {"role": "model", "parts": [{"text": text}]}}],
                **extra}

    upstream.answer(sse_response(part("Paris.", usageMetadata={"promptTokenCount": 5}),
                                 part("ST"), part("OP and on"), "not even JSON"))
    sink = TextSink()

    completion = await gemini(http, stream=True).send(SIX_STOPS, "gemini-2.5-flash", sink)

    assert "".join(sink.deltas) == "Paris."
    assert (completion.content, completion.finish_reason) == ("Paris.", "stop")
    assert completion.usage == Usage(input_tokens=5)


# 3. A blocked prompt sent as a 400 (Azure OpenAI)

AZURE_PROMPT_FILTERED = {"error": {
    "message": "The response was filtered due to the prompt triggering Azure OpenAI's content "
               "management policy. Please modify your prompt and retry.",
    "type": None, "param": "prompt", "code": "content_filter", "status": 400,
    "innererror": {"code": "ResponsibleAIPolicyViolation",
                   "content_filter_result": {"hate": {"filtered": True, "severity": "high"}}}}}


@pytest.mark.parametrize("stream", [False, True])
async def test_a_prompt_blocked_with_a_400_completes_empty_as_content_filter_as_gemini_s_does(
        http: httpx.AsyncClient, upstream: FakeUpstream, stream: bool) -> None:
    upstream.answer(json_response(AZURE_PROMPT_FILTERED, status=400))
    sink = TextSink()

    completion = await compatible(http, "azure", stream=stream).send(HI, "gpt-4o", sink)

    # no usage report: the input Azure bills for judging the prompt is charged as an estimate
    assert completion == Completion(content="", finish_reason="content_filter",
                                    usage_reported=False)
    assert sink.deltas == []


async def test_a_400_with_another_code_stays_a_400(http: httpx.AsyncClient,
                                                    upstream: FakeUpstream) -> None:
    upstream.answer(json_response({"error": {"message": "bad temperature", "code": "invalid_value",
                                             "param": "temperature"}}, status=400))

    with pytest.raises(ProviderStatusError) as caught:
        await compatible(http, "azure", stream=False).send(HI, "gpt-4o")

    assert (caught.value.status, caught.value.reason) == (400, "bad temperature")


# 4. Perplexity's sources

CITED = "Paris is the capital of France [1][2]."
URLS = ["https://en.wikipedia.org/wiki/Paris", "https://www.britannica.com/place/Paris"]
SOURCES = ("\n\nSources:\n[1] https://en.wikipedia.org/wiki/Paris\n"
           "[2] https://www.britannica.com/place/Paris")


@pytest.mark.parametrize(("listed", "appended"), [
    ({"citations": URLS, "search_results": [{"url": "https://elsewhere.test"}]}, SOURCES),
    ({"search_results": [{"title": "Paris", "url": URLS[0]}, {"title": "P", "url": URLS[1]}]},
     SOURCES),
    ({"citations": [], "search_results": [{"url": URLS[0]}]}, ""),
    ({"search_results": [{"title": "no address"}]}, ""),
    ({}, ""),
], ids=["citations", "search_results without citations", "empty citations", "no urls", "none"])
async def test_a_json_answer_lists_its_sources_after_its_text(
        http: httpx.AsyncClient, upstream: FakeUpstream, listed: dict, appended: str) -> None:
    upstream.answer(json_response(answer(CITED, "stop", **listed)))
    sink = TextSink()

    completion = await compatible(http, "perplexity", stream=False).send(HI, "sonar", sink)

    assert (completion.content, completion.finish_reason) == (CITED + appended, "stop")
    assert sink.deltas == [CITED + appended]


@pytest.mark.parametrize("events", [
    [chunk("Paris is the capital", citations=URLS), chunk(" of France [1][2].", citations=URLS),
     chunk(finish="stop", citations=URLS, usage={"prompt_tokens": 5, "completion_tokens": 9})],
    [chunk("Paris is the capital"), chunk(" of France [1][2].", "stop"),
     chunk(citations=URLS, usage={"prompt_tokens": 5, "completion_tokens": 9}), "[DONE]"],
], ids=["on every chunk", "on the last chunk only"])
async def test_a_stream_passes_its_sources_on_once_as_its_last_delta(
        http: httpx.AsyncClient, upstream: FakeUpstream, events: list) -> None:
    upstream.answer(sse_response(*events))
    sink = TextSink()

    completion = await compatible(http, "perplexity", stream=True).send(HI, "sonar", sink)

    assert sink.deltas[-1] == SOURCES and "".join(sink.deltas) == CITED + SOURCES
    assert without_ttfb(completion) == Completion(
        content=CITED + SOURCES, finish_reason="stop",
        usage=Usage(input_tokens=5, output_tokens=9), upstream_model="deepseek-chat")


async def test_sources_follow_an_answer_cut_by_length_which_stays_cut_by_length(
        http: httpx.AsyncClient, upstream: FakeUpstream) -> None:
    upstream.answer(sse_response(chunk("Paris is [1]", citations=URLS),
                                 chunk(" the", "length", citations=URLS), "[DONE]"))

    completion = await compatible(http, "perplexity", stream=True).send(HI, "sonar")

    assert (completion.content, completion.finish_reason) == ("Paris is [1] the" + SOURCES,
                                                              "length")


@pytest.mark.parametrize("stream", [False, True])
async def test_an_answer_with_no_text_gets_no_sources_and_stays_empty(
        http: httpx.AsyncClient, upstream: FakeUpstream, stream: bool) -> None:
    """A reasoning model that spent max_tokens thinking answers nothing but its citations:
    sources alone would make it a non-empty answer, which the cache would keep for an hour."""
    if stream:
        upstream.answer(sse_response(chunk("", citations=URLS), chunk(" ", citations=URLS),
                                     chunk(finish="length", citations=URLS), "[DONE]"))
    else:
        upstream.answer(json_response(answer("", "length", citations=URLS)))

    completion = await compatible(http, "perplexity", stream=stream).send(HI, "sonar-reasoning")

    assert (completion.content.strip(), completion.finish_reason) == ("", "length")


SEVEN_STOPS = ChatRequest(messages=HI.messages,
                          stop=("###", "Q:", "User:", "END", "[2]", "<<", ">>"))


@pytest.mark.parametrize("stream", [False, True])
async def test_no_sources_follow_an_answer_a_local_stop_string_ended(
        http: httpx.AsyncClient, upstream: FakeUpstream, stream: bool) -> None:
    if stream:
        upstream.answer(sse_response(chunk("Paris [1]", citations=URLS),
                                     chunk(" and [2] more", citations=URLS),
                                     chunk(finish="stop", citations=URLS), "[DONE]"))
    else:
        upstream.answer(json_response(answer("Paris [1] and [2] more", "stop", citations=URLS)))
    sink = TextSink()

    completion = await compatible(http, "perplexity", stream=stream).send(SEVEN_STOPS, "sonar",
                                                                          sink)

    assert (completion.content, completion.finish_reason) == ("Paris [1] and ", "stop")
    assert "".join(sink.deltas) == "Paris [1] and "
