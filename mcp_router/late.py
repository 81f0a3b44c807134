"""Answers a host gave up on while they were being generated (and paid for), kept briefly."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Generic, TypeVar

import anyio
from anyio.abc import TaskGroup

from mcp_router.clock import Clock
from mcp_router.messages import ChatResponse

T = TypeVar("T")
KEEP_S = 600.0  # long enough for a host to retry after its 60 s tool timeout


@dataclass(frozen=True)
class Kept:
    """A late answer: what it cost (already in the ledger) and when it arrived."""

    response: ChatResponse
    cost_usd: Decimal | None
    arrived: float


class LateAnswers:
    """Kept answers by cache key, each served once, to the same call made again."""

    def __init__(self, clock: Clock, keep_s: float = KEEP_S, limit: int = 256) -> None:
        self._clock, self._keep_s, self._limit = clock, keep_s, limit
        self._kept: OrderedDict[str, Kept] = OrderedDict()

    def put(self, key: str, response: ChatResponse, cost_usd: Decimal | None) -> None:
        self._kept[key] = Kept(response, cost_usd, self._clock.now())
        while len(self._kept) > self._limit:
            self._kept.popitem(last=False)

    def pop(self, key: str) -> Kept | None:
        kept = self._kept.pop(key, None)
        if kept is None or self._clock.now() - kept.arrived > self._keep_s:
            return None
        return kept


class _Job(Generic[T]):
    """One upstream call run in the keeper's task group, so it can outlive its caller."""

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.scope = anyio.CancelScope()
        self.abandoned = False
        self.value: T | None = None
        self.error: Exception | None = None

    async def run(self, work: Callable[[], Awaitable[T]], on_late: Callable[[T], None]) -> None:
        # A scope cancelled before the task first runs is cancelled when entered, so a caller
        # that gives up at once still aborts the work before it sends anything.
        with self.scope:
            try:
                self.value = await work()
            except Exception as exc:  # a task boundary: the waiting caller re-raises it
                self.error = exc
        self.done.set()
        if self.abandoned and self.value is not None:
            on_late(self.value)


async def finish_or_abort(work: Callable[[], Awaitable[T]], *, keeper: TaskGroup | None,
                          paying: Callable[[], bool], on_late: Callable[[T], None]) -> T:
    """Run `work`; if the caller is cancelled, abort it unless `paying()` says the answer is
    already being generated, in which case it finishes and `on_late` keeps it."""
    if keeper is None:
        return await work()
    job: _Job[T] = _Job()
    keeper.start_soon(job.run, work, on_late)
    try:
        await job.done.wait()
    except anyio.get_cancelled_exc_class():
        job.abandoned = True
        if not paying():
            job.scope.cancel()
        raise
    if job.error is not None:
        raise job.error
    assert job.value is not None
    return job.value
