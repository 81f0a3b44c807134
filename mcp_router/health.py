"""Passive health figures per provider and per target, over a sliding window of recent attempts."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel

from mcp_router.clock import Clock
from mcp_router.messages import Attempt

State = Literal["healthy", "degraded", "open", "unconfigured", "unknown"]
WINDOW = 200
DEGRADED_BELOW = 0.9


class ProviderHealth(BaseModel):
    """One provider's figures as `provider_health` reports them."""

    name: str
    state: State
    success_rate: float | None
    requests: int
    p50_ms: float | None
    p95_ms: float | None
    last_error: str | None
    last_error_at: str | None
    open_until: str | None = None


@dataclass(frozen=True)
class _Sample:
    ok: bool
    latency_ms: float


class _Window:
    """The last WINDOW outcomes of one provider, plus its last error."""

    def __init__(self) -> None:
        self.samples: deque[_Sample] = deque(maxlen=WINDOW)
        self.total = 0
        self.last_error: str | None = None
        self.last_error_at: float | None = None

    def add(self, attempt: Attempt, wall: float) -> None:
        ok = attempt.outcome == "ok"
        self.samples.append(_Sample(ok, attempt.latency_ms))
        self.total += 1
        if not ok:
            self.last_error, self.last_error_at = attempt.error, wall


class HealthBook:
    """Records every attempt that reached (or tried to reach) an upstream."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._providers: dict[str, _Window] = {}

    def record(self, attempts: Iterable[Attempt]) -> None:
        wall = self._clock.wall()
        for attempt in attempts:
            if attempt.outcome != "skipped":
                self._providers.setdefault(attempt.provider, _Window()).add(attempt, wall)

    def report(self, name: str, configured: bool) -> ProviderHealth:
        window = self._providers.get(name)
        samples = list(window.samples) if window else []
        latencies = sorted(s.latency_ms for s in samples if s.ok)
        rate = sum(s.ok for s in samples) / len(samples) if samples else None
        return ProviderHealth(
            name=name,
            state=_state(configured, rate),
            success_rate=None if rate is None else round(rate, 4),
            requests=window.total if window else 0,
            p50_ms=_percentile(latencies, 0.50),
            p95_ms=_percentile(latencies, 0.95),
            last_error=window.last_error if window else None,
            last_error_at=_iso(window.last_error_at) if window else None,
        )


def _state(configured: bool, rate: float | None) -> State:
    if not configured:
        return "unconfigured"
    if rate is None:
        return "unknown"
    return "healthy" if rate >= DEGRADED_BELOW else "degraded"


def _percentile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    index = min(len(sorted_values) - 1, max(0, round(q * len(sorted_values) + 0.5) - 1))
    return round(sorted_values[index], 2)


def _iso(epoch: float | None) -> str | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC).isoformat()
