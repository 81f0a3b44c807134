"""A hop's share of the deadline bounds waiting for an answer, not an answer already arriving."""

from __future__ import annotations

import random

import anyio
import pytest

from mcp_router.clock import LoopClock
from mcp_router.config import RetryConfig
from mcp_router.errors import AllTargetsFailed
from mcp_router.routing import Fallback, Retrying, Target
from tests.fixtures.scripted import (
    HANG,
    Delay,
    ScriptedAdapter,
    Streamed,
    completion,
    cut_stream,
    request,
)
from tests.routing.support import attempt, call_for, without_latency

pytestmark = [pytest.mark.virtual_time, pytest.mark.anyio]
CLOCK = LoopClock()


def streaming_for(seconds: float, then: object = None) -> Delay:
    """A first delta after 0.5 s, then the rest of the answer `seconds` later."""
    return Delay(0.5, Streamed("x" * 40, Delay(seconds, then or completion("the whole answer"))))


async def test_an_answer_already_streaming_runs_past_its_share_and_the_fallback_is_not_asked(
        ) -> None:
    primary = ScriptedAdapter("a", [streaming_for(7)])  # done at 7.5 s; its share is 5 s
    second = ScriptedAdapter("b", [completion("from b")])
    call = call_for(10)

    response = await Fallback([Target(primary, "m", CLOCK), Target(second, "m", CLOCK)],
                              CLOCK).complete(request(), call)

    assert (response.provider, response.completion.content) == ("a", "the whole answer")
    assert anyio.current_time() == 7.5
    assert second.calls == []
    assert [(a.provider, a.outcome, a.latency_ms) for a in call.attempts] == [("a", "ok", 7500.0)]


async def test_an_answer_still_streaming_at_the_calls_deadline_is_cut_there() -> None:
    primary = ScriptedAdapter("a", [streaming_for(0, HANG)])
    second = ScriptedAdapter("b", [completion("from b")])
    call = call_for(10)

    with pytest.raises(AllTargetsFailed):
        await Fallback([Target(primary, "m", CLOCK), Target(second, "m", CLOCK)],
                       CLOCK).complete(request(), call)

    assert anyio.current_time() == 10
    assert without_latency(call.attempts) == [
        attempt("a", "m", "error", error="still streaming when its 10 s ran out "
                                         "(~10 tokens in): the answer was cut off"
                ).model_copy(update={"ttfb_ms": 500.0}),
        attempt("b", "m", "skipped", error="deadline reached")]


async def test_running_on_stops_at_the_adapter_timeout_and_the_fallback_gets_the_rest() -> None:
    primary = ScriptedAdapter("a", [streaming_for(0, HANG)], timeout_s=6)
    second = ScriptedAdapter("b", [Delay(1, completion("from b"))])
    call = call_for(10)

    response = await Fallback([Target(primary, "m", CLOCK), Target(second, "m", CLOCK)],
                              CLOCK).complete(request(), call)

    assert response.provider == "b"
    assert second.times == [6]
    assert call.attempts[0].error == ("still streaming when its 6 s ran out (~10 tokens in): "
                                      "the answer was cut off")


async def test_a_json_answer_shows_no_text_before_it_is_whole_so_it_keeps_its_share() -> None:
    primary = ScriptedAdapter("a", [Delay(7, completion("too late"))], stream=False)
    second = ScriptedAdapter("b", [completion("from b")])
    call = call_for(10)

    response = await Fallback([Target(primary, "m", CLOCK), Target(second, "m", CLOCK)],
                              CLOCK).complete(request(), call)

    assert response.provider == "b"
    assert second.times == [5]
    assert call.attempts[0].error == "no answer within 5 s"


async def test_an_answer_that_fails_after_its_share_is_not_retried_and_the_fallback_answers(
        rng: random.Random) -> None:
    # A cut stream may be retried once, but the share this target had is spent by then.
    primary = ScriptedAdapter("a", [streaming_for(6, cut_stream("a")), completion()])
    second = ScriptedAdapter("b", [completion("from b")])
    call = call_for(10)
    retried = Retrying(Target(primary, "m", CLOCK), RetryConfig(attempts=3), CLOCK, rng)

    response = await Fallback([retried, Target(second, "m", CLOCK)], CLOCK).complete(
        request(), call)

    assert response.provider == "b"
    assert (len(primary.calls), second.times) == (1, [6.5])
    error = call.attempts[0].error
    assert error is not None and error.endswith(
        "not retried: the time this target has (its share of the deadline) is used up")


async def test_an_answer_streaming_in_a_nested_route_may_run_on_to_the_whole_calls_deadline(
        ) -> None:
    primary = ScriptedAdapter("a", [streaming_for(9)])  # its share is 3 s of the 12 s
    inner_second = ScriptedAdapter("b", [completion("from b")])
    outer_second = ScriptedAdapter("c", [completion("from c")])
    inner = Fallback([Target(primary, "m", CLOCK), Target(inner_second, "m", CLOCK)], CLOCK)
    call = call_for(12)

    response = await Fallback([inner, Target(outer_second, "m", CLOCK)], CLOCK).complete(
        request(), call)

    assert (response.provider, anyio.current_time()) == ("a", 9.5)
    assert (inner_second.calls, outer_second.calls) == ([], [])


async def test_a_hanging_target_that_sends_nothing_is_still_cut_at_its_share() -> None:
    primary = ScriptedAdapter("a", [HANG])
    second = ScriptedAdapter("b", [completion("from b")])
    call = call_for(10)

    response = await Fallback([Target(primary, "m", CLOCK), Target(second, "m", CLOCK)],
                              CLOCK).complete(request(), call)

    assert (response.provider, second.times) == ("b", [5])
    assert call.attempts[0].error == "no answer within 5 s"
