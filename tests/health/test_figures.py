"""HealthBook: figures per provider and per target match the calls made; states read circuits."""

from __future__ import annotations

import anyio
import pytest

from mcp_router.errors import ProviderError
from mcp_router.health import HealthBook, ProviderHealth, TargetHealth, percentile
from mcp_router.messages import Attempt, ChatProvider
from mcp_router.probes import Prober
from mcp_router.routing.circuits import BreakerBoard
from tests.fixtures.scripted import Delay, ScriptedAdapter, completion, request, status_error
from tests.health.support import CLOCK, at, guarded
from tests.health.test_breaker import open_circuit
from tests.routing.support import call_for

pytestmark = [pytest.mark.virtual_time, pytest.mark.anyio]


async def ask(leaf: ChatProvider, health: HealthBook) -> None:
    """One call as the router makes it: the tree, then every attempt into the book."""
    call = call_for(60)
    try:
        await leaf.complete(request(), call)
    except ProviderError:
        pass
    finally:
        health.record(call.attempts)


async def test_figures_per_provider_and_per_target_match_a_scripted_sequence_of_calls() -> None:
    board = BreakerBoard(CLOCK)
    health = HealthBook(CLOCK, board)
    fast = ScriptedAdapter("a", [Delay(n / 10, completion()) for n in range(1, 6)]
                           + [status_error("a", 400)])
    slow = ScriptedAdapter("a", [Delay(n / 10, completion()) for n in range(6, 11)]
                           + [status_error("a", 503)])
    m1, m2 = guarded(fast, board, model="m1"), guarded(slow, board, model="m2")
    for _ in range(5):
        await ask(m1, health)
    for _ in range(5):
        await ask(m2, health)
    for leaf in (m2, m2, m1):  # two upstream failures, then the caller's own mistake
        await ask(leaf, health)

    report = health.report("a", True)

    assert report.model_dump(exclude={"targets"}) == ProviderHealth(
        name="a", state="degraded", success_rate=round(10 / 12, 4), requests=13,
        p50_ms=500.0, p95_ms=1000.0, last_error="HTTP 400: Bad Request",
        last_error_at=at(5.5), consecutive_failures=2).model_dump(exclude={"targets"})
    assert report.targets == [
        TargetHealth(target="a/m1", state="healthy", circuit="closed", requests=6,
                     success_rate=1.0, p50_ms=300.0, p95_ms=500.0, ttfb_p50_ms=None,
                     consecutive_failures=0, last_error="HTTP 400: Bad Request",
                     last_error_at=at(5.5), open_until=None, reason=None),
        TargetHealth(target="a/m2", state="degraded", circuit="closed", requests=7,
                     success_rate=round(5 / 7, 4), p50_ms=800.0, p95_ms=1000.0,
                     ttfb_p50_ms=None, consecutive_failures=2,
                     last_error="HTTP 503: Service Unavailable", last_error_at=at(5.5),
                     open_until=None, reason=None),
    ]


async def test_a_success_ends_the_failure_streak_and_skips_are_not_requests() -> None:
    board = BreakerBoard(CLOCK)
    health = HealthBook(CLOCK, board)
    adapter = ScriptedAdapter("a", [status_error("a", 500)] * 3 + [completion()])
    leaf = guarded(adapter, board)
    for _ in range(3):
        await ask(leaf, health)
    assert health.report("a", True).consecutive_failures == 3
    await ask(guarded(ScriptedAdapter("a", [completion()], configured=False), board), health)

    await ask(leaf, health)

    report = health.report("a", True)
    assert (report.requests, report.consecutive_failures, report.success_rate) == (4, 0, 0.25)


async def test_calls_older_than_the_window_leave_the_figures_but_not_the_last_error() -> None:
    health = HealthBook(CLOCK, window_s=900)
    leaf = guarded(ScriptedAdapter("a", [status_error("a", 502), completion()]),
                   BreakerBoard(CLOCK))
    await ask(leaf, health)
    await anyio.sleep(600)
    await ask(leaf, health)
    assert health.report("a", True).requests == 2

    await anyio.sleep(301)

    report = health.report("a", True)
    assert (report.requests, report.success_rate, report.state) == (1, 1.0, "healthy")
    assert (report.last_error, report.last_error_at) == ("HTTP 502: Bad Gateway", at(0))


