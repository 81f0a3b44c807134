"""The OpenAI-compatible wire against what its vendors refuse or mean: consecutive turns of
one role (Perplexity, deepseek-reasoner), and an exhausted balance sent as 429."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from mcp_router.config import ProviderConfig
from mcp_router.errors import ProviderStatusError
from mcp_router.messages import ChatRequest, Message
from mcp_router.providers import make_provider
from mcp_router.providers.openai import build_body
from tests.providers.fakes import KEY, FakeUpstream, json_response
from tests.providers.routes import (
    ANTHROPIC_ANSWER,
    GEMINI_ANSWER,
    OPENAI_ANSWER,
    Upstreams,
    answering,
    ask,
    router_over,
    tried,
)


def messages(*pairs: tuple[str, str]) -> tuple[Message, ...]:
    return tuple(Message(role=role, content=content) for role, content in pairs)


def wire(*pairs: tuple[str, str]) -> list[dict[str, str]]:
    return [{"role": role, "content": content} for role, content in pairs]


@pytest.mark.parametrize(("given", "sent"), [
    (messages(("system", "Answer briefly."), ("user", "Context: a trip to France."),
              ("user", "What is its capital?")),
     wire(("system", "Answer briefly."), ("user", "Context: a trip to France.\n\nWhat is its "
                                                  "capital?"))),
    (messages(("user", "Hi"), ("assistant", "Hello."), ("assistant", "How can I help?"),
              ("user", "A joke")),
     wire(("user", "Hi"), ("assistant", "Hello.\n\nHow can I help?"), ("user", "A joke"))),
    # system messages stay where they are, each as it was
    (messages(("system", "Be brief."), ("system", "Be kind."), ("user", "Hi")),
     wire(("system", "Be brief."), ("system", "Be kind."), ("user", "Hi"))),
    # a blank turn adds no empty paragraph to the one it joins
    (messages(("user", "Hi"), ("user", " "), ("assistant", ""), ("assistant", "Hello.")),
     wire(("user", "Hi"), ("assistant", "Hello."))),
    (messages(("user", "Hi"), ("assistant", "Hello."), ("user", "Bye")),
     wire(("user", "Hi"), ("assistant", "Hello."), ("user", "Bye"))),
])
def test_consecutive_turns_of_one_role_are_sent_as_one(given: tuple[Message, ...],
                                                       sent: list[dict[str, str]]) -> None:
    assert build_body(ChatRequest(messages=given), "sonar", False)["messages"] == sent


NOT_ALTERNATING = {"error": {
    "message": "After the (optional) system message(s), user and assistant roles should be "
               "alternating.", "type": "invalid_message", "code": 400}}


def perplexity_like(sent: dict[str, Any]) -> httpx.Response:
    roles = [m["role"] for m in sent["messages"] if m["role"] != "system"]
    if roles[0] != "user" or any(a == b for a, b in zip(roles, roles[1:], strict=False)):
        return httpx.Response(400, json=NOT_ALTERNATING)
    return httpx.Response(200, json={**OPENAI_ANSWER, "model": "sonar"})


@pytest.mark.virtual_time
@pytest.mark.anyio
async def test_consecutive_user_messages_are_answered_by_perplexity(tmp_path: Path) -> None:
    # Before, Perplexity's 400 ended the route and the fallback was never asked.
    upstreams = Upstreams({"perplexity.test": perplexity_like,
                           "gemini.test": answering(200, GEMINI_ANSWER)})
    async with router_over(upstreams, tmp_path) as router:
        result = await ask(router, messages=messages(
            ("system", "Answer briefly."), ("user", "Context: I am planning a trip to France."),
            ("user", "What is its capital?")), model="perplexity/sonar",
            fallbacks=("google/gemini-2.0-flash",))

    assert (result.provider, result.content) == ("perplexity", "Paris.")
    assert (upstreams.hits("perplexity.test"), upstreams.hits("gemini.test")) == (1, 0)


OPENAI_NO_QUOTA = {"error": {
    "message": "You exceeded your current quota, please check your plan and billing details.",
    "type": "insufficient_quota", "param": None, "code": "insufficient_quota"}}
RATE_LIMITED = {"error": {"message": "Rate limit reached for gpt-4o on requests per min.",
                          "type": "requests", "code": "rate_limit_exceeded"}}


@pytest.mark.anyio
@pytest.mark.parametrize(("body", "status", "detail"), [
    (OPENAI_NO_QUOTA, 401, "HTTP 401: sent as HTTP 429 (insufficient_quota): You exceeded your "
                           "current quota, please check your plan and billing details."),
    # some compatible servers give only the type
    ({"error": {**OPENAI_NO_QUOTA["error"], "code": None}}, 401, None),
    (RATE_LIMITED, 429, "HTTP 429: Rate limit reached for gpt-4o on requests per min.")])
async def test_an_exhausted_balance_sent_as_429_is_a_401_and_a_rate_limit_stays_a_429(
        http: httpx.AsyncClient, upstream: FakeUpstream, body: dict, status: int,
        detail: str | None) -> None:
    upstream.answer(json_response(body, 429))
    cfg = ProviderConfig(kind="openai", base_url="https://api.openai.test/v1",
                         api_key_env="OPENAI_API_KEY", stream=False)

    with pytest.raises(ProviderStatusError) as caught:
        await make_provider("openai", cfg, http, KEY).send(
            ChatRequest(messages=messages(("user", "Hi"))), "gpt-4o")

    assert caught.value.status == status
    assert detail is None or caught.value.detail == detail


@pytest.mark.virtual_time
@pytest.mark.anyio
async def test_an_exhausted_balance_is_tried_once_and_the_provider_skipped_after(
        tmp_path: Path) -> None:
    # As Anthropic's "credit balance is too low" is. Before, each call retried it 3 times.
    upstreams = Upstreams({"openai.test": answering(429, OPENAI_NO_QUOTA),
                           "anthropic.test": answering(200, ANTHROPIC_ANSWER)})
    async with router_over(upstreams, tmp_path) as router:
        results = [await ask(router, prompt="Capital of France?", model="openai/gpt-4o",
                             fallbacks=("anthropic/claude-sonnet-4-5",)) for _ in range(3)]

    assert [r.provider for r in results] == ["anthropic"] * 3
    assert tried(results[0].attempts) == [("openai", "error", 401), ("anthropic", "ok", None)]
    error = results[0].attempts[0].error
    assert error is not None and error.startswith("HTTP 401: sent as HTTP 429 (insufficient_quota)")
    assert tried(results[1].attempts) == [("openai", "skipped", None), ("anthropic", "ok", None)]
    assert upstreams.hits("openai.test") == 1
