"""Vendor answers that the fallback table must read for what they mean, not for their status.

The Router is built as the server's lifespan builds it, over real adapters whose upstreams
are `httpx.MockTransport` handlers answering with the bodies the vendors document.
"""

from __future__ import annotations

import json
import random
import textwrap
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from mcp_router.clock import LoopClock
from mcp_router.config import parse_config
from mcp_router.messages import Attempt, ChatCall, ChatResult, Usage
from mcp_router.router import Router
from mcp_router.token_estimate import estimate_tokens
from mcp_router.wiring import open_router

pytestmark = pytest.mark.anyio

CONFIG = textwrap.dedent("""\
    providers:
      google: {kind: gemini, base_url: "https://gemini.test/v1beta", api_key_env: GEMINI_KEY}
      anthropic: {kind: anthropic, base_url: "https://anthropic.test",
                  api_key_env: ANTHROPIC_KEY, stream: false}
      openai: {kind: openai, base_url: "https://openai.test/v1", api_key_env: OPENAI_KEY,
               stream: false}
    routes:
      default:
        targets:
          - {provider: openai, model: gpt-4o-mini}
    default_route: default
    retry: {attempts: 3, backoff_initial_s: 0.01, backoff_max_s: 0.05}
    """)
KEYS = {"google": "g-key", "anthropic": "a-key", "openai": "o-key"}
OPENAI_ANSWER = {"model": "gpt-4o-mini",
                 "choices": [{"index": 0, "message": {"role": "assistant", "content": "Paris."},
                              "finish_reason": "stop"}],
                 "usage": {"prompt_tokens": 9, "completion_tokens": 2}}
GEMINI_BAD_KEY = {"error": {
    "code": 400, "message": "API key not valid. Please pass a valid API key.",
    "status": "INVALID_ARGUMENT",
    "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
                 "domain": "googleapis.com"}]}}
ANTHROPIC_NO_CREDIT = {"type": "error", "error": {
    "type": "invalid_request_error",
    "message": "Your credit balance is too low to access the Anthropic API. Please go to "
               "Plans & Billing to upgrade or purchase credits."}}


class Upstreams:
    """One answer per host; counts the requests each host got."""

    def __init__(self, answers: dict[str, Callable[[], httpx.Response]]) -> None:
        self.answers, self.hits = answers, dict.fromkeys(answers, 0)

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.hits[request.url.host] += 1
        return self.answers[request.url.host]()


def answering(status: int, body: Any) -> Callable[[], httpx.Response]:
    return lambda: httpx.Response(status, json=body)


@pytest.fixture
def upstreams() -> Upstreams:
    return Upstreams({"gemini.test": answering(400, GEMINI_BAD_KEY),
                      "anthropic.test": answering(400, ANTHROPIC_NO_CREDIT),
                      "openai.test": answering(200, OPENAI_ANSWER)})


@pytest.fixture
async def router(upstreams: Upstreams, tmp_path: Path) -> AsyncIterator[Router]:
    config = parse_config(CONFIG, env={})
    async with httpx.AsyncClient(transport=httpx.MockTransport(upstreams.handle)) as http:
        with open_router(config, http=http, keys=KEYS, home=tmp_path / "home",
                         clock=LoopClock(), rng=random.Random(0)) as router:
            yield router


async def ask(router: Router, model: str) -> ChatResult:
    with anyio.fail_after(10):
        return await router.complete(ChatCall(prompt="Capital of France?", model=model,
                                              fallbacks=("openai/gpt-4o-mini",), cache="skip"))


def tried(attempts: list[Attempt]) -> list[tuple[str, str, int | None]]:
    return [(a.provider, a.outcome, a.status) for a in attempts]


@pytest.mark.parametrize(("model", "host", "sent_as"), [
    ("google/gemini-1.5-flash", "gemini.test", "API_KEY_INVALID"),
    ("anthropic/claude-sonnet-4-5", "anthropic.test", "credit balance too low"),
])
async def test_an_account_problem_sent_as_400_falls_back_and_the_provider_is_skipped_after(
        router: Router, upstreams: Upstreams, model: str, host: str, sent_as: str) -> None:
    provider = model.split("/")[0]

    first = await ask(router, model)
    again = await ask(router, model)

    assert (first.content, first.provider) == ("Paris.", "openai")
    assert tried(first.attempts) == [(provider, "error", 401), ("openai", "ok", None)]
    error = first.attempts[0].error
    assert error is not None and error.startswith(f"HTTP 401: sent as HTTP 400 ({sent_as}): ")
    assert tried(again.attempts) == [(provider, "skipped", None), ("openai", "ok", None)]
    assert (upstreams.hits[host], upstreams.hits["openai.test"]) == (1, 2)


