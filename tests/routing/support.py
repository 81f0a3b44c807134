"""Builders shared by the routing tests: calls that capture progress, latency-free attempts."""

from __future__ import annotations

import anyio

from mcp_router.messages import Attempt, Call


class Progress:
    """A progress sink that keeps every message."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    async def __call__(self, message: str) -> None:
        self.messages.append(message)


def call_for(seconds: float, progress: Progress | None = None) -> Call:
    """A call whose deadline is `seconds` from now on the loop clock."""
    deadline = anyio.current_time() + seconds
    return Call(deadline=deadline, progress=progress or Progress())


def without_latency(attempts: list[Attempt]) -> list[Attempt]:
    """Attempts with latency zeroed, for whole-object comparison when latency is not exact."""
    return [a.model_copy(update={"latency_ms": 0.0}) for a in attempts]


def attempt(provider: str, model: str, outcome: str, status: int | None = None,
            error: str | None = None) -> Attempt:
    return Attempt.model_validate({"provider": provider, "model": model, "outcome": outcome,
                                   "status": status, "error": error})
