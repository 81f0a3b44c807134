"""Passive health figures per provider and per target, over a sliding window of attempts."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from pydantic import BaseModel, Field

from mcp_router.clock import Clock
from mcp_router.messages import Attempt

State = Literal["healthy", "degraded", "open", "unconfigured", "unknown"]
WINDOW_S = 900.0
MAX_SAMPLES = 2000
DEGRADED_BELOW = 0.9
# A report lists every target the config names, and of those only callers name (a model
# of a provider without a `models` list), the most recently used this many: enough to see
# what is in use, while a server asked for thousands of names keeps its report readable
# (a host refuses a tool result of more than some 25,000 tokens).
REPORT_NAMED = 32
# The request was wrong, not the upstream: such a call is counted, but neither way.
CALLERS_FAULT = frozenset({400, 422})
PROBE_REFUSED = frozenset({401, 403})
NO_LIST_STATUS = 404  # the host answered, without a list-models endpoint (Perplexity's case)
_OPEN_CIRCUITS = frozenset({"open", "misconfigured", "missing"})
_LATEST = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp()  # as far as dates go


class ProbeResult(BaseModel):
    """What one probe of a provider's list-models endpoint found."""

    provider: str
    ok: bool
    at: str
    latency_ms: float
    status: int | None = None
    error: str | None = None
    models_listed: int | None = Field(
        default=None, description="How many models the list named; null when none was read")
    unlisted: list[str] = Field(
        default_factory=list,
        description="Models the routes use that the provider's whole list did not name "
                    "(an alias may still answer)")


class TargetHealth(BaseModel):
    """One "provider/model" target's figures and circuit."""

    target: str
    state: State
    circuit: str
    requests: int
    success_rate: float | None
    p50_ms: float | None
    p95_ms: float | None
    ttfb_p50_ms: float | None
    consecutive_failures: int
    last_error: str | None
    last_error_at: str | None
    open_until: str | None
    reason: str | None


class ProviderHealth(BaseModel):
    """One provider's figures as `provider_health` reports them, with its targets.

    `requests` and the rates cover the last WINDOW_S seconds; `open_until` is when the
    provider's soonest open target reopens (null when none is, or when it is misconfigured,
    which lasts until the config changes or a probe succeeds: `reason` says which).
    `targets` lists every target the config names, and of models callers named besides, the
    REPORT_NAMED most recently used; `targets_not_listed` counts the others still tracked.
    """

    name: str
    state: State
    success_rate: float | None
    requests: int
    p50_ms: float | None
    p95_ms: float | None
    last_error: str | None
    last_error_at: str | None
    open_until: str | None = None
    ttfb_p50_ms: float | None = None
    consecutive_failures: int = 0
    reason: str | None = None
    last_probe: ProbeResult | None = None
    targets: list[TargetHealth] = Field(
        default_factory=list,
        description=f"Every target the config names, and of the models callers named "
                    f"besides, the {REPORT_NAMED} most recently used")
    targets_not_listed: int = Field(
        default=0, description="Targets callers named that are tracked but not listed in "
                               f"`targets`, being older than the {REPORT_NAMED} most recent")


class CircuitView(Protocol):
    """What health reads of one target's circuit (`routing.circuits.Circuit` is one)."""

    @property
    def state(self) -> str: ...
    @property
    def reopens_at(self) -> float | None: ...
    @property
    def open_until(self) -> str | None: ...
    @property
    def reason(self) -> str | None: ...


class Circuits(Protocol):
    """The circuit board as health sees it (`routing.circuits.BreakerBoard` is one)."""

    def keys(self, provider: str, *, named: int | None = None) -> list[str]: ...
    def tracks(self, key: str) -> bool: ...
    def configured(self, key: str) -> bool: ...
    def on_forget(self, listener: Callable[[str], None]) -> None: ...
    def circuit(self, key: str) -> CircuitView: ...
    def probe_succeeded(self, provider: str, listed: Collection[str] | None) -> None: ...


@dataclass(frozen=True)
class _Sample:
    at: float
    ok: bool | None  # None: the caller's fault, counted as a request only
    latency_ms: float
    ttfb_ms: float | None