GEMINI_BLOCKED = {"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"},
                  "usageMetadata": {"promptTokenCount": 7, "totalTokenCount": 7}}
ANTHROPIC_REFUSAL = {"type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
                     "content": [{"type": "text", "text": "I can't help with that."}],
                     "stop_reason": "refusal",
                     "usage": {"input_tokens": 9, "output_tokens": 6}}


@pytest.mark.parametrize("fallback_on", [[], ["content_filter", "refusal"]])
@pytest.mark.parametrize(("model", "host", "body", "reason"), [
    ("google/gemini-1.5-flash", "gemini.test", GEMINI_BLOCKED, "content_filter"),
    ("anthropic/claude-3-haiku-20240307", "anthropic.test", ANTHROPIC_REFUSAL, "refusal"),
])
async def test_a_blocked_or_refused_answer_moves_on_only_when_the_config_says_so(
        tmp_path: Path, fallback_on: list[str], model: str, host: str, body: Any,
        reason: str) -> None:
    upstreams = Upstreams({host: answering(200, body),
                           "openai.test": answering(200, OPENAI_ANSWER)})
    config = parse_config(CONFIG.replace("backoff_max_s: 0.05}", "backoff_max_s: 0.05, "
                                         f"fallback_on_finish: {fallback_on}}}"), env={})
    async with httpx.AsyncClient(transport=httpx.MockTransport(upstreams.handle)) as http:
        with open_router(config, http=http, keys=KEYS, home=tmp_path / "home",
                         clock=LoopClock(), rng=random.Random(0)) as router:
            result = await ask(router, model)
            rows = router.spend.ledger.recent()

    provider = model.split("/")[0]
    if not fallback_on:  # the provider's answer, as it came
        assert (result.provider, result.finish_reason) == (provider, reason)
        assert upstreams.hits["openai.test"] == 0
        return
    assert (result.provider, result.content, result.finish_reason) == ("openai", "Paris.", "stop")
    assert tried(result.attempts) == [(provider, "ok", None), ("openai", "ok", None)]
    assert result.attempts[0].error == (f"answered with finish_reason {reason}; the next target "
                                        "was asked (retry.fallback_on_finish)")
    # the refused answer was paid for: its row is in the ledger, and in the call's cost
    assert sorted(r.provider for r in rows) == sorted([provider, "openai"])
    assert result.cost_usd == sum(r.cost_usd or 0 for r in rows)


# Answers that look like successes or requests to change, but are not: a finish_reason that
# reports the upstream's failure, a blocked prompt sent as a 400, more stop strings than
# Gemini takes.

MORE_CONFIG = textwrap.dedent("""\
    providers:
      deepseek: {kind: openai, base_url: "https://deepseek.test", api_key_env: DS_KEY,
                 stream: %(stream)s}
      openrouter: {kind: openai, base_url: "https://openrouter.test/api/v1",
                   api_key_env: OR_KEY, stream: %(stream)s}
      azure: {kind: openai, base_url: "https://azure.test/openai/v1", api_key_env: AZ_KEY,
              stream: %(stream)s}
      google: {kind: gemini, base_url: "https://gemini.test/v1beta", api_key_env: GEMINI_KEY}
      openai: {kind: openai, base_url: "https://openai.test/v1", api_key_env: OPENAI_KEY,
               stream: false}
    routes:
      default:
        targets:
          - {provider: openai, model: gpt-4o-mini}
    default_route: default
    retry: {attempts: 2, backoff_initial_s: 0.01, backoff_max_s: 0.02,
            fallback_on_finish: %(fallback_on)s}
    prices:
      deepseek/*: {input_per_mtok: 0.27, output_per_mtok: 1.10}
      openrouter/*: {input_per_mtok: 0.15, output_per_mtok: 0.60}
      azure/*: {input_per_mtok: 2.50, output_per_mtok: 10.00}
    """)
MORE_KEYS = {"deepseek": "d", "openrouter": "r", "azure": "z", "google": "g", "openai": "o"}


