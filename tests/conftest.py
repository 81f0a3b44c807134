"""Shared test setup: anyio on asyncio by default; `virtual_time` tests run on trio's MockClock."""

from __future__ import annotations

import pytest

pytest_plugins = ["tests.fixtures.sim", "tests.fixtures.scripted"]


@pytest.fixture
def anyio_backend(request: pytest.FixtureRequest) -> object:
    """Tests marked `virtual_time` run on a clock that jumps whenever every task is waiting."""
    if request.node.get_closest_marker("virtual_time"):
        import trio.testing

        return ("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)})
    return "asyncio"