@dataclass
class _Window:
    """Recent outcomes of one provider or target, its failure streak and its last error."""

    samples: deque[_Sample] = field(default_factory=lambda: deque(maxlen=MAX_SAMPLES))
    consecutive: int = 0
    last_error: str | None = None
    last_error_at: float | None = None

    def add(self, attempt: Attempt, now: float, wall: float) -> None:
        ok = None if attempt.status in CALLERS_FAULT else attempt.outcome == "ok"
        self.samples.append(_Sample(now, ok, attempt.latency_ms, attempt.ttfb_ms))
        if ok is not None:
            self.consecutive = 0 if ok else self.consecutive + 1
        if attempt.outcome == "error":
            self.last_error, self.last_error_at = attempt.error, wall

    def figures(self, since: float) -> dict[str, Any]:
        while self.samples and self.samples[0].at < since:
            self.samples.popleft()
        judged = [s.ok for s in self.samples if s.ok is not None]
        answered = [s for s in self.samples if s.ok]
        latencies = sorted(s.latency_ms for s in answered)
        ttfbs = sorted(s.ttfb_ms for s in answered if s.ttfb_ms is not None)
        return {"requests": len(self.samples),
                "success_rate": round(sum(judged) / len(judged), 4) if judged else None,
                "p50_ms": percentile(latencies, 0.50), "p95_ms": percentile(latencies, 0.95),
                "ttfb_p50_ms": percentile(ttfbs, 0.50), "consecutive_failures": self.consecutive,
                "last_error": self.last_error, "last_error_at": iso(self.last_error_at)}


def _window(windows: dict[str, _Window], key: str) -> _Window:
    """The window under `key`, made on first use (setdefault would make one on every call)."""
    window = windows.get(key)
    if window is None:
        window = windows[key] = _Window()
    return window


class HealthBook:
    """Passive figures from every attempt that reached an upstream, plus the last probes.

    `circuits` (the router's BreakerBoard) adds each target's circuit to the report, and
    says which targets are kept: a target's window lasts as long as its circuit does, so
    models callers name once do not pile up (without `circuits`, every window is kept).
    """

    def __init__(self, clock: Clock, circuits: Circuits | None = None, *,
                 window_s: float = WINDOW_S) -> None:
        self._clock, self._circuits, self._window_s = clock, circuits, window_s
        self._providers: dict[str, _Window] = {}
        self._targets: dict[str, _Window] = {}
        self._probes: dict[str, ProbeResult] = {}
        if circuits is not None:
            circuits.on_forget(self._forget)

    def record(self, attempts: Iterable[Attempt]) -> None:
        """Count a call's attempts; skips are left out, as nothing was asked."""
        now, wall = self._clock.now(), self._clock.wall()
        for attempt in attempts:
            if attempt.outcome == "skipped":
                continue
            _window(self._providers, attempt.provider).add(attempt, now, wall)
            key = f"{attempt.provider}/{attempt.model}"
            # A circuit dropped while the call went on to other targets: so is its window.
            if self._circuits is None or self._circuits.tracks(key):
                _window(self._targets, key).add(attempt, now, wall)

    def record_probe(self, result: ProbeResult) -> None:
        """Keep the provider's last probe; a failed one is also its last error, unless it
        found no list-models endpoint: that says nothing, and would hide what calls met."""
        self._probes[result.provider] = result
        if not result.ok and result.status != NO_LIST_STATUS:
            window = _window(self._providers, result.provider)
            window.last_error = f"probe: {result.error}"
            window.last_error_at = self._clock.wall()

    def report(self, name: str, configured: bool) -> ProviderHealth:
        """Provider `name`'s figures, state and circuits; `configured` is whether its key is set."""
        since = self._clock.now() - self._window_s
        figures = self._providers.get(name, _Window()).figures(since)
        keys, hidden = self._keys(name)
        targets = [self._target(key, since) for key in keys]
        probe = self._spoken_of(name, self._probes.get(name), set(keys))
        state, open_until, reason = _provider_state(configured, figures["success_rate"],
                                                    targets, probe)
        return ProviderHealth(name=name, state=state, open_until=open_until, reason=reason,
                              last_probe=probe, targets=targets, targets_not_listed=hidden,
                              **figures)

    def _keys(self, provider: str) -> tuple[list[str], int]:
        """The targets of `provider` a report lists, and how many known ones it leaves out."""
        if self._circuits is None:
            return [k for k in self._targets if k.partition("/")[0] == provider], 0
        shown = self._circuits.keys(provider, named=REPORT_NAMED)
        return shown, len(self._circuits.keys(provider)) - len(shown)

    def _spoken_of(self, provider: str, probe: ProbeResult | None,
                   shown: set[str]) -> ProbeResult | None:
        """`probe` with only the unlisted models the report speaks of: the config's, and
        those of the targets it lists (callers can name models by the thousand)."""
        if probe is None or self._circuits is None:
            return probe
        kept = [m for m in probe.unlisted
                if f"{provider}/{m}" in shown or self._circuits.configured(f"{provider}/{m}")]
        return probe if len(kept) == len(probe.unlisted) else probe.model_copy(
            update={"unlisted": kept})

    def _forget(self, key: str) -> None:
        self._targets.pop(key, None)

    def _target(self, key: str, since: float) -> TargetHealth:
        figures = self._targets.get(key, _Window()).figures(since)
        circuit = self._circuits.circuit(key) if self._circuits else None
        name = circuit.state if circuit else "closed"
        if name in _OPEN_CIRCUITS:
            state: State = "open"
        elif name == "unconfigured":
            state = "unconfigured"
        else:
            state = "degraded" if name == "half_open" else _by_rate(figures["success_rate"])
        return TargetHealth(target=key, state=state, circuit=name,
                            open_until=circuit.open_until if circuit else None,
                            reason=circuit.reason if circuit else None, **figures)


