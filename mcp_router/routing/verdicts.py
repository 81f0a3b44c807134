"""What one try says about its target, and how a circuit's reason words a failure."""

from __future__ import annotations

import re
from http import HTTPStatus
from typing import Literal

from mcp_router.messages import Attempt

Verdict = Literal["ok", "failure", "neutral", "misconfigured", "missing"]

# 429 counts: the target cannot serve us now, and a cooldown lets its quota refill instead
# of every caller spending retries on it. 408 is the upstream giving up, like a timeout.
COUNTED_STATUS = frozenset({408, 429})
MISCONFIGURED_STATUS = frozenset({401, 403})
MISSING_STATUS = frozenset({404})


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


def what(attempt: Attempt) -> str:
    """An attempt's failure as a circuit's reason keeps it: for an HTTP status, the status and
    its standard phrase, never the upstream's own words. A reason reaches every caller of the
    target (in `attempts` and `provider_health`), and an error body can quote the request of
    whichever client tripped it."""
    if attempt.status is None:
        return attempt.error or "failed"
    sent_as = SENT_AS.match(attempt.error or "")
    try:
        phrase = sent_as[1] if sent_as else HTTPStatus(attempt.status).phrase
    except ValueError:  # 529 and other statuses outside the standard's list
        return f"HTTP {attempt.status}"
    return f"HTTP {attempt.status}: {phrase}"


# What `providers._http` puts first when a body meant another status than the one sent.
SENT_AS = re.compile(r"HTTP \d{3}: (sent as HTTP \d{3} \([^)]*\))")
