"""Budgets: reserve each attempt's worst case before it runs, settle to its actual cost after.

The guard keeps today's and this month's spend in memory (seeded from the ledger when created
and again at each UTC day or month rollover) plus the reservations of calls in flight. A
reservation's check and add happen with no await in between, so on the server's one event
loop concurrent calls can never together pass a budget.

Every host starts its own stdio server, and they share one ledger: before each check the
guard adds what other processes have written to it since it last looked, so together they
stay within the budget too. Only their calls still in flight are not seen (each process
holds its own reservations), so the budget can be passed by at most what those may cost.

A target without a price cannot be bounded, so while a budget is set it is refused (the
route steps down to a priced target, if it has one); without budgets it runs unreserved.
A target priced at $0 always passes: a spent budget leaves the route its free targets.
"""

from __future__ import annotations

import logging
from decimal import Decimal
from types import TracebackType
from typing import Literal, Protocol

from mcp_router.clock import Clock
from mcp_router.config import BudgetsConfig
from mcp_router.errors import BudgetExceeded, DataError
from mcp_router.money import EXACT, format_usd, utc_day_month

__all__ = ["BudgetGuard", "Reservation", "SpendSource"]

logger = logging.getLogger(__name__)

class SpendSource(Protocol):
    """Where settled spend is read: the ledger, which other processes write to as well."""

    def spent(self, period: Literal["today", "month"], *, up_to: int | None = None
              ) -> Decimal: ...

    def position(self) -> int: ...

    def spent_elsewhere(self, after: int) -> tuple[int, list[tuple[str, Decimal]]]: ...


class Reservation:
    """Money held for one attempt until it is settled or released (each at most once).

    As a context manager (sync or async) it releases whatever is still held on exit, which
    covers exceptions and cancellation; settle inside the block once the cost is known.
    """

    def __init__(self, guard: BudgetGuard, amount: Decimal) -> None:
        self.amount = amount
        self.state: Literal["held", "settled", "released"] = "held"
        self._guard = guard

    def settle(self, actual: Decimal | None) -> None:
        """Replace the hold by the actual cost (None, an unknown price, counts as 0)."""
        if self.state == "held":
            self.state = "settled"
            self._guard._finish(self.amount, actual or Decimal(0))

    def release(self) -> None:
        """Drop the hold without spending (the attempt failed or was cancelled)."""
        if self.state == "held":
            self.state = "released"
            self._guard._finish(self.amount, Decimal(0))

    def __enter__(self) -> Reservation:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()

    async def __aenter__(self) -> Reservation:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        self.release()


