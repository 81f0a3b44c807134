"""What the OpenAI-compatible wire adapts per vendor so that a request the others take does not
end a fallback chain on one vendor's 400: no `stop` for xAI's reasoning models (applied to
the answer instead), and Perplexity's role rules (system messages first, user turns first and
last). Every other vendor is sent the body it was sent before."""

from __future__ import annotations

import json
import random
import textwrap
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from mcp_router.clock import LoopClock
from mcp_router.config import ProviderConfig, parse_config
from mcp_router.messages import Adapter, ChatCall, ChatRequest, ChatResult, Message
from mcp_router.providers import make_provider
from mcp_router.providers.gemini import OPENING_USER_TURN
from mcp_router.providers.openai import build_body, local_stops
from mcp_router.router import Router
from mcp_router.wiring import open_router
from tests.providers.fakes import (
    KEY,
    FakeUpstream,
    TextSink,
    json_response,
    sent_json,
    sse_response,
)

XAI_REASONING = ("grok-4", "grok-4-0709", "grok-4-latest", "grok-4.1-fast-reasoning",
                 "grok-4-fast-reasoning", "grok-3-mini", "grok-3-mini-fast", "grok-code-fast-1")
TAKES_STOP = ("grok-3", "grok-4-fast-non-reasoning", "grok-4-1-fast-non-reasoning",
              "grok-2-1212", "x-ai/grok-4", "gpt-4o", "sonar")
ASK = (Message(role="user", content="Count to five, then write END."),)


def messages(*pairs: tuple[str, str]) -> tuple[Message, ...]:
    return tuple(Message(role=role, content=content) for role, content in pairs)


def wire(*pairs: tuple[str, str]) -> list[dict[str, str]]:
    return [{"role": role, "content": content} for role, content in pairs]


def compatible(http: httpx.AsyncClient, provider: str, base_url: str, *,
               stream: bool = False) -> Adapter:
    cfg = ProviderConfig(kind="openai", base_url=base_url, api_key_env="KEY", stream=stream)
    return make_provider(provider, cfg, http, KEY)


# --- xAI reasoning models: no `stop` sent, all of it applied to the answer -------------------

@pytest.mark.parametrize("model", XAI_REASONING)
def test_an_xai_reasoning_model_is_sent_no_stop_and_the_rest_as_before(model: str) -> None:
    request = ChatRequest(messages=ASK, stop=("END", "\n\n"), max_tokens=50, temperature=0.2,
                          top_p=0.9)

    assert build_body(request, model, False) == {
        "model": model, "messages": wire(("user", "Count to five, then write END.")),
        "max_tokens": 50, "temperature": 0.2, "top_p": 0.9}
    assert local_stops(request, model) == ("END", "\n\n")


@pytest.mark.parametrize("model", TAKES_STOP)
def test_other_models_are_still_sent_their_stops(model: str) -> None:
    request = ChatRequest(messages=ASK, stop=("END",), max_tokens=50)

    assert build_body(request, model, False)["stop"] == ["END"]
    assert local_stops(request, model) == ()


def grok_answer(content: str) -> httpx.Response:
    return json_response({"model": "grok-4-0709", "usage": {"prompt_tokens": 9,
                                                            "completion_tokens": 12},
                          "choices": [{"index": 0, "message": {"content": content},
                                       "finish_reason": "length"}]})


def grok_chunk(content: str | None = None, finish: str | None = None) -> dict:
    delta = {} if content is None else {"content": content}
    return {"model": "grok-4-0709", "choices": [{"index": 0, "delta": delta,
                                                 "finish_reason": finish}]}


@pytest.mark.anyio
async def test_a_grok_reasoning_answer_is_cut_at_the_first_stop(
        http: httpx.AsyncClient, upstream: FakeUpstream) -> None:
    upstream.answer(grok_answer("1, 2, 3, 4, 5\nEND\nShall I go on?"))
    sink = TextSink()

    completion = await compatible(http, "xai", "https://api.x.ai/v1").send(
        ChatRequest(messages=ASK, stop=("END",)), "grok-4", on_text=sink)

    assert "stop" not in sent_json(upstream.request)
    assert sink.deltas == ["1, 2, 3, 4, 5\n"]
    assert (completion.content, completion.finish_reason) == ("1, 2, 3, 4, 5\n", "stop")


