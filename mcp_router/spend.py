"""The money step of a call: hold each attempt against the budgets, price it, record it."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal

from mcp_router.budgets import BudgetGuard, Reservation
from mcp_router.errors import BudgetExceeded, ProviderProtocolError, ProviderTimeout
from mcp_router.ledger import Ledger, LedgerRow
from mcp_router.messages import ChatRequest, ChatResponse, Completion, Usage
from mcp_router.money import exact_sum
from mcp_router.prices import PriceBook

# When the caller sets no max_tokens the worst case is still bounded by what we quote for.
QUOTE_MAX_TOKENS = 4096
# Failures after which the provider may still have billed: it did the work, we lost the answer.
MAY_HAVE_COST = (ProviderTimeout, ProviderProtocolError)


def estimate_input_tokens(request: ChatRequest) -> int:
    """A deliberately high estimate (≈3 characters a token, plus per-message overhead)."""
    return sum(math.ceil(len(m.content) / 3) + 4 for m in request.messages)


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

    def record_hit(self, response: ChatResponse, saved: Decimal | None, *, trace_id: str,
                   client: str, route: str | None, metadata: Mapping[str, str]) -> None:
        """A cache hit costs nothing and is recorded with the cost it avoided."""
        self.ledger.record(LedgerRow(
            provider=response.provider, model=response.model, outcome="cache_hit",
            trace_id=trace_id, client=client, route=route, cost_usd=Decimal(0),
            saved_usd=saved, metadata=dict(metadata)))

    def gate(self, *, trace_id: str, client: str, route: str | None,
             metadata: Mapping[str, str]) -> CallGate:
        """A gate for one call; it remembers the call's labels for every ledger row."""
        return CallGate(self, trace_id=trace_id, client=client, route=route,
                        metadata=dict(metadata))


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
    costs: list[Decimal] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # why the cost is unknown
    estimates: list[str] = field(default_factory=list)  # which costs are our estimate
    refusals: list[BudgetRefusal] = field(default_factory=list)

    def reserve(self, provider: str, model: str, request: ChatRequest) -> AttemptHold:
        quoted_input = estimate_input_tokens(request)
        quoted = self.spend.prices.quote_for(provider, model, quoted_input,
                                             request.max_tokens or QUOTE_MAX_TOKENS)
        held: list[Reservation] = []
        try:
            for guard in self.spend.guards(self.client):
                held.append(guard.reserve(quoted.cost))
        except BudgetExceeded as exc:
            for reservation in held:
                reservation.release()
            self.refusals.append(BudgetRefusal(f"{provider}/{model}", quoted.cost, str(exc)))
            raise
        return AttemptHold(self, provider, model, tuple(held), quoted_input)

    @property
    def total(self) -> tuple[Decimal | None, str | None]:
        """The call's cost so far, or None with the reason when a price was unknown; the note
        says which part of a known cost is an estimate."""
        if self.notes:
            return None, "; ".join(dict.fromkeys(self.notes))
        return exact_sum(self.costs), "; ".join(dict.fromkeys(self.estimates)) or None

    def record(self, row: LedgerRow) -> None:
        self.spend.ledger.record(row)


@dataclass
class AttemptHold:
    """The money held for one attempt (implements `Hold`)."""

    gate: CallGate
    provider: str
    model: str
    reservations: tuple[Reservation, ...]
    input_tokens: int = 0  # the request's, as estimated for its quote

    def settle(self, completion: Completion, latency_ms: float) -> Usage:
        """An answer: priced from the usage it reports, or, when it reports none, from an
        estimate (the request's input, a token per 4 characters of the answer), never as 0."""
        usage = completion.usage if completion.usage_reported else \
            self._estimate(len(completion.content))
        priced = self.gate.spend.prices.cost_of(self.provider, self.model, usage)
        if priced.cost is None:
            self.gate.notes.append(priced.note or "price unknown")
        else:
            self.gate.costs.append(priced.cost)
        if priced.cost is not None and not completion.usage_reported:
            self.gate.estimates.append(
                f"estimated: {self.provider}/{self.model} sent no usage report, so the cost is "
                f"for the request's input and a token per 4 characters of the answer")
        for reservation in self.reservations:
            reservation.settle(priced.cost)
        self._record("ok", usage, priced.cost, latency_ms,
                     estimated=not completion.usage_reported)
        return usage

    def fail(self, error: Exception, latency_ms: float, streamed_chars: int = 0) -> None:
        if isinstance(error, MAY_HAVE_COST):
            self._unfinished("error", latency_ms, streamed_chars)
        else:
            self.release()

    def cancelled(self, latency_ms: float, streamed_chars: int = 0) -> None:
        """The call was cancelled mid-attempt: the provider may have billed part of it."""
        self._unfinished("cancelled", latency_ms, streamed_chars)

    def _unfinished(self, outcome: str, latency_ms: float, streamed_chars: int) -> None:
        """An attempt that ended without the provider's usage report. Text that streamed in
        was generated, and billed: it is charged at an estimate (the request's input, a token
        per 4 characters received), against the budgets too. With no text, or no price,
        nothing is known, and the row's cost stays unknown."""
        usage = self._estimate(streamed_chars)
        cost = self.gate.spend.prices.cost_of(self.provider, self.model, usage).cost \
            if streamed_chars else None
        if cost is None:
            self.release()
            self._record(outcome, Usage(), None, latency_ms)
            return
        self.gate.costs.append(cost)
        for reservation in self.reservations:
            reservation.settle(cost)
        self._record(outcome, usage, cost, latency_ms, estimated=True)

    def _estimate(self, chars: int) -> Usage:
        return Usage(input_tokens=self.input_tokens, output_tokens=math.ceil(chars / 4))

    def release(self) -> None:
        for reservation in self.reservations:
            reservation.release()

    def _record(self, outcome: str, usage: Usage, cost: Decimal | None,
                latency_ms: float, *, estimated: bool = False) -> None:
        gate = self.gate
        row = LedgerRow(provider=self.provider, model=self.model, outcome=outcome,
                        trace_id=gate.trace_id, client=gate.client, route=gate.route,
                        usage=usage, cost_usd=cost, latency_ms=latency_ms,
                        metadata=gate.metadata, estimated=estimated)
        gate.record(row)
