"""The router's cache step: look up, share in-flight calls, go upstream, store by policy.

Modes (the call's `cache` argument):

- `use` (default): a live entry is returned; otherwise identical concurrent calls share one
  upstream call (single flight) and a storable answer is stored.
- `refresh`: never reads; always asks upstream itself and overwrites the entry with a
  storable answer. It does not join another call's flight, since it asked for a new answer.
- `skip`: neither reads nor writes, and takes no part in single flight.

Stored answers are served from memory at once and written to disk in batches, one
transaction every `FLUSH_AFTER_S` at most (in the `later` task group the router passes):
a disk write is the dearest part of the step, and after an answer it would hold up the
answer itself. Without a task group each answer is written before `answer` returns.

A request the cache may not hold (cache disabled in config, or `temperature > 0`
without opt-in) simply goes upstream: no lookup, no flight, no store.

Everything past the lookup (the flight, the upstream call, the store) runs through the
caller's `outlive` runner, which may finish it after the caller has gone: an answer a host
gave up on while it was being paid for still reaches the callers waiting on its flight and
the cache, instead of each waiter paying for it again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal

import anyio
from anyio.abc import TaskGroup

from mcp_router.cache.flight import SingleFlight
from mcp_router.cache.store import CachedAnswer, ResponseCache
from mcp_router.messages import CacheMode, ChatRequest, ChatResponse

__all__ = ["FLUSH_AFTER_S", "CacheStep", "Fetch", "Outlive", "Served"]

FLUSH_AFTER_S = 0.05
"""How long a stored answer may wait in memory for the batch that writes it to disk."""

Fetch = Callable[[], Awaitable[tuple[ChatResponse, Decimal | None]]]
"""Goes upstream (and settles the ledger): the response and what it cost, None if unpriced."""


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


Outlive = Callable[[Callable[[], Awaitable[Served]]], Awaitable[Served]]
"""Runs the work of a miss, possibly beyond its caller's cancellation (`late.finish_or_abort`)."""


async def _in_place(work: Callable[[], Awaitable[Served]]) -> Served:
    return await work()


async def _fresh(answer: Awaitable[CachedAnswer]) -> Served:
    """An upstream answer of this call's own."""
    return Served.fresh(await answer)


class CacheStep:
    """Puts a ResponseCache and single flight in front of an upstream call."""

    def __init__(self, store: ResponseCache) -> None:
        self.store = store
        self._flight: SingleFlight[CachedAnswer] = SingleFlight()
        self._flush_due = False

    async def answer(self, key: str, request: ChatRequest, mode: CacheMode, fetch: Fetch, *,
                     call_opt_in: bool = False, ttl_s: float | None = None,
                     later: TaskGroup | None = None, outlive: Outlive = _in_place) -> Served:
        """The answer to `request` (keyed `key`), from the cache, a shared flight or `fetch`.

        `call_opt_in` lets a `temperature > 0` request use the cache; `ttl_s` overrides the
        config's TTL for what this call stores; `later` runs the batched disk write;
        `outlive` runs everything after a miss (see the module's docstring).
        """
        cacheable = self.store.may_cache(request, call_opt_in=call_opt_in)
        if mode == "skip" or not cacheable:
            return await outlive(lambda: _fresh(self._fetch(fetch)))
        if mode == "refresh":
            return await outlive(lambda: _fresh(self._fetch_and_store(
                key, request, fetch, call_opt_in, ttl_s, later)))
        hit = self.store.get(key)
        if hit is not None:
            return Served.hit(hit)
        return await outlive(lambda: self._shared(key, request, fetch, call_opt_in, ttl_s,
                                                  later))

    async def _shared(self, key: str, request: ChatRequest, fetch: Fetch, call_opt_in: bool,
                      ttl_s: float | None, later: TaskGroup | None) -> Served:
        """The answer of the flight for `key`: led by this call, or shared from another's.

        A flight can end between the caller's lookup and this: its answer, just stored (in
        memory until the next flush), is then the one to share.
        """
        if (hit := self.store.just_stored(key)) is not None:
            return Served.hit(hit)
        # No await between the miss above and joining the flight: in one event loop, a
        # leader's store always lands before its flight ends, so no caller slips between.
        answer, shared = await self._flight.run(
            key, lambda: self._fetch_and_store(key, request, fetch, call_opt_in, ttl_s, later),
            share=lambda a: self.store.should_store(request, a.response,
                                                    call_opt_in=call_opt_in))
        if not shared:
            return Served.fresh(answer)
        return Served.hit(answer.seen_at(self.store.clock.wall()))

    async def _fetch(self, fetch: Fetch) -> CachedAnswer:
        response, cost = await fetch()
        return CachedAnswer(response, stored_at=self.store.clock.wall(), cost_usd=cost)

    async def _fetch_and_store(self, key: str, request: ChatRequest, fetch: Fetch,
                               call_opt_in: bool, ttl_s: float | None,
                               later: TaskGroup | None) -> CachedAnswer:
        answer = await self._fetch(fetch)
        if self.store.should_store(request, answer.response, call_opt_in=call_opt_in):
            self.store.stage(key, answer, ttl_s)
            self._flush(later)
        return answer

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
            self.store.flush()
