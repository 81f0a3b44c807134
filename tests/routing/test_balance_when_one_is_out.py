"""Balanced with a member that cannot be asked: the others keep their relative shares."""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable

import anyio
import pytest

from mcp_router.routing import Balanced, Target
from mcp_router.routing.circuits import BreakerBoard
from tests.fixtures.scripted import ScriptedAdapter, completion, request, status_error
from tests.health.support import CLOCK, guarded
from tests.health.test_breaker import open_circuit
from tests.routing.support import call_for

pytestmark = [pytest.mark.virtual_time, pytest.mark.anyio]
WEIGHTS = (40, 30, 20, 10)


def team_balance(board: BreakerBoard, *, a_configured: bool = True) -> Balanced:
    """40/30/20/10 over guarded leaves a..d, as the tree builder makes a balanced route."""
    return Balanced([(guarded(ScriptedAdapter(name, [completion(f"from {name}")],
                                              configured=a_configured or name != "a"), board), w)
                     for name, w in zip("abcd", WEIGHTS, strict=True)], CLOCK)


async def answered(route: Balanced, calls: int) -> Counter[str]:
    return Counter([(await route.complete(request(), call_for(60))).provider
                    for _ in range(calls)])


def near(shares: Counter[str], expected: dict[str, int]) -> bool:
    """Each member within one call of its expected share. The member that went out keeps its
    place in the rotation, so a window starting mid-rotation may be one off (never more)."""
    return shares.keys() == expected.keys() and all(
        abs(shares[name] - count) <= 1 for name, count in expected.items())


async def open_a(board: BreakerBoard) -> None:
    await open_circuit(board, "a")


async def hold_a_off(board: BreakerBoard) -> None:
    board.hold_off("a/m", 20, "HTTP 429 with Retry-After 20 s")


@pytest.mark.parametrize("take_a_out", [open_a, hold_a_off], ids=["circuit open", "held off"])
async def test_balance_spreads_an_out_members_share_over_the_others_by_weight(
        take_a_out: Callable[[BreakerBoard], Awaitable[None]]) -> None:
    board = BreakerBoard(CLOCK)
    route = team_balance(board)
    await answered(route, 7)  # mid-rotation, with a's turn coming up
    await take_a_out(board)

    # a's circuit reopens within each call's 60 s, yet it cannot be asked now; the old
    # rotation gave its turns to b: 84/24/12
    assert near(await answered(route, 120), {"b": 60, "c": 40, "d": 20})


async def test_balance_spreads_a_keyless_members_share_over_the_others_by_weight() -> None:
    route = team_balance(BreakerBoard(CLOCK), a_configured=False)

    assert await answered(route, 120) == {"b": 60, "c": 40, "d": 20}  # from the start: exact


async def test_balance_returns_to_the_full_split_once_the_member_is_back() -> None:
    board = BreakerBoard(CLOCK)
    route = team_balance(board)
    await open_a(board)
    await answered(route, 60)
    await anyio.sleep(30)  # the cooldown is over: the next pick of a is its trial

    assert near(await answered(route, 100), {"a": 40, "b": 30, "c": 20, "d": 10})
    assert await answered(route, 100) == {"a": 40, "b": 30, "c": 20, "d": 10}
    assert board.circuit("a/m").state == "closed"


async def test_balance_with_nothing_out_keeps_the_exact_split() -> None:
    assert await answered(team_balance(BreakerBoard(CLOCK)), 100) == dict(
        zip("abcd", WEIGHTS, strict=True))


async def test_a_failing_picks_turn_goes_to_the_member_the_rotation_picks_next() -> None:
    # a fails each time it is asked (no breaker here to take it out): each of its turns is
    # answered by the live member with the most credit, so b no longer takes all of them
    route = Balanced([(Target(ScriptedAdapter("a", [status_error("a", 503)]), "m", CLOCK), 40),
                      *[(Target(ScriptedAdapter(n, [completion()]), "m", CLOCK), w)
                        for n, w in zip("bcd", WEIGHTS[1:], strict=True)]], CLOCK)

    shares = await answered(route, 100)

    assert shares == {"b": 60, "c": 30, "d": 10}  # the old order, heaviest first: 70/20/10
