"""The router's cache step: look up, share in-flight calls, go upstream, store by policy.

Modes (the call's `cache` argument):

- `use` (default): a live entry is returned; otherwise identical concurrent calls share one
  upstream call (single flight) and a storable answer is stored.
- `refresh`: never reads; always asks upstream itself and overwrites the entry with a
  storable answer. It does not join another call's flight, since it asked for a new answer.
- `skip`: neither reads nor writes, and takes no part in single flight.

Writing an answer to disk takes longer than the rest of the cache step together (~0.2 ms),
so with a `later` (the MCP session's task group) it is written just after the answer has gone
back to the caller. Until it is on disk, the answer is served from memory, so an identical
call in between is still a hit.

A request the cache may not hold (cache disabled in config, or `temperature > 0`
without opt-in) simply goes upstream: no lookup, no flight, no store.
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

__all__ = ["CacheStep", "Fetch", "Later", "Served", "after_answer"]

Fetch = Callable[[], Awaitable[tuple[ChatResponse, Decimal | None]]]
"""Goes upstream (and settles the ledger): the response and what it cost, None if unpriced."""

Later = Callable[[Callable[[], None]], None]
"""Runs a piece of work soon, but after the answer being made has been returned."""

# Long enough for the MCP layer to serialise the result and hand it to the transport.
AFTER_ANSWER_S = 0.002


def after_answer(tasks: TaskGroup) -> Later:
    """A `Later` that runs work in `tasks` once the answer has had time to go out.

    The work is shielded: a session that ends meanwhile still gets its answer stored.
    """
    async def run(work: Callable[[], None]) -> None:
        with anyio.CancelScope(shield=True):
            await anyio.sleep(AFTER_ANSWER_S)
            work()

    def later(work: Callable[[], None]) -> None:
        tasks.start_soon(run, work)

    return later


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


class CacheStep:
    """Puts a ResponseCache and single flight in front of an upstream call."""

    def __init__(self, store: ResponseCache) -> None:
        self.store = store
        self._flight: SingleFlight[CachedAnswer] = SingleFlight()
        self._storing: dict[str, CachedAnswer] = {}  # answers on their way to the disk

    async def answer(self, key: str, request: ChatRequest, mode: CacheMode, fetch: Fetch, *,
                     call_opt_in: bool = False, ttl_s: float | None = None,
                     later: Later | None = None) -> Served:
        """The answer to `request` (keyed `key`), from the cache, a shared flight or `fetch`.

        `call_opt_in` lets a `temperature > 0` request use the cache; `ttl_s` overrides the
        config's TTL for what this call stores; `later` writes it after the answer is back.
        """
        if mode == "skip" or not self.store.may_cache(request, call_opt_in=call_opt_in):
            return Served.fresh(await self._fetch(fetch))

        async def fetch_and_store() -> CachedAnswer:
            answer = await self._fetch(fetch)
            if self.store.should_store(request, answer.response, call_opt_in=call_opt_in):
                self._store(key, answer, ttl_s, later)
            return answer

        if mode == "refresh":
            return Served.fresh(await fetch_and_store())
        hit = self.lookup(key)
        if hit is not None:
            return Served.hit(hit)
        # No await between the miss above and joining the flight: in one event loop, a
        # leader's answer is stored (or on its way) before its flight ends, so no caller
        # slips between.
        answer, shared = await self._flight.run(
            key, fetch_and_store,
            share=lambda a: self.store.should_store(request, a.response,
                                                    call_opt_in=call_opt_in))
        if not shared:
            return Served.fresh(answer)
        return Served.hit(answer.seen_at(self.store.clock.wall()))

    def lookup(self, key: str) -> CachedAnswer | None:
        """The live answer under `key`, also one still on its way to the disk."""
        storing = self._storing.get(key)
        if storing is not None:
            return storing.seen_at(self.store.clock.wall())
        return self.store.get(key)

    async def _fetch(self, fetch: Fetch) -> CachedAnswer:
        response, cost = await fetch()
        return CachedAnswer(response, stored_at=self.store.clock.wall(), cost_usd=cost)

    def _store(self, key: str, answer: CachedAnswer, ttl_s: float | None,
               later: Later | None) -> None:
        if later is None or self.store.lifetime(ttl_s) <= 0:
            self.store.put(key, answer, ttl_s)
            return
        self._storing[key] = answer

        def store() -> None:
            try:
                self.store.put(key, answer, ttl_s)
            finally:
                if self._storing.get(key) is answer:
                    del self._storing[key]

        later(store)
