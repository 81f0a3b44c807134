"""Vendor rules that once ended a fallback chain or took a target out for every caller.

OpenRouter's moderation 403, Gemma's refused `systemInstruction`, a `max_tokens` over one
model's cap, deepseek-reasoner's user-first-and-last rule and Gemini's unnamed finish reasons:
the bodies sent, and what the router makes of the answers over real adapters whose upstreams
are `httpx.MockTransport` handlers applying the vendor's rule with its documented error body.
"""

from __future__ import annotations

import json
import random
import textwrap
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from mcp_router.clock import LoopClock
from mcp_router.config import parse_config
from mcp_router.messages import Attempt, ChatCall, ChatRequest, ChatResult, Message
from mcp_router.providers import anthropic, gemini, openai
from mcp_router.providers._turns import CLOSING_USER_TURN, OPENING_USER_TURN
from mcp_router.router import Router
from mcp_router.wiring import open_router
from tests.providers.fakes import sse_body

pytestmark = pytest.mark.anyio

CONFIG = textwrap.dedent("""\
    providers:
      openrouter: {kind: openai, base_url: "https://openrouter.test/api/v1",
                   api_key_env: OR_KEY, stream: %(stream)s}
      deepseek: {kind: openai, base_url: "https://deepseek.test", api_key_env: DS_KEY,
                 stream: false}
      anthropic: {kind: anthropic, base_url: "https://anthropic.test",
                  api_key_env: ANTHROPIC_KEY, stream: false}
      google: {kind: gemini, base_url: "https://gemini.test/v1beta", api_key_env: GEMINI_KEY,
               stream: %(stream)s}
      openai: {kind: openai, base_url: "https://openai.test/v1", api_key_env: OPENAI_KEY,
               stream: false}
    routes:
      default:
        targets:
          - {provider: openai, model: gpt-4.1}
    default_route: default
    retry: {attempts: 2, backoff_initial_s: 0.01, backoff_max_s: 0.02,
            fallback_on_finish: %(fallback_on)s}
    """)
KEYS = {"openrouter": "r", "deepseek": "d", "anthropic": "a", "google": "g", "openai": "o"}
OPENAI_ANSWER = {"model": "gpt-4.1",
                 "choices": [{"index": 0, "message": {"role": "assistant", "content": "Paris."},
                              "finish_reason": "stop"}],
                 "usage": {"prompt_tokens": 9, "completion_tokens": 2}}
Handler = Callable[[httpx.Request, dict[str, Any]], httpx.Response]


class Upstreams:
    """One handler per host; keeps every body each host was sent."""

    def __init__(self, handlers: dict[str, Handler]) -> None:
        self.handlers: dict[str, Handler] = {
            **handlers, "openai.test": lambda r, b: httpx.Response(200, json=OPENAI_ANSWER)}
        self.bodies: dict[str, list[dict[str, Any]]] = {h: [] for h in self.handlers}

    def handle(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content or b"{}")
        self.bodies[request.url.host].append(body)
        return self.handlers[request.url.host](request, body)


@asynccontextmanager
async def routed(upstreams: Upstreams, tmp_path: Path, *, stream: bool = False,
                 fallback_on: tuple[str, ...] = ()) -> AsyncIterator[Router]:
    config = parse_config(CONFIG % {"stream": str(stream).lower(),
                                    "fallback_on": list(fallback_on)}, env={})
    async with httpx.AsyncClient(transport=httpx.MockTransport(upstreams.handle)) as http:
        with open_router(config, http=http, keys=KEYS, home=tmp_path / "home",
                         clock=LoopClock(), rng=random.Random(0)) as router:
            yield router


async def ask(router: Router, model: str, *messages: Message | str, **call: Any) -> ChatResult:
    """`model`, with `openai/gpt-4.1` as its fallback; a lone string is the prompt."""
    given: dict[str, Any] = ({"prompt": messages[0]} if isinstance(messages[0], str)
                             else {"messages": messages})
    with anyio.fail_after(10):
        return await router.complete(ChatCall(model=model, fallbacks=("openai/gpt-4.1",),
                                              cache="skip", **given, **call))


