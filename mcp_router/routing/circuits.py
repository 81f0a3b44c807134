"""The circuit board: each target's breaker state, its marks, and when it may be asked again."""

from __future__ import annotations

import math
import re
from collections import deque
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Literal

from mcp_router.clock import Clock
from mcp_router.messages import Attempt

CircuitState = Literal["closed", "open", "half_open", "misconfigured", "missing", "unconfigured"]
Verdict = Literal["ok", "failure", "neutral", "misconfigured", "missing"]

# 429 counts: the target cannot serve us now, and a cooldown lets its quota refill instead
# of every caller spending retries on it. 408 is the upstream giving up, like a timeout.
COUNTED_STATUS = frozenset({408, 429})
MISCONFIGURED_STATUS = frozenset({401, 403})
MISSING_STATUS = frozenset({404})
UNTIL_FIXED = "skipped until the config changes or a probe succeeds"
UNTIL_LISTED = "skipped until the config changes or a probe finds the model listed"
UNTIL_CONFIG = "skipped until the config changes or the server restarts (a probe cannot tell)"
# How long an earlier call still running at a target holds back the failure streak of the
# calls behind it (see `settle`): about one answer's time. A call hung for longer says nothing
# of the order the calls behind it finish in.
BESIDE_S = 10.0


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


