"""The circuit board: each target's breaker state, its marks, and when it may be asked again."""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Literal

from mcp_router.clock import Clock
from mcp_router.messages import Attempt
from mcp_router.routing.roster import KEEP_NAMED, Roster
from mcp_router.routing.verdicts import SENT_AS, verdict, what

log = logging.getLogger("mcp_router")

CircuitState = Literal["closed", "open", "half_open", "misconfigured", "missing", "unconfigured"]

UNTIL_FIXED = "skipped until the config changes or a probe succeeds"
UNTIL_LISTED = "skipped until the config changes or a probe finds the model listed"
UNTIL_CONFIG = "skipped until the config changes or the server restarts (a probe cannot tell)"
# How long an earlier call still running at a target holds back the failure streak of the
# calls behind it (see `settle`): about one answer's time. A call hung for longer says nothing
# of the order the calls behind it finish in.
BESIDE_S = 10.0
# States in which no call reaches the upstream until the config changes (or a probe lifts a
# mark).
_MARKED = frozenset({"unconfigured", "misconfigured", "missing"})
# The latest reopen time a report can name: datetime stops at the year 9999.
_LATEST = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp()


@dataclass(frozen=True)
class BreakerPolicy:
    """When a circuit opens, and for how long.

    It opens after `failures` counted failures in a row, or when at least `min_requests`
    outcomes within the last `window_s` seconds failed at `failure_rate` or more. The n-th
    opening without a success in between lasts `cooldown_s * 2**(n-1)`, at most `cooldown_max_s`.
    """

    failures: int = 5
    failure_rate: float = 0.5
    min_requests: int = 10
    window_s: float = 60.0
    cooldown_s: float = 30.0
    cooldown_max_s: float = 600.0

    def cooldown(self, opening: int) -> float:
        """How long the `opening`-th opening in a row (1-based) lasts."""
        # The doubling stops long before a float would overflow (2 ** 1024): a target down
        # for a thousand openings is still capped, not an error on every call.
        return min(self.cooldown_max_s, self.cooldown_s * 2 ** min(opening - 1, 64))


@dataclass(frozen=True)
class Circuit:
    """One target's circuit as reported: its state, when it reopens and why it is not closed."""

    key: str
    state: CircuitState
    reopens_at: float | None
    """On the board's clock; `open_until` is the same instant as ISO 8601 UTC."""
    open_until: str | None
    reason: str | None


@dataclass(frozen=True)
class Ticket:
    """The board's answer to one call at one target; `reason` says why it was refused or a trial."""

    allowed: bool
    trial: bool = False
    reason: str | None = None
    last_resort: bool = False  # the trial is its group's last resort (every target open)
    seq: int = -1  # the admitted call's place in line at its target (`settle` reads it)


@dataclass
class _Circuit:
    state: Literal["closed", "open", "half_open"] = "closed"
    recent: deque[tuple[float, bool]] = field(default_factory=deque)  # (time, failed)
    consecutive: int = 0
    openings: int = 0
    open_until: float = -math.inf
    why: str = ""
    trial: bool = False
    misconfigured: str | None = None
    missing: str | None = None
    admitted: int = 0  # calls admitted so far: the next one's `seq`
    # `seq` -> admission time of each admitted call not yet settled
    pending: dict[int, float] = field(default_factory=dict)


