"""Dry runs: what a call would do — targets in order, skips and why, cache, worst case — unsent."""

from __future__ import annotations

from decimal import Decimal

from mcp_router.budgets import BudgetGuard
from mcp_router.errors import BudgetExceeded
from mcp_router.messages import Adapter, ChatRequest, DryRun, PlannedTarget
from mcp_router.prices import PriceBook
from mcp_router.routing.circuits import BreakerBoard
from mcp_router.spend import QUOTE_MAX_TOKENS, estimate_input_tokens


class Planner:
    """Answers 'what would happen' from the same state the real call reads, changing none."""

    def __init__(self, adapters: dict[str, Adapter], board: BreakerBoard, prices: PriceBook,
                 budgets: BudgetGuard) -> None:
        self._adapters, self._board = adapters, board
        self._prices, self._budgets = prices, budgets

    def plan(self, keys: tuple[str, ...], request: ChatRequest, cache_hit: bool) -> DryRun:
        targets = [self._target(key, request) for key in keys]
        asked = [t.worst_case_usd for t in targets if t.would == "ask"]
        # None: a target that would be asked has no price. Nothing asked spends nothing.
        worst = None if None in asked else max((c for c in asked if c is not None),
                                               default=Decimal(0))
        return DryRun(targets=targets, cache_hit=cache_hit, worst_case_usd=worst)

    def _target(self, key: str, request: ChatRequest) -> PlannedTarget:
        provider, _, model = key.partition("/")
        quote = self._prices.quote_for(provider, model, estimate_input_tokens(request),
                                       request.max_tokens or QUOTE_MAX_TOKENS).cost
        reason = self._skip_reason(key, provider, quote)
        return PlannedTarget(provider=provider, model=model, would="skip" if reason else "ask",
                             reason=reason, worst_case_usd=quote)

    def _skip_reason(self, key: str, provider: str, quote: Decimal | None) -> str | None:
        if not self._adapters[provider].configured:
            return "no API key configured"
        circuit = self._board.circuit(key)
        if circuit.state in ("open", "misconfigured", "missing"):
            until = f" until {circuit.open_until}" if circuit.open_until else ""
            if circuit.state != "open" and circuit.reason:  # "model missing (HTTP 404 …)"
                return circuit.reason
            return f"circuit {circuit.state}{until}: {circuit.reason or ''}".rstrip(": ")
        try:
            # Reserving and releasing at once, with no await between, leaves nothing held.
            self._budgets.reserve(quote).release()
        except BudgetExceeded as exc:
            return f"over budget: {exc}"
        return None