def tried(attempts: list[Attempt]) -> list[tuple[str, str, int | None]]:
    return [(a.provider, a.outcome, a.status) for a in attempts]


def state(router: Router, key: str) -> str:
    return router.builder.board.circuit(key).state


def chat_answer(text: str, model: str) -> httpx.Response:
    return httpx.Response(200, json={
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 9, "completion_tokens": 3}})


def gemini_answer(text: str, finish: str = "STOP") -> dict[str, Any]:
    return {"candidates": [{"content": {"role": "model", "parts": [{"text": text}] if text
                                        else []},
                            "finishReason": finish}],
            "usageMetadata": {"promptTokenCount": 12, "candidatesTokenCount": 2}}


# --- OpenRouter's moderation 403: a blocked prompt, not a misconfigured target ----------------

OPENROUTER_FLAGGED = {"error": {
    "code": 403, "message": "openai/gpt-4o requires moderation on OpenAI. Your input was "
                            "flagged for \"harassment\".",
    "metadata": {"reasons": ["harassment"], "flagged_input": "FLAGGED…",
                 "provider_name": "OpenAI", "model_slug": "openai/gpt-4o"}}}


def openrouter_moderating(request: httpx.Request, body: dict[str, Any]) -> httpx.Response:
    if "FLAGGED" in body["messages"][-1]["content"]:
        return httpx.Response(403, json=OPENROUTER_FLAGGED)
    if body.get("stream"):
        chunk = {"model": "openai/gpt-4o", "choices": [
            {"index": 0, "delta": {"content": "From OpenRouter."}, "finish_reason": "stop"}]}
        return httpx.Response(200, content=sse_body(chunk, "[DONE]"),
                              headers={"content-type": "text/event-stream"})
    return chat_answer("From OpenRouter.", "openai/gpt-4o")


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("fallback_on", [(), ("content_filter",)])
async def test_a_prompt_openrouter_flagged_is_a_blocked_answer_and_marks_nothing(
        tmp_path: Path, fallback_on: tuple[str, ...], stream: bool) -> None:
    upstreams = Upstreams({"openrouter.test": openrouter_moderating})
    async with routed(upstreams, tmp_path, stream=stream, fallback_on=fallback_on) as router:
        flagged = await ask(router, "openrouter/openai/gpt-4o", "FLAGGED insult")
        after = state(router, "openrouter/openai/gpt-4o")
        clean = await ask(router, "openrouter/openai/gpt-4o", "Capital of France?")

    assert after == "closed"
    assert (clean.provider, clean.content) == ("openrouter", "From OpenRouter.")
    assert tried(clean.attempts) == [("openrouter", "ok", None)]
    if not fallback_on:  # the provider's answer, as it came
        assert (flagged.provider, flagged.content, flagged.finish_reason) == (
            "openrouter", "", "content_filter")
        assert len(upstreams.bodies["openai.test"]) == 0
        return
    assert (flagged.provider, flagged.content) == ("openai", "Paris.")
    assert tried(flagged.attempts) == [("openrouter", "ok", None), ("openai", "ok", None)]


def test_only_openrouters_moderation_403_is_read_as_a_blocked_prompt() -> None:
    by_message = {"error": {"code": 403, "message": "Your chosen model requires moderation "
                                                    "and your input was flagged"}}
    no_key = {"error": {"code": 403, "message": "Key is disabled or has no access"}}
    region = {"error": {"code": "unsupported_country_region_territory",
                        "message": "Country, region, or territory not supported"}}

    blocked = openai.blocked_prompt(403, json.dumps(OPENROUTER_FLAGGED))

    assert blocked is not None and (blocked.content, blocked.finish_reason) == (
        "", "content_filter")
    assert openai.blocked_prompt(403, json.dumps(by_message)) is not None
    assert openai.blocked_prompt(403, json.dumps(no_key)) is None
    assert openai.blocked_prompt(403, json.dumps(region)) is None
    assert openai.blocked_prompt(400, json.dumps(OPENROUTER_FLAGGED)) is None


