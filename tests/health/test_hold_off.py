"""An upstream's Retry-After holds its target off, for no longer than the longest cooldown; a
reopen time, however far, is reported and never raised."""

from __future__ import annotations

import math

import anyio
import pytest

from mcp_router.errors import ProviderError, ProviderUnavailable
from mcp_router.health import HealthBook, iso
from mcp_router.messages import Attempt
from mcp_router.probes import Prober
from mcp_router.routing.circuits import BreakerBoard, BreakerPolicy
from tests.fixtures.scripted import ScriptedAdapter, completion, request, status_error
from tests.health.support import CLOCK, at, guarded
from tests.health.test_breaker import open_circuit
from tests.routing.support import call_for

pytestmark = [pytest.mark.virtual_time, pytest.mark.anyio]
KEY = "a/m"
LAST_SECOND = "9999-12-31T23:59:59Z"


async def told_to_wait(board: BreakerBoard, retry_after: float) -> ScriptedAdapter:
    """One call at a/m answered 429 with `retry_after`; its adapter answers from then on."""
    adapter = ScriptedAdapter("a", [status_error("a", 429, retry_after=retry_after),
                                    completion()])
    with pytest.raises(ProviderError):
        await guarded(adapter, board).complete(request(), call_for(60))
    return adapter


@pytest.mark.parametrize(("retry_after", "said"), [
    (3e11, "3e+11"), (1e308, "1e+308"), (math.inf, "inf")])
async def test_a_retry_after_far_in_the_future_holds_the_target_off_for_the_longest_cooldown(
        retry_after: float, said: str) -> None:
    board = BreakerBoard(CLOCK)
    adapter = await told_to_wait(board, retry_after)

    circuit = board.circuit(KEY)

    assert (circuit.state, circuit.reopens_at, circuit.open_until) == ("open", 600.0, at(600))
    assert circuit.reason == (f"circuit open until {at(600)} (HTTP 429 with Retry-After "
                              f"{said} s (held off 600 s, the most))")
    assert HealthBook(CLOCK, board).report("a", True).open_until == at(600)
    await anyio.sleep(600)
    response = await guarded(adapter, board).complete(request(), call_for(60))
    assert response.completion.content == "hello"  # the trial after it, answered
    assert board.circuit(KEY).state == "closed"


async def test_the_longest_hold_off_is_the_policys_longest_cooldown() -> None:
    board = BreakerBoard(CLOCK, BreakerPolicy(cooldown_max_s=120))
    await told_to_wait(board, 3600)

    assert board.circuit(KEY).reason == (f"circuit open until {at(120)} (HTTP 429 with "
                                         "Retry-After 3600 s (held off 120 s, the most))")


async def test_a_retry_after_within_the_longest_cooldown_is_kept_as_said() -> None:
    board = BreakerBoard(CLOCK)
    await told_to_wait(board, 30)

    assert board.circuit(KEY).reason == f"circuit open until {at(30)} (HTTP 429 with " \
                                        "Retry-After 30 s)"


@pytest.mark.parametrize("retry_after", [math.nan, -5.0, -math.inf])
async def test_a_retry_after_that_is_no_wait_holds_nothing_off(retry_after: float) -> None:
    board = BreakerBoard(CLOCK)
    await told_to_wait(board, retry_after)

    circuit = board.circuit(KEY)

    assert (circuit.state, circuit.open_until, circuit.reason) == ("closed", None, None)


async def test_a_successful_probe_does_not_end_a_hold_off_early() -> None:
    board = BreakerBoard(CLOCK)
    adapter = await told_to_wait(board, 60)
    prober = Prober({"a": adapter}, board, HealthBook(CLOCK, board), CLOCK)

    assert (await prober.probe("a")).ok  # the list-models GET answers: the host is up
    call = call_for(60)
    with pytest.raises(ProviderUnavailable):
        await guarded(adapter, board).complete(request(), call)

    assert len(adapter.calls) == 1
    assert call.attempts[0].error == (f"circuit open until {at(60)} (HTTP 429 with "
                                      "Retry-After 60 s)")


async def test_a_hold_off_heard_during_a_trial_lets_no_second_trial_through() -> None:
    board = BreakerBoard(CLOCK)
    await open_circuit(board)
    await anyio.sleep(30)
    trial = board.admit(KEY)
    assert trial.trial

    # An older call still retrying at the target is told to wait 1 s while the trial runs.
    board.hold_off(KEY, 1, "HTTP 429 with Retry-After 1 s")
    await anyio.sleep(1)

    beside = board.admit(KEY)
    assert (beside.allowed, beside.reason) == (False, (
        "circuit half-open, its trial call is in flight (HTTP 429 with Retry-After 1 s)"))
    board.settle(KEY, trial, [Attempt(provider="a", model="m", outcome="ok")])
    assert board.circuit(KEY).state == "closed"


async def test_a_reopen_time_past_the_year_9999_is_reported_as_its_last_second() -> None:
    board = BreakerBoard(CLOCK, BreakerPolicy(cooldown_s=1e12, cooldown_max_s=1e13))
    await open_circuit(board)

    report = HealthBook(CLOCK, board).report("a", True)

    assert (report.state, report.open_until) == ("open", LAST_SECOND)
    assert report.targets[0].reason == (f"circuit open until {LAST_SECOND} (5 failures in a "
                                        "row; last: HTTP 503: Service Unavailable)")


def test_times_no_date_can_hold_are_formatted_without_an_error() -> None:
    assert [iso(t) for t in (1e20, math.inf, math.nan)] == [LAST_SECOND] * 3
    assert iso(-1e20) == "1970-01-01T00:00:00Z"
