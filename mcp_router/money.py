"""How money is counted: exact Decimal arithmetic, its display, and the UTC day and month."""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from decimal import Context, Decimal
from functools import lru_cache

__all__ = ["EXACT", "exact_sum", "format_usd", "utc_day_month"]

# Token counts have at most ~10 digits and table prices a handful, so 60 digits of precision
# means no product or sum ever rounds: every figure is exact to the price table.
EXACT = Context(prec=60)


def exact_sum(amounts: Iterable[Decimal]) -> Decimal:
    """Sum money without the default context's 28-digit rounding."""
    total = Decimal(0)
    for amount in amounts:
        total = EXACT.add(total, amount)
    return total


def format_usd(amount: Decimal) -> str:
    """Money for messages: every digit the table gives, no exponent, no trailing zeros."""
    return "$" + format(amount.normalize(EXACT), "f")


SECONDS_PER_DAY = 86_400  # every UTC day in epoch time: POSIX time has no leap seconds


def utc_day_month(ts: float) -> tuple[str, str]:
    """The UTC calendar day (YYYY-MM-DD) and month (YYYY-MM) an epoch time is counted in."""
    return _day_month(math.floor(ts) // SECONDS_PER_DAY)  # whole seconds first: exact


@lru_cache(maxsize=8)
def _day_month(epoch_day: int) -> tuple[str, str]:
    # Asked several times per call (ledger row, budgets, alerts): formatted once a day.
    day = time.strftime("%Y-%m-%d", time.gmtime(epoch_day * SECONDS_PER_DAY))
    return day, day[:7]
