"""How one overall deadline is shared by the hops of a route and the retries of a target."""

from __future__ import annotations

from mcp_router.messages import Call

DEADLINE_REACHED = "deadline reached"
# A retry that starts with less time than this cannot expect an answer; the next target
# is better served by getting the time.
MIN_TRY_S = 0.25


def plan_hop(call: Call, now: float, *, last: bool) -> Call:
    """The call one hop of a route runs under.

    A hop that has a successor which can be asked may use at most half of the time left, so
    a hanging target cannot eat the time its fallbacks need; the last hop (`last`: no child
    after it can be asked) gets everything that is left. The share bounds waiting for an
    answer only: a streamed answer whose text has begun may run on to `call.end`, the whole
    call's deadline (see `Target`), and the retries after it are judged by the share, so a
    target that ran past it is not tried again. Attempts stay shared with `call`.
    """
    if last:
        return call
    return call.within(now + (call.deadline - now) / 2)


def room_for_retry(now: float, wait: float, deadline: float, min_try_s: float = MIN_TRY_S) -> bool:
    """True when waiting `wait` seconds still leaves `min_try_s` for the retry itself."""
    return now + wait + min_try_s <= deadline
