"""The money step of a call: hold each attempt against the budgets, price it, record it."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal

from mcp_router.budgets import BudgetGuard, Reservation
from mcp_router.errors import (
    BudgetExceeded,
    DataError,
    ProviderProtocolError,
    ProviderStatusError,
    ProviderTimeout,
)
from mcp_router.ledger import Ledger, LedgerRow
from mcp_router.messages import ChatRequest, ChatResponse, Completion, StreamState, Usage
from mcp_router.money import exact_sum
from mcp_router.prices import PriceBook
from mcp_router.reports import ESTIMATE_RULE
from mcp_router.token_estimate import estimate_text_tokens, estimate_tokens  # re-exported

log = logging.getLogger("mcp_router.spend")

# When the caller sets no max_tokens the worst case is still bounded by what we quote for.
QUOTE_MAX_TOKENS = 4096
# Failures after which the provider may still have billed though no text arrived: the request
# reached it, and it did (some of) the work. Refusals (an HTTP error status) and a request
# that never got there (ProviderUnavailable: no connection) cost nothing.
MAY_HAVE_COST = (ProviderTimeout, ProviderProtocolError)
COUNTED_HIGH = f"counted high ({ESTIMATE_RULE})"


def estimate_input_tokens(request: ChatRequest) -> int:
    """A deliberately high estimate of the request's input: each message's text counted as
    `estimate_tokens` does, plus a per-message overhead."""
    return sum(estimate_text_tokens(m.content) + 4 for m in request.messages)


class ClientSpend:
    """One client's spend in the ledger, as its own budget guard reads it."""

    def __init__(self, ledger: Ledger, client: str) -> None:
        self._ledger, self._client = ledger, client

    def spent(self, period: Literal["today", "month"], *, up_to: int | None = None) -> Decimal:
        return self._ledger.spent(period, self._client, up_to=up_to)

    def position(self) -> int:
        return self._ledger.position()

    def spent_elsewhere(self, after: int) -> tuple[int, list[tuple[str, Decimal]]]:
        return self._ledger.spent_elsewhere(after, self._client)


class Spend:
    """Prices, the ledger and the budget guards (the team's, and each client's own)."""

    def __init__(self, prices: PriceBook, ledger: Ledger, budgets: BudgetGuard,
                 client_budgets: Mapping[str, BudgetGuard] | None = None) -> None:
        self.prices, self.ledger, self.budgets = prices, ledger, budgets
        self.client_budgets = dict(client_budgets or {})

    def guards(self, client: str) -> tuple[BudgetGuard, ...]:
        """Every budget a call of `client` must fit: the team's, then the client's own."""
        own = self.client_budgets.get(client)
        return (self.budgets,) if own is None else (self.budgets, own)

    def hold(self, client: str, quote: Decimal | None, *, sees_team: bool = True
             ) -> tuple[Reservation, ...]:
        """Hold `quote` against every budget a call of `client` must fit, or raise (holding
        nothing) BudgetExceeded, or DataError when a guard cannot read the ledger.

        A caller who may not see the team's spend (`cost_report: own`) is told only that the
        team's budget would be exceeded; its own budget's figures are its own.
        """
        held: list[Reservation] = []
        try:
            for guard in self.guards(client):
                held.append(guard.reserve(quote, withhold=guard is self.budgets
                                          and not sees_team))
        except (BudgetExceeded, DataError):
            _finish_each(tuple(held), Reservation.release)
            raise
        return tuple(held)

    def record_hit(self, response: ChatResponse, saved: Decimal | None, *, trace_id: str,
                   client: str, route: str | None, metadata: Mapping[str, str]) -> None:
        """A cache hit costs nothing and is recorded with the cost it avoided; a ledger that
        cannot take the row costs the caller nothing either (it is said on stderr)."""
        try:
            self.ledger.record(LedgerRow(
                provider=response.provider, model=response.model, outcome="cache_hit",
                trace_id=trace_id, client=client, route=route, cost_usd=Decimal(0),
                saved_usd=saved, metadata=dict(metadata)))
        except DataError as exc:
            log.error("a cache hit (trace %s) is not in the ledger: %s", trace_id, exc)

    def gate(self, *, trace_id: str, client: str, route: str | None,
             metadata: Mapping[str, str], sees_team: bool = True) -> CallGate:
        """A gate for one call; it remembers the call's labels for every ledger row, and
        whether its caller may see the team's spend (in the team budget's refusals)."""
        return CallGate(self, trace_id=trace_id, client=client, route=route,
                        metadata=dict(metadata), sees_team=sees_team)


