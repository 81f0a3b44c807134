"""Breaker: asks its target only while the target's circuit allows, and reports every try back."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass

from mcp_router.errors import (
    ProviderError,
    ProviderNotConfigured,
    ProviderStatusError,
    ProviderUnavailable,
)
from mcp_router.messages import Call, ChatProvider, ChatRequest, ChatResponse
from mcp_router.routing.circuits import BreakerBoard
from mcp_router.routing.node import (
    hear_failed_tries,
    label_of,
    record_skipped,
    target_keys,
    usable,
)


@dataclass
class _Group:
    """The targets of one call's group, and whether the call has had its last-resort trial."""

    keys: tuple[str, ...] = ()
    last_resort_spent: bool = False


# The group of the call in progress, set by the outermost CircuitGroup. A context variable,
# so the routing nodes between the group and its breakers need not know about circuits.
_GROUP: ContextVar[_Group | None] = ContextVar("mcp_router_circuit_group", default=None)


class Breaker:
    """Guards one target (`key` is "provider/model") with its circuit on `board`.

    It sits outside Retrying, so one decision covers a hop with its retries, while the board
    still sees each try: the attempts the child appended. A refused call is recorded as a
    `skipped` attempt whose error says why and when the circuit reopens, then raised as
    ProviderUnavailable, which a fallback moves on from. A trial call (half-open, or the last
    resort of a group) goes to `trial`, the bare Target, so exactly one upstream call decides it.
    A Retry-After holds the target off on the board only with `respect_retry_after`
    (`retry.respect_retry_after`): switched off, the header moves neither the waits nor the
    circuit, and the failures count toward the breaker's thresholds like any others. It is
    held off as soon as the try that got the header fails (the child tells of each try), so
    while this call waits the Retry-After out, other calls move on; this call's own retry
    goes to the child directly, never back through the board.
    """

    def __init__(self, child: ChatProvider, key: str, board: BreakerBoard, *,
                 trial: ChatProvider | None = None, respect_retry_after: bool = True) -> None:
        self._child, self._key, self._board = child, key, board
        self._trial = trial or child
        self._respect_retry_after = respect_retry_after
        self._hears_tries = hear_failed_tries(child, self._failed_try)
        board.register(key)

    @property
    def label(self) -> str:
        return label_of(self._child)

    def usable(self, call: Call) -> bool:
        """False when the board would surely refuse this target for all of `call`: its
        provider unconfigured or misconfigured, the target marked missing, its circuit open
        past the call's deadline, or half-open with its trial call in flight (`refuses`). A
        fallback gives such a target no share of the time. (When every target of a call is
        open, the board still lets the soonest through; this does not foresee that, so such a
        target gets what time is left.)"""
        if self._board.refuses(self._key, call.deadline):
            return False
        return usable(self._child, call)

    def skip(self, call: Call, reason: str) -> None:
        """Record the guarded target as skipped."""
        record_skipped(self._child, call, reason)

    async def complete(self, request: ChatRequest, call: Call) -> ChatResponse:
        """The child's answer when the circuit allows; otherwise a skip and ProviderUnavailable."""
        provider, _, model = self._key.partition("/")
        group = _GROUP.get() or _Group()
        ticket = self._board.admit(self._key, group.keys,
                                   last_resort=not group.last_resort_spent)
        if not ticket.allowed:
            reason = ticket.reason or "circuit open"
            self.skip(call, reason)
            raise ProviderUnavailable(provider, model, reason)
        if ticket.last_resort:
            # One per call: once it has failed, the next open target is not the call's to try.
            group.last_resort_spent = True
        if ticket.trial:
            await call.progress(f"{self.label}: {ticket.reason}")
        asked = self._trial if ticket.trial else self._child
        first = len(call.attempts)
        try:
            return await asked.complete(request, call)
        except ProviderNotConfigured:
            self._board.note_unconfigured(provider)
            raise
        except ProviderError as exc:
            if not (asked is self._child and self._hears_tries):
                self._failed_try(exc)  # a bare target tells no one of its one try
            raise
        finally:
            # Also on cancellation: a trial that never finished must give its slot back.
            self._board.settle(self._key, ticket, call.attempts[first:])

    def _failed_try(self, error: ProviderError) -> None:
        """A try at the target failed: a respected Retry-After holds it off at once."""
        if isinstance(error, ProviderStatusError) and error.retry_after \
                and self._respect_retry_after:
            # The upstream said when to come back: no call before then.
            self._board.hold_off(self._key, error.retry_after,
                                 f"HTTP {error.status} with Retry-After {error.retry_after:g} s")


class CircuitGroup:
    """Makes every target under `child` one group: when all their circuits are open, the one
    that reopens soonest is still tried, so a call never fails without asking anyone. Once
    per call: when that last resort fails, the call asks no other open target.

    Wrap the root of a call's tree. Groups do not nest: inside one, an inner group (a route
    used as a target of another) changes nothing, so the group is always the whole call's.
    """

    def __init__(self, child: ChatProvider) -> None:
        self._child = child
        self._keys = target_keys(child)

    @property
    def label(self) -> str:
        return label_of(self._child)

    @property
    def keys(self) -> tuple[str, ...]:
        """The group's targets as "provider/model", in the tree's order."""
        return self._keys

    def skip(self, call: Call, reason: str) -> None:
        """Record every target of the group as skipped."""
        record_skipped(self._child, call, reason)

    async def complete(self, request: ChatRequest, call: Call) -> ChatResponse:
        """The child's answer, with this group visible to every Breaker below."""
        if _GROUP.get() is not None:
            return await self._child.complete(request, call)
        token = _GROUP.set(_Group(self._keys))
        try:
            return await self._child.complete(request, call)
        finally:
            _GROUP.reset(token)
