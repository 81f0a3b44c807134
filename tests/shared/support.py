"""A clock for the shared-server tests that moves only when told."""

from __future__ import annotations


class FakeClock:
    """Monotonic and wall time that advance together, and only through `advance`."""

    def __init__(self, wall: float = 1_750_000_000.0) -> None:
        self._wall, self._now = wall, 0.0

    def now(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        self.advance(seconds)

    def wall(self) -> float:
        return self._wall

    def advance(self, seconds: float) -> None:
        self._wall += seconds
        self._now += seconds