async def test_any_other_403_still_marks_the_target(tmp_path: Path) -> None:
    def refusing(request: httpx.Request, body: dict[str, Any]) -> httpx.Response:
        return httpx.Response(403, json={"error": {"code": 403, "message": "Forbidden"}})

    async with routed(Upstreams({"openrouter.test": refusing}), tmp_path) as router:
        result = await ask(router, "openrouter/openai/gpt-4o", "Capital of France?")

        assert tried(result.attempts) == [("openrouter", "error", 403), ("openai", "ok", None)]
        assert state(router, "openrouter/openai/gpt-4o") == "misconfigured"


# --- Gemma: no systemInstruction, the system text opens the first user turn -----------------

def user(*texts: str) -> dict[str, Any]:
    return {"role": "user", "parts": [{"text": t} for t in texts]}


def model_turn(text: str) -> dict[str, Any]:
    return {"role": "model", "parts": [{"text": text}]}


GEMMA_CASES: dict[str, tuple[tuple[Message, ...], list[dict[str, Any]]]] = {
    "one system message": (
        (Message(role="system", content="Answer in French."),
         Message(role="user", content="Say hello.")),
        [user("Answer in French.\n\nSay hello.")]),
    "two, one blank, and merged user turns": (
        (Message(role="system", content="Be brief."), Message(role="system", content=" "),
         Message(role="user", content="Hi"), Message(role="system", content="In French."),
         Message(role="user", content="Say hello.")),
        [user("Be brief.\n\nIn French.\n\nHi", "Say hello.")]),
    "a history opening with the model": (
        (Message(role="system", content="Answer in French."),
         Message(role="assistant", content="Hi!"), Message(role="user", content="Say hello.")),
        [user(f"Answer in French.\n\n{OPENING_USER_TURN}"), model_turn("Hi!"),
         user("Say hello.")]),
}


@pytest.mark.parametrize("model", ["gemma-3-27b-it", "models/gemma-3n-e4b-it"])
@pytest.mark.parametrize("case", list(GEMMA_CASES))
def test_gemma_gets_its_system_text_at_the_start_of_the_first_user_turn(
        case: str, model: str) -> None:
    messages, contents = GEMMA_CASES[case]

    assert gemini.build_body(ChatRequest(messages=messages), model, False) == {
        "contents": contents}


def test_gemini_models_still_get_a_system_instruction() -> None:
    messages = GEMMA_CASES["one system message"][0]

    assert gemini.build_body(ChatRequest(messages=messages), "gemini-2.5-flash", False) == {
        "contents": [user("Say hello.")],
        "systemInstruction": {"parts": [{"text": "Answer in French."}]}}


def gemini_refusing_developer_instructions(request: httpx.Request,
                                           body: dict[str, Any]) -> httpx.Response:
    model = request.url.path.rsplit("/", 1)[-1].split(":")[0]
    if model.startswith("gemma-") and "systemInstruction" in body:
        return httpx.Response(400, json={"error": {
            "code": 400, "message": f"Developer instruction is not enabled for models/{model}",
            "status": "INVALID_ARGUMENT"}})
    return httpx.Response(200, json=gemini_answer("Bonjour."))


async def test_gemma_with_a_system_message_answers(tmp_path: Path) -> None:
    upstreams = Upstreams({"gemini.test": gemini_refusing_developer_instructions})
    async with routed(upstreams, tmp_path) as router:
        result = await ask(router, "google/gemma-3-27b-it",
                           Message(role="system", content="Answer in French."),
                           Message(role="user", content="Say hello."))

    assert (result.provider, result.content) == ("google", "Bonjour.")
    assert tried(result.attempts) == [("google", "ok", None)]
    assert upstreams.bodies["gemini.test"][0]["contents"] == [
        user("Answer in French.\n\nSay hello.")]


