"""The `cost_report` result models and the alerts read from ledger sums."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, Field

from mcp_router.config import BudgetsConfig
from mcp_router.messages import NUMBER_ZERO, Usd
from mcp_router.money import EXACT, exact_sum, format_usd

__all__ = ["BudgetStatus", "Budgets", "CostReport", "CostRow", "Tally", "build_alerts"]


class CostRow(BaseModel):
    """Sums over one group of ledger rows."""

    key: str = Field(description="The group: a provider, provider/model, route, client or day")
    requests: int = Field(description="Ledger rows: upstream attempts plus cache hits")
    input_tokens: int
    output_tokens: int
    cost_usd: Usd = Field(description="Sum of known costs; see unpriced_requests")
    cache_hits: int
    saved_usd: Usd = Field(description="Cost the cache avoided")
    unpriced_requests: int = Field(default=0, description="Rows whose cost is unknown (no "
                                   "price, or no usage report); see alerts")


class BudgetStatus(BaseModel):
    """One budget: its limit (null when none), what the ledger shows spent, what is left."""

    limit_usd: Usd | None
    spent_usd: Usd
    remaining_usd: Usd | None
    reserved_usd: Usd = Field(default=Decimal(0), json_schema_extra=NUMBER_ZERO, description=(
        "Held by this server's calls in flight, their worst case until they settle: new calls "
        "fit in remaining_usd minus this"))

    @classmethod
    def of(cls, limit: Decimal | None, spent: Decimal) -> BudgetStatus:
        remaining = None if limit is None else max(EXACT.subtract(limit, spent), Decimal(0))
        return cls(limit_usd=limit, spent_usd=spent, remaining_usd=remaining)


class Budgets(BaseModel):
    daily: BudgetStatus = Field(description="Today (UTC)")
    monthly: BudgetStatus = Field(description="This calendar month (UTC)")


class CostReport(BaseModel):
    """The `cost_report` tool result, read from the ledger."""

    period: str = Field(description="today | month | all (UTC)")
    group_by: str
    scope: str = Field(default="all", description="all: every client's calls; otherwise the "
                                                  "one client whose calls and budgets these are")
    total_usd: Usd = Field(description="Sum of known costs in the period")
    requests: int
    cache_hits: int = 0
    saved_usd: Usd = Field(default=Decimal(0), json_schema_extra=NUMBER_ZERO,
                           description="Cost the cache avoided")
    unpriced_requests: int = Field(default=0, description="Rows whose cost is unknown")
    rows: list[CostRow]
    budgets: Budgets
    alerts: list[str] = Field(description="Alert thresholds crossed (once per day), budgets "
                                          "used up, and calls whose cost is unknown")


@dataclass(frozen=True)
class Tally:
    """A report's sums per group and per day, folded from the ledger's sums per (group, day):
    one scan gives the rows, the daily totals the alerts and budgets read, and whether any
    row needs listing as unpriced or estimated."""

    rows: list[CostRow]
    days: dict[str, Decimal]
    estimated: int

    @classmethod
    def of(cls, groups: Iterable[Sequence[Any]], *, by_cost: bool) -> Tally:
        """Fold `(key, day, requests, input_tokens, output_tokens, cost_usd, cache_hits,
        saved_usd, unpriced_requests, estimated)` rows; money comes as Decimal text. Rows
        are in key order, or the biggest spenders first when `by_cost`."""
        sums: dict[str, list[Any]] = {}
        days: dict[str, Decimal] = {}
        estimated = 0
        for key, day, n, i, o, cost_text, hits, saved_text, unpriced, estimates in groups:
            cost, saved = Decimal(cost_text), Decimal(saved_text)
            days[day] = EXACT.add(days.get(day, Decimal(0)), cost)
            estimated += estimates
            if (acc := sums.get(key)) is None:
                sums[key] = [n, i, o, cost, hits, saved, unpriced]
            else:
                sums[key] = [acc[0] + n, acc[1] + i, acc[2] + o, EXACT.add(acc[3], cost),
                             acc[4] + hits, EXACT.add(acc[5], saved), acc[6] + unpriced]
        rows = [CostRow(key=k, requests=n, input_tokens=i, output_tokens=o, cost_usd=c,
                        cache_hits=h, saved_usd=s, unpriced_requests=u)
                for k, (n, i, o, c, h, s, u) in sorted(sums.items())]
        if by_cost:
            rows.sort(key=lambda r: r.cost_usd, reverse=True)
        return cls(rows=rows, days=dict(sorted(days.items())), estimated=estimated)

    @property
    def total(self) -> Decimal:
        return exact_sum(r.cost_usd for r in self.rows)

    @property
    def unpriced(self) -> int:
        return sum(r.unpriced_requests for r in self.rows)

    def spent(self, first: str, last: str) -> Decimal:
        """The cost of the days from `first` to `last` (YYYY-MM-DD, both included)."""
        return exact_sum(total for day, total in self.days.items() if first <= day <= last)

    def report(self, period: str, group_by: str, scope: str, budgets: Budgets,
               alerts: list[str]) -> CostReport:
        """The `cost_report` result of these sums."""
        return CostReport(
            period=period, group_by=group_by, scope=scope, total_usd=self.total,
            requests=sum(r.requests for r in self.rows),
            cache_hits=sum(r.cache_hits for r in self.rows),
            saved_usd=exact_sum(r.saved_usd for r in self.rows),
            unpriced_requests=self.unpriced, rows=self.rows, budgets=budgets, alerts=alerts)


ESTIMATE_RULE = "a token per 3 ASCII characters, up to 7/3 per other character"
"""How the router estimates tokens no provider reported (`spend.estimate_tokens`), in words."""


def build_alerts(cfg: BudgetsConfig, status: Budgets, day_totals: Sequence[tuple[str, Decimal]],
                 unpriced: Sequence[tuple[str, bool, int]],
                 estimated: Sequence[tuple[str, bool, int]] = ()) -> list[str]:
    """Readable alerts: one line per day over the alert threshold, spent budgets, unpriced calls.

    `unpriced` is `(provider/model, answered, count)`: an answered call lacks a price, an
    unanswered attempt (timed out, cut off, cancelled) lacks the provider's usage report.
    `estimated` is `(provider/model, answered, count)` of attempts the provider reported no
    usage for (an answer without a usage report, or an attempt that ended unfinished), charged
    at an estimate from the request and the text received (a JSON answer that never came: its
    worst case).
    """
    alerts: list[str] = []
    threshold = cfg.alert_daily_usd
    if threshold is not None:
        alerts += [f"{day}: spent {format_usd(total)}, over the daily alert threshold of "
                   f"{format_usd(threshold)}"
                   for day, total in day_totals if total > 0 and total >= threshold]
    for name, budget, until in (("daily", status.daily, "tomorrow (UTC)"),
                                ("monthly", status.monthly, "next month (UTC)")):
        if budget.limit_usd is not None and budget.remaining_usd == 0:
            alerts.append(f"{name} budget of {format_usd(budget.limit_usd)} is used up "
                          f"(spent {format_usd(budget.spent_usd)}): calls are refused until "
                          f"{until}")
    alerts += [f"cost unknown for {n} call(s) to {model}: no price in the table or config "
               "prices; totals leave them out" for model, answered, n in unpriced if answered]
    alerts += [f"cost unknown for {n} attempt(s) to {model} that ended without a usage report "
               "(timed out, cut off or cancelled): the provider may have billed them; totals "
               "leave them out" for model, answered, n in unpriced if not answered]
    alerts += [f"{n} attempt(s) to {model} ended mid-answer or before it (timed out, cut "
               "off, failed or cancelled) without a usage report: each is charged at an "
               f"estimate set high, the request's input and the text received ({ESTIMATE_RULE}), "
               "or its whole worst case when the answer was not streamed"
               for model, answered, n in estimated if not answered]
    alerts += [f"{n} answer(s) from {model} came without a usage report: each is charged at "
               f"an estimate set high, the request's input and the answer ({ESTIMATE_RULE})"
               for model, answered, n in estimated if answered]
    return alerts
