"""Per-target state is bounded: models only callers name are forgotten least recently used
first, never while open or in flight; reports list the config's targets and the recent ones."""

from __future__ import annotations

import anyio
import pytest

from mcp_router.errors import ProviderUnavailable
from mcp_router.health import REPORT_NAMED, HealthBook
from mcp_router.messages import Attempt
from mcp_router.probes import Prober
from mcp_router.routing.breaker import Breaker
from mcp_router.routing.circuits import BreakerBoard
from mcp_router.routing.roster import KEEP_NAMED
from tests.fixtures.scripted import HANG, ScriptedAdapter, completion, request
from tests.health.support import CLOCK, guarded
from tests.health.test_breaker import open_circuit
from tests.health.test_figures import ask
from tests.routing.support import call_for

pytestmark = [pytest.mark.virtual_time, pytest.mark.anyio]


async def name_models(board: BreakerBoard, health: HealthBook, names: list[str]) -> None:
    """One answered call to each `a/<name>`, as a caller naming models one after another."""
    for name in names:
        await ask(guarded(ScriptedAdapter("a", [completion()]), board, model=name), health)


def listed(health: HealthBook) -> list[str]:
    return [t.target for t in health.report("a", True).targets]


async def test_models_callers_name_are_forgotten_least_recently_used_first() -> None:
    board = BreakerBoard(CLOCK, keep=3)
    health = HealthBook(CLOCK, board)
    await name_models(board, health, ["m1", "m2", "m3"])
    await name_models(board, health, ["m1"])  # m2 is now the least recently used

    await name_models(board, health, ["m4"])

    assert listed(health) == ["a/m1", "a/m3", "a/m4"]
    assert not board.tracks("a/m2")
    await name_models(board, health, ["m2"])  # named again: a fresh start, one request
    assert [(t.target, t.requests) for t in health.report("a", True).targets] == [
        ("a/m1", 2), ("a/m4", 1), ("a/m2", 1)]


async def test_the_configs_targets_are_never_forgotten() -> None:
    board = BreakerBoard(CLOCK, keep=2)
    board.pin(["a/routed"])
    health = HealthBook(CLOCK, board)
    await name_models(board, health, ["routed", "x1", "x2", "x3", "x4"])

    assert listed(health) == ["a/routed", "a/x3", "a/x4"]
    assert health.report("a", True).targets[0].requests == 1


async def test_an_open_circuit_is_not_forgotten_however_many_models_are_named_after_it() -> None:
    board = BreakerBoard(CLOCK, keep=1)
    health = HealthBook(CLOCK, board)
    await open_circuit(board, "a", "down")
    await name_models(board, health, [f"m{i}" for i in range(10)])
    assert listed(health) == ["a/down", "a/m9"]  # over the bound while it is open

    # Forgetting it would have let this call through before its cooldown is over.
    call = call_for(60)
    with pytest.raises(ProviderUnavailable):
        await guarded(ScriptedAdapter("a", [completion()]), board, model="down").complete(
            request(), call)
    assert call.attempts[0].outcome == "skipped"

    await anyio.sleep(30)  # the cooldown is over: it is as forgettable as any other
    await name_models(board, health, ["m10"])
    assert listed(health) == ["a/m10"]


async def test_a_target_with_a_call_in_flight_keeps_its_circuit_until_the_call_settles() -> None:
    board = BreakerBoard(CLOCK, keep=2)
    health = HealthBook(CLOCK, board)
    hung = guarded(ScriptedAdapter("a", [HANG]), board, model="slow")
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(ask, hung, health)
        await anyio.sleep(1)
        await name_models(board, health, ["m1", "m2", "m3"])
        assert board.tracks("a/slow")
        tasks.cancel_scope.cancel()
    assert board.circuit("a/slow").state == "closed"  # settled, its slot given back

    await name_models(board, health, ["m4", "m5"])  # it settled last, so two more
    assert listed(health) == ["a/m4", "a/m5"]


async def test_a_window_is_dropped_with_its_circuit_even_when_recorded_after() -> None:
    board = BreakerBoard(CLOCK, keep=1)
    health = HealthBook(CLOCK, board)
    await name_models(board, health, ["m1", "m2"])  # m1's circuit is gone

    # An attempt at m1 recorded late (its call went on to other targets meanwhile).
    health.record([Attempt(provider="a", model="m1", outcome="ok", latency_ms=5.0)])

    assert listed(health) == ["a/m2"]
    assert health.report("a", True).requests == 3  # the provider's figures count it


async def test_a_report_lists_the_most_recently_used_models_callers_named_and_counts_the_rest(
        ) -> None:
    board = BreakerBoard(CLOCK)
    board.pin(["a/routed"])
    health = HealthBook(CLOCK, board)
    named = [f"m{i}" for i in range(KEEP_NAMED + 20)]
    await name_models(board, health, ["routed", *named])

    report = health.report("a", True)

    assert [t.target for t in report.targets] == [
        "a/routed", *(f"a/{name}" for name in named[-REPORT_NAMED:])]
    assert report.targets_not_listed == KEEP_NAMED - REPORT_NAMED
    assert len(board.keys("a")) == KEEP_NAMED + 1


async def test_a_leaf_built_for_a_forgotten_target_still_works_and_is_kept_again() -> None:
    board = BreakerBoard(CLOCK, keep=1)
    health = HealthBook(CLOCK, board)
    old: Breaker = guarded(ScriptedAdapter("a", [completion()]), board, model="m1")
    await name_models(board, health, ["m2"])
    assert not board.tracks("a/m1")

    await ask(old, health)  # a call that held on to the leaf

    assert listed(health) == ["a/m1"]


async def test_a_probes_unlisted_models_are_those_of_the_config_and_of_the_listed_targets(
        ) -> None:
    board = BreakerBoard(CLOCK)
    board.pin(["a/routed"])
    health = HealthBook(CLOCK, board)
    named = [f"m{i}" for i in range(REPORT_NAMED + 8)]
    await name_models(board, health, named)
    adapter = ScriptedAdapter("a", [completion()], listed=["other"])

    await Prober({"a": adapter}, board, health, CLOCK, models={"a": ["routed"]}).probe("a")

    probe = health.report("a", True).last_probe
    assert probe is not None and probe.unlisted == ["routed", *named[8:]]
