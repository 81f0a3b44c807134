"""Answers a host gave up on while they were being generated (and paid for), kept briefly."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Generic, TypeVar

import anyio
from anyio.abc import TaskGroup

from mcp_router.clock import Clock
from mcp_router.messages import ChatResponse

T = TypeVar("T")
KEEP_S = 600.0  # long enough for a host to retry after its 60 s tool timeout

LostFn = Callable[[Exception | None], None]
"""Told why an answer run on for a caller who gave up ended without one: the upstream's
error, or None when it was cancelled (the server stopped)."""


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

    def peek(self, key: str) -> Kept | None:
        """The answer `pop` would give for `key` now, left kept (a dry run reads it)."""
        kept = self._kept.get(key)
        if kept is None or self._clock.now() - kept.arrived > self._keep_s:
            return None
        return kept

    def pop(self, key: str) -> Kept | None:
        kept = self._kept.pop(key, None)
        if kept is None or self._clock.now() - kept.arrived > self._keep_s:
            return None
        return kept


class _Job(Generic[T]):
    """One upstream call run in the keeper's task group, so it can outlive its caller."""

    def __init__(self) -> None:
        self.done = anyio.Event()  # its caller may take the value or the error
        self.ended = False  # also when cancelled from outside, with nothing for its caller
        self.scope = anyio.CancelScope()
        self.ran_on = False  # its caller gave up while it was being paid for: it finishes
        self.value: T | None = None
        self.error: Exception | None = None

    async def run(self, work: Callable[[], Awaitable[T]], on_late: Callable[[T], None],
                  on_lost: LostFn) -> None:
        # A scope cancelled before the task first runs is cancelled when entered, so a caller
        # that gives up at once still aborts the work before it sends anything.
        try:
            with self.scope:
                try:
                    self.value = await work()
                except Exception as exc:  # a task boundary: the waiting caller re-raises it
                    self.error = exc
            self.done.set()
        finally:  # also when the keeper's task group is cancelled: the server is stopping
            self.ended = True
            if self.ran_on and self.value is not None:
                on_late(self.value)
            elif self.ran_on:  # paid for, with no answer to keep: its cost is said still
                on_lost(self.error)


class Keeper:
    """The task group that runs calls' upstream work, so an answer a host gave up on while it
    was being paid for can be finished; it knows those jobs, so a stopping server can wait
    for them (within its grace) and end the rest."""

    def __init__(self, tasks: TaskGroup) -> None:
        self.tasks = tasks
        self.stopping = False
        self._jobs: set[_Job[Any]] = set()

    @property
    def busy(self) -> bool:
        """Whether an upstream call is running here."""
        return bool(self._jobs)

    def stop(self) -> None:
        """End every job, and let none run on after its caller from now on: the caller's
        own audit line then says what its attempts cost."""
        self.stopping = True
        for job in self._jobs:
            job.scope.cancel()

    def start(self, job: _Job[T], work: Callable[[], Awaitable[T]],
              on_late: Callable[[T], None], on_lost: LostFn) -> None:
        async def run() -> None:
            try:
                await job.run(work, on_late, on_lost)
            finally:
                self._jobs.discard(job)

        self.tasks.start_soon(run)  # not run before the next checkpoint: it is added first
        self._jobs.add(job)


async def finish_or_abort(work: Callable[[], Awaitable[T]], *, keeper: Keeper | None,
                          paying: Callable[[], bool], on_late: Callable[[T], None],
                          on_lost: LostFn) -> T:
    """Run `work`; if the caller is cancelled, abort it unless `paying()` says the answer is
    already being generated, in which case it finishes and `on_late` keeps it, or `on_lost`
    hears why it ended without one (the upstream failed, or the server stopped)."""
    if keeper is None:
        return await work()
    job: _Job[T] = _Job()
    keeper.start(job, work, on_late, on_lost)
    try:
        await job.done.wait()
    except anyio.get_cancelled_exc_class():
        # A job that has ended already, or a server past its grace, runs nothing on.
        if keeper.stopping or job.ended or not paying():
            job.scope.cancel()
        else:
            job.ran_on = True
        raise
    if job.error is not None:
        raise job.error
    assert job.value is not None
    return job.value