class BudgetGuard:
    """Daily and monthly limits over settled spend plus reservations, and the daily alert."""

    def __init__(self, config: BudgetsConfig, ledger: SpendSource, clock: Clock, *,
                 owner: str | None = None) -> None:
        """`owner` names whose budget it is in refusals ("client ci's"); None: the team's."""
        self._config, self._ledger, self._clock = config, ledger, clock
        self._owner = f"{owner} " if owner else ""
        self._limited = config.daily_usd is not None or config.monthly_usd is not None
        self._watched = self._limited or config.alert_daily_usd is not None
        self._day, self._month = utc_day_month(clock.wall())
        self._seen = ledger.position()  # the ledger's rows up to here are in the figures
        self._spent_day = ledger.spent("today", up_to=self._seen)
        self._spent_month = ledger.spent("month", up_to=self._seen)
        self._reserved = Decimal(0)
        # A day already over the threshold at startup was alerted by an earlier process (and
        # cost_report lists it from the ledger): do not alert it again.
        self._alerted_day = self._day if self._over_alert() else None

    @property
    def spent_today(self) -> Decimal:
        self._refresh()
        return self._spent_day

    @property
    def spent_month(self) -> Decimal:
        self._refresh()
        return self._spent_month

    @property
    def reserved(self) -> Decimal:
        """Held by calls in flight."""
        return self._reserved

    def reserve(self, quote: Decimal | None, *, withhold: bool = False) -> Reservation:
        """Hold `quote` (an attempt's worst case) or raise BudgetExceeded; None = unpriced.

        `withhold`: the caller may not see this budget's figures (a client kept to its own
        calls, refused by the team's budget), so the refusal names the budget, not its limit,
        spend or what is left.
        """
        if self._limited:
            self._refresh()
        amount = Decimal(0) if quote is None else quote
        self._check("daily", self._config.daily_usd, self._spent_day, amount, quote, withhold)
        self._check("monthly", self._config.monthly_usd, self._spent_month, amount, quote,
                    withhold)
        self._reserved = EXACT.add(self._reserved, amount)
        return Reservation(self, amount)

    def check_alert(self) -> str | None:
        """The alert message the first time today's spend reaches `alert_daily_usd`, else None."""
        threshold = self._config.alert_daily_usd
        if threshold is None:
            return None
        self._refresh()
        if self._alerted_day == self._day or not self._over_alert():
            return None
        self._alerted_day = self._day
        return (f"{self._day}: spent {format_usd(self._spent_day)}, over the daily alert "
                f"threshold of {format_usd(threshold)}")

    def _check(self, name: str, limit: Decimal | None, spent: Decimal, amount: Decimal,
               quote: Decimal | None, withhold: bool) -> None:
        if limit is None:
            return
        whose = self._owner or ("the team's " if withhold else "")
        budget = f"{whose}{name} budget" + ("" if withhold else f" of {format_usd(limit)}")
        if quote is None:
            raise BudgetExceeded(
                f"{'' if whose else 'the '}{budget} cannot be kept: "
                f"this model has no price, so its cost cannot be held against the budget; "
                f"give it one under "
                f"`prices:` in the config (`provider/*: {{...}}` prices all of a provider's "
                f"models)")
        if amount == 0:  # a free target (a local model) spends nothing, whatever is left
            return
        committed = EXACT.add(spent, self._reserved)
        if EXACT.add(committed, amount) <= limit:
            return
        if withhold:
            raise BudgetExceeded(
                f"{budget} would be exceeded by this call, which may cost up to "
                f"{format_usd(amount)} (its spend is shown only to clients with "
                f"`cost_report: all`)")
        raise BudgetExceeded(
            f"{budget} would be exceeded: spent "
            f"{format_usd(spent)} (+ {format_usd(self._reserved)} reserved by calls in "
            f"flight), and this call may cost up to {format_usd(amount)}; "
            f"{format_usd(max(EXACT.subtract(limit, committed), Decimal(0)))} is left")

    def _finish(self, held: Decimal, actual: Decimal) -> None:
        # Released first: a ledger that cannot be read must not keep the money held for good.
        self._reserved = EXACT.subtract(self._reserved, held)
        if self._watched:  # a rollover due now must count rows already written, its own too
            try:
                self._refresh()
            except DataError as exc:  # the next reservation's look tries again
                logger.warning("budgets: %s", exc)
        self._spent_day = EXACT.add(self._spent_day, actual)
        self._spent_month = EXACT.add(self._spent_month, actual)

    def _over_alert(self) -> bool:
        threshold = self._config.alert_daily_usd
        return threshold is not None and self._spent_day > 0 and self._spent_day >= threshold

    def _roll(self) -> None:
        """Start a new day or month from the ledger's sums when the UTC calendar moves on."""
        day, month = utc_day_month(self._clock.wall())
        if day != self._day:
            self._day, self._spent_day = day, self._ledger.spent("today", up_to=self._seen)
        if month != self._month:
            self._month = month
            self._spent_month = self._ledger.spent("month", up_to=self._seen)

    def _refresh(self) -> None:
        """Add what other processes have spent since the last look (this process's own spend
        is added as it settles), then roll over if due: a new day's or month's sum is read up
        to the rows just looked at, whoever wrote them."""
        self._seen, rows = self._ledger.spent_elsewhere(self._seen)
        for day, cost in rows:
            if day == self._day:
                self._spent_day = EXACT.add(self._spent_day, cost)
            if day.startswith(self._month):
                self._spent_month = EXACT.add(self._spent_month, cost)
        self._roll()
