"""Retrying: the decision table's same-target column, backoff with seeded jitter, Retry-After."""

from __future__ import annotations

import random
from itertools import pairwise

import anyio
import pytest

from mcp_router.clock import LoopClock
from mcp_router.config import RetryConfig
from mcp_router.errors import (
    ProviderError,
    ProviderNotConfigured,
    ProviderProtocolError,
    ProviderStatusError,
    ProviderTimeout,
    ProviderUnavailable,
)
from mcp_router.routing import Retrying, Target
from tests.fixtures.scripted import (
    HANG,
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


def retrying(adapter: ScriptedAdapter, rng: random.Random, **retry: object) -> Retrying:
    config = RetryConfig.model_validate(retry)
    return Retrying(Target(adapter, "m", LoopClock()), config, LoopClock(), rng)


def waits(adapter: ScriptedAdapter) -> list[float]:
    return [later - earlier for earlier, later in pairwise(adapter.times)]


RETRIED_UP_TO_ATTEMPTS: list[tuple[str, Step, type[ProviderError]]] = [
    *[(f"HTTP {s}", status_error("p", s), ProviderStatusError)
      for s in (429, 500, 502, 503, 504, 529)],
    ("read timeout", timeout_error("p"), ProviderTimeout),
    ("connection error", unavailable("p"), ProviderUnavailable),
]


@pytest.mark.parametrize(("_name", "step", "error_type"), RETRIED_UP_TO_ATTEMPTS)
async def test_transient_failures_are_retried_up_to_the_configured_attempts(
        _name: str, step: Step, error_type: type[ProviderError], rng: random.Random) -> None:
    adapter = ScriptedAdapter("p", [step])

    with pytest.raises(error_type):
        await retrying(adapter, rng, attempts=3).complete(request(), call_for(60))

    assert len(adapter.calls) == 3


async def test_a_hanging_target_is_retried_after_each_timeout(rng: random.Random) -> None:
    adapter = ScriptedAdapter("p", [HANG, completion("late but fine")], timeout_s=2)
    call = call_for(60)

    response = await retrying(adapter, rng, attempts=3).complete(request(), call)

    assert response.completion.content == "late but fine"
    assert [a.outcome for a in call.attempts] == ["error", "ok"]


@pytest.mark.parametrize("step", [status_error("p", 408), malformed("p"), cut_stream("p")],
                         ids=["HTTP 408", "malformed body", "cut stream"])
async def test_request_timeouts_and_unreadable_answers_are_retried_once(
        step: Step, rng: random.Random) -> None:
    adapter = ScriptedAdapter("p", [step])

    with pytest.raises((ProviderStatusError, ProviderProtocolError)):
        await retrying(adapter, rng, attempts=5).complete(request(), call_for(60))

    assert len(adapter.calls) == 2


@pytest.mark.parametrize("status", [400, 422, 401, 403, 404])
async def test_wrong_requests_keys_and_models_are_not_retried(
        status: int, rng: random.Random) -> None:
    adapter = ScriptedAdapter("p", [status_error("p", status)])

    with pytest.raises(ProviderStatusError) as raised:
        await retrying(adapter, rng, attempts=5).complete(request(), call_for(60))

    assert raised.value.status == status
    assert len(adapter.calls) == 1
    assert anyio.current_time() == 0


async def test_an_unconfigured_provider_is_raised_at_once(rng: random.Random) -> None:
    adapter = ScriptedAdapter("p", [completion()], configured=False)

    with pytest.raises(ProviderNotConfigured):
        await retrying(adapter, rng, attempts=5).complete(request(), call_for(60))

    assert adapter.calls == []


async def test_a_retry_that_succeeds_returns_the_answer_after_one_error_attempt(
        rng: random.Random) -> None:
    adapter = ScriptedAdapter("deepseek", [status_error("deepseek", 503), completion("ok")])
    call = call_for(60)

    response = await retrying(adapter, rng).complete(request(), call)

    assert response.completion.content == "ok"
    assert without_latency(call.attempts) == [
        attempt("deepseek", "m", "error", 503, "HTTP 503: Service Unavailable"),
        attempt("deepseek", "m", "ok"),
    ]


async def test_backoff_doubles_from_the_initial_wait_and_is_capped(rng: random.Random) -> None:
    adapter = ScriptedAdapter("p", [status_error("p", 503)])

    with pytest.raises(ProviderStatusError):
        await retrying(adapter, rng, attempts=6, backoff_initial_s=1,
                       backoff_max_s=4).complete(request(), call_for(600))

    bases = [1, 2, 4, 4, 4]
    assert [base / 2 <= wait <= base for wait, base in zip(waits(adapter), bases, strict=True)
            ] == [True] * 5


async def test_jitter_is_equal_jitter_drawn_from_the_injected_rng() -> None:
    adapter = ScriptedAdapter("p", [status_error("p", 503)])

    with pytest.raises(ProviderStatusError):
        await retrying(adapter, random.Random(1234), attempts=4, backoff_initial_s=1,
                       backoff_max_s=8).complete(request(), call_for(600))

    replay = random.Random(1234)
    expected = [base / 2 + replay.uniform(0, base / 2) for base in (1, 2, 4)]
    assert waits(adapter) == pytest.approx(expected, abs=1e-9)


async def test_the_same_seed_gives_the_same_waits_and_another_seed_does_not() -> None:
    async def run(seed: int) -> list[float]:
        adapter = ScriptedAdapter("p", [status_error("p", 503)])
        with pytest.raises(ProviderStatusError):
            await retrying(adapter, random.Random(seed), attempts=4,
                           backoff_initial_s=1).complete(request(), call_for(600))
        return waits(adapter)

    first, again, other = await run(7), await run(7), await run(8)

    assert first == pytest.approx(again, abs=1e-9)
    assert first != pytest.approx(other, abs=1e-9)


async def test_retry_after_is_waited_exactly(rng: random.Random) -> None:
    adapter = ScriptedAdapter("p", [status_error("p", 429, retry_after=3), completion()])

    await retrying(adapter, rng, backoff_max_s=8).complete(request(), call_for(60))

    assert adapter.times == [0, 3]


async def test_retry_after_is_ignored_when_not_respected(rng: random.Random) -> None:
    adapter = ScriptedAdapter("p", [status_error("p", 429, retry_after=3), completion()])

    await retrying(adapter, rng, backoff_initial_s=0.5,
                   respect_retry_after=False).complete(request(), call_for(60))

    assert 0.25 <= waits(adapter)[0] <= 0.5


async def test_retry_after_above_the_cap_gives_the_target_up_without_waiting(
        rng: random.Random) -> None:
    adapter = ScriptedAdapter("p", [status_error("p", 429, retry_after=30), completion()])
    call = call_for(60)

    with pytest.raises(ProviderStatusError):
        await retrying(adapter, rng, backoff_max_s=8).complete(request(), call)

    assert anyio.current_time() == 0
    assert len(adapter.calls) == 1
    assert call.attempts[-1].error == (
        "HTTP 429: Too Many Requests; not retried: Retry-After 30 s is over the 8 s cap "
        "(retry.backoff_max_s)")


async def test_retries_stop_when_the_next_wait_would_pass_the_deadline(
        rng: random.Random) -> None:
    adapter = ScriptedAdapter("p", [status_error("p", 503, retry_after=0.5)])
    call = call_for(1.2)

    with pytest.raises(ProviderStatusError):
        await retrying(adapter, rng, attempts=10).complete(request(), call)

    # 0 + 0.5 wait leaves 0.7 s; at 0.5 another 0.5 s wait would leave only 0.2 s to try.
    assert adapter.times == [0, 0.5]
    assert anyio.current_time() == 0.5
    assert call.attempts[-1].error == (
        "HTTP 503: Service Unavailable; not retried: after a 0.5 s wait too little would be "
        "left of the time this target has (its share of the deadline)")


async def test_each_wait_is_announced_with_the_reason_and_the_delay(rng: random.Random) -> None:
    progress = Progress()
    adapter = ScriptedAdapter("deepseek", [status_error("deepseek", 503, retry_after=1.2),
                                           timeout_error("deepseek"), completion()])

    await retrying(adapter, rng, backoff_initial_s=2).complete(request(), call_for(60, progress))

    assert progress.messages[:3] == ["asking deepseek/m", "deepseek 503, retrying in 1.2 s",
                                     "asking deepseek/m"]
    assert progress.messages[3].startswith("deepseek timed out, retrying in ")


async def test_a_short_wait_is_announced_in_milliseconds(rng: random.Random) -> None:
    progress = Progress()
    adapter = ScriptedAdapter("deepseek", [status_error("deepseek", 503, retry_after=0.04),
                                           completion()])

    await retrying(adapter, rng).complete(request(), call_for(60, progress))

    assert progress.messages[1] == "deepseek 503, retrying in 40 ms"


async def test_retrying_takes_its_label_from_the_wrapped_target(rng: random.Random) -> None:
    adapter = ScriptedAdapter("deepseek", [completion()])
    assert retrying(adapter, rng).label == "deepseek/m"