@pytest.mark.anyio
async def test_a_streamed_grok_reasoning_answer_ends_at_the_first_stop(
        http: httpx.AsyncClient, upstream: FakeUpstream) -> None:
    upstream.answer(sse_response(grok_chunk("1, 2, 3"), grok_chunk(", 4, 5\nE"),
                                 grok_chunk("ND\nShall"), grok_chunk(" I go on?"),
                                 grok_chunk(None, "stop"), "[DONE]"))
    sink = TextSink()

    completion = await compatible(http, "xai", "https://api.x.ai/v1", stream=True).send(
        ChatRequest(messages=ASK, stop=("END",)), "grok-3-mini", on_text=sink)

    assert "stop" not in sent_json(upstream.request)
    assert "".join(sink.deltas) == completion.content == "1, 2, 3, 4, 5\n"
    assert completion.finish_reason == "stop"


# --- Perplexity: system messages first, the user's turn first and last ------------------------

MID_SYSTEM = messages(("system", "Be brief."), ("user", "Capital of France?"),
                      ("assistant", "Paris."), ("system", "Now answer in German."),
                      ("user", "And of Spain?"))
GREETING_FIRST = messages(("system", "You are a travel bot."), ("assistant", "Hi! Where to?"),
                          ("user", "Capital of France?"))
ASSISTANT_LAST = messages(("user", "Capital of France?"), ("assistant", "Paris."))
HISTORIES = {
    "a system message mid-conversation": (MID_SYSTEM, wire(
        ("system", "Be brief.\n\nNow answer in German."), ("user", "Capital of France?"),
        ("assistant", "Paris."), ("user", "And of Spain?"))),
    "a history opening with an assistant greeting": (GREETING_FIRST, wire(
        ("system", "You are a travel bot."), ("user", OPENING_USER_TURN),
        ("assistant", "Hi! Where to?"), ("user", "Capital of France?"))),
    "a history ending with the assistant": (ASSISTANT_LAST, wire(
        ("user", "Capital of France?"), ("assistant", "Paris."), ("user", "Please continue."))),
    # no leading system message: the late ones make one; the user turns around one merge
    "late system messages and no leading one": (messages(
        ("user", "Hi"), ("system", "Be brief."), ("user", "Capital of France?"),
        ("system", " "), ("system", "In German.")), wire(
        ("system", "Be brief.\n\nIn German."), ("user", "Hi\n\nCapital of France?"))),
    # several leading system messages are taken; the late one joins the last of them
    "two leading system messages": (messages(
        ("system", "Be brief."), ("system", "Be kind."), ("assistant", "Hello."),
        ("system", "In German.")), wire(
        ("system", "Be brief."), ("system", "Be kind.\n\nIn German."),
        ("user", OPENING_USER_TURN), ("assistant", "Hello."), ("user", "Please continue."))),
}
PERPLEXITY = {"named perplexity, any host": ("perplexity", "https://perplexity.test"),
              "its own host, any name": ("pplx", "https://api.perplexity.ai")}
OTHERS = {"openai": "https://api.openai.com/v1", "deepseek": "https://api.deepseek.com",
          "together": "https://api.together.xyz/v1", "xai": "https://api.x.ai/v1",
          "openrouter": "https://openrouter.ai/api/v1"}


@pytest.mark.anyio
@pytest.mark.parametrize("vendor", list(PERPLEXITY))
@pytest.mark.parametrize("history", list(HISTORIES))
async def test_perplexity_is_sent_the_history_in_the_shape_it_takes(
        http: httpx.AsyncClient, upstream: FakeUpstream, vendor: str, history: str) -> None:
    given, sent = HISTORIES[history]
    upstream.answer(grok_answer("Madrid."))

    await compatible(http, *PERPLEXITY[vendor]).send(ChatRequest(messages=given), "sonar")

    assert sent_json(upstream.request)["messages"] == sent


@pytest.mark.anyio
@pytest.mark.parametrize("provider", list(OTHERS))
@pytest.mark.parametrize("history", list(HISTORIES))
async def test_other_vendors_are_sent_the_body_they_were_sent_before(
        http: httpx.AsyncClient, upstream: FakeUpstream, provider: str, history: str) -> None:
    request = ChatRequest(messages=HISTORIES[history][0], stop=("END",))
    upstream.answer(grok_answer("Madrid."))

    await compatible(http, provider, OTHERS[provider]).send(request, "gpt-4o")

    assert sent_json(upstream.request) == build_body(request, "gpt-4o", False)
    assert sent_json(upstream.request)["messages"][-1]["role"] == \
        HISTORIES[history][0][-1].role


# --- through the router: a mock enforcing each rule no longer ends the chain -----------------