async def test_time_to_first_byte_is_the_median_over_answered_calls() -> None:
    health = HealthBook(CLOCK)
    health.record([Attempt(provider="a", model="m", outcome="ok", latency_ms=900.0,
                           ttfb_ms=ttfb) for ttfb in (120.0, 80.0, 300.0)]
                  + [Attempt(provider="a", model="m", outcome="error", status=500,
                             latency_ms=5.0, ttfb_ms=5.0)])

    report = health.report("a", True)

    assert report.ttfb_p50_ms == 120.0 and report.targets[0].ttfb_p50_ms == 120.0


async def test_the_time_to_first_byte_of_calls_through_a_target_reaches_the_figures() -> None:
    board = BreakerBoard(CLOCK)
    health = HealthBook(CLOCK, board)
    answers = [completion().model_copy(update={"ttfb_ms": t}) for t in (40.0, 60.0, 50.0)]
    leaf = guarded(ScriptedAdapter("a", answers), board)
    for _ in answers:
        await ask(leaf, health)

    assert health.report("a", True).ttfb_p50_ms == 50.0


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1, 21)]
    assert (percentile(values, 0.5), percentile(values, 0.95)) == (10.0, 19.0)
    assert (percentile([7.0], 0.95), percentile([], 0.5)) == (7.0, None)


async def test_a_provider_is_open_with_its_reopen_time_when_every_target_is_open() -> None:
    board = BreakerBoard(CLOCK)
    health = HealthBook(CLOCK, board)
    await open_circuit(board, "a", "m1")
    await anyio.sleep(5)
    await open_circuit(board, "a", "m2")

    report = health.report("a", True)

    assert (report.state, report.open_until) == ("open", at(30))
    assert report.reason == ("a/m1: circuit open until 2027-01-15T08:00:30Z "
                             "(5 failures in a row; last: HTTP 503: Service Unavailable)")
    assert [(t.target, t.state, t.circuit, t.open_until) for t in report.targets] == [
        ("a/m1", "open", "open", at(30)), ("a/m2", "open", "open", at(35))]


async def test_a_provider_with_some_targets_open_is_degraded() -> None:
    board = BreakerBoard(CLOCK)
    health = HealthBook(CLOCK, board)
    await open_circuit(board, "a", "m1")
    await ask(guarded(ScriptedAdapter("a", [completion()]), board, model="m2"), health)

    report = health.report("a", True)

    assert (report.state, report.open_until) == ("degraded", at(30))
    await anyio.sleep(30)
    assert health.report("a", True).targets[0].state == "degraded"  # half-open


async def test_a_misconfigured_provider_is_open_until_fixed_with_the_reason() -> None:
    board = BreakerBoard(CLOCK)
    health = HealthBook(CLOCK, board)
    await ask(guarded(ScriptedAdapter("a", [status_error("a", 401)]), board), health)

    report = health.report("a", True)

    assert (report.state, report.open_until, report.last_error) == (
        "open", None, "HTTP 401: Unauthorized")
    assert report.reason == ("a/m: misconfigured (HTTP 401: Unauthorized); "
                             "skipped until the config changes or a probe succeeds")


async def test_without_calls_a_provider_is_unknown_or_judged_by_its_last_probe() -> None:
    board = BreakerBoard(CLOCK)
    health = HealthBook(CLOCK, board)
    good = ScriptedAdapter("good", [completion()])
    bad = ScriptedAdapter("bad", [completion()], probe_script=[status_error("bad", 403)])
    assert health.report("good", True).state == "unknown"
    assert health.report("none", False).state == "unconfigured"

    prober = Prober({"good": good, "bad": bad}, board, health, CLOCK)
    await prober.probe_all()

    assert health.report("good", True).state == "healthy"
    bad_report = health.report("bad", True)
    # a refused probe marks nothing: calls still go to it, so it is degraded, not open
    assert (bad_report.state, bad_report.last_error) == ("degraded",
                                                        "probe: HTTP 403: Forbidden")
    assert (bad_report.success_rate, bad_report.requests) == (None, 0)
