"""Fixtures for the money tests: a settable wall clock and a ledger in a temporary directory."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mcp_router.ledger import Ledger


def utc(stamp: str) -> float:
    """Epoch seconds of a UTC 'YYYY-MM-DD HH:MM:SS'."""
    return datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC).timestamp()


class FakeClock:
    """A clock that moves only when told; `wall` is what the ledger and budgets read."""

    def __init__(self, wall: float) -> None:
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

    def set(self, stamp: str) -> None:
        self._wall = utc(stamp)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(utc("2026-11-03 12:00:00"))


@pytest.fixture
def ledger(tmp_path: Path, clock: FakeClock) -> Iterator[Ledger]:
    with Ledger.in_home(tmp_path / "home", clock) as led:
        yield led
