"""Breaker and BreakerBoard on a virtual clock: opening, half-open trials, closing, cooldowns."""

from __future__ import annotations

import contextlib

import anyio
import pytest

from mcp_router.errors import (
    ProviderError,
    ProviderStatusError,
    ProviderUnavailable,
)
from mcp_router.messages import Attempt, ChatProvider
from mcp_router.routing import Fallback, Target
from mcp_router.routing.circuits import BreakerBoard, BreakerPolicy
from tests.fixtures.scripted import (
    HANG,
    Delay,
    ScriptedAdapter,
    Step,
    completion,
    request,
    status_error,
    timeout_error,
    unavailable,
)
from tests.health.support import CLOCK, at, guarded
from tests.routing.support import call_for

pytestmark = [pytest.mark.virtual_time, pytest.mark.anyio]
KEY = "a/m"


async def fail_times(leaf: ChatProvider, times: int) -> None:
    for _ in range(times):
        with pytest.raises(ProviderError):
            await leaf.complete(request(), call_for(60))


async def open_circuit(board: BreakerBoard, provider: str = "a", model: str = "m") -> None:
    """Five 503s in a row at `provider/model`, which opens its circuit for 30 s."""
    await fail_times(guarded(ScriptedAdapter(provider, [status_error(provider, 503)]), board,
                             model=model), 5)
    assert board.circuit(f"{provider}/{model}").state == "open"


async def test_five_failures_in_a_row_open_the_circuit_and_the_target_is_then_skipped() -> None:
    adapter = ScriptedAdapter("a", [status_error("a", 503)])
    board = BreakerBoard(CLOCK)
    leaf = guarded(adapter, board)

    await fail_times(leaf, 4)
    assert board.circuit(KEY).state == "closed"
    await anyio.sleep(2)
    await fail_times(leaf, 1)

    call = call_for(60)
    with pytest.raises(ProviderUnavailable) as info:
        await leaf.complete(request(), call)
    reason = (f"circuit open until {at(2 + 30)} "
              "(5 failures in a row; last: HTTP 503: Service Unavailable)")
    assert call.attempts == [Attempt(provider="a", model="m", outcome="skipped", error=reason)]
    assert (info.value.provider, info.value.model, info.value.detail) == ("a", "m", reason)
    assert len(adapter.calls) == 5
    circuit = board.circuit(KEY)
    assert (circuit.state, circuit.reopens_at, circuit.open_until) == ("open", 32.0, at(32))


async def test_every_retried_try_counts_towards_opening() -> None:
    adapter = ScriptedAdapter("a", [timeout_error("a")])
    board = BreakerBoard(CLOCK)
    leaf = guarded(adapter, board, attempts=3)

    await fail_times(leaf, 2)  # 3 tries each: the fifth try opens it, inside the second hop

    assert len(adapter.calls) == 6
    assert board.circuit(KEY).state == "open"
    await fail_times(leaf, 1)
    assert len(adapter.calls) == 6


async def test_a_failure_rate_of_half_over_ten_calls_opens_the_circuit_without_a_streak() -> None:
    adapter = ScriptedAdapter("a", [completion(), unavailable("a")] * 5)
    board = BreakerBoard(CLOCK)
    leaf = guarded(adapter, board)

    for _ in range(5):
        await leaf.complete(request(), call_for(60))
        await fail_times(leaf, 1)

    circuit = board.circuit(KEY)
    assert circuit.state == "open"
    assert circuit.reason == (f"circuit open until {at(30)} "
                              "(5 of the last 10 calls failed; last: connection refused)")


async def test_a_circuit_s_reason_names_the_status_never_the_upstream_s_words() -> None:
    # An error body that quotes the request: whoever meets the open circuit next would read it.
    echo = ProviderStatusError("a", "m", 503, "Rejected request containing: my salary is 123k")
    leaf = guarded(ScriptedAdapter("a", [echo]), board := BreakerBoard(CLOCK))
    await fail_times(leaf, 5)

    call = call_for(60)
    with pytest.raises(ProviderUnavailable):
        await leaf.complete(request(), call)

    assert call.attempts[0].error == (f"circuit open until {at(30)} "
                                      "(5 failures in a row; last: HTTP 503: Service Unavailable)")
    assert "salary" not in (board.circuit(KEY).reason or "")


async def test_quick_failures_in_a_burst_beside_slower_successes_do_not_make_a_streak() -> None:
    # Ten calls at once; calls 3, 6 and 9 get a 503 at once, the others answer after 2 s.
    # By completion the three failures are "in a row", by the target they are 30 %.
    slow_ok, quick_503 = Delay(2, completion()), status_error("a", 503)
    script = [quick_503 if n % 3 == 2 else slow_ok for n in range(10)]
    board = BreakerBoard(CLOCK, BreakerPolicy(failures=3))
    leaf = guarded(ScriptedAdapter("a", script), board)

    async def one() -> None:
        with contextlib.suppress(ProviderError):
            await leaf.complete(request(), call_for(60))

    async with anyio.create_task_group() as burst:
        for _ in range(10):
            burst.start_soon(one)

    assert board.circuit(KEY).state == "closed"