class BreakerBoard:
    """Every target's circuit ("provider/model" keys) and the providers' misconfigured marks.

    A key that has failed often enough opens for a cooldown; after it, one trial call is let
    through (half-open): success closes the circuit and resets the cooldown, failure reopens
    it for twice as long. A call's 401 marks the whole provider misconfigured, a 403 its
    target, and a 404 marks the target missing. Marks last until `reset` (config reload) or
    `probe_succeeded`: the provider's mark when a probe succeeds, a target's when the probe's
    model list names its model. Only calls set marks: a probe can lift one, never set one
    (a key may be allowed to complete but not to list models), and it moves no circuit:
    cooldowns and Retry-After hold-offs run their course.

    The circuits of targets the config names (`pin`) are kept forever; those of targets
    only callers name, while they are among the `keep` most recently used (see `Roster`).
    Whoever keeps state per target hears of each one dropped (`on_forget`).
    """

    def __init__(self, clock: Clock, policy: BreakerPolicy | None = None, *,
                 unconfigured: Iterable[str] = (), keep: int = KEEP_NAMED) -> None:
        self._clock, self.policy = clock, policy or BreakerPolicy()
        self._circuits: dict[str, _Circuit] = {}
        self._roster = Roster(keep)
        self._listeners: list[Callable[[str], None]] = []
        self._misconfigured: dict[str, str] = {}
        # Marks a probe cannot lift: an account problem a 400 carried (no credit, billing,
        # region), which a list-models call, free of charge, would wrongly seem to clear.
        self._probe_blind: set[str] = set()
        self._unconfigured = set(unconfigured)

    def register(self, key: str) -> None:
        """Make `key` known, so reports list it before its first call."""
        self._kept(key)

    def pin(self, keys: Iterable[str]) -> None:
        """Keep the circuits of `keys`, the targets the config names, forever; they are known
        from now on, so reports list each before its first call (a health report judges a
        provider by every target it has, not only by those some call has used)."""
        keys = list(keys)
        self._roster.pin(keys)
        for key in keys:
            if key not in self._circuits:  # a pinned key is never dropped: no overflow check
                self._circuits[key] = _Circuit()

    def on_forget(self, listener: Callable[[str], None]) -> None:
        """Call `listener(key)` whenever a caller-named target's circuit is dropped."""
        self._listeners.append(listener)

    def configured(self, key: str) -> bool:
        """Whether the config names `key` (its circuit is kept forever)."""
        return self._roster.pinned(key)

    def tracks(self, key: str) -> bool:
        """Whether `key` has a circuit kept (a target never called, or dropped, has none)."""
        return key in self._circuits

    def keys(self, provider: str, *, named: int | None = None) -> list[str]:
        """The known targets of `provider`, in the order they became known; with `named`,
        only the `named` most recently used of those the config does not name."""
        keys = [key for key in self._circuits if _provider(key) == provider]
        if named is None:
            return keys
        recent = self._roster.recent(keys, named)
        return [key for key in keys if self._roster.pinned(key) or key in recent]

    def circuit(self, key: str) -> Circuit:
        """A snapshot of `key`'s circuit (closed for a target it keeps no circuit of)."""
        c = self._circuits.get(key) or _Circuit()
        state = self._state(key, c)
        reopens_at = c.open_until if state == "open" else None
        return Circuit(key, state, reopens_at, self._iso(reopens_at),
                       self._reason(key, c, state))

    def refuses(self, key: str, until: float | None = None) -> bool:
        """Whether `admit` would surely refuse every call to `key` from now until `until`
        (only now, when None), a group's last resort aside: its provider has no key or is
        marked, the target is marked, its circuit stays open past `until`, or it is half-open
        with its one trial call in flight (when that ends, no one can tell). It only reads, so
        a dry run asks it, and a fallback sharing out a call's time asks it of every target
        on every call; `circuit(key).reason` says why."""
        c = self._circuits.get(key) or _Circuit()
        state = self._state(key, c)
        if state == "open":
            return until is None or c.open_until >= until
        return state in _MARKED or (state == "half_open" and c.trial)

    def admit(self, key: str, group: Collection[str] = (), *,
              last_resort: bool = True) -> Ticket:
        """May a call go to `key` now? A yes to a non-closed circuit is its one trial call.

        `group` is every target the current call may use; when none of them can be asked,
        the one that reopens soonest is let through rather than failing without a try. A call
        gets one such last resort (`last_resort` False once it has had it): after a failed
        one, another open target would be the soonest, and the call would ask them all.
        """
        c = self._kept(key)
        state = self._state(key, c)
        if state in ("closed", "unconfigured"):  # the target records an unconfigured skip
            return self._admitted(c, Ticket(True))
        if state == "half_open" and not c.trial:
            c.trial = True
            return self._admitted(c, Ticket(True, trial=True,
                                            reason="circuit half-open: one trial call"))
        if state == "open" and not c.trial and last_resort \
                and self._soonest_of_all_open(group) == key:
            c.trial = True
            return self._admitted(c, Ticket(
                True, trial=True, last_resort=True,
                reason="every target's circuit is open; this one reopens soonest, so it is tried"))
        return Ticket(False, reason=self._reason(key, c, state))

    def last_resort(self, group: Collection[str]) -> str | None:
        """The key of `group` a call would still try as its last resort now (see `admit`):
        the open one that reopens soonest, when no key of `group` can be asked; None when one
        can, or none is open and idle. It only reads, so a dry run may ask it."""
        return self._soonest_of_all_open(group)

    def _admitted(self, c: _Circuit, ticket: Ticket) -> Ticket:
        c.pending[c.admitted] = self._clock.now()
        c.admitted += 1
        return replace(ticket, seq=c.admitted - 1)

    def settle(self, key: str, ticket: Ticket, attempts: Iterable[Attempt]) -> None:
        """Take in the tries one admitted call made at `key`; a trial closes or reopens it.
        Any call that answers after the reopen time, while no trial is in flight, closes it.

        Failures count "in a row" only for a call no earlier call at `key` is still running
        beside: in a burst, quick failures (a 503 comes back at once) finish before the
        successes streaming next to them, and that order says nothing about the target. An
        earlier call running for over BESIDE_S (hung, most likely) holds nothing back. The
        failure rate over the window counts every try either way.
        """
        c = self._kept(key)
        recent = self._clock.now() - BESIDE_S
        in_line = not any(seq < ticket.seq and admitted > recent
                          for seq, admitted in c.pending.items())
        c.pending.pop(ticket.seq, None)
        answered, last_failure = False, None
        for attempt in attempts:
            seen = verdict(attempt)
            if seen == "misconfigured" and attempt.status == 401:
                # The key itself was refused: every model of the provider would be too.
                self._mark_provider(_provider(key), what(attempt))
                if SENT_AS.match(attempt.error or ""):
                    self._probe_blind.add(_provider(key))
            elif seen == "misconfigured":
                # A 403 marks the target, not the provider: it can be about one model (or one
                # request, as OpenRouter's moderation is).
                if c.misconfigured is None:
                    _told_marked(key, "misconfigured", what(attempt), UNTIL_FIXED)
                c.misconfigured = what(attempt)
            elif seen == "missing":
                if c.missing is None:
                    _told_marked(key, "missing", what(attempt), UNTIL_LISTED)
                c.missing = what(attempt)
            elif seen in ("ok", "failure"):
                answered = answered or seen == "ok"
                last_failure = attempt if seen == "failure" else last_failure
                self._count(c, attempt, failed=seen == "failure", in_line=in_line)
        if ticket.trial:
            c.trial = False
            if answered:
                self._close(c)
            elif last_failure is not None:
                self._open(c, f"trial call failed: {what(last_failure)}")
        elif answered and self._state(key, c) == "half_open" and not c.trial:
            # Admitted while closed, it answered after the circuit's reopen time (a call that
            # waited out its own Retry-After and retried): what a trial would have learnt.
            self._close(c)

    def hold_off(self, key: str, seconds: float, why: str) -> None:
        """The upstream asked not to be called for `seconds` (Retry-After): `key` opens until
        then, unless it is already closed off for longer. Calls that come before are sent to
        the next target (or, if every target is closed off, to the one that reopens first).

        The hold-off lasts at most the policy's `cooldown_max_s`, as the circuit's own
        openings do: an upstream (or a gateway in front of it) asking for days or centuries
        does not take the target out of every route until restart. The trial call after it
        hears the upstream again.
        """
        if math.isnan(seconds) or seconds <= 0:
            return
        most = self.policy.cooldown_max_s
        if seconds > most:
            seconds, why = most, f"{why} (held off {most:g} s, the most)"
        c = self._kept(key)
        until = self._clock.now() + seconds
        if until > c.open_until:
            # The trial flag stays: a trial in flight keeps its slot until its own settle,
            # so no second trial goes out beside it when this hold-off ends.
            c.state, c.open_until, c.why, c.consecutive = "open", until, why, 0
            c.recent.clear()

    def note_unconfigured(self, provider: str) -> None:
        """`provider` has no key: its targets never count as available to a group."""
        self._unconfigured.add(provider)

    def probe_succeeded(self, provider: str, listed: Collection[str] | None) -> None:
        """Lift `provider`'s mark, and the marks of its targets whose model is `listed` (None:
        the probe read no model list, so it vouches for the key, not for any model).

        Open circuits stay open until their reopen time: a free metadata call that answers
        says the host and the key are fine, nothing of a model's 503s or of a Retry-After
        the upstream asked for, and a probe on an interval would otherwise end every
        cooldown within one interval (so it could never double)."""
        if provider not in self._probe_blind and \
                self._misconfigured.pop(provider, None) is not None:
            log.warning("provider %s: a probe succeeded; its targets are asked again", provider)
        if listed is None:
            return
        for key in self.keys(provider):
            c = self._circuits[key]
            if _model(key) in listed and (c.misconfigured or c.missing):
                log.warning("%s: a probe found the model listed; it is asked again", key)
                c.misconfigured = c.missing = None

    def _mark_provider(self, provider: str, why: str) -> None:
        """Mark `provider` misconfigured, said once in the log: calls then skip it without a
        word there, and the operator of a shared server learns of the key nowhere else."""
        if provider not in self._misconfigured:
            _told_marked(f"provider {provider}", "misconfigured (its key was refused)", why,
                         UNTIL_FIXED)
        self._misconfigured[provider] = why

    def reset(self, name: str | None = None) -> None:
        """Forget state after a config change: of one target, one provider, or everything."""
        for key in list(self._circuits):
            if name is None or name in (key, _provider(key)):
                self._circuits[key] = _Circuit()
        if name is None:
            self._misconfigured.clear()
            self._probe_blind.clear()
            self._unconfigured.clear()
        elif "/" not in name:
            self._misconfigured.pop(name, None)
            self._probe_blind.discard(name)
            self._unconfigured.discard(name)

    def _kept(self, key: str) -> _Circuit:
        """`key`'s circuit, made if need be, as the most recently used; the least recently
        used idle caller-named ones beyond the bound are dropped."""
        c = self._circuits.get(key)
        if c is None:  # not setdefault: it would build a circuit on every call
            c = self._circuits[key] = _Circuit()
        self._roster.use(key)
        for gone in self._roster.overflow(self._busy, spare=key):
            del self._circuits[gone]
            for listener in self._listeners:
                listener(gone)
        return c

    def _busy(self, key: str) -> bool:
        """Whether dropping `key`'s circuit would lose what must not be lost: a call in flight
        (its settle), or an open circuit (forgetting it would let calls through early)."""
        c = self._circuits[key]
        return bool(c.pending) or (c.state == "open" and self._clock.now() < c.open_until)

    def _state(self, key: str, c: _Circuit) -> CircuitState:
        provider = _provider(key)
        if provider in self._unconfigured:
            return "unconfigured"
        if provider in self._misconfigured or c.misconfigured is not None:
            return "misconfigured"
        if c.missing is not None:
            return "missing"
        if c.state == "open" and self._clock.now() >= c.open_until:
            c.state = "half_open"  # the cooldown is over; the transition happens on reading
        return c.state

    def _soonest_of_all_open(self, group: Collection[str]) -> str | None:
        """The open, idle key of `group` that reopens first, if no key of it can be asked."""
        waiting: list[tuple[float, str]] = []
        for key in group:
            c = self._circuits.get(key) or _Circuit()  # a dropped circuit is closed
            state = self._state(key, c)
            if state == "closed" or (state == "half_open" and not c.trial):
                return None
            if state == "open" and not c.trial:
                waiting.append((c.open_until, key))
        return min(waiting, key=lambda w: w[0])[1] if waiting else None

    def _count(self, c: _Circuit, attempt: Attempt, *, failed: bool, in_line: bool) -> None:
        # Only a closed circuit counts: a trial is judged as a whole by `settle`, and calls
        # that began before the circuit opened must not move its reopen time.
        if c.state != "closed":
            return
        now = self._clock.now()
        c.recent.append((now, failed))
        while c.recent and c.recent[0][0] <= now - self.policy.window_s:
            c.recent.popleft()
        c.consecutive = c.consecutive + (1 if in_line else 0) if failed else 0
        why = self._tripped(c) if failed else None
        if why:
            self._open(c, f"{why}; last: {what(attempt)}")

    def _tripped(self, c: _Circuit) -> str | None:
        policy = self.policy
        if c.consecutive >= policy.failures:
            return f"{c.consecutive} failures in a row"
        failures = sum(failed for _, failed in c.recent)
        if len(c.recent) >= policy.min_requests and failures >= policy.failure_rate * len(
                c.recent):
            return f"{failures} of the last {len(c.recent)} calls failed"
        return None

    def _open(self, c: _Circuit, why: str) -> None:
        c.openings += 1
        until = self._clock.now() + self.policy.cooldown(c.openings)
        # A later opening only ever moves the reopen time later, never brings it forward.
        c.open_until = max(c.open_until, until)
        c.state, c.why, c.trial, c.consecutive = "open", why, False, 0
        c.recent.clear()

    def _close(self, c: _Circuit) -> None:
        c.state, c.why, c.trial, c.consecutive, c.openings = "closed", "", False, 0, 0
        c.open_until = -math.inf
        c.recent.clear()

    def _reason(self, key: str, c: _Circuit, state: CircuitState) -> str | None:
        if state == "misconfigured" and _provider(key) in self._misconfigured:
            until = UNTIL_CONFIG if _provider(key) in self._probe_blind else UNTIL_FIXED
            return f"misconfigured ({self._misconfigured[_provider(key)]}); {until}"
        if state == "misconfigured":
            return f"misconfigured ({c.misconfigured}); {UNTIL_LISTED}"
        if state == "missing":
            return f"model missing ({c.missing}); {UNTIL_LISTED}"
        if state == "open":
            return f"circuit open until {self._iso(c.open_until)} ({c.why})"
        if state == "half_open":
            return f"circuit half-open, its trial call is in flight ({c.why})" if c.trial else None
        return "no API key configured" if state == "unconfigured" else None

    def _iso(self, at: float | None) -> str | None:
        """`at` on the board's clock as wall time, rounded up so it is never early; a time
        past what a date can hold is the last second of the year 9999, never an error."""
        if at is None:
            return None
        wall = self._clock.wall() + at - self._clock.now()
        wall = _LATEST if not wall < _LATEST else max(0.0, wall)  # `not <`: NaN too
        return datetime.fromtimestamp(math.ceil(wall), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _provider(key: str) -> str:
    return key.partition("/")[0]


def _told_marked(what_: str, mark: str, why: str, until: str) -> None:
    """The one log line a new mark gets: `why` is a status and its phrase, never the
    upstream's words, which can quote a caller's request."""
    log.warning("%s marked %s after %s; %s (provider_health {probe: true} tries it)", what_,
                mark, why, until)


def _model(key: str) -> str:
    return key.partition("/")[2]  # model ids may hold "/" themselves: "openai/gpt-4o"
