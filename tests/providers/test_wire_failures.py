"""What the adapters make of vendor answers that are not what they look like: a finish_reason
that reports a failure, a blocked prompt sent as a 400, more stop strings than a wire takes,
Perplexity's sources beside the text that cites them, usage reports whose counts are no token
counts, and a 200 that carries neither text nor a finish reason."""

from __future__ import annotations

import httpx
import pytest
from pydantic import ValidationError

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


def claude(http: httpx.AsyncClient, *, stream: bool) -> Adapter:
    cfg = ProviderConfig(kind="anthropic", base_url="https://anthropic.test",
                         api_key_env="ANTHROPIC_API_KEY", stream=stream)
    return make_provider("anthropic", cfg, http, KEY)


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


# 5. Usage reports whose counts are no token counts

BAD_COUNTS = [-1_000_000_000_000, -1, True, 2**63, 10**9 + 1, 1.5, "12"]


def hello_with_usage(wire: str, stream: bool, count: object) -> httpx.Response:
    """A whole "Hello" answer of `wire` whose usage report holds `count` as one of its counts
    (Gemini's in `thoughtsTokenCount`, which is added to the output)."""
    if wire == "openai":
        usage = {"prompt_tokens": count, "completion_tokens": 3}
        if stream:
            return sse_response(chunk("Hello", "stop"), chunk(usage=usage), "[DONE]")
        return json_response(answer("Hello", "stop", usage=usage))
    if wire == "anthropic":
        usage = {"input_tokens": 5, "output_tokens": count}
        if stream:
            return sse_response(
                ("message_start", {"type": "message_start", "message": {"usage": {}}}),
                ("content_block_delta", {"type": "content_block_delta",
                                         "delta": {"type": "text_delta", "text": "Hello"}}),
                ("message_delta", {"type": "message_delta",
                                   "delta": {"stop_reason": "end_turn"}, "usage": usage}),
                ("message_stop", {"type": "message_stop"}))
        return json_response({"type": "message", "stop_reason": "end_turn", "usage": usage,
                              "content": [{"type": "text", "text": "Hello"}]})
    body = {"candidates": [{"content": {"parts": [{"text": "Hello"}]}, "finishReason": "STOP"}],
            "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 3,
                              "thoughtsTokenCount": count}}
    return sse_response(body) if stream else json_response(body)


def adapter_of(wire: str, http: httpx.AsyncClient, *, stream: bool) -> Adapter:
    if wire == "openai":
        return compatible(http, "deepseek", stream=stream)
    return claude(http, stream=stream) if wire == "anthropic" else gemini(http, stream=stream)


@pytest.mark.parametrize("count", BAD_COUNTS, ids=repr)
@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("wire", ["openai", "anthropic", "gemini"])
async def test_a_usage_report_with_a_count_that_is_no_token_count_counts_as_no_report(
        http: httpx.AsyncClient, upstream: FakeUpstream, wire: str, stream: bool,
        count: object) -> None:
    upstream.answer(hello_with_usage(wire, stream, count))

    completion = await adapter_of(wire, http, stream=stream).send(HI, "m")

    # answered, and charged at an estimate as an answer reporting no usage is: a negative
    # count would price as a refund, and 2**63 as a fortune no ledger row can hold
    assert (completion.content, completion.usage_reported, completion.usage) == (
        "Hello", False, Usage())


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(("wire", "usage"), [
    ("openai", Usage(input_tokens=10**9, output_tokens=3)),
    ("anthropic", Usage(input_tokens=5, output_tokens=10**9)),
    ("gemini", Usage(input_tokens=5, output_tokens=3 + 10**9))])
async def test_the_largest_token_count_is_read_as_sent(
        http: httpx.AsyncClient, upstream: FakeUpstream, wire: str, usage: Usage,
        stream: bool) -> None:
    upstream.answer(hello_with_usage(wire, stream, 10**9))

    completion = await adapter_of(wire, http, stream=stream).send(HI, "m")

    assert (completion.usage_reported, completion.usage) == (True, usage)


@pytest.mark.parametrize("count", [-1, True])
def test_a_usage_with_a_negative_or_boolean_count_cannot_be_made(count: object) -> None:
    with pytest.raises(ValidationError):
        Usage(input_tokens=count)  # type: ignore[arg-type]


# 6. A 200 that carries neither text nor a finish reason

MESSAGE_START = ("message_start", {"type": "message_start",
                                   "message": {"usage": {"input_tokens": 5, "output_tokens": 1}}})
NO_ANSWERS = {
    "gemini {}": (lambda http: gemini(http, stream=False), json_response({}), None),
    "gemini no candidates": (lambda http: gemini(http, stream=False),
                             json_response({"candidates": [],
                                            "usageMetadata": {"promptTokenCount": 7}}),
                             Usage(input_tokens=7)),
    "openai [DONE] only": (lambda http: compatible(http, "deepseek", stream=True),
                           sse_response("[DONE]"), None),
    "openai only another choice": (
        lambda http: compatible(http, "deepseek", stream=True),
        sse_response({"choices": [{"index": 1, "delta": {"content": "Hi"},
                                   "finish_reason": "stop"}]}, "[DONE]"), None),
    "openai json": (lambda http: compatible(http, "deepseek", stream=False),
                    json_response({"choices": [{"index": 0, "message": {"content": None}}],
                                   "usage": {"prompt_tokens": 9, "completion_tokens": 0}}),
                    Usage(input_tokens=9)),
    "anthropic start and stop": (lambda http: claude(http, stream=True),
                                 sse_response(MESSAGE_START,
                                              ("message_stop", {"type": "message_stop"})),
                                 Usage(input_tokens=5, output_tokens=1)),
}


@pytest.mark.parametrize("case", list(NO_ANSWERS))
async def test_an_answer_with_no_text_and_no_finish_reason_is_an_upstream_502(
        http: httpx.AsyncClient, upstream: FakeUpstream, case: str) -> None:
    make, reply, billed = NO_ANSWERS[case]
    upstream.answer(reply)

    with pytest.raises(ProviderStatusError) as caught:
        await make(http).send(HI, "m")

    # a 502 is retried, then the next target is asked; the usage it reported was billed
    assert (caught.value.status, caught.value.billed) == (502, billed)
    assert str(caught.value).startswith(f"{caught.value.provider}/m: HTTP 502: no answer: ")


@pytest.mark.parametrize("stream", [False, True])
async def test_an_empty_answer_that_says_why_it_ended_is_an_answer(
        http: httpx.AsyncClient, upstream: FakeUpstream, stream: bool) -> None:
    upstream.answer(sse_response(chunk(finish="stop"), "[DONE]") if stream
                    else json_response(answer("", "stop")))

    completion = await compatible(http, "deepseek", stream=stream).send(HI, "m")

    assert (completion.content, completion.finish_reason) == ("", "stop")
