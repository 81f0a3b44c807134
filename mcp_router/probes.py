"""Probes: list-models calls that spend nothing, on demand or on an interval, and what they mean."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import anyio

from mcp_router.clock import Clock
from mcp_router.errors import (
    ProviderError,
    ProviderNotConfigured,
    ProviderStatusError,
    ProviderTimeout,
)
from mcp_router.health import PROBE_REFUSED, Circuits, HealthBook, ProbeResult, iso


class Probeable(Protocol):
    """What probing needs of an adapter (every `providers` adapter is one)."""

    provider: str
    configured: bool

    async def probe(self) -> None: ...


class Prober:
    """Asks providers' list-models endpoints (never a completion) and records what they say.

    A success lifts the provider's misconfigured and missing marks and moves its open
    circuits to half-open, where one real call decides; a 401/403 marks it misconfigured.
    Other failures are reported but move no circuit: one probe is not a trend.
    """

    def __init__(self, adapters: Mapping[str, Probeable], circuits: Circuits | None,
                 health: HealthBook, clock: Clock, *, timeout_s: float = 10.0) -> None:
        self._adapters, self._circuits, self._health = adapters, circuits, health
        self._clock, self._timeout_s = clock, timeout_s

    async def probe(self, name: str) -> ProbeResult:
        """Probe provider `name` once and record the result (an unconfigured one is not asked)."""
        started = self._clock.now()
        error: ProviderError | None = None
        try:
            with anyio.fail_after(self._timeout_s):
                await self._adapters[name].probe()
        except TimeoutError:
            error = ProviderTimeout(name, "models", f"no answer within {self._timeout_s:g} s")
        except ProviderError as exc:
            error = exc
        status = error.status if isinstance(error, ProviderStatusError) else None
        result = ProbeResult(provider=name, ok=error is None, at=iso(self._clock.wall()) or "",
                             latency_ms=round((self._clock.now() - started) * 1000, 1),
                             status=status, error=error.detail if error else None)
        if not isinstance(error, ProviderNotConfigured):
            self._apply(result)
        return result

    def _apply(self, result: ProbeResult) -> None:
        self._health.record_probe(result)
        if self._circuits is None:
            return
        if result.ok:
            self._circuits.probe_succeeded(result.provider)
        elif result.status in PROBE_REFUSED:
            self._circuits.probe_refused(result.provider, f"probe: {result.error}")

    async def probe_all(self) -> list[ProbeResult]:
        """Probe every configured provider at once; results in config order."""
        results: dict[str, ProbeResult] = {}

        async def one(name: str) -> None:
            results[name] = await self.probe(name)

        async with anyio.create_task_group() as group:
            for name, adapter in self._adapters.items():
                if adapter.configured:
                    group.start_soon(one, name)
        return [results[name] for name in self._adapters if name in results]

    async def run_every(self, seconds: float) -> None:
        """Probe every configured provider now and then every `seconds`, until cancelled."""
        while True:
            await self.probe_all()
            await self._clock.sleep(seconds)
