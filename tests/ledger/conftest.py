"""Fixtures for the money tests: a settable wall clock and a ledger in a temporary directory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mcp_router.ledger import Ledger
from tests.fixtures.clock import FakeClock, utc

__all__ = ["FakeClock", "utc"]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(utc("2026-11-03 12:00:00"))


@pytest.fixture
def ledger(tmp_path: Path, clock: FakeClock) -> Iterator[Ledger]:
    with Ledger.in_home(tmp_path / "home", clock) as led:
        yield led
