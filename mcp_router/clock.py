"""The clock that code which waits or expires reads: the event loop's, so tests can drive it."""

from __future__ import annotations

import asyncio
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
        # asyncio's clock straight from the loop: anyio asks sniffio which library runs on
        # every read, and a call reads the clock some sixteen times.
        try:
            return asyncio.get_running_loop().time()
        except RuntimeError:  # not on asyncio: trio, with its MockClock in tests
            return anyio.current_time()

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)

    def wall(self) -> float:
        return time.time()