def verdict(attempt: Attempt) -> Verdict | None:
    """What one try says about its target; None for a skip, where nothing was asked.

    Only failures of the upstream count: 5xx, 408, 429, timeouts, connection and protocol
    errors (no status). 400, 422 and other 4xx mean the request was wrong: neutral.
    """
    if attempt.outcome == "skipped":
        return None
    if attempt.outcome == "ok":
        return "ok"
    status = attempt.status
    if status is None or status in COUNTED_STATUS or status >= 500:
        return "failure"
    if status in MISCONFIGURED_STATUS:
        return "misconfigured"
    return "missing" if status in MISSING_STATUS else "neutral"


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
    it for twice as long. A call's 401 (or a probe refused for the key) marks the whole
    provider misconfigured, a 403 its target, and a 404 marks the target missing. Marks last
    until `reset` (config reload) or `probe_succeeded`: the provider's mark when a probe
    succeeds, a target's when the probe's model list names its model.
    """

    def __init__(self, clock: Clock, policy: BreakerPolicy | None = None, *,
                 unconfigured: Iterable[str] = ()) -> None:
        self._clock, self.policy = clock, policy or BreakerPolicy()
        self._circuits: dict[str, _Circuit] = {}
        self._misconfigured: dict[str, str] = {}
        # Marks a probe cannot lift: an account problem a 400 carried (no credit, billing,
        # region), which a list-models call, free of charge, would wrongly seem to clear.
        self._probe_blind: set[str] = set()
        self._unconfigured = set(unconfigured)

    def register(self, key: str) -> None:
        """Make `key` known, so reports list it before its first call."""
        self._circuits.setdefault(key, _Circuit())

    def keys(self, provider: str) -> list[str]:
        """The known targets of `provider`."""
        return [key for key in self._circuits if _provider(key) == provider]

    def circuit(self, key: str) -> Circuit:
        """A snapshot of `key`'s circuit."""
        state, c = self._state(key), self._circuits[key]
        reopens_at = c.open_until if state == "open" else None
        return Circuit(key, state, reopens_at, self._iso(reopens_at), self._reason(key, state))

    def admit(self, key: str, group: Collection[str] = ()) -> Ticket:
        """May a call go to `key` now? A yes to a non-closed circuit is its one trial call.

        `group` is every target the current call may use; when none of them can be asked,
        the one that reopens soonest is let through rather than failing without a try.
        """
        state, c = self._state(key), self._circuits[key]
        if state in ("closed", "unconfigured"):  # the target records an unconfigured skip
            return self._admitted(c, Ticket(True))
        if state == "half_open" and not c.trial:
            c.trial = True
            return self._admitted(c, Ticket(True, trial=True,
                                            reason="circuit half-open: one trial call"))
        if state == "open" and not c.trial and self._soonest_of_all_open(group) == key:
            c.trial = True
            return self._admitted(c, Ticket(
                True, trial=True,
                reason="every target's circuit is open; this one reopens soonest, so it is tried"))
        return Ticket(False, reason=self._reason(key, state))

    def _admitted(self, c: _Circuit, ticket: Ticket) -> Ticket:
        c.pending[c.admitted] = self._clock.now()
        c.admitted += 1
        return replace(ticket, seq=c.admitted - 1)

    def settle(self, key: str, ticket: Ticket, attempts: Iterable[Attempt]) -> None:
        """Take in the tries one admitted call made at `key`; a trial closes or reopens it.

        Failures count "in a row" only for a call no earlier call at `key` is still running
        beside: in a burst, quick failures (a 503 comes back at once) finish before the
        successes streaming next to them, and that order says nothing about the target. An
        earlier call running for over BESIDE_S (hung, most likely) holds nothing back. The
        failure rate over the window counts every try either way.
        """
        c = self._circuits[key]
        recent = self._clock.now() - BESIDE_S
        in_line = not any(seq < ticket.seq and admitted > recent
                          for seq, admitted in c.pending.items())
        c.pending.pop(ticket.seq, None)
        answered, last_failure = False, None
        for attempt in attempts:
            seen = verdict(attempt)
            if seen == "misconfigured" and attempt.status == 401:
                # The key itself was refused: every model of the provider would be too.
                self._misconfigured[_provider(key)] = _what(attempt)
                if _SENT_AS.match(attempt.error or ""):
                    self._probe_blind.add(_provider(key))
            elif seen == "misconfigured":
                # A 403 marks the target, not the provider: it can be about one model (or one
                # request, as OpenRouter's moderation is); a probe speaks for the whole key.
                c.misconfigured = _what(attempt)
            elif seen == "missing":
                c.missing = _what(attempt)
            elif seen in ("ok", "failure"):
                answered = answered or seen == "ok"
                last_failure = attempt if seen == "failure" else last_failure
                self._count(c, attempt, failed=seen == "failure", in_line=in_line)
        if ticket.trial:
            c.trial = False
            if answered:
                self._close(c)
            elif last_failure is not None:
                self._open(c, f"trial call failed: {_what(last_failure)}")

    def hold_off(self, key: str, seconds: float, why: str) -> None:
        """The upstream asked not to be called for `seconds` (Retry-After): `key` opens until
        then, unless it is already closed off for longer. Calls that come before are sent to
        the next target (or, if every target is closed off, to the one that reopens first)."""
        c = self._circuits[key]
        until = self._clock.now() + seconds
        if until > c.open_until:
            c.state, c.open_until, c.why, c.trial, c.consecutive = "open", until, why, False, 0
            c.recent.clear()

    def note_unconfigured(self, provider: str) -> None:
        """`provider` has no key: its targets never count as available to a group."""
        self._unconfigured.add(provider)

    def probe_succeeded(self, provider: str, listed: Collection[str] | None) -> None:
        """Lift `provider`'s mark, and the marks of its targets whose model is `listed` (None:
        the probe read no model list, so it vouches for the key, not for any model). Its open
        circuits go half-open: the host answers, and a trial decides, as ever."""
        if provider not in self._probe_blind:
            self._misconfigured.pop(provider, None)
        for key in self.keys(provider):
            c = self._circuits[key]
            if listed is not None and _model(key) in listed:
                c.misconfigured = c.missing = None
            if c.state == "open":
                c.state = "half_open"  # a trial already in flight keeps its slot

    def probe_refused(self, provider: str, why: str) -> None:
        """A probe was refused for the key (401/403): mark `provider` misconfigured."""
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

    def _state(self, key: str) -> CircuitState:
        c = self._circuits.get(key)
        if c is None:  # not setdefault: it would build a circuit on every read
            c = self._circuits[key] = _Circuit()
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
        waiting: list[str] = []
        for key in group:
            state = self._state(key)
            if state == "closed" or (state == "half_open" and not self._circuits[key].trial):
                return None
            if state == "open" and not self._circuits[key].trial:
                waiting.append(key)
        return min(waiting, key=lambda k: self._circuits[k].open_until, default=None)

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
            self._open(c, f"{why}; last: {_what(attempt)}")

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

    def _reason(self, key: str, state: CircuitState) -> str | None:
        c = self._circuits[key]
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
        """`at` on the board's clock as wall time, rounded up so it is never early."""
        if at is None:
            return None
        wall = math.ceil(self._clock.wall() + at - self._clock.now())
        return datetime.fromtimestamp(wall, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _provider(key: str) -> str:
    return key.partition("/")[0]


def _model(key: str) -> str:
    return key.partition("/")[2]  # model ids may hold "/" themselves: "openai/gpt-4o"


def _what(attempt: Attempt) -> str:
    """An attempt's failure as a circuit's reason keeps it: for an HTTP status, the status and
    its standard phrase, never the upstream's own words. A reason reaches every caller of the
    target (in `attempts` and `provider_health`), and an error body can quote the request of
    whichever client tripped it."""
    if attempt.status is None:
        return attempt.error or "failed"
    sent_as = _SENT_AS.match(attempt.error or "")
    try:
        phrase = sent_as[1] if sent_as else HTTPStatus(attempt.status).phrase
    except ValueError:  # 529 and other statuses outside the standard's list
        return f"HTTP {attempt.status}"
    return f"HTTP {attempt.status}: {phrase}"


# What `providers._http` puts first when a body meant another status than the one sent.
_SENT_AS = re.compile(r"HTTP \d{3}: (sent as HTTP \d{3} \([^)]*\))")