async def test_a_hung_earlier_call_stops_holding_back_the_streak_after_ten_seconds() -> None:
    # One call hangs at the target; the quick 503s behind it count in a row once it has run
    # for over BESIDE_S, so the circuit opens at the fifth, not only at the failure rate.
    board = BreakerBoard(CLOCK, BreakerPolicy(failures=3, min_requests=100))
    hung = guarded(ScriptedAdapter("a", [HANG]), board)
    failing = guarded(ScriptedAdapter("a", [status_error("a", 503)]), board)

    async with anyio.create_task_group() as group:
        group.start_soon(fail_times, hung, 1)
        await anyio.sleep(1)
        await fail_times(failing, 3)  # beside a call that began 1 s ago: no streak
        assert board.circuit(KEY).state == "closed"
        await anyio.sleep(10)
        await fail_times(failing, 3)
        assert board.circuit(KEY).state == "open"
        group.cancel_scope.cancel()


async def test_failures_in_the_order_the_calls_came_still_make_a_streak() -> None:
    board = BreakerBoard(CLOCK, BreakerPolicy(failures=3))
    leaf = guarded(ScriptedAdapter("a", [status_error("a", 503)]), board)

    async def one() -> None:
        with contextlib.suppress(ProviderError):
            await leaf.complete(request(), call_for(60))

    async with anyio.create_task_group() as overlapping:
        for _ in range(3):  # overlapping, but failing in the order they were admitted
            overlapping.start_soon(one)
            await anyio.sleep(0)

    assert board.circuit(KEY).state == "open"


async def test_outcomes_older_than_the_window_do_not_count_towards_the_rate() -> None:
    adapter = ScriptedAdapter("a", [unavailable("a"), completion()] * 4 + [unavailable("a")])
    board = BreakerBoard(CLOCK, BreakerPolicy(failures=100, window_s=60))
    leaf = guarded(adapter, board)
    for _ in range(4):
        await fail_times(leaf, 1)
        await leaf.complete(request(), call_for(60))

    await anyio.sleep(61)
    await fail_times(leaf, 2)  # 6 of 10 failed, but only 2 within the last minute
    assert board.circuit(KEY).state == "closed"
    await fail_times(leaf, 8)

    assert board.circuit(KEY).reason == (
        f"circuit open until {at(61 + 30)} "
        "(10 of the last 10 calls failed; last: connection refused)")


async def test_after_the_cooldown_one_trial_call_goes_through_and_concurrent_calls_are_skipped(
        ) -> None:
    board = BreakerBoard(CLOCK)
    await open_circuit(board)
    adapter = ScriptedAdapter("a", [Delay(1, completion("trial"))])
    leaf = guarded(adapter, board)
    await anyio.sleep(30)
    assert board.circuit(KEY).state == "half_open"
    during = call_for(60)
    answers: list[str] = []

    async def trial() -> None:
        answers.append((await leaf.complete(request(), call_for(60))).completion.content)

    async with anyio.create_task_group() as group:
        group.start_soon(trial)
        await anyio.sleep(0.5)
        with pytest.raises(ProviderUnavailable):
            await leaf.complete(request(), during)

    assert answers == ["trial"] and len(adapter.calls) == 1
    assert during.attempts[0].error == (
        "circuit half-open, its trial call is in flight "
        "(5 failures in a row; last: HTTP 503: Service Unavailable)")


async def test_a_target_whose_trial_is_in_flight_takes_no_share_of_the_time_before_it(
        ) -> None:
    board = BreakerBoard(CLOCK)
    await open_circuit(board, "b")
    await anyio.sleep(30)
    backup = guarded(ScriptedAdapter("b", [Delay(20, completion("trial"))]), board)
    primary = ScriptedAdapter("a", [Delay(7, completion("from a"))])  # over half of 10 s
    call = call_for(10)

    async with anyio.create_task_group() as group:
        group.start_soon(backup.complete, request(), call_for(60))  # b's one trial
        await anyio.sleep(0.5)
        route = Fallback([Target(primary, "m", CLOCK), backup], CLOCK)
        response = await route.complete(request(), call)

    # b would be skipped ("its trial call is in flight"): a gets the whole deadline.
    assert response.provider == "a"
    assert [(a.provider, a.outcome) for a in call.attempts] == [("a", "ok")]


async def test_a_successful_trial_closes_the_circuit_and_calls_flow_again() -> None:
    board = BreakerBoard(CLOCK)
    await open_circuit(board)
    adapter = ScriptedAdapter("a", [completion()])
    leaf = guarded(adapter, board)
    await anyio.sleep(30)

    for _ in range(3):
        await leaf.complete(request(), call_for(60))

    assert len(adapter.calls) == 3
    circuit = board.circuit(KEY)
    assert (circuit.state, circuit.reopens_at, circuit.reason) == ("closed", None, None)


