"""What generateContent refuses but the other wires take is adapted, so it does not end a
route; and the wait a Gemini error body gives is honoured as a Retry-After header is."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from mcp_router.config import ProviderConfig
from mcp_router.errors import ProviderStatusError
from mcp_router.messages import ChatRequest, Message
from mcp_router.providers import make_provider
from mcp_router.providers.gemini import OPENING_USER_TURN, body_delay, build_body
from tests.providers.fakes import KEY, FakeUpstream, json_response
from tests.providers.routes import (
    GEMINI_ANSWER,
    OPENAI_ANSWER,
    Upstreams,
    answering,
    ask,
    router_over,
    tried,
)

HI = ChatRequest(messages=(Message(role="user", content="Hi"),))


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "parts": [{"text": text}]}


def request(*messages: tuple[str, str]) -> ChatRequest:
    return ChatRequest(messages=tuple(Message(role=r, content=c) for r, c in messages))


# generateContent answers an empty text part with 400 "Unable to submit request because it
# has an empty text parameter", and model-first contents with 400 "Please ensure that
# multiturn requests alternate between user and model".
CASES: dict[str, tuple[list[tuple[str, str]], dict[str, Any]]] = {
    # a host that keeps an empty assistant turn (tool-only, or an answer that was cut)
    "blank assistant turn": (
        [("user", "Hi"), ("assistant", ""), ("user", "Capital of France?")],
        {"contents": [{"role": "user", "parts": [{"text": "Hi"},
                                                 {"text": "Capital of France?"}]}]}),
    "blank system prompt": (
        [("system", ""), ("system", " \n"), ("user", "Capital of France?")],
        {"contents": [user("Capital of France?")]}),
    "a blank and a real system prompt": (
        [("system", ""), ("system", "Be brief."), ("user", "Capital of France?")],
        {"contents": [user("Capital of France?")],
         "systemInstruction": {"parts": [{"text": "Be brief."}]}}),
    # a history trimmed to fit, or a greeting kept as its first turn
    "history starting with the assistant": (
        [("assistant", "How can I help?"), ("user", "Capital of France?")],
        {"contents": [user(OPENING_USER_TURN),
                      {"role": "model", "parts": [{"text": "How can I help?"}]},
                      user("Capital of France?")]}),
    "blank assistant turn first": (
        [("assistant", ""), ("user", "Capital of France?")],
        {"contents": [user("Capital of France?")]}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_blank_messages_are_left_out_and_the_contents_open_with_a_user_turn(case: str) -> None:
    messages, body = CASES[case]

    assert build_body(request(*messages), "gemini-2.0-flash", False) == body


def gemini_like(sent: dict[str, Any]) -> httpx.Response:
    parts = [p for c in sent["contents"] for p in c["parts"]]
    parts += (sent.get("systemInstruction") or {}).get("parts", [])
    if any(not p.get("text") for p in parts):
        return httpx.Response(400, json={"error": {"code": 400, "status": "INVALID_ARGUMENT",
                                                   "message": "empty text parameter"}})
    if sent["contents"][0]["role"] != "user":
        return httpx.Response(400, json={"error": {
            "code": 400, "status": "INVALID_ARGUMENT",
            "message": "Please ensure that multiturn requests alternate between user and model."}})
    return httpx.Response(200, json=GEMINI_ANSWER)


@pytest.mark.virtual_time
@pytest.mark.anyio
@pytest.mark.parametrize("case", list(CASES))
async def test_messages_the_other_wires_take_are_answered_by_gemini(
        tmp_path: Path, case: str) -> None:
    # Before, Gemini's 400 ended the route and the fallback was never asked.
    upstreams = Upstreams({"gemini.test": gemini_like,
                           "openai.test": answering(200, OPENAI_ANSWER)})
    messages = tuple(Message(role=r, content=c) for r, c in CASES[case][0])
    async with router_over(upstreams, tmp_path) as router:
        result = await ask(router, messages=messages, model="google/gemini-2.0-flash",
                           fallbacks=("openai/gpt-4o-mini",))

    assert (result.provider, result.content) == ("google", "Paris.")
    assert (upstreams.hits("gemini.test"), upstreams.hits("openai.test")) == (1, 0)


def rate_limited(delay: object) -> dict[str, Any]:
    """Gemini's 429: no Retry-After header, the wait only in a google.rpc.RetryInfo detail."""
    return {"error": {
        "code": 429, "status": "RESOURCE_EXHAUSTED",
        "message": "You exceeded your current quota. Please retry in 34.3s.",
        "details": [
            {"@type": "type.googleapis.com/google.rpc.QuotaFailure",
             "violations": [{"quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"}]},
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay}]}}


