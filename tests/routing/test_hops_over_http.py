"""How a call's hops share its deadline and its targets, end to end: Router over real adapters
and the simulator on 127.0.0.1, its hit counters saying how often each model was asked."""

from __future__ import annotations

import random
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from mcp_router.clock import LoopClock
from mcp_router.config import parse_config
from mcp_router.errors import AllTargetsFailed
from mcp_router.messages import ChatCall, ChatResult
from mcp_router.router import Router
from mcp_router.routing.breaker import Breaker
from mcp_router.simulator import RunningSimulator
from mcp_router.wiring import open_router

pytestmark = pytest.mark.anyio

# 6 deltas 150 ms apart: the whole answer takes ~0.75 s, over half of a 1.2 s deadline.
DRIPPING = "gpt-3.5-turbo+drip-150+tokens-100"
SLOW = "slow-500"  # answers after 0.5 s, over half of a 0.8 s deadline
# Breaker.usable (routing/breaker.py) asks the circuit board whether a target can be asked;
# until it is there, a keyless or marked fallback cannot be seen through the Breaker.
NEEDS_USABLE_BREAKER = pytest.mark.skipif(
    not hasattr(Breaker, "usable"), reason="needs Breaker.usable in routing/breaker.py")


def config_text(sim: RunningSimulator) -> str:
    urls = sim.base_urls
    return textwrap.dedent(f"""\
        providers:
          openrouter: {{kind: openai, base_url: "{urls['openai']}"}}
          deepseek: {{kind: openai, base_url: "{urls['openai']}"}}
          anthropic: {{kind: anthropic, base_url: "{urls['anthropic']}"}}
          openai: {{kind: openai, base_url: "{urls['openai']}", api_key_env: SOME_UNSET_VAR}}
        routes:
          default:
            targets:
              - {{provider: openrouter, model: "gpt-3.5-turbo+fail-503"}}
              - {{provider: deepseek, model: "deepseek-chat+fail-503"}}
              - {{provider: anthropic, model: claude-3-haiku-20240307}}
          coding:
            targets:
              - {{provider: deepseek, model: "deepseek-chat+fail-503"}}
              - {{provider: anthropic, model: "claude-3-5-sonnet+fail-500"}}
              - {{route: default}}
          streaming:
            targets:
              - {{provider: openrouter, model: "{DRIPPING}"}}
              - {{provider: deepseek, model: deepseek-chat}}
          keyless_fallback:
            targets:
              - {{provider: openrouter, model: {SLOW}}}
              - {{provider: openai, model: gpt-4o-mini}}
          missing_fallback:
            targets:
              - {{provider: openrouter, model: {SLOW}}}
              - {{provider: openrouter, model: "retired+fail-404"}}
        default_route: default
        retry: {{attempts: 3, backoff_initial_s: 0.01, backoff_max_s: 0.02}}
        cache: {{enabled: false}}
        """)


@pytest.fixture
async def router(sim: RunningSimulator, tmp_path: Path) -> AsyncIterator[Router]:
    async with httpx.AsyncClient() as http:
        with open_router(parse_config(config_text(sim), env={}), http=http, keys={},
                         home=tmp_path / "home", clock=LoopClock(),
                         rng=random.Random(0)) as router:
            yield router


async def ask(router: Router, **fields: Any) -> ChatResult:
    with anyio.fail_after(5):
        return await router.complete(ChatCall(prompt="hi", **fields))


async def test_a_streaming_primary_finishes_its_answer_and_the_fallback_is_not_paid_for(
        router: Router, sim: RunningSimulator) -> None:
    result = await ask(router, route="streaming", timeout_s=1.2)

    assert (result.provider, result.finish_reason) == ("openrouter", "stop")
    assert [(a.provider, a.outcome) for a in result.attempts] == [("openrouter", "ok")]
    assert (sim.state.hits[DRIPPING], sim.state.hits["deepseek-chat"]) == (1, 0)
    rows = router.spend.ledger.recent()
    assert [r.provider for r in rows] == ["openrouter"]
    assert result.cost_usd == rows[0].cost_usd


async def test_a_nested_route_does_not_ask_a_target_whose_retries_are_spent_again(
        router: Router, sim: RunningSimulator) -> None:
    result = await ask(router, route="coding")

    assert result.provider == "anthropic"
    assert sim.state.hits["deepseek-chat+fail-503"] == 3
    deepseek = [a for a in result.attempts if a.provider == "deepseek"]
    assert [(a.outcome, a.status) for a in deepseek] == [("error", 503)] * 3 + [("skipped", None)]
    assert deepseek[-1].error == "already tried in this call (3 tries, failed); not asked again"


async def test_a_fallbacks_entry_repeating_a_route_target_is_not_asked_again(
        router: Router, sim: RunningSimulator) -> None:
    result = await ask(router, model="deepseek/deepseek-chat+fail-503",
                       fallbacks=["anthropic/claude-3-5-sonnet+fail-500",
                                  "deepseek/deepseek-chat+fail-503",
                                  "anthropic/claude-3-haiku-20240307"])

    assert (result.provider, result.model) == ("anthropic", "claude-3-haiku-20240307")
    assert sim.state.hits["deepseek-chat+fail-503"] == 3
    assert [(a.model, a.outcome) for a in result.attempts] == [
        *[("deepseek-chat+fail-503", "error")] * 3, *[("claude-3-5-sonnet+fail-500", "error")] * 3,
        ("deepseek-chat+fail-503", "skipped"), ("claude-3-haiku-20240307", "ok")]


@NEEDS_USABLE_BREAKER
async def test_a_keyless_fallback_leaves_the_whole_deadline_to_the_primary(
        router: Router) -> None:
    result = await ask(router, route="keyless_fallback", timeout_s=0.8)

    assert result.provider == "openrouter"
    assert [(a.provider, a.outcome) for a in result.attempts] == [("openrouter", "ok")]


@NEEDS_USABLE_BREAKER
async def test_a_fallback_marked_missing_leaves_the_whole_deadline_to_the_primary(
        router: Router, sim: RunningSimulator) -> None:
    with pytest.raises(AllTargetsFailed):  # the 404 marks the model missing
        await ask(router, model="openrouter/retired+fail-404")

    result = await ask(router, route="missing_fallback", timeout_s=0.8)

    assert result.provider == "openrouter"
    assert sim.state.hits["retired+fail-404"] == 1
