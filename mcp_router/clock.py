"""The clock that code which waits or expires reads: the event loop's, so tests can drive it."""

from __future__ import annotations

import time
from typing import Protocol

import anyio


class Clock(Protocol):
    """Monotonic time and sleeping; `wall` is epoch seconds for things stored on disk."""

    def now(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...

    def wall(self) -> float: ...


class LoopClock:
    """The event loop's clock: real in production, virtual under trio's MockClock in tests."""

    def now(self) -> float:
        return anyio.current_time()

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)

    def wall(self) -> float:
        return time.time()
