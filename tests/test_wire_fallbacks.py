"""Vendor answers that the fallback table must read for what they mean, not for their status.

The Router is built as the server's lifespan builds it, over real adapters whose upstreams
are `httpx.MockTransport` handlers answering with the bodies the vendors document.
"""

from __future__ import annotations

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
from mcp_router.messages import Attempt, ChatCall, ChatResult
from mcp_router.router import Router
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