async def ask_more(answers: dict[str, Callable[[], httpx.Response]], tmp_path: Path, model: str,
                   *, stream: bool = False, fallback_on: list[str] | None = None,
                   **call: Any) -> tuple[ChatResult, Upstreams, list[Any]]:
    """One call over `MORE_CONFIG`, with `openai/gpt-4o-mini` as its fallback; the result, the
    upstreams and the ledger's rows."""
    upstreams = Upstreams({**answers, "openai.test": answering(200, OPENAI_ANSWER)})
    config = parse_config(MORE_CONFIG % {"stream": str(stream).lower(),
                                         "fallback_on": fallback_on or []}, env={})
    async with httpx.AsyncClient(transport=httpx.MockTransport(upstreams.handle)) as http:
        with open_router(config, http=http, keys=MORE_KEYS, home=tmp_path / "home",
                         clock=LoopClock(), rng=random.Random(0)) as router:
            with anyio.fail_after(10):
                result = await router.complete(ChatCall(
                    prompt="Capital of France?", model=model, fallbacks=("openai/gpt-4o-mini",),
                    cache="skip", **call))
            rows = router.spend.ledger.recent()
    return result, upstreams, rows


def streamed(*chunks: dict[str, Any]) -> Callable[[], httpx.Response]:
    body = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
    return lambda: httpx.Response(200, content=body.encode(),
                                  headers={"content-type": "text/event-stream"})


def delta(text: str, finish: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"object": "chat.completion.chunk", "model": "deepseek-chat",
            "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": finish}],
            **extra}


PARTIAL = "The capital of France is"
DEEPSEEK_INTERRUPTED = {"model": "deepseek-chat", "object": "chat.completion",
                        "choices": [{"index": 0, "finish_reason": "insufficient_system_resource",
                                     "message": {"role": "assistant", "content": PARTIAL}}],
                        "usage": {"prompt_tokens": 10, "completion_tokens": 6}}


@pytest.mark.parametrize(("model", "host", "answer", "stream", "status", "finish"), [
    ("deepseek/deepseek-chat", "deepseek.test", answering(200, DEEPSEEK_INTERRUPTED), False,
     503, "insufficient_system_resource"),
    ("deepseek/deepseek-chat", "deepseek.test",
     streamed(delta("The capital of"), delta(" France is", "insufficient_system_resource"),
              {"choices": [], "usage": {"prompt_tokens": 10, "completion_tokens": 6}}), True,
     503, "insufficient_system_resource"),
    ("openrouter/openai/gpt-4o-mini", "openrouter.test",
     streamed(delta(PARTIAL), delta("", "error", native_finish_reason="error")), True,
     502, "error"),
], ids=["deepseek json", "deepseek stream", "openrouter stream"])
async def test_a_finish_reason_that_reports_a_failure_is_retried_then_falls_back_and_is_charged(
        tmp_path: Path, model: str, host: str, answer: Callable[[], httpx.Response],
        stream: bool, status: int, finish: str) -> None:
    result, upstreams, rows = await ask_more({host: answer}, tmp_path, model, stream=stream)

    provider = model.split("/")[0]
    assert (result.provider, result.content, result.finish_reason) == ("openai", "Paris.", "stop")
    assert tried(result.attempts) == [(provider, "error", status)] * 2 + [("openai", "ok", None)]
    error = result.attempts[0].error
    assert error is not None and error.startswith(f"HTTP {status}: the answer was cut off: ")
    assert error.endswith(f"(finish_reason {finish})")
    assert upstreams.hits[host] == 2
    # each failed try is charged as a stream cut by an error is: the input and the text received
    failed = [r for r in rows if r.provider == provider]
    assert [(r.outcome, r.estimated) for r in failed] == [("error", True)] * 2
    assert all(r.usage.output_tokens == estimate_tokens(len(PARTIAL), len(PARTIAL))
               and (r.cost_usd or 0) > 0 for r in failed)
    assert result.cost_usd == sum(r.cost_usd or 0 for r in rows)


EMPTY_USAGE = {"prompt_tokens": 7, "completion_tokens": 0}


@pytest.mark.parametrize(("model", "host", "answer", "stream", "billed"), [
    ("deepseek/deepseek-chat", "deepseek.test", streamed(), True, None),
    ("deepseek/deepseek-chat", "deepseek.test",
     answering(200, {"choices": [{"index": 0, "message": {"role": "assistant", "content": ""}}],
                     "usage": EMPTY_USAGE}), False, Usage(input_tokens=7)),
    ("google/gemini-2.0-flash", "gemini.test", answering(200, {}), False, None),
    ("google/gemini-2.0-flash", "gemini.test",
     answering(200, {"candidates": [], "usageMetadata": {"promptTokenCount": 7}}), False,
     Usage(input_tokens=7)),
], ids=["[DONE] only", "json with usage", "gemini {}", "gemini no candidates with usage"])
async def test_an_answer_with_no_text_and_no_finish_reason_is_retried_then_falls_back(
        tmp_path: Path, model: str, host: str, answer: Callable[[], httpx.Response],
        stream: bool, billed: Usage | None) -> None:
    result, upstreams, rows = await ask_more({host: answer}, tmp_path, model, stream=stream)

    provider = model.split("/")[0]
    assert (result.provider, result.content, result.finish_reason) == ("openai", "Paris.", "stop")
    assert tried(result.attempts) == [(provider, "error", 502)] * 2 + [("openai", "ok", None)]
    error = result.attempts[0].error
    assert error is not None and error.startswith("HTTP 502: no answer: ")
    # the usage such an answer reported was billed, and is charged as reported
    failed = [(r.outcome, r.usage, r.estimated) for r in rows if r.provider == provider]
    assert failed == ([] if billed is None else [("error", billed, False)] * 2)
    assert result.cost_usd == sum(r.cost_usd or 0 for r in rows)