async def test_a_trial_is_one_upstream_call_even_under_retrying_and_its_failure_reopens() -> None:
    board = BreakerBoard(CLOCK)
    await open_circuit(board)
    adapter = ScriptedAdapter("a", [status_error("a", 503)])
    leaf = guarded(adapter, board, attempts=3)
    await anyio.sleep(30)

    await fail_times(leaf, 1)

    assert len(adapter.calls) == 1
    circuit = board.circuit(KEY)
    assert (circuit.state, circuit.reopens_at) == ("open", 30 + 60)
    assert circuit.reason == (f"circuit open until {at(90)} "
                              "(trial call failed: HTTP 503: Service Unavailable)")


async def test_the_cooldown_doubles_on_each_reopening_up_to_ten_minutes_and_resets_on_success(
        ) -> None:
    board = BreakerBoard(CLOCK)
    await open_circuit(board)
    failing = guarded(ScriptedAdapter("a", [status_error("a", 502)]), board)
    cooldowns = [30.0]
    for _ in range(6):
        await anyio.sleep(cooldowns[-1])
        await fail_times(failing, 1)
        cooldowns.append((board.circuit(KEY).reopens_at or 0) - anyio.current_time())
    assert cooldowns == [30, 60, 120, 240, 480, 600, 600]

    await anyio.sleep(600)
    await guarded(ScriptedAdapter("a", [completion()]), board).complete(request(), call_for(60))
    await open_circuit(board)
    assert (board.circuit(KEY).reopens_at or 0) - anyio.current_time() == 30


async def test_a_failure_that_lands_after_opening_never_moves_the_reopen_time() -> None:
    # Opened by the failure rate: the fast failure is no streak beside the slow call.
    board = BreakerBoard(CLOCK, BreakerPolicy(min_requests=1, failure_rate=0.5))
    slow = guarded(ScriptedAdapter("a", [Delay(10, status_error("a", 500))]), board)
    fast = guarded(ScriptedAdapter("a", [status_error("a", 500)]), board)

    async with anyio.create_task_group() as group:
        group.start_soon(fail_times, slow, 1)
        await anyio.sleep(1)
        await fail_times(fast, 1)  # opens at t=1 until t=31
        assert board.circuit(KEY).reopens_at == 31

    assert anyio.current_time() == 10
    assert board.circuit(KEY).reopens_at == 31


@pytest.mark.parametrize("status", [400, 422])
async def test_the_callers_errors_never_count(status: int) -> None:
    adapter = ScriptedAdapter("a", [status_error("a", status)])
    board = BreakerBoard(CLOCK)
    leaf = guarded(adapter, board)

    for _ in range(12):
        with pytest.raises(ProviderStatusError):
            await leaf.complete(request(), call_for(60))

    assert len(adapter.calls) == 12
    assert board.circuit(KEY).state == "closed"


async def test_a_trial_answered_with_a_400_keeps_the_circuit_half_open_for_the_next_call() -> None:
    board = BreakerBoard(CLOCK)
    await open_circuit(board)
    adapter = ScriptedAdapter("a", [status_error("a", 400), completion()])
    leaf = guarded(adapter, board)
    await anyio.sleep(30)

    with pytest.raises(ProviderStatusError):
        await leaf.complete(request(), call_for(60))
    assert board.circuit(KEY).state == "half_open"
    await leaf.complete(request(), call_for(60))

    assert board.circuit(KEY).state == "closed"


async def test_rate_limiting_counts_as_a_failure() -> None:
    board = BreakerBoard(CLOCK)
    await fail_times(guarded(ScriptedAdapter("a", [status_error("a", 429)]), board), 5)
    assert board.circuit(KEY).state == "open"


async def test_a_trial_cancelled_midway_gives_its_slot_back() -> None:
    board = BreakerBoard(CLOCK)
    await open_circuit(board)
    adapter = ScriptedAdapter("a", [HANG, completion()])
    leaf = guarded(adapter, board)
    await anyio.sleep(30)

    with anyio.move_on_after(5):
        await leaf.complete(request(), call_for(60))
    await leaf.complete(request(), call_for(60))

    assert len(adapter.calls) == 2 and board.circuit(KEY).state == "closed"


FAILURES: list[tuple[str, Step]] = [
    ("5xx", status_error("a", 503)), ("timeout", timeout_error("a")),
    ("connection error", unavailable("a")), ("HTTP 408", status_error("a", 408)),
]


@pytest.mark.parametrize(("_name", "failure"), FAILURES, ids=[f[0] for f in FAILURES])
async def test_upstream_failures_count(_name: str, failure: Step) -> None:
    board = BreakerBoard(CLOCK)
    await fail_times(guarded(ScriptedAdapter("a", [failure]), board), 5)
    assert board.circuit(KEY).state == "open"


def test_the_cooldown_stays_capped_after_any_number_of_openings() -> None:
    policy = BreakerPolicy(cooldown_s=30, cooldown_max_s=600)
    assert [policy.cooldown(n) for n in (1, 2, 5, 6, 1025, 10**6)] == [30, 60, 480, 600,
                                                                      600, 600]
