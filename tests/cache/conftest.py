"""Fixtures for the cache tests: a settable wall clock and a store in a temporary home."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mcp_router.cache import ResponseCache
from mcp_router.config import CacheConfig
from tests.cache.support import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def config() -> CacheConfig:
    return CacheConfig(ttl_s=3600, max_size_mb=64)


@pytest.fixture
def store(tmp_path: Path, config: CacheConfig, clock: FakeClock) -> Iterator[ResponseCache]:
    with ResponseCache.in_home(tmp_path / "home", config, clock) as cache:
        yield cache