@dataclass(frozen=True)
class BudgetRefusal:
    """A target the budgets kept from being asked: what it was quoted, and why."""

    target: str
    quote: Decimal | None
    message: str


@dataclass
class CallGate:
    """Admits, prices and records the attempts of one call (implements `SpendGate`)."""

    spend: Spend
    trace_id: str
    client: str
    route: str | None
    metadata: dict[str, str]
    sees_team: bool = True
    costs: list[Decimal] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # why the cost is unknown
    estimates: list[str] = field(default_factory=list)  # which costs are our estimate
    unrecorded: list[str] = field(default_factory=list)  # costs the ledger could not take
    refusals: list[BudgetRefusal] = field(default_factory=list)

    def reserve(self, provider: str, model: str, request: ChatRequest) -> AttemptHold:
        quoted_input = estimate_input_tokens(request)
        quoted_output = request.max_tokens or QUOTE_MAX_TOKENS
        quoted = self.spend.prices.quote_for(provider, model, quoted_input, quoted_output)
        try:
            held = self.spend.hold(self.client, quoted.cost, sees_team=self.sees_team)
        except BudgetExceeded as exc:
            self.refusals.append(BudgetRefusal(f"{provider}/{model}", quoted.cost, str(exc)))
            raise
        return AttemptHold(self, provider, model, held,
                           Usage(input_tokens=quoted_input, output_tokens=quoted_output))

    @property
    def total(self) -> tuple[Decimal | None, str | None]:
        """The call's cost so far, or None with the reason when a price was unknown; the note
        says which part of a known cost is an estimate, and what the ledger could not take."""
        cost = None if self.notes else exact_sum(self.costs)
        said = [*(self.notes or self.estimates), *self.unrecorded]
        return cost, "; ".join(dict.fromkeys(said)) or None

    def record(self, row: LedgerRow) -> None:
        """Write `row`. A ledger that cannot take it never costs the caller the answer: the
        spend still counts in this process's budgets, stderr and the result's note say so."""
        try:
            self.spend.ledger.record(row)
        except DataError as exc:
            log.error("%s/%s (trace %s, cost %s) is not in the ledger: %s", row.provider,
                      row.model, row.trace_id, row.cost_usd, exc)
            self.unrecorded.append(f"not in the ledger: {exc}; the spend counts against the "
                                   "budgets until restart")


