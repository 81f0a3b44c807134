"""The cache step: modes use/refresh/skip, hits marked cached and free, only good answers kept."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import anyio
import pytest

from mcp_router.cache import (
    FLUSH_AFTER_S,
    WAITING,
    CacheStep,
    Fetched,
    ResponseCache,
    Served,
    cache_key,
)
from mcp_router.config import CacheConfig
from mcp_router.errors import AllTargetsFailed
from mcp_router.messages import Attempt, CacheMode, ChatRequest, ProgressFn
from tests.cache.support import FakeClock, request, response, unwritable

pytestmark = [pytest.mark.virtual_time, pytest.mark.anyio]

COST = Decimal("0.0042")


class Upstream:
    """A fetch that answers "answer <n>" on its n-th call, after `seconds` of virtual time,
    saying "asking" and, half way, "streaming" through the progress it is given. A `broken`
    one answers text that cannot be written as JSON."""

    def __init__(self, seconds: float = 0.0, finish_reason: str | None = "stop",
                 error: Exception | None = None, last_resort: bool = False,
                 broken: bool = False) -> None:
        self.seconds, self.finish_reason, self.error = seconds, finish_reason, error
        self.last_resort, self.broken = last_resort, broken
        self.calls = 0

    async def __call__(self, progress: ProgressFn) -> Fetched:
        self.calls += 1
        call = self.calls
        await progress("asking")
        await anyio.sleep(self.seconds / 2)
        await progress("streaming")
        await anyio.sleep(self.seconds / 2)
        if self.error is not None:
            raise self.error
        answer = response(f"answer {call}", finish_reason=self.finish_reason,
                          provider="together", model="meta-llama/Llama-3-70b")
        return Fetched(unwritable(answer) if self.broken else answer, COST,
                       last_resort=self.last_resort)


@pytest.fixture
def step(store: ResponseCache) -> CacheStep:
    return CacheStep(store)


def _key(req: ChatRequest, tenant: str = "a") -> str:
    return cache_key(req, "route:default", tenant)


async def _ask(step: CacheStep, upstream: Upstream, mode: CacheMode = "use",
               req: ChatRequest | None = None, *, call_opt_in: bool = False,
               ttl_s: float | None = None) -> Served:
    req = req or request()
    return await step.answer(_key(req), req, mode, upstream, call_opt_in=call_opt_in,
                             ttl_s=ttl_s)


def _content(served: Served) -> str:
    return served.response.completion.content


async def test_a_miss_goes_upstream_and_a_repeat_is_a_free_cached_hit(
        step: CacheStep, clock: FakeClock) -> None:
    upstream = Upstream()
    first = await _ask(step, upstream)
    clock.advance(90)
    second = await _ask(step, upstream)
    assert first == Served(first.response, cached=False, cost_usd=COST)
    assert second == Served(first.response, cached=True, cost_usd=Decimal(0), age_s=90,
                            saved_usd=COST)
    assert upstream.calls == 1


async def test_a_hit_reports_who_actually_answered(step: CacheStep) -> None:
    upstream = Upstream()
    await _ask(step, upstream)
    hit = await _ask(step, upstream)
    assert (hit.response.provider, hit.response.model) == ("together", "meta-llama/Llama-3-70b")


async def test_refresh_asks_again_and_overwrites(step: CacheStep) -> None:
    upstream = Upstream()
    await _ask(step, upstream)
    refreshed = await _ask(step, upstream, "refresh")
    after = await _ask(step, upstream)
    assert not refreshed.cached and _content(refreshed) == "answer 2"
    assert after.cached and _content(after) == "answer 2"
    assert upstream.calls == 2


async def test_skip_neither_reads_nor_writes(step: CacheStep) -> None:
    upstream = Upstream()
    await _ask(step, upstream)
    skipped = await _ask(step, upstream, "skip")
    after = await _ask(step, upstream)
    assert not skipped.cached and _content(skipped) == "answer 2"
    assert after.cached and _content(after) == "answer 1"


async def test_skip_on_an_empty_cache_stores_nothing(step: CacheStep) -> None:
    upstream = Upstream()
    await _ask(step, upstream, "skip")
    assert not (await _ask(step, upstream)).cached


async def test_a_sampled_request_always_goes_upstream_without_opt_in(step: CacheStep) -> None:
    upstream, req = Upstream(), request(temperature=0.8)
    results = [await _ask(step, upstream, req=req) for _ in range(2)]
    assert [r.cached for r in results] == [False, False] and upstream.calls == 2


async def test_a_sampled_request_is_cached_when_the_call_opts_in(step: CacheStep) -> None:
    upstream, req = Upstream(), request(temperature=0.8)
    results = [await _ask(step, upstream, req=req, call_opt_in=True) for _ in range(2)]
    assert [r.cached for r in results] == [False, True] and upstream.calls == 1


@pytest.mark.parametrize("finish_reason", [None, "content_filter"])
async def test_an_incomplete_answer_is_returned_but_not_kept(step: CacheStep,
                                                             finish_reason: str | None) -> None:
    upstream = Upstream(finish_reason=finish_reason)
    results = [await _ask(step, upstream) for _ in range(2)]
    assert [r.cached for r in results] == [False, False] and upstream.calls == 2


async def test_an_upstream_error_is_raised_and_nothing_is_kept(step: CacheStep) -> None:
    failing = Upstream(error=RuntimeError("all targets failed"))
    with pytest.raises(RuntimeError, match="all targets failed"):
        await _ask(step, failing)
    assert not (await _ask(step, Upstream())).cached


async def test_an_answer_cut_off_by_the_deadline_is_not_kept(step: CacheStep) -> None:
    with anyio.move_on_after(1):
        await _ask(step, Upstream(seconds=5))
    assert not (await _ask(step, Upstream())).cached


async def test_a_per_call_ttl_applies_to_what_the_call_stores(
        step: CacheStep, clock: FakeClock) -> None:
    upstream = Upstream()
    await _ask(step, upstream, ttl_s=10)
    clock.advance(11)
    assert not (await _ask(step, upstream)).cached


async def test_tenants_never_see_each_others_answers(step: CacheStep) -> None:
    upstream, req = Upstream(), request()
    await step.answer(_key(req, "a"), req, "use", upstream)
    other = await step.answer(_key(req, "b"), req, "use", upstream)
    assert not other.cached and upstream.calls == 2


async def test_concurrent_identical_calls_share_one_upstream_call_as_cached(
        step: CacheStep) -> None:
    upstream, results = Upstream(seconds=2), []

    async def one() -> None:
        results.append(await _ask(step, upstream))

    async with anyio.create_task_group() as tg:
        for _ in range(20):
            tg.start_soon(one)
    assert upstream.calls == 1
    assert sorted(r.cached for r in results) == [False] + [True] * 19
    shared = [r for r in results if r.cached]
    assert {(r.cost_usd, r.saved_usd, _content(r)) for r in shared} == {
        (Decimal(0), COST, "answer 1")}


async def test_concurrent_calls_do_not_share_an_answer_that_is_not_kept(
        step: CacheStep) -> None:
    upstream = Upstream(seconds=2, finish_reason=None)
    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(_ask, step, upstream)
    assert upstream.calls == 3


async def test_a_broken_cache_directory_still_answers_and_still_shares_flights(
        tmp_path: Path, clock: FakeClock) -> None:
    (tmp_path / "file").write_text("")
    with ResponseCache(tmp_path / "file", CacheConfig(), clock) as broken:
        step, upstream, results = CacheStep(broken), Upstream(seconds=1), []

        async def one() -> None:
            results.append(await _ask(step, upstream))

        async with anyio.create_task_group() as tg:
            for _ in range(5):
                tg.start_soon(one)
        later = await _ask(step, upstream)
    assert upstream.calls == 2 and sorted(r.cached for r in results) == [False] + [True] * 4
    assert not later.cached


async def test_a_disabled_cache_always_goes_upstream(tmp_path: Path,
                                                     clock: FakeClock) -> None:
    with ResponseCache(tmp_path, CacheConfig(enabled=False), clock) as off:
        step, upstream = CacheStep(off), Upstream()
        results = [await _ask(step, upstream) for _ in range(2)]
    assert [r.cached for r in results] == [False, False] and upstream.calls == 2


async def test_answers_stored_in_a_task_group_reach_the_disk_in_one_batch(
        step: CacheStep, store: ResponseCache) -> None:
    upstream = Upstream()
    async with anyio.create_task_group() as later:
        for n in range(3):
            req = request(f"question {n}")
            await step.answer(_key(req), req, "use", upstream, later=later)
        assert store.staged == 3  # answered, and served from memory until the batch is due
        again = request("question 1")
        assert (await step.answer(_key(again), again, "use", upstream, later=later)).cached
        await anyio.sleep(FLUSH_AFTER_S * 2)
        assert store.staged == 0
    assert upstream.calls == 3


async def test_a_closing_task_group_still_writes_what_is_staged(
        step: CacheStep, store: ResponseCache) -> None:
    async with anyio.create_task_group() as later:
        await step.answer(_key(request()), request(), "use", Upstream(), later=later)
        later.cancel_scope.cancel()
    assert store.staged == 0 and store.get(_key(request())) is not None


async def test_an_answer_after_its_task_group_closed_is_written_at_once(
        step: CacheStep, store: ResponseCache) -> None:
    async with anyio.create_task_group() as later:
        pass
    await step.answer(_key(request()), request(), "use", Upstream(), later=later)
    assert store.staged == 0 and store.get(_key(request())) is not None


async def test_a_last_resort_answer_is_returned_but_never_kept_nor_shared(
        step: CacheStep) -> None:
    upstream, results = Upstream(seconds=2, last_resort=True), []

    async def one() -> None:
        results.append(await _ask(step, upstream))

    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(one)
    later = await _ask(step, upstream)
    assert upstream.calls == 4
    assert [r.cached for r in [*results, later]] == [False] * 4


async def test_refresh_with_a_zero_ttl_leaves_no_answer_behind(step: CacheStep) -> None:
    upstream = Upstream()
    await _ask(step, upstream)
    refreshed = await _ask(step, upstream, "refresh", ttl_s=0)
    after = await _ask(step, upstream)
    assert not refreshed.cached and not after.cached and _content(after) == "answer 3"


async def test_a_zero_ttl_removal_is_not_undone_by_another_servers_late_batch(
        tmp_path: Path, clock: FakeClock) -> None:
    # Two servers sharing MCP_ROUTER_HOME: one's answer is still waiting for its batch when
    # the other removes the entry.
    with ResponseCache(tmp_path, CacheConfig(), clock) as first, \
            ResponseCache(tmp_path, CacheConfig(), clock) as second:
        one, two, upstream = CacheStep(first), CacheStep(second), Upstream()
        async with anyio.create_task_group() as later:
            req = request()
            await one.answer(_key(req), req, "use", upstream, later=later)
            clock.advance(0.01)
            await two.answer(_key(req), req, "refresh", upstream, ttl_s=0, later=later)
            await anyio.sleep(FLUSH_AFTER_S * 2)  # one's batch lands after the removal
            clock.advance(1)
            after = await two.answer(_key(req), req, "use", upstream, later=later)
    assert not after.cached and _content(after) == "answer 3" and upstream.calls == 3


def _failed(status: int | None, error: str) -> AllTargetsFailed:
    return AllTargetsFailed([Attempt(provider="together", model="meta-llama/Llama-3-70b",
                                     outcome="error", status=status, error=error)])


async def _ask_together(step: CacheStep, upstream: Upstream,
                        n: int) -> list[tuple[float, Served | AllTargetsFailed]]:
    results: list[tuple[float, Served | AllTargetsFailed]] = []

    async def one() -> None:
        try:
            served: Served | AllTargetsFailed = await _ask(step, upstream)
        except AllTargetsFailed as exc:
            served = exc
        results.append((anyio.current_time() - started, served))

    started = anyio.current_time()
    async with anyio.create_task_group() as tg:
        for _ in range(n):
            tg.start_soon(one)
    return results


async def test_identical_calls_to_an_upstream_answering_503_all_get_its_error_at_once(
        step: CacheStep) -> None:
    upstream = Upstream(seconds=2, error=_failed(503, "HTTP 503: overloaded"))
    results = await _ask_together(step, upstream, 4)
    assert upstream.calls == 1
    assert {seconds for seconds, _ in results} == {2}
    errors = [error for _, error in results]
    assert all(isinstance(e, AllTargetsFailed) and e.attempts[0].status == 503 for e in errors)
    assert len({id(e) for e in errors}) == 4  # each caller raises its own


async def test_identical_calls_whose_leader_timed_out_ask_again_together(
        step: CacheStep) -> None:
    upstream = Upstream(seconds=2, error=_failed(None, "no answer within 2 s"))
    results = await _ask_together(step, upstream, 4)
    assert upstream.calls == 4
    assert sorted(seconds for seconds, _ in results) == [2, 4, 4, 4]  # never 6, 8


async def test_identical_calls_not_shared_an_answer_ask_again_together(step: CacheStep) -> None:
    upstream = Upstream(seconds=2, finish_reason="content_filter")
    results = await _ask_together(step, upstream, 4)
    assert upstream.calls == 4
    assert sorted(seconds for seconds, _ in results) == [2, 4, 4, 4]


async def test_a_call_waiting_on_an_identical_call_hears_its_progress(step: CacheStep) -> None:
    upstream, heard = Upstream(seconds=2), {"first": list[str](), "second": list[str]()}

    async def one(name: str, delay: float) -> None:
        async def progress(message: str) -> None:
            heard[name].append(message)

        await anyio.sleep(delay)
        req = request()
        await step.answer(_key(req), req, "use", upstream, progress=progress)

    async with anyio.create_task_group() as tg:
        tg.start_soon(one, "first", 0)
        tg.start_soon(one, "second", 0.5)
    assert heard == {"first": ["asking", "streaming"], "second": [WAITING, "streaming"]}


async def test_an_answer_that_cannot_be_written_never_ends_the_task_group_nor_the_batch(
        step: CacheStep, store: ResponseCache, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    good, bad = request("good"), request("bad")
    async with anyio.create_task_group() as later:
        await step.answer(_key(good), good, "use", Upstream(), later=later)
        await step.answer(_key(bad), bad, "use", Upstream(broken=True), later=later)
        await anyio.sleep(FLUSH_AFTER_S * 2)
    assert store.staged == 0
    with ResponseCache.in_home(tmp_path / "home", CacheConfig(), store.clock) as reopened:
        assert reopened.get(_key(good)) is not None and reopened.get(_key(bad)) is None
    upstream = Upstream(broken=True)
    assert not (await _ask(step, upstream, req=bad)).cached and upstream.calls == 1
    assert len([r for r in caplog.records if r.name == "mcp_router.cache"]) == 1
