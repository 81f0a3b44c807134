"""When every target of a call is open, the call tries the one that reopens soonest, and only
that one: a failed last resort does not make the next open target the call's to try."""

from __future__ import annotations

import random

import anyio
import pytest

from mcp_router.config import parse_config
from mcp_router.errors import AllTargetsFailed
from mcp_router.health import HealthBook
from mcp_router.messages import Attempt
from mcp_router.routing import Fallback
from mcp_router.routing.breaker import CircuitGroup
from mcp_router.routing.build import TreeBuilder
from mcp_router.routing.circuits import BreakerBoard
from tests.fixtures.scripted import ScriptedAdapter, request, status_error
from tests.health.support import CLOCK, at, guarded
from tests.health.test_breaker import open_circuit
from tests.routing.support import call_for, without_latency

pytestmark = [pytest.mark.virtual_time, pytest.mark.anyio]
OPEN_REASON = "(5 failures in a row; last: HTTP 503: Service Unavailable)"
CONFIG = """\
providers:
  p1: {kind: openai, base_url: "http://127.0.0.1:9/v1"}
  p2: {kind: openai, base_url: "http://127.0.0.1:9/v1"}
  p3: {kind: openai, base_url: "http://127.0.0.1:9/v1"}
routes:
  down:
    targets:
      - {provider: p1, model: m}
      - {provider: p2, model: m}
      - {provider: p3, model: m}
default_route: down
retry: {attempts: 1}
"""


def down(names: str, board: BreakerBoard) -> tuple[CircuitGroup, dict[str, ScriptedAdapter]]:
    """A fallback over `names`, each answering 503, as one group."""
    adapters = {name: ScriptedAdapter(name, [status_error(name, 503)]) for name in names}
    leaves = [guarded(adapters[name], board, attempts=3) for name in names]
    return CircuitGroup(Fallback(leaves, CLOCK)), adapters


async def test_when_the_soonest_is_first_in_the_route_its_failure_ends_the_call() -> None:
    board = BreakerBoard(CLOCK)
    await open_circuit(board, "a")  # reopens at 30
    await anyio.sleep(10)
    await open_circuit(board, "b")  # reopens at 40
    await anyio.sleep(5)
    route, adapters = down("ab", board)

    with pytest.raises(AllTargetsFailed) as info:
        await route.complete(request(), call_for(60))

    assert without_latency(info.value.attempts) == [
        Attempt(provider="a", model="m", outcome="error", status=503,
                error="HTTP 503: Service Unavailable"),
        Attempt(provider="b", model="m", outcome="skipped",
                error=f"circuit open until {at(40)} {OPEN_REASON}"),
    ]
    assert (len(adapters["a"].calls), len(adapters["b"].calls)) == (1, 0)
    assert board.circuit("a/m").reopens_at == 15 + 60  # the second opening in a row
    assert board.circuit("b/m").reopens_at == 40  # not tried, so not doubled


async def test_the_soonest_in_the_middle_is_the_only_target_asked() -> None:
    board = BreakerBoard(CLOCK)
    for name in "bca":  # b reopens at 30, c at 31, a at 32: c is next once b has failed
        await open_circuit(board, name)
        await anyio.sleep(1)
    route, adapters = down("abc", board)

    with pytest.raises(AllTargetsFailed) as info:
        await route.complete(request(), call_for(60))

    assert [(x.provider, x.outcome) for x in info.value.attempts] == [
        ("a", "skipped"), ("b", "error"), ("c", "skipped")]
    assert [len(adapters[name].calls) for name in "abc"] == [0, 1, 0]


async def test_during_an_outage_each_call_of_a_configured_route_sends_one_request() -> None:
    board = BreakerBoard(CLOCK)
    adapters = {name: ScriptedAdapter(name, [status_error(name, 503)]) for name in
                ("p1", "p2", "p3")}
    tree = TreeBuilder(parse_config(CONFIG, env={}), adapters, CLOCK, random.Random(3), board)
    route = tree.with_fallbacks(tree.route("down"), ())
    for _ in range(5):  # five 503s in a row at each: every circuit opens, p1's first
        with pytest.raises(AllTargetsFailed):
            await route.complete(request(), call_for(60))
    before = [len(a.calls) for a in adapters.values()]

    asked = []
    for _ in range(3):
        with pytest.raises(AllTargetsFailed) as info:
            await route.complete(request(), call_for(60))
        asked.append([x.provider for x in info.value.attempts if x.outcome == "error"])

    # each call tries the one that reopens soonest, which then reopens later than the others
    assert asked == [["p1"], ["p2"], ["p3"]]
    assert [len(a.calls) - b for a, b in zip(adapters.values(), before, strict=True)] == [1] * 3
    health = HealthBook(CLOCK, board)
    assert [health.report(name, True).state for name in adapters] == ["open"] * 3
    assert [board.circuit(f"{name}/m").reopens_at for name in adapters] == [60.0] * 3
