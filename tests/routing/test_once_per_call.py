"""Within one call a target gets one round of tries, however often the route names it."""

from __future__ import annotations

import random

import anyio
import pytest

from mcp_router.clock import LoopClock
from mcp_router.config import RetryConfig
from mcp_router.errors import AllTargetsFailed
from mcp_router.messages import Completion
from mcp_router.routing import Fallback, Retrying, Target
from tests.fixtures.scripted import (
    Delay,
    ScriptedAdapter,
    completion,
    request,
    status_error,
)
from tests.routing.support import attempt, call_for, without_latency

pytestmark = [pytest.mark.virtual_time, pytest.mark.anyio]
CLOCK = LoopClock()
TRIED_3 = "already tried in this call (3 tries, failed); not asked again"


def leaf(adapter: ScriptedAdapter, rng: random.Random, model: str = "m") -> Retrying:
    """A retried target, built anew each time the route names it, as a tree builder does."""
    return Retrying(Target(adapter, model, CLOCK), RetryConfig(attempts=3), CLOCK, rng)


async def test_a_target_named_again_by_a_nested_route_is_not_asked_again(
        rng: random.Random) -> None:
    deepseek = ScriptedAdapter("deepseek", [status_error("deepseek", 503)])
    openrouter = ScriptedAdapter("openrouter", [status_error("openrouter", 503)])
    anthropic = ScriptedAdapter("anthropic", [completion("from anthropic")])
    default = Fallback([leaf(openrouter, rng), leaf(deepseek, rng, "deepseek-chat"),
                        leaf(anthropic, rng)], CLOCK)
    coding = Fallback([leaf(deepseek, rng, "deepseek-chat"), default], CLOCK)
    call = call_for(60)

    response = await coding.complete(request(), call)

    assert response.provider == "anthropic"
    assert len(deepseek.calls) == 3
    assert without_latency(call.attempts) == [
        *[attempt("deepseek", "deepseek-chat", "error", 503, "HTTP 503: Service Unavailable")] * 3,
        *[attempt("openrouter", "m", "error", 503, "HTTP 503: Service Unavailable")] * 3,
        attempt("deepseek", "deepseek-chat", "skipped", error=TRIED_3),
        attempt("anthropic", "m", "ok")]


async def test_a_repeated_fallback_entry_is_listed_as_skipped_and_the_route_fails_with_it(
        rng: random.Random) -> None:
    primary = ScriptedAdapter("a", [status_error("a", 500)])
    second = ScriptedAdapter("b", [status_error("b", 404)])
    call = call_for(60)

    with pytest.raises(AllTargetsFailed) as raised:
        await Fallback([leaf(primary, rng), leaf(second, rng), leaf(primary, rng),
                        leaf(second, rng)], CLOCK).complete(request(), call)

    assert (len(primary.calls), len(second.calls)) == (3, 1)
    assert [(a.provider, a.outcome, a.error) for a in raised.value.attempts[4:]] == [
        ("a", "skipped", TRIED_3),
        ("b", "skipped", "already tried in this call (1 try, failed); not asked again")]


async def test_a_target_only_skipped_so_far_is_judged_again_when_named_again(
        rng: random.Random) -> None:
    keyless = ScriptedAdapter("a", [completion()], configured=False)
    call = call_for(60)

    with pytest.raises(AllTargetsFailed):
        await Fallback([leaf(keyless, rng), leaf(keyless, rng)], CLOCK).complete(request(), call)

    assert [a.error for a in call.attempts] == ["no API key configured"] * 2


async def test_a_target_already_tried_takes_no_share_of_the_deadline(rng: random.Random) -> None:
    deepseek = ScriptedAdapter("deepseek", [status_error("deepseek", 401)])
    slow = ScriptedAdapter("openrouter", [Delay(7, completion("from openrouter"))])
    nested = Fallback([leaf(slow, rng), leaf(deepseek, rng)], CLOCK)
    call = call_for(12)

    response = await Fallback([leaf(deepseek, rng), nested], CLOCK).complete(request(), call)

    # openrouter is the last target that can be asked: all of the 12 s are its, not half
    assert (response.provider, anyio.current_time()) == ("openrouter", 7)
    assert [(a.provider, a.outcome) for a in call.attempts] == [
        ("deepseek", "error"), ("openrouter", "ok")]


async def test_an_answer_moved_on_from_is_not_paid_for_twice_and_stands_when_nothing_follows(
        rng: random.Random) -> None:
    filtered = Completion(content="", finish_reason="content_filter")
    gemini = ScriptedAdapter("gemini", [filtered])
    other = ScriptedAdapter("other", [status_error("other", 503)])
    nested = Fallback([leaf(other, rng), leaf(gemini, rng)], CLOCK, move_on=["content_filter"])
    call = call_for(60)

    response = await Fallback([leaf(gemini, rng), nested], CLOCK,
                              move_on=["content_filter"]).complete(request(), call)

    assert (response.provider, response.completion.finish_reason) == ("gemini",
                                                                      "content_filter")
    assert len(gemini.calls) == 1
    assert [(a.provider, a.outcome, a.error) for a in call.attempts] == [
        ("gemini", "ok", "answered with finish_reason content_filter; the next target was "
                         "asked (retry.fallback_on_finish)"),
        *[("other", "error", "HTTP 503: Service Unavailable")] * 3,
        ("gemini", "skipped", "already answered in this call with finish_reason "
                              "content_filter (retry.fallback_on_finish); not asked again")]


async def test_an_answer_moved_on_from_is_passed_over_when_another_target_follows(
        rng: random.Random) -> None:
    filtered = Completion(content="", finish_reason="content_filter")
    gemini = ScriptedAdapter("gemini", [filtered])
    last = ScriptedAdapter("last", [completion("from last")])

    response = await Fallback([leaf(gemini, rng), leaf(gemini, rng), leaf(last, rng)], CLOCK,
                              move_on=["content_filter"]).complete(request(), call_for(60))

    assert (response.provider, len(gemini.calls)) == ("last", 1)
