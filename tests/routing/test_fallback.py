"""Fallback: the decision table's next-target column, deadline sharing, nesting, attempts."""

from __future__ import annotations

import random

import anyio
import pytest

from mcp_router.clock import LoopClock
from mcp_router.config import RetryConfig
from mcp_router.errors import AllTargetsFailed, ProviderStatusError, ProviderUnavailable
from mcp_router.messages import Attempt, Call, ChatRequest, ChatResponse
from mcp_router.routing import Fallback, Retrying, Target
from tests.fixtures.scripted import (
    HANG,
    Delay,
    ScriptedAdapter,
    Step,
    completion,
    cut_stream,
    malformed,
    request,
    status_error,
    timeout_error,
    unavailable,
)
from tests.routing.support import Progress, attempt, call_for, without_latency

pytestmark = [pytest.mark.virtual_time, pytest.mark.anyio]
CLOCK = LoopClock()


def target(adapter: ScriptedAdapter, model: str = "m") -> Target:
    return Target(adapter, model, CLOCK)


def retried(adapter: ScriptedAdapter, rng: random.Random, model: str = "m") -> Retrying:
    return Retrying(target(adapter, model), RetryConfig(attempts=3), CLOCK, rng)


# (failure of the primary, tries at the primary, is the second target asked)
DECISION_TABLE: list[tuple[str, Step, int, bool]] = [
    *[(f"HTTP {s}", status_error("a", s), 3, True) for s in (429, 500, 502, 503, 504, 529)],
    ("timeout", timeout_error("a"), 3, True),
    ("connection error", unavailable("a"), 3, True),
    ("HTTP 408", status_error("a", 408), 2, True),
    ("malformed body", malformed("a"), 2, True),
    ("cut stream", cut_stream("a"), 2, True),
    ("HTTP 401", status_error("a", 401), 1, True),
    ("HTTP 403", status_error("a", 403), 1, True),
    ("HTTP 404", status_error("a", 404), 1, True),
    ("HTTP 400", status_error("a", 400), 1, False),
    ("HTTP 422", status_error("a", 422), 1, False),
]


@pytest.mark.parametrize(("_row", "failure", "tries", "falls_back"), DECISION_TABLE,
                         ids=[row[0] for row in DECISION_TABLE])
async def test_each_failure_is_retried_and_falls_back_as_the_decision_table_says(
        _row: str, failure: Step, tries: int, falls_back: bool, rng: random.Random) -> None:
    primary = ScriptedAdapter("a", [failure])
    second = ScriptedAdapter("b", [completion("from b")])
    route = Fallback([retried(primary, rng), retried(second, rng)], CLOCK)

    if falls_back:
        response = await route.complete(request(), call_for(60))
        assert (response.provider, response.completion.content) == ("b", "from b")
    else:
        with pytest.raises(ProviderStatusError):
            await route.complete(request(), call_for(60))

    assert len(primary.calls) == tries
    assert len(second.calls) == (1 if falls_back else 0)


async def test_a_hanging_primary_leaves_half_the_deadline_to_the_next_target(
        rng: random.Random) -> None:
    primary = ScriptedAdapter("a", [HANG])
    second = ScriptedAdapter("b", [Delay(1.0, completion("from b"))])
    route = Fallback([retried(primary, rng), retried(second, rng)], CLOCK)

    response = await route.complete(request(), call_for(3))

    assert response.provider == "b"
    assert second.times == [1.5]
    assert anyio.current_time() == 2.5


async def test_every_hop_shares_one_deadline_and_the_last_gets_what_is_left(
        rng: random.Random) -> None:
    adapters = [ScriptedAdapter(name, [HANG]) for name in "abc"]
    call = call_for(4)

    with pytest.raises(AllTargetsFailed):
        await Fallback([retried(a, rng) for a in adapters], CLOCK).complete(request(), call)

    assert [a.times for a in adapters] == [[0], [2], [3]]
    assert anyio.current_time() == 4
    # each hop ends at its own share of the deadline, too late for a retry there
    assert [(a.provider, (a.error or "").split(";")[0], a.latency_ms)
            for a in call.attempts] == [
        ("a", "no answer within 2 s", 2000.0),
        ("b", "no answer within 1 s", 1000.0),
        ("c", "no answer within 1 s", 1000.0),
    ]


async def test_an_unconfigured_target_is_reported_skipped_and_the_next_answers() -> None:
    missing = ScriptedAdapter("openai", [completion()], configured=False)
    present = ScriptedAdapter("deepseek", [completion("hi")])
    call = call_for(60)

    response = await Fallback([target(missing, "gpt-4o"), target(present, "deepseek-chat")],
                              CLOCK).complete(request(), call)

    assert response.provider == "deepseek"
    assert call.attempts == [
        Attempt(provider="openai", model="gpt-4o", outcome="skipped",
                error="no API key configured"),
        Attempt(provider="deepseek", model="deepseek-chat", outcome="ok"),
    ]