# --- max_tokens over one model's cap: the next target is asked, nothing is marked ----------

def deepseek_capping(request: httpx.Request, body: dict[str, Any]) -> httpx.Response:
    cap = {"deepseek-chat": 8192, "deepseek-reasoner": 65536}[body["model"]]
    if not 1 <= body.get("max_tokens", 4096) <= cap:
        return httpx.Response(400, json={"error": {
            "message": f"Invalid max_tokens value, the valid range of max_tokens is [1, {cap}]",
            "type": "invalid_request_error", "param": None, "code": "invalid_request_error"}})
    return chat_answer("Paris.", body["model"])


def anthropic_capping(request: httpx.Request, body: dict[str, Any]) -> httpx.Response:
    if body["max_tokens"] > 4096:
        return httpx.Response(400, json={"type": "error", "error": {
            "type": "invalid_request_error",
            "message": f"max_tokens: {body['max_tokens']} > 4096, which is the maximum allowed "
                       f"number of output tokens for {body['model']}"}})
    return httpx.Response(200, json={
        "type": "message", "role": "assistant", "model": body["model"],
        "content": [{"type": "text", "text": "Paris."}], "stop_reason": "end_turn",
        "usage": {"input_tokens": 9, "output_tokens": 2}})


def gemini_capping(request: httpx.Request, body: dict[str, Any]) -> httpx.Response:
    asked = body["generationConfig"]["maxOutputTokens"]
    if asked > 8192:
        return httpx.Response(400, json={"error": {
            "code": 400, "status": "INVALID_ARGUMENT",
            "message": f"Unable to submit request because it has a maxOutputTokens value of "
                       f"{asked} but the supported range is from 1 (inclusive) to 8193 "
                       f"(exclusive). Update the value and try again."}})
    return httpx.Response(200, json=gemini_answer("Paris."))


CAPPING = {"deepseek/deepseek-chat": ("deepseek.test", deepseek_capping),
           "anthropic/claude-3-haiku-20240307": ("anthropic.test", anthropic_capping),
           "google/gemini-1.0-pro": ("gemini.test", gemini_capping)}


@pytest.mark.parametrize("model", list(CAPPING))
async def test_a_max_tokens_over_one_models_cap_moves_on_untried_and_unmarked(
        tmp_path: Path, model: str) -> None:
    host, handler = CAPPING[model]
    provider = model.split("/")[0]
    upstreams = Upstreams({host: handler})
    async with routed(upstreams, tmp_path) as router:
        over = await ask(router, model, "Capital of France?", max_tokens=16000)
        after = state(router, model)
        within = await ask(router, model, "Capital of France?", max_tokens=1000)

    assert (over.provider, over.content) == ("openai", "Paris.")
    assert tried(over.attempts) == [(provider, "error", 413), ("openai", "ok", None)]
    error = over.attempts[0].error
    assert error is not None and error.startswith(
        "HTTP 413: sent as HTTP 400 (max_tokens over this model's limit): ")
    assert after == "closed"
    assert tried(within.attempts) == [(provider, "ok", None)]
    assert len(upstreams.bodies[host]) == 2  # the over-cap try was not retried


@pytest.mark.parametrize(("reclassify", "message"), [
    (openai.reclassify, "max_tokens is too large: 6000. This model supports at most 4096 "
                        "completion tokens, whereas you provided 6000."),
    (openai.reclassify, "max_completion_tokens is too large: 200000. This model supports at "
                        "most 100000 completion tokens, whereas you provided 200000."),
])
def test_openais_own_max_tokens_message_is_read_as_over_the_cap(
        reclassify: Callable[[int, str], Any], message: str) -> None:
    body = json.dumps({"error": {"message": message, "type": "invalid_request_error",
                                 "param": "max_tokens", "code": None}})

    meant = reclassify(400, body)

    assert meant is not None and (meant.status, meant.why) == (
        413, "max_tokens over this model's limit")


