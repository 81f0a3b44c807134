"""A Retry-After holds its target off for every call from the moment it is received, while the
call that got it waits it out; that call's own retry still goes to the target."""

from __future__ import annotations

import random

import anyio
import pytest

from mcp_router.config import parse_config
from mcp_router.health import HealthBook
from mcp_router.messages import Attempt, ChatProvider, ChatResponse
from mcp_router.routing import Fallback
from mcp_router.routing.breaker import CircuitGroup
from mcp_router.routing.build import TreeBuilder
from mcp_router.routing.circuits import BreakerBoard
from tests.fixtures.scripted import ScriptedAdapter, Step, completion, request, status_error
from tests.health.support import CLOCK, at, guarded
from tests.routing.support import call_for, without_latency
from tests.routing.test_retry_after_switched_off import CONFIG

pytestmark = [pytest.mark.virtual_time, pytest.mark.anyio]
HELD_OFF = "(HTTP 429 with Retry-After 2 s)"


class Answers:
    """Who answered each named call, when (loop time), and the call's attempts."""

    def __init__(self) -> None:
        self.by: dict[str, tuple[str, float, list[Attempt]]] = {}

    async def ask(self, route: ChatProvider, name: str) -> None:
        call = call_for(60)
        response: ChatResponse = await route.complete(request(name), call)
        self.by[name] = (response.provider, anyio.current_time(), without_latency(call.attempts))


def a_then_b(board: BreakerBoard, a_script: list[Step]) -> tuple[CircuitGroup, ScriptedAdapter]:
    a = ScriptedAdapter("a", a_script)
    b = ScriptedAdapter("b", [completion("b")])
    return CircuitGroup(Fallback([guarded(a, board, attempts=3), guarded(b, board)], CLOCK)), a


async def test_a_call_inside_another_calls_retry_after_skips_the_target_and_answers_at_once(
        ) -> None:
    board = BreakerBoard(CLOCK)
    route, a = a_then_b(board, [status_error("a", 429, retry_after=2), completion("a")])
    answers = Answers()

    async with anyio.create_task_group() as group:
        group.start_soon(answers.ask, route, "A")  # 429 at t=0: waits until t=2
        await anyio.sleep(0.5)
        health = HealthBook(CLOCK, board).report("a", True)
        group.start_soon(answers.ask, route, "B")

    assert (health.state, health.open_until) == ("open", at(2))
    assert answers.by["B"] == ("b", 0.5, [
        Attempt(provider="a", model="m", outcome="skipped",
                error=f"circuit open until {at(2)} {HELD_OFF}"),
        Attempt(provider="b", model="m", outcome="ok")])
    assert answers.by["A"] == ("a", 2.0, [
        Attempt(provider="a", model="m", outcome="error", status=429,
                error="HTTP 429: Too Many Requests"),
        Attempt(provider="a", model="m", outcome="ok")])
    assert a.times == [0.0, 2.0]
    # A's retry answered after the hold-off: the target is back, not left half-open
    assert board.circuit("a/m").state == "closed"


async def test_each_retry_after_of_a_waiting_call_holds_the_target_off_again() -> None:
    board = BreakerBoard(CLOCK)
    route, a = a_then_b(board, [status_error("a", 429, retry_after=2)])
    answers = Answers()

    async with anyio.create_task_group() as group:
        group.start_soon(answers.ask, route, "A")  # 429s at t=0, 2 and 4, then b
        for name in ("B", "C", "D"):  # t=0.5, 2.5, 4.5
            await anyio.sleep(0.5)
            group.start_soon(answers.ask, route, name)
            await anyio.sleep(1.5)

    assert a.times == [0.0, 2.0, 4.0]
    assert {name: (by, when) for name, (by, when, _) in answers.by.items()} == {
        "A": ("b", 4.0), "B": ("b", 0.5), "C": ("b", 2.5), "D": ("b", 4.5)}
    assert [by[2][0].error for by in (answers.by["C"], answers.by["D"])] == [
        f"circuit open until {at(4)} {HELD_OFF}", f"circuit open until {at(6)} {HELD_OFF}"]


def routed(respect: bool) -> tuple[ChatProvider, ScriptedAdapter]:
    config = parse_config(CONFIG.format(cap=8, respect=str(respect).lower()), env={})
    primary = ScriptedAdapter("cloud", [status_error("cloud", 429, retry_after=2,
                                                     model="primary"),
                                        completion("from primary")])
    adapters = {"cloud": primary, "local": ScriptedAdapter("local", [completion("from backup")])}
    tree = TreeBuilder(config, adapters, CLOCK, random.Random(3), BreakerBoard(CLOCK))
    return tree.with_fallbacks(tree.route("default"), ()), primary


# Switched off, the header holds nothing off: the second call still asks the primary.
@pytest.mark.parametrize(("respect", "second", "primary_asked"), [
    (True, [("cloud", "skipped"), ("local", "ok")], 2),
    (False, [("cloud", "ok")], 3),
])
async def test_a_configured_route_holds_a_target_off_while_a_call_waits_only_when_respected(
        respect: bool, second: list[tuple[str, str]], primary_asked: int) -> None:
    route, primary = routed(respect)
    answers = Answers()

    async with anyio.create_task_group() as group:
        group.start_soon(answers.ask, route, "A")
        await anyio.sleep(0.1)
        group.start_soon(answers.ask, route, "B")

    provider, when, attempts = answers.by["B"]
    assert [(x.provider, x.outcome) for x in attempts] == second
    assert (provider, when) == (second[-1][0], 0.1)
    assert answers.by["A"][0] == "cloud"
    assert len(primary.calls) == primary_asked
