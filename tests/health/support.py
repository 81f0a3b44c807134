"""Shared by the health tests: a wall clock that follows virtual time, and guarded leaves."""

from __future__ import annotations

import random
from datetime import UTC, datetime

from mcp_router.clock import LoopClock
from mcp_router.config import RetryConfig
from mcp_router.routing import Retrying, Target
from mcp_router.routing.breaker import Breaker
from mcp_router.routing.circuits import BreakerBoard
from tests.fixtures.scripted import ScriptedAdapter

EPOCH = 1_800_000_000  # 2027-01-15T08:00:00Z: loop time 0 under the virtual clock


class VirtualWall(LoopClock):
    """The loop clock whose wall time is EPOCH plus loop time, so reported times are exact."""

    def wall(self) -> float:
        return EPOCH + self.now()


CLOCK = VirtualWall()


def at(loop_time: float) -> str:
    """The ISO time the board reports for `loop_time`."""
    return datetime.fromtimestamp(EPOCH + loop_time, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def guarded(adapter: ScriptedAdapter, board: BreakerBoard, *, model: str = "m",
            attempts: int = 1, rng: random.Random | None = None) -> Breaker:
    """Breaker(Retrying(Target)) as the tree builder makes a leaf, trials to the bare target."""
    target = Target(adapter, model, CLOCK)
    retrying = Retrying(target, RetryConfig(attempts=attempts, backoff_initial_s=1),
                        CLOCK, rng or random.Random(7))
    return Breaker(retrying, f"{adapter.provider}/{model}", board, trial=target)