def _provider_state(configured: bool, rate: float | None, targets: list[TargetHealth],
                    probe: ProbeResult | None) -> tuple[State, str | None, str | None]:
    """The provider's state, when its soonest open target reopens, and why it is not healthy.

    Open when every target listed is open or marked (a call's 401 marks them all); the
    config's targets are always listed, untried ones too, so one open target leaves a
    provider with others degraded, as it is when some are half-open. Otherwise it is judged
    by the success rate, or before any call by the last probe.
    """
    if not configured:
        return "unconfigured", None, "no API key configured"
    shut = [t for t in targets if t.state == "open"]
    if shut:
        # Same-format ISO times sort by time; a mark (no reopen time) sorts last.
        first = min(shut, key=lambda t: t.open_until or "~")
        state: State = "open" if len(shut) == len(targets) else "degraded"
        return state, first.open_until, f"{first.target}: {first.reason}"
    trying = [t for t in targets if t.circuit == "half_open"]
    if trying:
        return "degraded", None, f"{trying[0].target}: circuit half-open"
    if rate is None and probe is not None and probe.status == NO_LIST_STATUS:
        return "unknown", None, probe.error  # no list-models endpoint: calls will tell
    if rate is None and probe is not None and not probe.ok:
        # A refused probe marks nothing (a key may complete but not list models): calls
        # still go, so the provider is degraded, not open.
        return "degraded", None, probe.error
    if rate is None and probe is not None:
        return "healthy", None, None
    return _by_rate(rate), None, None


def _by_rate(rate: float | None) -> State:
    if rate is None:
        return "unknown"
    return "healthy" if rate >= DEGRADED_BELOW else "degraded"


def percentile(sorted_values: list[float], q: float) -> float | None:
    """The nearest-rank `q` percentile of ascending values (the smallest covering q of them)."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q * len(sorted_values)))
    return round(sorted_values[rank - 1], 2)


def iso(epoch: float | None) -> str | None:
    """Epoch seconds as ISO 8601 UTC to the second, `Z`-suffixed like the circuit board's;
    a time past what a date can hold is the last second of the year 9999, never an error."""
    if epoch is None:
        return None
    epoch = _LATEST if not epoch < _LATEST else max(0.0, epoch)  # `not <`: NaN too
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