@pytest.mark.parametrize(("reclassify", "body"), [
    # a context overflow is about the prompt too: left as the 400 it was sent as
    (openai.reclassify, {"error": {"message": "'max_tokens' or 'max_completion_tokens' is too "
                                              "large: 64000. This model's maximum context "
                                              "length is 64001 tokens and your request has "
                                              "24235 input tokens (64000 > 64001 - 24235)."}}),
    (openai.reclassify, {"error": {"message": "Invalid temperature value, the valid range of "
                                              "temperature is [0, 2]"}}),
    (anthropic.reclassify, {"type": "error", "error": {
        "type": "invalid_request_error", "message": "max_tokens: Field required"}}),
    (gemini.reclassify, {"error": {"code": 400, "status": "INVALID_ARGUMENT",
                                   "message": "The input token count (134123) exceeds the "
                                              "maximum number of tokens allowed (131072)."}}),
])
def test_other_400s_are_left_as_sent(reclassify: Callable[[int, str], Any],
                                     body: dict[str, Any]) -> None:
    assert reclassify(400, json.dumps(body)) is None


# --- deepseek-reasoner: the user's turn first and last ---------------------------------------

GREETING_FIRST = (Message(role="system", content="You are a tour guide."),
                  Message(role="assistant", content="Hi! Where to today?"),
                  Message(role="user", content="Capital of France?"))
ASSISTANT_LAST = (Message(role="user", content="Capital of France?"),
                  Message(role="assistant", content="The capital is"))


def wire(*turns: tuple[str, str]) -> list[dict[str, str]]:
    return [{"role": role, "content": content} for role, content in turns]


@pytest.mark.parametrize(("given", "sent"), [
    (GREETING_FIRST, wire(("system", "You are a tour guide."), ("user", OPENING_USER_TURN),
                          ("assistant", "Hi! Where to today?"), ("user", "Capital of France?"))),
    (ASSISTANT_LAST, wire(("user", "Capital of France?"), ("assistant", "The capital is"),
                          ("user", CLOSING_USER_TURN))),
], ids=["greeting first", "assistant last"])
def test_deepseek_reasoner_is_sent_the_users_turn_first_and_last(
        given: tuple[Message, ...], sent: list[dict[str, str]]) -> None:
    assert openai.build_body(ChatRequest(messages=given), "deepseek-reasoner", False) == {
        "model": "deepseek-reasoner", "messages": sent}


@pytest.mark.parametrize("model", ["deepseek-chat", "deepseek/deepseek-r1",
                                   "deepseek-ai/DeepSeek-R1"])
@pytest.mark.parametrize("given", [GREETING_FIRST, ASSISTANT_LAST])
def test_other_deepseek_ids_are_sent_the_history_as_given(
        given: tuple[Message, ...], model: str) -> None:
    body = openai.build_body(ChatRequest(messages=given), model, False)

    assert body["messages"] == [{"role": m.role, "content": m.content} for m in given]


def deepseek_reasoner_rules(request: httpx.Request, body: dict[str, Any]) -> httpx.Response:
    turns = [m for m in body["messages"] if m["role"] != "system"]
    if body["model"] == "deepseek-reasoner" and turns[0]["role"] != "user":
        return httpx.Response(400, json={"error": {
            "message": "The first message (except the system message) of deepseek-reasoner "
                       "must be a user message, but an assistant message detected.",
            "type": "invalid_request_error", "param": None, "code": "invalid_request_error"}})
    if body["model"] == "deepseek-reasoner" and turns[-1]["role"] != "user":
        return httpx.Response(400, json={"error": {
            "message": "The last message of deepseek-reasoner must be a user message, or an "
                       "assistant message with prefix mode on",
            "type": "invalid_request_error", "param": None, "code": "invalid_request_error"}})
    return chat_answer("Paris.", body["model"])


