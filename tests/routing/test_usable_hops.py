"""Time is shared only among targets that can be asked: a hop before unusable ones is the last."""

from __future__ import annotations

import random

import anyio
import pytest

from mcp_router.clock import LoopClock
from mcp_router.config import RetryConfig
from mcp_router.errors import AllTargetsFailed, ProviderUnavailable
from mcp_router.messages import Call, ChatProvider, ChatRequest, ChatResponse, Completion
from mcp_router.routing import Balanced, Fallback, Retrying, Target, record_skipped
from tests.fixtures.scripted import HANG, Delay, ScriptedAdapter, completion, request
from tests.routing.support import attempt, call_for, without_latency

pytestmark = [pytest.mark.virtual_time, pytest.mark.anyio]
CLOCK = LoopClock()
MOVE_ON = ["content_filter"]


def retried(adapter: ScriptedAdapter, rng: random.Random) -> Retrying:
    return Retrying(Target(adapter, "m", CLOCK), RetryConfig(attempts=3), CLOCK, rng)


def keyless(provider: str) -> ScriptedAdapter:
    return ScriptedAdapter(provider, [completion(f"from {provider}")], configured=False)


class Refusing:
    """Stands for a target whose circuit is open past the deadline, or that is marked missing:
    it says it cannot be asked, and asked anyway it records its skip and raises, as a
    Breaker does."""

    def __init__(self, child: ChatProvider, reason: str) -> None:
        self._child, self._reason = child, reason

    def usable(self, call: Call) -> bool:
        return False

    def skip(self, call: Call, reason: str) -> None:
        record_skipped(self._child, call, reason)

    async def complete(self, request: ChatRequest, call: Call) -> ChatResponse:
        self.skip(call, self._reason)
        raise ProviderUnavailable("x", "m", self._reason)


async def test_a_fallback_without_an_api_key_leaves_the_whole_deadline_to_the_hop_before(
        rng: random.Random) -> None:
    primary = ScriptedAdapter("a", [Delay(7, completion("from a"))])  # over half of 10 s
    call = call_for(10)

    response = await Fallback([retried(primary, rng), retried(keyless("b"), rng)],
                              CLOCK).complete(request(), call)

    assert (response.provider, anyio.current_time()) == ("a", 7)
    assert [(a.provider, a.outcome) for a in call.attempts] == [("a", "ok")]


async def test_an_unusable_fallback_is_still_listed_with_its_own_reason_after_the_deadline(
        ) -> None:
    primary = ScriptedAdapter("a", [HANG])
    missing = Refusing(Target(ScriptedAdapter("c", [completion()]), "m", CLOCK),
                       "model missing (HTTP 404: Not Found)")
    call = call_for(10)

    with pytest.raises(AllTargetsFailed):
        await Fallback([Target(primary, "m", CLOCK), Target(keyless("b"), "m", CLOCK), missing],
                       CLOCK).complete(request(), call)

    assert anyio.current_time() == 10
    assert without_latency(call.attempts) == [
        attempt("a", "m", "error", error="no answer within 10 s"),
        attempt("b", "m", "skipped", error="no API key configured"),
        attempt("c", "m", "skipped", error="model missing (HTTP 404: Not Found)")]


async def test_a_fallback_that_will_be_refused_by_its_circuit_leaves_its_share_to_the_hop_before(
        ) -> None:
    primary = ScriptedAdapter("a", [Delay(7, completion("from a"))])
    refused = Refusing(Target(ScriptedAdapter("c", [completion()]), "m", CLOCK),
                       "circuit open until 2030-01-01T00:00:00Z")

    response = await Fallback([Target(primary, "m", CLOCK), refused], CLOCK).complete(
        request(), call_for(10))

    assert response.provider == "a"


async def test_a_usable_target_after_unusable_ones_still_gets_its_half() -> None:
    primary = ScriptedAdapter("a", [HANG])
    last = ScriptedAdapter("c", [completion("from c")])
    call = call_for(10)

    response = await Fallback([Target(primary, "m", CLOCK), Target(keyless("b"), "m", CLOCK),
                               Target(last, "m", CLOCK)], CLOCK).complete(request(), call)

    assert (response.provider, last.times) == ("c", [5])
    assert [(a.provider, a.outcome) for a in call.attempts] == [
        ("a", "error"), ("b", "skipped"), ("c", "ok")]


async def test_a_nested_route_of_unusable_targets_takes_no_share() -> None:
    primary = ScriptedAdapter("a", [Delay(7, completion("from a"))])
    nested = Fallback([Target(keyless("b"), "m", CLOCK), Target(keyless("c"), "m", CLOCK)],
                      CLOCK)

    response = await Fallback([Target(primary, "m", CLOCK), nested], CLOCK).complete(
        request(), call_for(10))

    assert response.provider == "a"


async def test_a_balanced_pick_before_keyless_targets_gets_the_whole_deadline() -> None:
    primary = ScriptedAdapter("a", [Delay(7, completion("from a"))])
    route = Balanced([(Target(primary, "m", CLOCK), 3), (Target(keyless("b"), "m", CLOCK), 1)],
                     CLOCK)

    response = await route.complete(request(), call_for(10))

    assert response.provider == "a"


async def test_an_answer_to_move_on_from_stands_when_nothing_after_it_can_be_asked() -> None:
    filtered = Completion(content="", finish_reason="content_filter")
    primary = ScriptedAdapter("a", [filtered])
    call = call_for(10)

    response = await Fallback([Target(primary, "m", CLOCK), Target(keyless("b"), "m", CLOCK)],
                              CLOCK, move_on=MOVE_ON).complete(request(), call)

    assert (response.provider, response.completion.finish_reason) == ("a", "content_filter")
    assert without_latency(call.attempts) == [attempt("a", "m", "ok")]
