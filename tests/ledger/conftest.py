"""Fixtures for the money tests: a settable wall clock and a ledger in a temporary directory."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from mcp_router.clock import Clock
from mcp_router.ledger import Ledger
from tests.fixtures.clock import FakeClock, utc

__all__ = ["FakeClock", "HeldWall", "utc"]


class HeldWall:
    """`inner`'s time, but once held, reading the wall time off the main thread waits until
    released: it stops a report at its start in its worker thread."""

    def __init__(self, inner: Clock) -> None:
        self._inner = inner
        self.reached = threading.Event()  # a worker thread is waiting
        self._open = threading.Event()
        self._open.set()

    def now(self) -> float:
        return self._inner.now()

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)

    def wall(self) -> float:
        if not self._open.is_set() and threading.current_thread() is not threading.main_thread():
            self.reached.set()
            self._open.wait(10)  # bounded: a failing test does not hang
        return self._inner.wall()

    def hold(self) -> None:
        self.reached.clear()
        self._open.clear()

    def release(self) -> None:
        self._open.set()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(utc("2026-11-03 12:00:00"))


@pytest.fixture
def ledger(tmp_path: Path, clock: FakeClock) -> Iterator[Ledger]:
    with Ledger.in_home(tmp_path / "home", clock) as led:
        yield led