@pytest.mark.parametrize(("body", "seconds"), [
    (rate_limited("34s"), 34.0), (rate_limited("1.5s"), 1.5),
    (rate_limited("45.837906927s"), 45.837906927), (rate_limited("0s"), 0.0),
    ([rate_limited("7s")], 7.0),  # some endpoints wrap the error in a one-element list
    (rate_limited("soon"), None), (rate_limited("-3s"), None), (rate_limited(34), None),
    ({"error": {"code": 429, "message": "Resource exhausted"}}, None), ("<html/>", None)])
def test_the_retry_delay_is_read_from_the_error_body(body: object, seconds: float | None) -> None:
    text = body if isinstance(body, str) else httpx.Response(429, json=body).text

    assert body_delay(429, text) == seconds


@pytest.mark.anyio
@pytest.mark.parametrize(("headers", "seconds"), [({}, 34.0), ({"retry-after": "5"}, 5.0)])
async def test_a_429s_body_delay_is_its_retry_after_unless_a_header_says_otherwise(
        http: httpx.AsyncClient, upstream: FakeUpstream, headers: dict[str, str],
        seconds: float) -> None:
    upstream.answer(json_response(rate_limited("34s"), 429, headers=headers))
    cfg = ProviderConfig(kind="gemini", base_url="https://gemini.test/v1beta",
                         api_key_env="GEMINI_API_KEY")

    with pytest.raises(ProviderStatusError) as caught:
        await make_provider("google", cfg, http, KEY).send(HI, "gemini-2.0-flash")

    assert (caught.value.status, caught.value.retry_after) == (429, seconds)


@pytest.mark.virtual_time
@pytest.mark.anyio
async def test_a_long_body_delay_holds_gemini_off_across_calls(tmp_path: Path) -> None:
    # 34 s is over retry.backoff_max_s: not retried, and held off as a header's would be.
    # Before, each call retried Gemini and the next one asked again: 6 hits, not 1.
    upstreams = Upstreams({"gemini.test": answering(429, rate_limited("34s")),
                           "openai.test": answering(200, OPENAI_ANSWER)})
    async with router_over(upstreams, tmp_path) as router:
        results = [await ask(router, prompt="Capital of France?",
                             model="google/gemini-2.0-flash",
                             fallbacks=("openai/gpt-4o-mini",)) for _ in range(3)]

    assert [r.provider for r in results] == ["openai"] * 3
    assert tried(results[0].attempts) == [("google", "error", 429), ("openai", "ok", None)]
    assert tried(results[2].attempts) == [("google", "skipped", None), ("openai", "ok", None)]
    assert upstreams.hits("gemini.test") == 1


@pytest.mark.virtual_time
@pytest.mark.anyio
async def test_a_short_body_delay_is_waited_out_before_the_retry(tmp_path: Path) -> None:
    answers = iter([httpx.Response(503, json=rate_limited("1.5s")),
                    httpx.Response(200, json=GEMINI_ANSWER)])
    upstreams = Upstreams({"gemini.test": lambda sent: next(answers)})
    async with router_over(upstreams, tmp_path) as router:
        started = anyio.current_time()
        result = await ask(router, prompt="Capital of France?", model="google/gemini-2.0-flash")
        waited = anyio.current_time() - started

    assert tried(result.attempts) == [("google", "error", 503), ("google", "ok", None)]
    assert waited == pytest.approx(1.5)  # the virtual clock: the backoff would be under 0.5 s
