"""Single flight: concurrent identical calls share one upstream call instead of making N.

The first caller for a key leads: it runs the work. Callers arriving while it runs wait for
its result and receive it marked as shared. A waiter is told at once that it waits
(`WAITING`) and then hears the leader's progress as the leader does.

When the leader's run gives no answer to share, the waiters never queue up behind one
another:

- a failure that `share_failure` turns into a waiter's error (one the upstream gave to this
  very request, which an identical call would meet the same way) is raised to every waiter
  at once, when the leader's is;
- any other failure (the leader's own deadline or cancellation, say) and a result that is
  not shareable release the waiters together: each runs the work itself, side by side and
  outside the flight, as it would without single flight, and meets its own outcome.

So an upstream failing that way sees the leader's call and then one call from each waiter
at once (as without single flight), and no caller's wait stacks on another's.

A waiter waits inside its own cancel scope: the router's deadline (for instance
`anyio.fail_after`) ends its wait without disturbing the leader or the other waiters. A
leader's `Seat.awaited()` says whether anyone is waiting on its run, so that a leader giving
up can let the run finish for them instead of aborting it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import anyio

from mcp_router.messages import ProgressFn, no_progress

__all__ = ["WAITING", "Seat", "SingleFlight", "Work"]

T = TypeVar("T")

WAITING = "waiting for an identical call in flight"
"""The progress message a caller hears when it joins another caller's run."""

Work = Callable[[ProgressFn], Awaitable[T]]
"""The work of a flight, reporting its progress through the function it is given."""


def _always(_: object) -> bool:
    return True


def _never(_: Exception) -> Exception | None:
    return None


class Seat:
    """One caller's place at a flight: where its progress goes, and whether it is awaited."""

    def __init__(self, progress: ProgressFn = no_progress) -> None:
        self.progress = progress
        self._leads: _Flight[Any] | None = None

    def awaited(self) -> bool:
        """Whether this caller leads a run that other callers are waiting on now."""
        return self._leads is not None and bool(self._leads.waiters)


@dataclass
class _Flight(Generic[T]):
    waiters: list[Seat] = field(default_factory=list)
    # Made by the first waiter: most flights have none, and an event is not free.
    done: anyio.Event | None = None
    result: tuple[T] | None = None  # a 1-tuple, so a result of None is still a result
    failure: Exception | None = None


class SingleFlight(Generic[T]):
    """Deduplicates concurrent calls by key within one event loop."""

    def __init__(self) -> None:
        self._flights: dict[str, _Flight[T]] = {}

    def in_flight(self, key: str) -> bool:
        """Whether a call for `key` is running now."""
        return key in self._flights

    async def run(self, key: str, fn: Work[T], *, seat: Seat | None = None,
                  share: Callable[[T], bool] = _always,
                  share_failure: Callable[[Exception], Exception | None] = _never,
                  ) -> tuple[T, bool]:
        """`fn()`'s result and whether it was shared from another caller's run.

        Only results for which `share(result)` holds are handed to waiters; the leader
        always gets its own result (or its own exception). A leader's failure reaches a
        waiter as `share_failure(failure)`; where that is None the waiter runs `fn` itself.
        """
        seat = seat or Seat()
        flight = self._flights.get(key)
        if flight is None:
            return await self._lead(key, fn, seat, share), False
        flight.waiters.append(seat)
        try:
            if flight.done is None:
                flight.done = anyio.Event()
            await seat.progress(WAITING)
            await flight.done.wait()
        finally:
            flight.waiters.remove(seat)
        if flight.result is not None:
            return flight.result[0], True
        error = None if flight.failure is None else share_failure(flight.failure)
        if error is not None:
            raise error
        return await fn(seat.progress), False

    async def _lead(self, key: str, fn: Work[T], seat: Seat,
                    share: Callable[[T], bool]) -> T:
        flight: _Flight[T] = _Flight()
        self._flights[key] = flight
        seat._leads = flight
        try:
            result = await fn(_relay(flight, seat))
            if share(result):
                flight.result = (result,)
            return result
        except Exception as exc:  # kept for the waiters to judge, and raised on
            flight.failure = exc
            raise
        finally:
            seat._leads = None
            del self._flights[key]
            if flight.done is not None:
                flight.done.set()


def _relay(flight: _Flight[Any], leader: Seat) -> ProgressFn:
    """The leader's progress function: its own, then each caller still waiting on it."""

    async def relay(message: str) -> None:
        await leader.progress(message)
        for waiter in list(flight.waiters):
            if waiter in flight.waiters:  # it may have given up while another was told
                await waiter.progress(message)

    return relay
