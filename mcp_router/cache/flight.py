"""Single flight: concurrent identical calls share one upstream call instead of making N.

The first caller for a key leads: it runs the work. Callers arriving while it runs wait for
its result and receive it marked as shared. If the leader fails (an upstream error, its own
deadline, a cancellation) or its result is not shareable, the waiters do not inherit that:
one of them is elected the next leader and tries again while the rest keep waiting, so a
failing upstream still sees one call at a time per key, never a burst of N.

A waiter waits inside its own cancel scope: the router's deadline (for instance
`anyio.fail_after`) ends its wait without disturbing the leader or the other waiters.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import anyio

__all__ = ["SingleFlight"]

T = TypeVar("T")


def _always(_: object) -> bool:
    return True


@dataclass
class _Flight(Generic[T]):
    # Made by the first waiter: most flights have none, and an event is not free.
    done: anyio.Event | None = None
    result: tuple[T] | None = None  # a 1-tuple, so a result of None is still a result


class SingleFlight(Generic[T]):
    """Deduplicates concurrent calls by key within one event loop."""

    def __init__(self) -> None:
        self._flights: dict[str, _Flight[T]] = {}

    def in_flight(self, key: str) -> bool:
        """Whether a call for `key` is running now."""
        return key in self._flights

    async def run(self, key: str, fn: Callable[[], Awaitable[T]], *,
                  share: Callable[[T], bool] = _always) -> tuple[T, bool]:
        """`fn()`'s result and whether it was shared from another caller's run.

        Only results for which `share(result)` holds are handed to waiters; the leader
        always gets its own result (or its own exception).
        """
        while True:
            flight = self._flights.get(key)
            if flight is None:
                return await self._lead(key, fn, share), False
            if flight.done is None:
                flight.done = anyio.Event()
            await flight.done.wait()
            if flight.result is not None:
                return flight.result[0], True

    async def _lead(self, key: str, fn: Callable[[], Awaitable[T]],
                    share: Callable[[T], bool]) -> T:
        flight: _Flight[T] = _Flight()
        self._flights[key] = flight
        try:
            result = await fn()
            if share(result):
                flight.result = (result,)
            return result
        finally:
            # on failure the waiters wake to an empty flight and elect a new leader
            del self._flights[key]
            if flight.done is not None:
                flight.done.set()
