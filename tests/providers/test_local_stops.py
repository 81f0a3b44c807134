"""Stop strings the OpenAI wire cannot send (all of a reasoning model's, any past the fourth)
are applied to the answer here, with the meaning the caller asked for."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mcp_router.config import ProviderConfig
from mcp_router.messages import Adapter, ChatRequest, Completion, Message, Usage
from mcp_router.providers import make_provider
from mcp_router.providers._stops import LocalStops
from tests.providers.fakes import (
    HTTPX_ON_TRIO,
    KEY,
    FakeUpstream,
    TextSink,
    json_response,
    sent_json,
    sse_response,
)
from tests.providers.routes import (
    GEMINI_ANSWER,
    OPENAI_ANSWER,
    Upstreams,
    answering,
    ask,
    router_over,
)

HI = (Message(role="user", content="List three colours, then write END."),)
FIVE = ("\n\n", "###", "END", "Q:", "User:")


def openai(http: httpx.AsyncClient, *, stream: bool) -> Adapter:
    cfg = ProviderConfig(kind="openai", base_url="https://api.openai.test/v1",
                         api_key_env="OPENAI_API_KEY", stream=stream)
    return make_provider("openai", cfg, http, KEY)


def chunk(content: str | None = None, finish: str | None = None) -> dict:
    delta = {} if content is None else {"content": content}
    return {"model": "o4-mini", "choices": [{"index": 0, "delta": delta,
                                             "finish_reason": finish}]}


def answered(content: str, finish: str = "stop") -> httpx.Response:
    return json_response({"model": "o4-mini", "usage": {"prompt_tokens": 9,
                                                        "completion_tokens": 20},
                          "choices": [{"index": 0, "message": {"content": content},
                                       "finish_reason": finish}]})


def passed_on(text: str, cuts: list[int], stops: LocalStops) -> str:
    """What a StopFilter passes on of `text` streamed in pieces cut at `cuts`, flushed."""
    sink = TextSink()
    passing = stops.passing(sink)
    bounds = [0, *sorted(cuts), len(text)]

    async def stream() -> None:
        for a, b in zip(bounds, bounds[1:], strict=False):
            await passing(text[a:b])
        await passing.flush()

    anyio.run(stream)
    return "".join(sink.deltas)


@given(st.text("abEND\n", max_size=30), st.lists(st.text("abEND\n", min_size=1, max_size=4),
                                                 max_size=3),
       st.lists(st.integers(0, 30), max_size=6))
def test_streamed_text_is_passed_on_up_to_the_first_stop_however_the_deltas_are_cut(
        text: str, stops: list[str], cuts: list[int]) -> None:
    local = LocalStops(stops)
    ends = [text.find(s) for s in stops if text.find(s) >= 0]
    expected = text[:min(ends)] if ends else text

    assert passed_on(text, [c for c in cuts if c <= len(text)], local) == expected
    assert (local.cut(text) if ends else text) == expected


def test_an_empty_stop_string_cuts_nothing() -> None:
    assert LocalStops(["", "END"]).cut("red END blue") == "red "
    assert not LocalStops([""])


@pytest.mark.anyio
async def test_a_reasoning_model_is_sent_no_stop_and_its_answer_is_cut_at_the_first(
        http: httpx.AsyncClient, upstream: FakeUpstream) -> None:
    # o-series and gpt-5 answer any `stop` with 400 "Unsupported parameter: 'stop'".
    upstream.answer(answered("red, green, blue\nEND\nAnything else?", finish="length"))
    sink = TextSink()

    completion = await openai(http, stream=False).send(
        ChatRequest(messages=HI, stop=("END",)), "o4-mini", on_text=sink)

    assert "stop" not in sent_json(upstream.request)
    assert sink.deltas == ["red, green, blue\n"]
    assert (completion.content, completion.finish_reason) == ("red, green, blue\n", "stop")


@pytest.mark.anyio
async def test_a_streamed_stop_cut_between_chunks_is_found_and_nothing_after_it_passed_on(
        http: httpx.AsyncClient, upstream: FakeUpstream) -> None:
    upstream.answer(sse_response(
        chunk("red, green"), chunk(", blue\nE"), chunk("N"), chunk("D\nAnything"), chunk(" else?"),
        chunk(None, "stop"),
        {"model": "o4-mini", "choices": [], "usage": {"prompt_tokens": 9,
                                                      "completion_tokens": 20}},
        "[DONE]"))
    sink = TextSink()

    completion = await openai(http, stream=True).send(
        ChatRequest(messages=HI, stop=("END", "Anything")), "o4-mini", on_text=sink)

    assert "stop" not in sent_json(upstream.request)
    assert sink.deltas == ["red, green", ", blue\n"]
    # Read no further than the stop: the usage chunk after it never came, so no usage; the
    # text read (up to the end of the chunk holding the stop) is what an estimate counts.
    read = "red, green, blue\nEND\nAnything"
    assert completion.model_copy(update={"ttfb_ms": None}) == Completion(
        content="red, green, blue\n", finish_reason="stop", usage=Usage(),
        usage_reported=False, upstream_model="o4-mini", generated_chars=len(read),
        generated_utf8_bytes=len(read))
    assert "generated" not in completion.model_dump_json()  # nor in a cache entry


@pytest.mark.anyio
async def test_text_held_back_as_a_possible_stop_is_passed_on_when_it_was_none(
        http: httpx.AsyncClient, upstream: FakeUpstream) -> None:
    upstream.answer(sse_response(chunk("red, E"), chunk("N"), chunk(None, "length"), "[DONE]"))
    sink = TextSink()

    completion = await openai(http, stream=True).send(
        ChatRequest(messages=HI, stop=("END",)), "o3", on_text=sink)

    assert "".join(sink.deltas) == completion.content == "red, EN"
    assert sink.deltas[0] == "red, "
    assert completion.finish_reason == "length"


@pytest.mark.anyio
async def test_the_first_four_stops_are_sent_and_the_rest_applied_to_the_answer(
        http: httpx.AsyncClient, upstream: FakeUpstream) -> None:
    # Chat Completions refuses a fifth with 400 "Invalid 'stop': array too long".
    upstream.answer(answered("Paris.\nUser: and Rome?"))
    sink = TextSink()

    completion = await openai(http, stream=False).send(
        ChatRequest(messages=HI, stop=FIVE), "gpt-4o-mini", on_text=sink)

    assert sent_json(upstream.request)["stop"] == ["\n\n", "###", "END", "Q:"]
    assert sink.deltas == ["Paris.\n"]
    assert (completion.content, completion.finish_reason) == ("Paris.\n", "stop")


@pytest.mark.anyio
async def test_a_refusal_cut_at_a_local_stop_stays_a_refusal(
        http: httpx.AsyncClient, upstream: FakeUpstream) -> None:
    upstream.answer(json_response({"choices": [{"index": 0, "finish_reason": "stop", "message": {
        "content": None, "refusal": "I can't help with that. END"}}]}))

    completion = await openai(http, stream=False).send(
        ChatRequest(messages=HI, stop=("END",)), "o3")

    assert (completion.content, completion.finish_reason) == ("I can't help with that. ",
                                                              "refusal")


UNSUPPORTED_STOP = {"error": {
    "message": "Unsupported parameter: 'stop' is not supported with this model.",
    "type": "invalid_request_error", "param": "stop", "code": "unsupported_parameter"}}
TOO_MANY_STOPS = {"error": {
    "message": "Invalid 'stop': array too long. Expected an array with maximum length 4, but "
               "got an array with length 5 instead.",
    "type": "invalid_request_error", "param": "stop", "code": "array_above_max_length"}}


def openai_like(sent: dict[str, Any]) -> httpx.Response:
    """OpenAI's own checks on `stop`; its answer runs on past the caller's stop strings."""
    if sent["model"].startswith(("o1", "o3", "o4", "gpt-5")) and "stop" in sent:
        return httpx.Response(400, json=UNSUPPORTED_STOP)
    if len(sent.get("stop") or ()) > 4:
        return httpx.Response(400, json=TOO_MANY_STOPS)
    message = {"role": "assistant", "content": "Paris.\nUser: and Rome?"}
    return httpx.Response(200, json={**OPENAI_ANSWER, "model": sent["model"],
                                     "choices": [{"index": 0, "message": message,
                                                  "finish_reason": "stop"}]})


@pytest.mark.virtual_time
@pytest.mark.anyio
@pytest.mark.parametrize(("model", "stop", "content"), [
    ("o4-mini", ("User:",), "Paris.\n"), ("gpt-5", ("END", "\nUser"), "Paris."),
    ("gpt-4o-mini", FIVE, "Paris.\n")])
async def test_the_route_is_answered_by_the_openai_target_and_the_cut_answer_cached(
        tmp_path: Path, model: str, stop: tuple[str, ...], content: str) -> None:
    # Before, OpenAI's 400 ended the route: the fallback was never asked, nothing answered.
    upstreams = Upstreams({"openai.test": openai_like,
                           "gemini.test": answering(200, GEMINI_ANSWER)})
    async with router_over(upstreams, tmp_path) as router:
        call = {"prompt": "Capital of France?", "model": f"openai/{model}",
                "fallbacks": ("google/gemini-2.0-flash",), "stop": stop, "cache": "use"}
        first = await ask(router, **call)
        again = await ask(router, **call)

    assert (first.provider, first.content, first.finish_reason) == ("openai", content, "stop")
    assert (again.cached, again.content) == (True, content)
    assert (upstreams.hits("openai.test"), upstreams.hits("gemini.test")) == (1, 0)


@pytest.mark.filterwarnings(HTTPX_ON_TRIO)
@pytest.mark.virtual_time
@pytest.mark.anyio
async def test_a_streamed_answer_is_cut_at_a_stop_spanning_chunks_before_it_is_cached(
        tmp_path: Path) -> None:
    def streamed(sent: dict[str, Any]) -> httpx.Response:
        assert "stop" not in sent
        return sse_response(chunk("Paris.\nUs"), chunk("er: and Rome?"), chunk(None, "stop"),
                            "[DONE]")

    upstreams = Upstreams({"openai-sse.test": streamed})
    async with router_over(upstreams, tmp_path) as router:
        call = {"prompt": "Capital of France?", "model": "openai_sse/o4-mini",
                "stop": ("User:",), "cache": "use"}
        first = await ask(router, **call)
        again = await ask(router, **call)

    assert (first.content, first.finish_reason, first.cached) == ("Paris.\n", "stop", False)
    assert (again.content, again.cached) == ("Paris.\n", True)
    assert upstreams.hits("openai-sse.test") == 1