CONFIG = textwrap.dedent("""\
    providers:
      xai: {kind: openai, base_url: "https://xai.test/v1", api_key_env: X_KEY, stream: false}
      xai_sse: {kind: openai, base_url: "https://xai-sse.test/v1", api_key_env: X_KEY}
      pplx: {kind: openai, base_url: "https://api.perplexity.ai", api_key_env: P_KEY,
             stream: false}
      openai: {kind: openai, base_url: "https://openai.test/v1", api_key_env: O_KEY,
               stream: false}
    routes:
      default:
        targets:
          - {provider: openai, model: gpt-4o}
    default_route: default
    retry: {attempts: 1, backoff_initial_s: 0.01, backoff_max_s: 0.05}
    """)
KEYS = {"xai": "x-key-0123456789", "xai_sse": "x-key-0123456789", "pplx": "p-key-0123456789",
        "openai": "o-key-0123456789"}


def refused(message: str) -> httpx.Response:
    return httpx.Response(400, json={"error": {"message": message, "type": "invalid_message",
                                               "code": 400}})


def perplexity_refusal(turns: list[dict[str, str]]) -> str | None:
    """Perplexity's 400 for `turns`, or None for a conversation it takes."""
    rest = list(turns)
    while rest and rest[0]["role"] == "system":
        rest.pop(0)
    if any(m["role"] != ("user" if i % 2 == 0 else "assistant") for i, m in enumerate(rest)):
        return ("After the (optional) system message(s), user and assistant roles should be "
                "alternating.")
    if not rest or rest[-1]["role"] != "user":
        return "Last message must have role `user`."
    return None


class Vendors:
    """xAI, Perplexity and OpenAI as their docs say they answer; keeps every body sent."""

    def __init__(self) -> None:
        self.bodies: dict[str, list[dict[str, Any]]] = {}

    def hits(self, host: str) -> int:
        return len(self.bodies.get(host, []))

    def handle(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        host = request.url.host
        self.bodies.setdefault(host, []).append(body)
        if host.startswith("xai") and "stop" in body:
            return httpx.Response(400, json={
                "code": "Client specified an invalid argument",
                "error": f"Model {body['model']} does not support parameter stop."})
        if host == "xai-sse.test":
            return sse_response(grok_chunk("one, two E"), grok_chunk("ND three"),
                                grok_chunk(None, "stop"), "[DONE]")
        if host == "api.perplexity.ai" and (why := perplexity_refusal(body["messages"])):
            return refused(why)
        text = "from openai" if host == "openai.test" else "one, two END three"
        return json_response({"model": body["model"], "usage": {"prompt_tokens": 5,
                                                                "completion_tokens": 2},
                              "choices": [{"index": 0, "finish_reason": "stop",
                                           "message": {"role": "assistant", "content": text}}]})


@asynccontextmanager
async def router_over(vendors: Vendors, tmp_path: Path) -> AsyncIterator[Router]:
    config = parse_config(CONFIG, env={})
    async with httpx.AsyncClient(transport=httpx.MockTransport(vendors.handle)) as http:
        with open_router(config, http=http, keys=KEYS, home=tmp_path / "home",
                         clock=LoopClock(), rng=random.Random(0)) as router:
            yield router


async def ask(router: Router, **call: Any) -> ChatResult:
    with anyio.fail_after(10):
        return await router.complete(ChatCall(cache="skip", fallbacks=("openai/gpt-4o",),
                                              **call))


@pytest.mark.anyio
@pytest.mark.parametrize("target", ["xai/grok-4", "xai/grok-4-0709", "xai/grok-3-mini",
                                    "xai/grok-4-fast-reasoning", "xai_sse/grok-4"])
async def test_a_stop_is_answered_by_an_xai_reasoning_model_cut_where_it_says(
        tmp_path: Path, target: str) -> None:
    # Before, xAI's 400 "does not support parameter stop" ended the route.
    vendors = Vendors()
    async with router_over(vendors, tmp_path) as router:
        result = await ask(router, prompt="Count to three.", model=target, stop=("END",))

    assert (result.provider, result.content, result.finish_reason) == (
        target.split("/")[0], "one, two ", "stop")
    assert vendors.hits("openai.test") == 0


@pytest.mark.anyio
@pytest.mark.parametrize("history", list(HISTORIES))
async def test_a_history_openai_takes_is_answered_by_perplexity(tmp_path: Path,
                                                                history: str) -> None:
    # Before, Perplexity's 400 ended the route and the fallback was never asked.
    vendors = Vendors()
    async with router_over(vendors, tmp_path) as router:
        result = await ask(router, messages=HISTORIES[history][0], model="pplx/sonar")

    assert (result.provider, result.content) == ("pplx", "one, two END three")
    assert (vendors.hits("api.perplexity.ai"), vendors.hits("openai.test")) == (1, 0)
