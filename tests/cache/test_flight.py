"""Single flight: concurrent identical calls share one run; a run with nothing to share lets
its waiters go together, never one behind another."""

from __future__ import annotations

from collections.abc import Callable

import anyio
import pytest

from mcp_router.cache import WAITING, Seat, SingleFlight
from mcp_router.messages import ProgressFn

pytestmark = [pytest.mark.virtual_time, pytest.mark.anyio]


class Upstream:
    """Counts calls; each takes `seconds` of (virtual) time, then answers or raises."""

    def __init__(self, seconds: float = 1.0, failures: int = 0) -> None:
        self.seconds, self.failures, self.calls = seconds, failures, 0

    async def __call__(self, progress: ProgressFn) -> str:
        self.calls += 1
        call = self.calls
        await progress(f"asking for call {call}")
        await anyio.sleep(self.seconds)
        if call <= self.failures:
            raise RuntimeError(f"upstream failed on call {call}")
        return f"answer {call}"


def _copy(error: Exception) -> Exception | None:
    return RuntimeError(f"shared: {error}")


_Results = list[tuple[str, bool] | BaseException]


def _alone(_: Exception) -> Exception | None:
    return None


async def _gather(flight: SingleFlight[str], key: str, fn: Upstream, n: int,
                  results: _Results, finished: list[float] | None = None, *,
                  share: Callable[[str], bool] = lambda _: True,
                  share_failure: Callable[[Exception], Exception | None] = _alone) -> None:
    async def one() -> None:
        try:
            results.append(await flight.run(key, fn, share=share,
                                            share_failure=share_failure))
        except RuntimeError as exc:
            results.append(exc)
        if finished is not None:
            finished.append(anyio.current_time() - started)

    started = anyio.current_time()
    async with anyio.create_task_group() as tg:
        for _ in range(n):
            tg.start_soon(one)


async def test_twenty_concurrent_identical_calls_make_one_upstream_call() -> None:
    flight: SingleFlight[str] = SingleFlight()
    upstream, results = Upstream(), _Results()
    await _gather(flight, "k", upstream, 20, results)
    assert upstream.calls == 1
    assert sorted(results, key=str) == [("answer 1", False)] + [("answer 1", True)] * 19
    assert not flight.in_flight("k")


async def test_calls_with_different_keys_do_not_share() -> None:
    flight: SingleFlight[str] = SingleFlight()
    upstream = Upstream()
    async with anyio.create_task_group() as tg:
        for key in ("a", "b", "c"):
            tg.start_soon(flight.run, key, upstream)
    assert upstream.calls == 3


async def test_a_call_after_the_flight_landed_runs_again() -> None:
    flight: SingleFlight[str] = SingleFlight()
    upstream = Upstream()
    assert await flight.run("k", upstream) == ("answer 1", False)
    assert await flight.run("k", upstream) == ("answer 2", False)


async def test_waiters_of_a_failed_leader_ask_together_not_one_behind_another() -> None:
    flight: SingleFlight[str] = SingleFlight()
    upstream, results, finished = Upstream(failures=5), _Results(), list[float]()
    await _gather(flight, "k", upstream, 5, results, finished)
    assert upstream.calls == 5
    # the leader's failure after 1 s, then every waiter's own failure 1 s later: not 1..5 s
    assert sorted(finished) == [1, 2, 2, 2, 2]
    assert sorted(str(r) for r in results) == [f"upstream failed on call {n}"
                                               for n in range(1, 6)]


async def test_waiters_share_a_failure_they_would_meet_themselves_at_once() -> None:
    flight: SingleFlight[str] = SingleFlight()
    upstream, results, finished = Upstream(failures=5), _Results(), list[float]()
    await _gather(flight, "k", upstream, 5, results, finished, share_failure=_copy)
    assert upstream.calls == 1 and finished == [1] * 5
    assert sorted(str(r) for r in results) == (
        ["shared: upstream failed on call 1"] * 4 + ["upstream failed on call 1"])


async def test_a_waiter_gives_up_at_its_own_deadline_without_disturbing_the_leader() -> None:
    flight: SingleFlight[str] = SingleFlight()
    upstream = Upstream(seconds=10)
    leader: list[tuple[str, bool]] = []
    gave_up_at: list[float] = []

    async def impatient() -> None:
        await anyio.sleep(1)
        started = anyio.current_time()
        with pytest.raises(TimeoutError):
            with anyio.fail_after(2):
                await flight.run("k", upstream)
        gave_up_at.append(anyio.current_time() - started)

    async def lead() -> None:
        leader.append(await flight.run("k", upstream))

    async with anyio.create_task_group() as tg:
        tg.start_soon(lead)
        tg.start_soon(impatient)
    assert gave_up_at == [pytest.approx(2)]
    assert leader == [("answer 1", False)] and upstream.calls == 1


async def test_a_cancelled_leader_lets_its_waiters_ask_themselves() -> None:
    flight: SingleFlight[str] = SingleFlight()
    upstream = Upstream(seconds=10)
    waiters: list[tuple[str, bool]] = []

    async def wait() -> None:
        await anyio.sleep(1)
        waiters.append(await flight.run("k", upstream))

    async with anyio.create_task_group() as tg:
        tg.start_soon(wait)
        tg.start_soon(wait)
        with anyio.move_on_after(5):
            await flight.run("k", upstream)
    assert upstream.calls == 3
    assert sorted(waiters) == [("answer 2", False), ("answer 3", False)]


async def test_an_unshareable_result_goes_to_the_leader_only() -> None:
    flight: SingleFlight[str] = SingleFlight()
    upstream, results, finished = Upstream(), _Results(), list[float]()
    await _gather(flight, "k", upstream, 3, results, finished,
                  share=lambda r: r != "answer 1")
    assert upstream.calls == 3 and sorted(finished) == [1, 2, 2]
    assert sorted(results, key=str) == [("answer 1", False), ("answer 2", False),
                                        ("answer 3", False)]


async def test_a_waiter_hears_that_it_waits_then_the_leaders_progress() -> None:
    flight: SingleFlight[str] = SingleFlight()
    heard: dict[str, list[str]] = {"leader": [], "waiter": []}

    async def upstream(progress: ProgressFn) -> str:
        await progress("asking")
        await anyio.sleep(2)
        await progress("~50 tokens received")
        return "answer"

    def seat(name: str) -> Seat:
        async def progress(message: str) -> None:
            heard[name].append(message)
        return Seat(progress)

    async def wait() -> None:
        await anyio.sleep(1)
        await flight.run("k", upstream, seat=seat("waiter"))

    async with anyio.create_task_group() as tg:
        tg.start_soon(wait)
        await flight.run("k", upstream, seat=seat("leader"))
    assert heard == {"leader": ["asking", "~50 tokens received"],
                     "waiter": [WAITING, "~50 tokens received"]}


async def test_a_leader_is_awaited_only_while_someone_waits_on_it() -> None:
    flight: SingleFlight[str] = SingleFlight()
    leader, seen = Seat(), list[bool]()

    async def watch() -> None:
        for _ in range(4):
            await anyio.sleep(1)
            seen.append(leader.awaited())

    async def impatient() -> None:
        await anyio.sleep(1.5)
        with anyio.move_on_after(1):  # waits from 1.5 s to 2.5 s
            await flight.run("k", Upstream(seconds=10))

    async with anyio.create_task_group() as tg:
        tg.start_soon(watch)
        tg.start_soon(impatient)
        await flight.run("k", Upstream(seconds=3.5), seat=leader)
    assert seen == [False, True, False, False]  # at 1, 2, 3 s while leading; at 4 s done
