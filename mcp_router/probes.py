"""Probes: list-models calls that spend nothing, on demand or on an interval, and what they mean."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Protocol

import anyio

from mcp_router.clock import Clock
from mcp_router.errors import (
    ProviderError,
    ProviderNotConfigured,
    ProviderStatusError,
    ProviderTimeout,
)
from mcp_router.health import NO_LIST_STATUS, PROBE_REFUSED, Circuits, HealthBook, ProbeResult, iso
from mcp_router.messages import ModelList

log = logging.getLogger("mcp_router")


class Probeable(Protocol):
    """What probing needs of an adapter (every `providers` adapter is one)."""

    provider: str
    configured: bool

    async def probe(self) -> ModelList | None: ...


class Prober:
    """Asks providers' list-models endpoints (never a completion) and records what they say.

    A success lifts the provider's misconfigured mark, and the marks of targets whose model
    the list names. A probe never sets a mark: a key may be allowed to complete but not to
    list models (an OpenAI restricted key without `api.model.read` gets 401/403 here), so a
    refused probe is reported (in its result and `last_probe`) and said once in the log,
    and calls go on deciding. No probe moves a circuit: an open one waits out its cooldown
    or Retry-After, then one real call decides, and a failure is reported only, since one
    probe is not a trend. A 404 is reported as no list-models endpoint (Perplexity has
    none), which says nothing either way until calls do.
    """

    def __init__(self, adapters: Mapping[str, Probeable], circuits: Circuits | None,
                 health: HealthBook, clock: Clock, *, timeout_s: float = 10.0,
                 models: Mapping[str, Sequence[str]] | None = None) -> None:
        """`models` are the models the config names for each provider (its `models` and its
        route targets), which a probe checks against the provider's list."""
        self._adapters, self._circuits, self._health = adapters, circuits, health
        self._clock, self._timeout_s = clock, timeout_s
        self._models = models or {}
        self._refused: set[str] = set()  # providers whose refused probe the log has told

    async def probe(self, name: str) -> ProbeResult:
        """Probe provider `name` once and record the result (an unconfigured one is not asked)."""
        started = self._clock.now()
        error: ProviderError | None = None
        listed: ModelList | None = None
        try:
            with anyio.fail_after(self._timeout_s):
                listed = await self._adapters[name].probe()
        except TimeoutError:
            error = ProviderTimeout(name, "models", f"no answer within {self._timeout_s:g} s")
        except ProviderError as exc:
            error = exc
        status = error.status if isinstance(error, ProviderStatusError) else None
        detail = error.detail if error else None
        if status == NO_LIST_STATUS:
            detail = (f"{detail}: no list-models endpoint here, so the probe says nothing; "
                      f"calls will tell (if they fail too, check base_url)")
        result = ProbeResult(provider=name, ok=error is None, at=iso(self._clock.wall()) or "",
                             latency_ms=round((self._clock.now() - started) * 1000, 1),
                             status=status, error=detail,
                             models_listed=None if listed is None else len(listed.ids),
                             unlisted=self._unlisted(name, listed))
        if not isinstance(error, ProviderNotConfigured):
            self._apply(result, listed)
        return result

    def _unlisted(self, name: str, listed: ModelList | None) -> list[str]:
        """The models the config names, or calls asked for, that a whole list does not name
        (a page of a longer list proves nothing)."""
        if listed is None or not listed.complete:
            return []
        called = [key.partition("/")[2] for key in self._circuits.keys(name)] \
            if self._circuits else []
        models = dict.fromkeys([*self._models.get(name, ()), *called])
        return [model for model in models if model not in listed.ids]

    def _apply(self, result: ProbeResult, listed: ModelList | None) -> None:
        self._health.record_probe(result)
        if result.ok:
            self._refused.discard(result.provider)
            if self._circuits is not None:
                self._circuits.probe_succeeded(result.provider,
                                               None if listed is None else listed.ids)
        elif result.status in PROBE_REFUSED and result.provider not in self._refused:
            # Said once (a probe on an interval would repeat it), by status only: the
            # upstream's words are in `last_probe`.
            self._refused.add(result.provider)
            log.warning("provider %s: a probe was refused (HTTP %s); nothing is marked, since "
                        "a key may be allowed to complete but not to list models: calls "
                        "decide", result.provider, result.status)

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
