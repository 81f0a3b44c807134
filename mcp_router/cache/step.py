"""The router's cache step: look up, share in-flight calls, go upstream, store by policy.

Modes (the call's `cache` argument):

- `use` (default): a live entry is returned; otherwise identical concurrent calls share one
  upstream call (single flight) and a storable answer is stored.
- `refresh`: never reads; always asks upstream itself and overwrites the entry with a
  storable answer (with `cache_ttl_s: 0`, it drops the entry). It does not join another
  call's flight, since it asked for a new answer.
- `skip`: neither reads nor writes, and takes no part in single flight.

A call waiting on an identical call's flight hears "waiting for an identical call in
flight", then that call's progress. If the flight fails with the upstream's own answer to
the request (an HTTP error from every target), every waiter gets that error at once; if it
fails otherwise, or its answer is not one to store, the waiters each ask upstream
themselves, together (see `mcp_router.cache.flight` and `mcp_router.cache.policy`). A last
resort's answer (the host's own model) is returned to its caller only: never stored, never
shared.

Stored answers are served from memory at once and written to disk in batches, one
transaction every `FLUSH_AFTER_S` at most (in the `later` task group the router passes):
a disk write is the dearest part of the step, and after an answer it would hold up the
answer itself. Without a task group each answer is written before `answer` returns. A write
that fails, in the batch or at once, is a cache problem: logged, never raised.

A request the cache may not hold (cache disabled in config, or `temperature > 0`
without opt-in) simply goes upstream: no lookup, no flight, no store.

Everything past the lookup (the flight, the upstream call, the store) runs through the
caller's `outlive` runner, which may finish it after the caller has gone: an answer a host
gave up on while it was being paid for, or one that identical calls are waiting on, still
reaches the callers waiting on its flight and the cache, instead of each waiter paying for
it again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal

import anyio
from anyio.abc import TaskGroup

from mcp_router.cache.flight import Seat, SingleFlight
from mcp_router.cache.policy import shared_failure
from mcp_router.cache.store import CachedAnswer, ResponseCache
from mcp_router.messages import CacheMode, ChatRequest, ChatResponse, ProgressFn, no_progress

__all__ = ["FLUSH_AFTER_S", "CacheStep", "Fetch", "Fetched", "Outlive", "Served"]

FLUSH_AFTER_S = 0.05
"""How long a stored answer may wait in memory for the batch that writes it to disk."""


@dataclass(frozen=True)
class Fetched:
    """What one upstream call gave: the response, what it cost (None if unpriced), and
    whether it came from a last resort (the host's own model), which is never kept."""

    response: ChatResponse
    cost_usd: Decimal | None
    last_resort: bool = False


Fetch = Callable[[ProgressFn], Awaitable[Fetched]]
"""Goes upstream (and settles the ledger), reporting progress through the function given."""


@dataclass(frozen=True)
class Served:
    """One call's answer as the cache step hands it back.

    `cached` is True for a stored hit and for a share of another caller's in-flight answer;
    then `cost_usd` is 0, `age_s` is the answer's age, and `saved_usd` is what the original
    call cost (None when its price was unknown). A fresh answer has `cached=False`, its own
    `cost_usd`, `age_s=None` and `saved_usd=None`.
    """

    response: ChatResponse
    cached: bool
    cost_usd: Decimal | None
    age_s: float | None = None
    saved_usd: Decimal | None = None

    @classmethod
    def hit(cls, answer: CachedAnswer) -> Served:
        """A cached answer: free now, saving what it cost when it was made."""
        return cls(answer.response, cached=True, cost_usd=Decimal(0), age_s=answer.age_s,
                   saved_usd=answer.cost_usd)

    @classmethod
    def fresh(cls, answer: CachedAnswer) -> Served:
        """An answer this call paid for upstream."""
        return cls(answer.response, cached=False, cost_usd=answer.cost_usd)


Work = Callable[[], Awaitable[Served]]
Outlive = Callable[[Work, Callable[[], bool]], Awaitable[Served]]
"""Runs the work of a miss, possibly beyond its caller's cancellation (`late.finish_or_abort`);
the predicate says whether other callers are waiting on that work now (do not abort it)."""


async def _in_place(work: Work, awaited: Callable[[], bool]) -> Served:
    return await work()


def _alone() -> bool:
    return False


async def _fresh(answer: Awaitable[_Answer]) -> Served:
    """An upstream answer of this call's own."""
    return Served.fresh((await answer).answer)


@dataclass(frozen=True)
class _Miss:
    """One call the cache could not answer: what to ask upstream, and how to keep the answer."""

    key: str
    request: ChatRequest
    fetch: Fetch
    call_opt_in: bool
    ttl_s: float | None
    later: TaskGroup | None


@dataclass(frozen=True)
class _Answer:
    """An upstream answer, and whether it may stand for the call later (stored, shared)."""

    answer: CachedAnswer
    reusable: bool


class CacheStep:
    """Puts a ResponseCache and single flight in front of an upstream call."""

    def __init__(self, store: ResponseCache) -> None:
        self.store = store
        self._flight: SingleFlight[_Answer] = SingleFlight()
        self._flush_due = False

    async def answer(self, key: str, request: ChatRequest, mode: CacheMode, fetch: Fetch, *,
                     call_opt_in: bool = False, ttl_s: float | None = None,
                     later: TaskGroup | None = None, outlive: Outlive = _in_place,
                     progress: ProgressFn = no_progress) -> Served:
        """The answer to `request` (keyed `key`), from the cache, a shared flight or `fetch`.

        `call_opt_in` lets a `temperature > 0` request use the cache; `ttl_s` overrides the
        config's TTL for what this call stores; `later` runs the batched disk write;
        `outlive` runs everything after a miss (see the module's docstring); `progress`
        hears this call's progress, a shared flight's included.
        """
        cacheable = self.store.may_cache(request, call_opt_in=call_opt_in)
        miss = _Miss(key, request, fetch, call_opt_in, ttl_s, later)
        if mode == "skip" or not cacheable:
            return await outlive(lambda: _fresh(self._fetch(fetch, progress)), _alone)
        if mode == "refresh":
            return await outlive(lambda: _fresh(self._fetch_and_store(miss, progress)),
                                 _alone)
        hit = self.store.get(key)
        if hit is not None:
            return Served.hit(hit)
        seat = Seat(progress)
        return await outlive(lambda: self._shared(miss, seat), seat.awaited)

    async def _shared(self, miss: _Miss, seat: Seat) -> Served:
        """The answer of the flight for `miss.key`: led by this call, or shared from another's.

        A flight can end between the caller's lookup and this: its answer, just stored (in
        memory until the next flush), is then the one to share.
        """
        if (hit := self.store.just_stored(miss.key)) is not None:
            return Served.hit(hit)
        # No await between the miss above and joining the flight: in one event loop, a
        # leader's store always lands before its flight ends, so no caller slips between.
        got, shared = await self._flight.run(
            miss.key, lambda progress: self._fetch_and_store(miss, progress), seat=seat,
            share=lambda a: a.reusable, share_failure=shared_failure)
        if not shared:
            return Served.fresh(got.answer)
        return Served.hit(got.answer.seen_at(self.store.clock.wall()))

    async def _fetch(self, fetch: Fetch, progress: ProgressFn) -> _Answer:
        got = await fetch(progress)
        answer = CachedAnswer(got.response, stored_at=self.store.clock.wall(),
                              cost_usd=got.cost_usd)
        return _Answer(answer, reusable=not got.last_resort)

    async def _fetch_and_store(self, miss: _Miss, progress: ProgressFn) -> _Answer:
        got = await self._fetch(miss.fetch, progress)
        reusable = got.reusable and self.store.should_store(
            miss.request, got.answer.response, call_opt_in=miss.call_opt_in)
        if reusable and self.store.stage(miss.key, got.answer, miss.ttl_s):
            self._flush(miss.later)
        return _Answer(got.answer, reusable)

    def _flush(self, later: TaskGroup | None) -> None:
        if later is None:
            self.store.flush()
        elif not self._flush_due:
            self._flush_due = True
            try:
                later.start_soon(self._flush_soon)
            except RuntimeError:  # the task group has already closed: write it now
                self._flush_due = False
                self.store.flush()

    async def _flush_soon(self) -> None:
        try:
            await anyio.sleep(FLUSH_AFTER_S)
        finally:  # also when the session is closing: what is staged still goes to disk
            self._flush_due = False
            try:
                self.store.flush()
            # A task of the session's task group: whatever escaped here would end the
            # session, and a cache write is never worth that.
            except Exception as exc:
                self.store.fault("write", exc)
