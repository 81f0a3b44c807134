"""Single flight: concurrent identical calls share one run; failures are never shared."""

from __future__ import annotations

import anyio
import pytest

from mcp_router.cache import SingleFlight

pytestmark = [pytest.mark.virtual_time, pytest.mark.anyio]


class Upstream:
    """Counts calls; each takes `seconds` of (virtual) time, then answers or raises."""

    def __init__(self, seconds: float = 1.0, failures: int = 0) -> None:
        self.seconds, self.failures, self.calls = seconds, failures, 0

    async def __call__(self) -> str:
        self.calls += 1
        call = self.calls
        await anyio.sleep(self.seconds)
        if call <= self.failures:
            raise RuntimeError(f"upstream failed on call {call}")
        return f"answer {call}"


_Results = list[tuple[str, bool] | BaseException]


async def _gather(flight: SingleFlight[str], key: str, fn: Upstream, n: int,
                  results: _Results) -> None:
    async def one() -> None:
        try:
            results.append(await flight.run(key, fn))
        except RuntimeError as exc:
            results.append(exc)

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


async def test_a_failed_leader_hands_over_to_one_waiter_not_to_all() -> None:
    flight: SingleFlight[str] = SingleFlight()
    upstream, results = Upstream(failures=1), _Results()
    await _gather(flight, "k", upstream, 5, results)
    assert upstream.calls == 2
    failures = [r for r in results if isinstance(r, BaseException)]
    assert [str(f) for f in failures] == ["upstream failed on call 1"]  # only the leader's
    assert sorted(r for r in results if isinstance(r, tuple)) == (
        [("answer 2", False)] + [("answer 2", True)] * 3)


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


async def test_a_cancelled_leader_lets_a_waiter_take_over() -> None:
    flight: SingleFlight[str] = SingleFlight()
    upstream = Upstream(seconds=10)
    waiter: list[tuple[str, bool]] = []

    async def wait() -> None:
        await anyio.sleep(1)
        waiter.append(await flight.run("k", upstream))

    async with anyio.create_task_group() as tg:
        tg.start_soon(wait)
        with anyio.move_on_after(5):
            await flight.run("k", upstream)
    assert upstream.calls == 2 and waiter == [("answer 2", False)]


async def test_an_unshareable_result_goes_to_the_leader_only() -> None:
    flight: SingleFlight[str] = SingleFlight()
    upstream, results = Upstream(), list[tuple[str, bool]]()

    async def one() -> None:
        results.append(await flight.run("k", upstream, share=lambda r: r != "answer 1"))

    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(one)
    assert upstream.calls == 2
    assert sorted(results) == [("answer 1", False), ("answer 2", False), ("answer 2", True)]