def gemini_taking_five_stops() -> Callable[[httpx.Request], httpx.Response]:
    """Gemini's documented limit: more than 5 stopSequences is a 400."""

    def answer(request: httpx.Request) -> httpx.Response:
        stops = json.loads(request.content)["generationConfig"]["stopSequences"]
        if len(stops) > 5:
            return httpx.Response(400, json={"error": {
                "code": 400, "status": "INVALID_ARGUMENT",
                "message": "at most 5 stop sequences are allowed"}})
        return httpx.Response(200, json={
            "candidates": [{"content": {"role": "model", "parts": [{"text": "Paris.</a> No"}]},
                            "finishReason": "STOP"}],
            "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 4}})

    return answer


async def test_gemini_answers_a_request_with_six_stop_strings_cut_at_the_sixth(
        tmp_path: Path) -> None:
    upstreams = Upstreams({"openai.test": answering(200, OPENAI_ANSWER)})
    gemini = gemini_taking_five_stops()
    config = parse_config(MORE_CONFIG % {"stream": "false", "fallback_on": []}, env={})

    def handle(request: httpx.Request) -> httpx.Response:
        return gemini(request) if request.url.host == "gemini.test" else upstreams.handle(request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handle)) as http:
        with open_router(config, http=http, keys=MORE_KEYS, home=tmp_path / "home",
                         clock=LoopClock(), rng=random.Random(0)) as router:
            result = await router.complete(ChatCall(
                prompt="Capital of France?", model="google/gemini-2.5-flash",
                fallbacks=("openai/gpt-4o-mini",), cache="skip",
                stop=("\n\n", "###", "Q:", "User:", "END", "</a>")))

    assert (result.provider, result.content, result.finish_reason) == ("google", "Paris.", "stop")
    assert tried(result.attempts) == [("google", "ok", None)]
    assert upstreams.hits["openai.test"] == 0


AZURE_PROMPT_FILTERED = {"error": {
    "message": "The response was filtered due to the prompt triggering Azure OpenAI's content "
               "management policy. Please modify your prompt and retry.",
    "type": None, "param": "prompt", "code": "content_filter", "status": 400,
    "innererror": {"code": "ResponsibleAIPolicyViolation",
                   "content_filter_result": {"hate": {"filtered": True, "severity": "high"}}}}}


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("fallback_on", [[], ["content_filter"]])
async def test_a_prompt_blocked_with_a_400_moves_on_as_a_gemini_blocked_prompt_does(
        tmp_path: Path, fallback_on: list[str], stream: bool) -> None:
    result, upstreams, rows = await ask_more(
        {"azure.test": answering(400, AZURE_PROMPT_FILTERED)}, tmp_path, "azure/gpt-4o",
        stream=stream, fallback_on=fallback_on)

    # Azure bills the prompt it judged, and reports no usage: its input, estimated
    [blocked] = [r for r in rows if r.provider == "azure"]
    assert (blocked.outcome, blocked.estimated, blocked.usage.output_tokens) == ("ok", True, 0)
    assert (blocked.cost_usd or 0) > 0
    if not fallback_on:  # the provider's answer, as it came
        assert (result.provider, result.content, result.finish_reason) == (
            "azure", "", "content_filter")
        assert tried(result.attempts) == [("azure", "ok", None)]
        assert upstreams.hits["openai.test"] == 0
        return
    assert (result.provider, result.content, result.finish_reason) == ("openai", "Paris.", "stop")
    assert tried(result.attempts) == [("azure", "ok", None), ("openai", "ok", None)]
    assert result.attempts[0].error == ("answered with finish_reason content_filter; the next "
                                        "target was asked (retry.fallback_on_finish)")
    assert result.cost_usd == sum(r.cost_usd or 0 for r in rows)
