"""When every target of a call is open, the one that reopens soonest is still tried."""

from __future__ import annotations

import anyio
import pytest

from mcp_router.errors import AllTargetsFailed
from mcp_router.messages import Attempt
from mcp_router.routing import Balanced, Fallback
from mcp_router.routing.breaker import CircuitGroup
from mcp_router.routing.circuits import BreakerBoard
from tests.fixtures.scripted import Delay, ScriptedAdapter, completion, request, status_error
from tests.health.support import CLOCK, at, guarded
from tests.health.test_breaker import fail_times, open_circuit
from tests.routing.support import call_for, without_latency

pytestmark = [pytest.mark.virtual_time, pytest.mark.anyio]
OPEN_REASON = "(5 failures in a row; last: HTTP 503: Service Unavailable)"


async def two_open_circuits(board: BreakerBoard) -> None:
    """b opens at t=0 (reopens at 30), a at t=10 (reopens at 40)."""
    await open_circuit(board, "b")
    await anyio.sleep(10)
    await open_circuit(board, "a")
    await anyio.sleep(5)


async def test_when_every_target_is_open_the_one_reopening_soonest_is_tried() -> None:
    board = BreakerBoard(CLOCK)
    await two_open_circuits(board)
    a, b = ScriptedAdapter("a", [completion("a")]), ScriptedAdapter("b", [completion("b")])
    route = CircuitGroup(Fallback([guarded(a, board), guarded(b, board)], CLOCK))
    call = call_for(60)

    response = await route.complete(request(), call)

    assert (response.provider, len(a.calls), len(b.calls)) == ("b", 0, 1)
    assert without_latency(call.attempts) == [
        Attempt(provider="a", model="m", outcome="skipped",
                error=f"circuit open until {at(40)} {OPEN_REASON}"),
        Attempt(provider="b", model="m", outcome="ok"),
    ]
    assert board.circuit("b/m").state == "closed"


async def test_a_failed_last_resort_reopens_later_and_the_call_fails_having_tried_once() -> None:
    board = BreakerBoard(CLOCK)
    await two_open_circuits(board)
    b = ScriptedAdapter("b", [status_error("b", 503)])
    route = CircuitGroup(Fallback([guarded(ScriptedAdapter("a", [completion()]), board),
                                   guarded(b, board, attempts=3)], CLOCK))

    with pytest.raises(AllTargetsFailed) as info:
        await route.complete(request(), call_for(60))

    assert [a.outcome for a in info.value.attempts] == ["skipped", "error"]
    assert len(b.calls) == 1
    assert board.circuit("b/m").reopens_at == 15 + 60  # the second opening in a row
    assert board.circuit("a/m").reopens_at == 40


async def test_without_a_group_open_targets_are_only_skipped() -> None:
    board = BreakerBoard(CLOCK)
    await two_open_circuits(board)
    a, b = ScriptedAdapter("a", [completion()]), ScriptedAdapter("b", [completion()])
    route = Fallback([guarded(a, board), guarded(b, board)], CLOCK)

    with pytest.raises(AllTargetsFailed) as info:
        await route.complete(request(), call_for(60))

    assert [x.outcome for x in info.value.attempts] == ["skipped", "skipped"]
    assert (len(a.calls), len(b.calls)) == (0, 0)


async def test_while_one_last_resort_is_in_flight_a_concurrent_call_tries_the_next_soonest(
        ) -> None:
    board = BreakerBoard(CLOCK)
    await two_open_circuits(board)
    a = ScriptedAdapter("a", [completion("a")])
    b = ScriptedAdapter("b", [Delay(5, completion("b"))])
    route = CircuitGroup(Balanced([(guarded(a, board), 1), (guarded(b, board), 1)], CLOCK))
    answers: list[str] = []

    async def ask() -> None:
        answers.append((await route.complete(request(), call_for(60))).provider)

    async with anyio.create_task_group() as group:
        group.start_soon(ask)
        await anyio.sleep(1)
        await ask()

    assert sorted(answers) == ["a", "b"] and (len(a.calls), len(b.calls)) == (1, 1)


async def test_a_target_that_is_not_open_keeps_the_rule_out() -> None:
    board = BreakerBoard(CLOCK)
    await open_circuit(board, "b")
    a = ScriptedAdapter("a", [status_error("a", 500)])
    b = ScriptedAdapter("b", [completion()])
    route = CircuitGroup(Fallback([guarded(b, board), guarded(a, board)], CLOCK))

    with pytest.raises(AllTargetsFailed):
        await route.complete(request(), call_for(60))

    assert (len(a.calls), len(b.calls)) == (1, 0)


async def test_marked_and_unconfigured_targets_count_as_unavailable_but_are_never_forced(
        ) -> None:
    board = BreakerBoard(CLOCK, unconfigured=["u"])
    await open_circuit(board, "b")
    missing = ScriptedAdapter("m", [status_error("m", 404)])
    await fail_times(guarded(missing, board), 1)
    b = ScriptedAdapter("b", [completion()])
    route = CircuitGroup(Fallback([guarded(b, board), guarded(missing, board),
                                   guarded(ScriptedAdapter("u", [completion()],
                                                           configured=False), board)], CLOCK))

    response = await route.complete(request(), call_for(60))

    assert response.provider == "b" and len(missing.calls) == 1


async def test_a_provider_found_unconfigured_no_longer_holds_back_the_rule() -> None:
    board = BreakerBoard(CLOCK)
    await open_circuit(board, "b")
    b = ScriptedAdapter("b", [completion()])
    route = CircuitGroup(Fallback([
        guarded(ScriptedAdapter("u", [completion()], configured=False), board),
        guarded(b, board)], CLOCK))

    response = await route.complete(request(), call_for(60))

    assert response.provider == "b"
    assert board.circuit("u/m").state == "unconfigured"


async def test_a_group_counts_the_targets_of_nested_routes_and_the_outermost_group_wins() -> None:
    board = BreakerBoard(CLOCK)
    await two_open_circuits(board)
    inner = CircuitGroup(Fallback([guarded(ScriptedAdapter("a", [completion()]), board)], CLOCK))
    b = ScriptedAdapter("b", [completion()])
    route = CircuitGroup(Fallback([inner, guarded(b, board)], CLOCK))

    response = await route.complete(request(), call_for(60))

    assert route.keys == ("a/m", "b/m")
    assert response.provider == "b"  # a alone would be its inner group's last resort