async def test_all_targets_failed_carries_every_attempt_in_order(rng: random.Random) -> None:
    busy = ScriptedAdapter("openrouter", [status_error("openrouter", 503)])
    bad_key = ScriptedAdapter("anthropic", [status_error("anthropic", 401)])
    missing = ScriptedAdapter("openai", [completion()], configured=False)
    route = Fallback([retried(busy, rng, "gpt"), retried(bad_key, rng, "claude"),
                      retried(missing, rng, "gpt-4o")], CLOCK)

    with pytest.raises(AllTargetsFailed) as raised:
        await route.complete(request(), call_for(60))

    unavailable_503 = attempt("openrouter", "gpt", "error", 503, "HTTP 503: Service Unavailable")
    assert without_latency(raised.value.attempts) == [
        unavailable_503, unavailable_503, unavailable_503,
        attempt("anthropic", "claude", "error", 401, "HTTP 401: Unauthorized"),
        attempt("openai", "gpt-4o", "skipped", error="no API key configured"),
    ]


async def test_a_wrong_request_stops_the_route_without_asking_further_targets() -> None:
    first = ScriptedAdapter("a", [status_error("a", 400)])
    second = ScriptedAdapter("b", [completion()])
    call = call_for(60)

    with pytest.raises(ProviderStatusError) as raised:
        await Fallback([target(first), target(second)], CLOCK).complete(request(), call)

    assert raised.value.status == 400
    assert second.calls == []
    assert [a.provider for a in call.attempts] == ["a"]


async def test_a_retry_after_above_the_cap_moves_on_to_the_next_target_at_once(
        rng: random.Random) -> None:
    limited = ScriptedAdapter("a", [status_error("a", 429, retry_after=120)])
    second = ScriptedAdapter("b", [completion()])

    response = await Fallback([retried(limited, rng), retried(second, rng)],
                              CLOCK).complete(request(), call_for(60))

    assert response.provider == "b"
    assert second.times == [0]


async def test_a_nested_fallback_that_fails_lets_the_outer_route_move_on() -> None:
    a = ScriptedAdapter("a", [unavailable("a")])
    b = ScriptedAdapter("b", [status_error("b", 404)])
    c = ScriptedAdapter("c", [completion("from c")])
    progress = Progress()
    call = call_for(60, progress)
    inner = Fallback([target(a), target(b)], CLOCK, label="inner")

    response = await Fallback([inner, target(c)], CLOCK).complete(request(), call)

    assert response.provider == "c"
    assert [(x.provider, x.outcome) for x in call.attempts] == [
        ("a", "error"), ("b", "error"), ("c", "ok")]
    assert progress.messages == ["asking a/m", "falling back to b/m", "asking b/m",
                                 "falling back to c/m", "asking c/m"]


async def test_a_wrong_request_inside_a_nested_fallback_stops_the_outer_route_too() -> None:
    a = ScriptedAdapter("a", [status_error("a", 422)])
    c = ScriptedAdapter("c", [completion()])

    with pytest.raises(ProviderStatusError):
        await Fallback([Fallback([target(a)], CLOCK), target(c)],
                       CLOCK).complete(request(), call_for(60))

    assert c.calls == []


async def test_targets_left_when_the_deadline_passes_are_recorded_as_skipped() -> None:
    class IgnoresTheDeadline:
        async def complete(self, request: ChatRequest, call: Call) -> ChatResponse:
            await anyio.sleep(10)
            raise ProviderUnavailable("slow", "m", "gave up late")

    later = ScriptedAdapter("b", [completion()])
    nested = Fallback([target(ScriptedAdapter("c", [completion()]), "c1"),
                       target(ScriptedAdapter("d", [completion()]), "d1")], CLOCK)
    call = call_for(5)

    with pytest.raises(AllTargetsFailed) as raised:
        await Fallback([IgnoresTheDeadline(), target(later), nested],
                       CLOCK).complete(request(), call)

    assert later.calls == []
    assert raised.value.attempts == [
        attempt("b", "m", "skipped", error="deadline reached"),
        attempt("c", "c1", "skipped", error="deadline reached"),
        attempt("d", "d1", "skipped", error="deadline reached"),
    ]


async def test_a_call_that_starts_past_its_deadline_skips_every_target() -> None:
    a = ScriptedAdapter("a", [completion()])
    call = Call(deadline=anyio.current_time())

    with pytest.raises(AllTargetsFailed) as raised:
        await Fallback([target(a)], CLOCK).complete(request(), call)

    assert a.calls == []
    assert raised.value.attempts == [attempt("a", "m", "skipped", error="deadline reached")]


def test_a_fallback_is_labelled_by_its_name_or_its_children() -> None:
    a, b = ScriptedAdapter("a", [completion()]), ScriptedAdapter("b", [completion()])
    assert Fallback([target(a), target(b)], CLOCK).label == "a/m → b/m"
    assert Fallback([target(a)], CLOCK, label="coding").label == "coding"


def test_a_fallback_needs_a_child() -> None:
    with pytest.raises(ValueError, match="at least one child"):
        Fallback([], CLOCK)
