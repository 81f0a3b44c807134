"""Dry runs: what a call would do — targets in order, skips and why, cache, worst case — unsent."""

from __future__ import annotations

from decimal import Decimal

from mcp_router.errors import BudgetExceeded
from mcp_router.messages import Adapter, ChatRequest, DryRun, PlannedTarget
from mcp_router.routing.circuits import BreakerBoard
from mcp_router.spend import QUOTE_MAX_TOKENS, Spend, estimate_input_tokens

LAST_RESORT = "every target's circuit is open; this one reopens soonest, so it would be tried"


class Planner:
    """Answers 'what would happen' from the same state the real call reads, changing none."""

    def __init__(self, adapters: dict[str, Adapter], board: BreakerBoard, spend: Spend) -> None:
        self._adapters, self._board, self._spend = adapters, board, spend

    def plan(self, keys: tuple[str, ...], request: ChatRequest, cache_hit: bool,
             client: str = "local", sees_team: bool = True) -> DryRun:
        """The plan of `client`'s call: its budgets are the team's and its own, as for real
        (and said as to the real call: without the team's figures unless `sees_team`).

        `worst_case_usd` is one attempt at the dearest target that would be asked; retries
        and fallbacks after a paid failure (a cut stream, a timeout) can add to it.
        """
        # As the real call: when every circuit is open, the soonest to reopen is still tried.
        soonest = self._board.last_resort(keys)
        targets = [self._target(key, request, client, sees_team, key == soonest)
                   for key in keys]
        asked = [t.worst_case_usd for t in targets if t.would == "ask"]
        # None: a target that would be asked has no price. Nothing asked spends nothing.
        worst = None if None in asked else max((c for c in asked if c is not None),
                                               default=Decimal(0))
        return DryRun(targets=targets, cache_hit=cache_hit, worst_case_usd=worst)

    def _target(self, key: str, request: ChatRequest, client: str, sees_team: bool,
                last_resort: bool) -> PlannedTarget:
        provider, _, model = key.partition("/")
        quote = self._spend.prices.quote_for(provider, model, estimate_input_tokens(request),
                                             request.max_tokens or QUOTE_MAX_TOKENS).cost
        reason = self._skip_reason(key, provider, quote, client, sees_team, last_resort)
        if reason is None and last_resort:
            return PlannedTarget(provider=provider, model=model, would="ask",
                                 reason=f"{LAST_RESORT}: {self._board.circuit(key).reason}",
                                 worst_case_usd=quote)
        return PlannedTarget(provider=provider, model=model, would="skip" if reason else "ask",
                             reason=reason, worst_case_usd=quote)

    def _skip_reason(self, key: str, provider: str, quote: Decimal | None,
                     client: str, sees_team: bool, last_resort: bool) -> str | None:
        if not self._adapters[provider].configured:
            return "no API key configured"
        # The same check the real call's fallback makes (a last resort is an open target).
        if not last_resort and self._board.refuses(key):
            circuit = self._board.circuit(key)
            # The board's reason says the state already: "circuit open until T (…)",
            # "model missing (HTTP 404 …)", "circuit half-open, its trial call is in flight".
            until = f" until {circuit.open_until}" if circuit.open_until else ""
            return circuit.reason or f"circuit {circuit.state}{until}"
        try:
            # In the order the real call holds them; reserving and releasing at once, with
            # no await between, leaves nothing held.
            for held in self._spend.hold(client, quote, sees_team=sees_team):
                held.release()
        except BudgetExceeded as exc:
            return f"over budget: {exc}"
        return None
