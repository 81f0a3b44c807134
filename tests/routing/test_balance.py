"""Balanced: exact, interleaved smooth weighted round robin, with fallback to the others."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Sequence

import anyio
import pytest

from mcp_router.clock import LoopClock
from mcp_router.messages import ChatResponse
from mcp_router.routing import Balanced, Target
from tests.fixtures.scripted import (
    HANG,
    Delay,
    ScriptedAdapter,
    Step,
    completion,
    request,
    status_error,
)
from tests.routing.support import Progress, call_for

pytestmark = [pytest.mark.virtual_time, pytest.mark.anyio]
CLOCK = LoopClock()


def team_balance(*steps: Sequence[Step]) -> Balanced:
    names, weights = "abcd", (40, 30, 20, 10)
    return Balanced([(Target(ScriptedAdapter(n, s), "m", CLOCK), w)
                     for n, s, w in zip(names, steps, weights, strict=True)], CLOCK)


def all_answer() -> Balanced:
    return team_balance(*[[completion()]] * 4)


async def test_balance_picks_exactly_by_weight_over_100_calls_interleaved() -> None:
    route = all_answer()

    picks = "".join([(await route.complete(request(), call_for(60))).provider
                     for _ in range(100)])

    assert Counter(picks) == {"a": 40, "b": 30, "c": 20, "d": 10}
    # exact in every window of sum(weights)/gcd = 10 calls, too
    assert all(Counter(picks[i:i + 10]) == {"a": 4, "b": 3, "c": 2, "d": 1}
               for i in range(0, 100, 10))
    assert max(len(list(run)) for _, run in itertools.groupby(picks)) <= 2


async def test_balance_stays_exact_under_concurrent_calls() -> None:
    route = team_balance(*[[Delay(1, completion())]] * 4)
    answers: list[ChatResponse] = []

    async def one() -> None:
        answers.append(await route.complete(request(), call_for(60)))

    async with anyio.create_task_group() as group:
        for _ in range(100):
            group.start_soon(one)

    assert Counter(a.provider for a in answers) == {"a": 40, "b": 30, "c": 20, "d": 10}
    assert anyio.current_time() == 1


async def test_balanced_falls_back_to_the_others_by_descending_weight_when_the_pick_fails(
        ) -> None:
    # The first pick is "a"; "b" is down too, so "c" (the next heaviest) answers.
    route = team_balance([status_error("a", 503)], [status_error("b", 500)],
                         [completion("from c")], [completion()])
    progress = Progress()
    call = call_for(60, progress)

    response = await route.complete(request(), call)

    assert response.provider == "c"
    assert [(x.provider, x.outcome, x.status) for x in call.attempts] == [
        ("a", "error", 503), ("b", "error", 500), ("c", "ok", None)]
    assert "falling back to b/m" in progress.messages


async def test_balanced_falls_back_from_a_light_pick_to_the_heaviest() -> None:
    route = team_balance([completion()], [completion()], [completion()],
                         [status_error("d", 503)])
    responses = [await route.complete(request(), call_for(60)) for _ in range(10)]

    # "d" was picked once in these 10 calls and failed; "a" answered for it.
    assert Counter(r.provider for r in responses) == {"a": 5, "b": 3, "c": 2}


async def test_balanced_gives_a_hanging_pick_half_the_deadline() -> None:
    route = team_balance([HANG], [completion()], [completion()], [completion()])

    response = await route.complete(request(), call_for(3))

    assert response.provider == "b"
    assert anyio.current_time() == 1.5


def test_balance_weights_must_be_positive() -> None:
    target = Target(ScriptedAdapter("a", [completion()]), "m", CLOCK)
    with pytest.raises(ValueError, match="positive"):
        Balanced([(target, 0)], CLOCK)


def test_balanced_is_labelled_by_its_children_and_weights() -> None:
    assert all_answer().label == "balance(a/m:40, b/m:30, c/m:20, d/m:10)"