@dataclass
class AttemptHold:
    """The money held for one attempt (implements `Hold`)."""

    gate: CallGate
    provider: str
    model: str
    reservations: tuple[Reservation, ...]
    quoted: Usage  # the worst case it was reserved at: the input estimate and max_tokens

    @property
    def label(self) -> str:
        return f"{self.provider}/{self.model}"

    def settle(self, completion: Completion, latency_ms: float) -> Usage:
        """An answer: priced from the usage it reports, or, when it reports none, from an
        estimate (the request's input and the answer's text, counted high), never as 0. The
        text counted is all the upstream generated, also past a stop string applied here."""
        if completion.usage_reported:
            usage, estimate = completion.usage, None
        else:
            usage = self._with_output(_generated_tokens(completion))
            estimate = (f"estimated: {self.label} sent no usage report, so the cost is for the "
                        f"request's input and the answer, {COUNTED_HIGH}")
        cost = self._charge(usage, estimate)
        self._record("ok", usage, cost, latency_ms, estimated=estimate is not None)
        return usage

    def fail(self, error: Exception, latency_ms: float, seen: StreamState) -> None:
        """A failed attempt. One whose answer failed with the usage it was billed for (an
        empty 200 that reported usage) is charged that; one that ended after text arrived, or
        that may have been billed before any did (`MAY_HAVE_COST`), is charged an estimate;
        a refusal is released."""
        billed = error.billed if isinstance(error, ProviderStatusError) else None
        if billed is not None:
            self._record("error", billed, self._charge(billed, None), latency_ms)
        elif seen.started or isinstance(error, MAY_HAVE_COST):
            self._unfinished("error", latency_ms, seen, _how_it_ended(error))
        else:
            self.release()

    def cancelled(self, latency_ms: float, seen: StreamState) -> None:
        """The call was cancelled mid-attempt: the provider may have billed part of it."""
        self._unfinished("cancelled", latency_ms, seen, "was cancelled")

    def _unfinished(self, outcome: str, latency_ms: float, seen: StreamState,
                    how: str) -> None:
        """An attempt that ended without the provider's usage report, after its request
        reached the provider: charged at an estimate set high, against the budgets too.
        Text that arrived was generated, and billed: the request's input and that text.
        With no text, a streamed answer had shown none yet: the input alone; a JSON answer
        is generated whole before any of it arrives, and how far it got cannot be seen: its
        whole worst case, as quoted. With no price the row's cost stays unknown."""
        if seen.started:
            usage = self._with_output(estimate_tokens(seen.chars, seen.utf8_bytes))
            charged = (f"mid-answer; charged for the request's input and the text received, "
                       f"{COUNTED_HIGH}")
        elif seen.streaming:
            usage = self._with_output(0)
            charged = "before any answer; charged for the request's input"
        else:
            usage = self.quoted
            charged = ("before any answer; charged its worst case (the request's input and "
                       "max_tokens of answer), as how much of it was made cannot be seen")
        cost = self._charge(usage, f"estimated: {self.label} {how} {charged}")
        if cost is None:  # unpriced: nothing is known of it
            self._record(outcome, Usage(), None, latency_ms)
        else:
            self._record(outcome, usage, cost, latency_ms, estimated=True)

    def _with_output(self, output_tokens: int) -> Usage:
        """The request's input and `output_tokens` of answer, which cannot pass max_tokens:
        an estimate never charges more than the worst case held for it."""
        return Usage(input_tokens=self.quoted.input_tokens,
                     output_tokens=min(output_tokens, self.quoted.output_tokens))

    def _charge(self, usage: Usage, estimate: str | None) -> Decimal | None:
        """The cost of `usage`, added to the call's and settled in the budgets at once
        (whatever the ledger then does); `estimate` says why the usage is ours."""
        priced = self.gate.spend.prices.cost_of(self.provider, self.model, usage)
        if priced.cost is None:
            self.gate.notes.append(priced.note or "price unknown")
        else:
            self.gate.costs.append(priced.cost)
            if estimate is not None:
                self.gate.estimates.append(estimate)
        _finish_each(self.reservations, lambda held: held.settle(priced.cost))
        return priced.cost

    def release(self) -> None:
        _finish_each(self.reservations, Reservation.release)

    def _record(self, outcome: str, usage: Usage, cost: Decimal | None,
                latency_ms: float, *, estimated: bool = False) -> None:
        gate = self.gate
        row = LedgerRow(provider=self.provider, model=self.model, outcome=outcome,
                        trace_id=gate.trace_id, client=gate.client, route=gate.route,
                        usage=usage, cost_usd=cost, latency_ms=latency_ms,
                        metadata=gate.metadata, estimated=estimated)
        gate.record(row)


def _finish_each(reservations: tuple[Reservation, ...],
                 finish: Callable[[Reservation], None]) -> None:
    """Settle or release every reservation, also when a guard cannot read the ledger for one:
    that must not cost the caller an answer, nor stop the others being finished."""
    for reservation in reservations:
        try:
            finish(reservation)
        except DataError as exc:
            log.error("the budgets could not read the ledger: %s", exc)


def _generated_tokens(completion: Completion) -> int:
    """The output tokens of all the text the upstream generated for `completion`, estimated:
    its content, or more when that was cut at a stop string the router applied."""
    chars, utf8_bytes = completion.generated_chars, completion.generated_utf8_bytes
    if chars is None or utf8_bytes is None:
        return estimate_text_tokens(completion.content)
    return estimate_tokens(chars, utf8_bytes)


def _how_it_ended(error: Exception) -> str:
    """The failure in a few words, for the note on its estimated cost."""
    if isinstance(error, ProviderTimeout):
        return "timed out"
    if isinstance(error, ProviderProtocolError):
        return "sent a cut or malformed answer"
    if isinstance(error, ProviderStatusError):
        return f"failed with HTTP {error.status}"
    return "failed"