@pytest.mark.parametrize("given", [GREETING_FIRST, ASSISTANT_LAST],
                         ids=["greeting first", "assistant last"])
async def test_deepseek_reasoner_answers_a_history_the_assistant_opens_or_closes(
        tmp_path: Path, given: tuple[Message, ...]) -> None:
    upstreams = Upstreams({"deepseek.test": deepseek_reasoner_rules})
    async with routed(upstreams, tmp_path) as router:
        result = await ask(router, "deepseek/deepseek-reasoner", *given)

    assert (result.provider, result.content) == ("deepseek", "Paris.")
    assert tried(result.attempts) == [("deepseek", "ok", None)]


# --- Gemini's finish reasons: every one in the documented vocabulary -------------------------

@pytest.mark.parametrize(("reason", "neutral"), [
    ("IMAGE_SAFETY", "content_filter"), ("IMAGE_PROHIBITED_CONTENT", "content_filter"),
    ("IMAGE_RECITATION", "content_filter"), ("LANGUAGE", "refusal"),
])
async def test_gemini_finish_reasons_of_filters_and_refusals_are_named_so(
        tmp_path: Path, reason: str, neutral: str) -> None:
    answer = gemini_answer("", reason)
    upstreams = Upstreams({"gemini.test": lambda r, b: httpx.Response(200, json=answer)})
    async with routed(upstreams, tmp_path) as router:
        result = await ask(router, "google/gemini-2.5-flash", "Capital of France?")

    assert (result.provider, result.content, result.finish_reason) == ("google", "", neutral)


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("reason", ["OTHER", "FINISH_REASON_UNSPECIFIED",
                                    "MALFORMED_FUNCTION_CALL", "SOMETHING_NEW"])
async def test_an_empty_gemini_answer_ended_for_no_named_reason_is_retried_then_moves_on(
        tmp_path: Path, reason: str, stream: bool) -> None:
    answer = gemini_answer("", reason)

    def empty(request: httpx.Request, body: dict[str, Any]) -> httpx.Response:
        if stream:
            return httpx.Response(200, content=sse_body(answer),
                                  headers={"content-type": "text/event-stream"})
        return httpx.Response(200, json=answer)

    upstreams = Upstreams({"gemini.test": empty})
    async with routed(upstreams, tmp_path, stream=stream) as router:
        result = await ask(router, "google/gemini-2.5-flash", "Capital of France?")

    assert (result.provider, result.content, result.finish_reason) == ("openai", "Paris.", "stop")
    assert tried(result.attempts) == [("google", "error", 502)] * 2 + [("openai", "ok", None)]
    error = result.attempts[0].error
    assert error is not None and error.endswith(f"(finishReason {reason})")


@pytest.mark.parametrize("stream", [False, True])
async def test_a_gemini_answer_with_text_ended_for_no_named_reason_is_a_stop(
        tmp_path: Path, stream: bool) -> None:
    def answering(request: httpx.Request, body: dict[str, Any]) -> httpx.Response:
        if stream:  # the text comes before the chunk that carries the finishReason
            chunks = ({"candidates": [{"content": {"role": "model",
                                                   "parts": [{"text": "Paris."}]}}]},
                      gemini_answer("", "OTHER"))
            return httpx.Response(200, content=sse_body(*chunks),
                                  headers={"content-type": "text/event-stream"})
        return httpx.Response(200, json=gemini_answer("Paris.", "OTHER"))

    upstreams = Upstreams({"gemini.test": answering})
    async with routed(upstreams, tmp_path, stream=stream) as router:
        result = await ask(router, "google/gemini-2.5-flash", "Capital of France?")

    assert (result.provider, result.content, result.finish_reason) == ("google", "Paris.", "stop")
