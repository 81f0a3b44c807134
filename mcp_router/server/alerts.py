"""Today's budget alert: logged when spend crosses the threshold, told in-band to one caller
who may see the team's spend."""

from __future__ import annotations

import logging

from mcp_router.budgets import BudgetGuard
from mcp_router.errors import DataError

log = logging.getLogger(__name__)


class AlertDesk:
    """Holds the daily alert until a caller who may be told it comes.

    Spend crossing `alert_daily_usd` is logged at once, whoever's call crossed it, a call that
    failed after it was charged included. The alert names the team's spend, so a client kept
    to its own calls (`cost_report: own`) is not told it; it waits for the next caller who may
    see the team's figures, and is told to that one only.
    """

    def __init__(self, budgets: BudgetGuard) -> None:
        self._budgets = budgets
        self._held: str | None = None

    def due(self, *, sees_team: bool) -> str | None:
        """The alert to give the caller of the call just finished, or None."""
        try:
            crossed = self._budgets.check_alert()
        except DataError as exc:  # the call is paid for: it is returned all the same
            log.warning("budget alert not checked: %s", exc)
            crossed = None
        if crossed is not None:
            log.warning("%s", crossed)
            self._held = crossed
        if not sees_team:
            return None
        alert, self._held = self._held, None
        return alert
