"""The PII filter's refusals, and the one place that turns any filter failure into a refusal."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import ParamSpec, TypeVar

from mcp_router.errors import PolicyBlocked

P = ParamSpec("P")
T = TypeVar("T")


class PiiBlocked(PolicyBlocked):
    """A `block` entity type was found; names the types and counts, never the values."""

    def __init__(self, counts: Mapping[str, int], where: str = "request") -> None:
        self.counts = dict(sorted(counts.items()))
        self.where = where
        found = ", ".join(f"{entity} ×{n}" for entity, n in self.counts.items())
        super().__init__(f"{where} blocked by the PII policy: found {found}")


class PiiFilterFailed(PolicyBlocked):
    """The filter could not inspect the payload, so it was refused rather than passed on."""

    def __init__(self, cause: str, where: str = "request") -> None:
        self.cause, self.where = cause, where
        outcome = "nothing was sent" if where == "request" else "the answer was withheld"
        super().__init__(f"the PII filter failed ({cause}); {outcome}")


def fail_closed(where: str, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Call filter code so that any failure refuses the payload instead of passing it on.

    This is the PII package's only broad `except`: a detector bug, a malformed payload or a
    pathological custom pattern must never let text through unfiltered. Only the failure's
    type name is kept. The refusal is raised after the `except` block, so it carries neither
    `__cause__` nor `__context__`: the original exception's message may quote the text being
    inspected, and tracebacks end up in logs.
    """
    try:
        return fn(*args, **kwargs)
    except PolicyBlocked:
        raise
    except Exception as exc:  # fail closed, see the docstring
        cause = type(exc).__name__
    raise PiiFilterFailed(cause, where)
