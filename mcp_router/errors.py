"""The one exception tree of mcp-router; foreign exceptions are translated into it where they enter.

    RouterError
    ├── ConfigError(file, line, key)          a config file or value is wrong
    ├── DataError                             the data directory or the ledger cannot be used
    ├── ListenError                           the HTTP server cannot listen where asked
    ├── InvalidRequest(field)                 a tool argument is wrong; the caller must change it
    ├── ProviderError(provider, model)        one upstream attempt failed
    │   ├── ProviderStatusError(status, retry_after)   the upstream answered with an HTTP error
    │   ├── ProviderTimeout                   no (complete) answer within the attempt's time
    │   ├── ProviderUnavailable               connection refused, reset, DNS failure
    │   ├── ProviderProtocolError             malformed body or a stream cut before its end
    │   ├── ProviderNotConfigured             the provider's key variable is unset
    │   └── ProviderOverBudget                this target's worst case would pass a budget
    ├── DeadlineExceeded                      the call's overall deadline passed
    ├── AllTargetsFailed(attempts)            every target of a route failed or was skipped
    ├── BudgetExceeded                        a budget would be passed
    ├── PolicyBlocked                         the content policy refused the request
    ├── AccessDenied(client)                  this client may not use that route or model
    ├── RateLimited(client, retry_after_s)    this client is over its calls-per-minute rate
    └── InternalError                         a bug in mcp-router: the log has the traceback

A call that fails once it reached its targets carries what its attempts were charged
(`RouterError.charged`, a `Charge`): the audit line and the tool error say it.

`RouterError.own_words()` is the error without an upstream's words, for the server's log and
an audit log without content: an upstream's error body can quote the request it refused.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from http import HTTPStatus
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mcp_router.messages import Attempt, Usage


@dataclass(frozen=True)
class Charge:
    """What a call's attempts were charged: against the budgets, and in the ledger under its trace.

    `cost_usd` is None when an attempt's price is unknown (`note` says why, as a result's
    `cost_note` does), else the sum, 0 when nothing was charged; `estimated` says some of it
    is our estimate (an attempt that ended without the provider's usage report).
    """

    cost_usd: Decimal | None
    note: str | None = None
    estimated: bool = False


class RouterError(Exception):
    """Base of every error mcp-router raises on purpose.

    `charged` is set by the router on an error of a call that reached its targets: what
    that call's attempts cost (None for a call refused before any target was asked)."""

    charged: Charge | None = None

    def own_words(self) -> str:
        """The message without any text an upstream wrote: only provider errors (and lists
        of attempts) carry such text, every other message is mcp-router's own."""
        return str(self)


class ConfigError(RouterError):
    """A config file or value is wrong; the message names the file, line and key."""

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None,
                 key: str | None = None) -> None:
        self.file, self.line, self.key = file, line, key
        where = ":".join(str(p) for p in (file, line) if p is not None)
        prefix = f"{where}: " if where else ""
        keypart = f"{key}: " if key else ""
        super().__init__(f"{prefix}{keypart}{message}")


class DataError(RouterError):
    """The data directory ($MCP_ROUTER_HOME) or the ledger in it cannot be used; the message
    names the path and what to do."""


class ListenError(RouterError):
    """The HTTP server cannot listen at the address asked; the message names it and what to do."""


class InvalidRequest(RouterError):
    """A tool argument is wrong; `field` names it and the message says what would be valid."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"{field}: {message}")


class ProviderError(RouterError):
    """One attempt at one provider/model failed."""

    def __init__(self, provider: str, model: str, message: str) -> None:
        self.provider, self.model, self.detail = provider, model, message
        super().__init__(f"{provider}/{model}: {message}")

    def own_words(self) -> str:
        return f"{self.provider}/{self.model}: {_gist(self.detail)}"


class ProviderStatusError(ProviderError):
    """The upstream answered with an HTTP error status, or reported one inside a 200 answer;
    `billed` is the usage such an answer reported, when it was billed whole. `attempts`: the
    call's, when this error ends it (a 400 or 422 after other targets failed)."""

    def __init__(self, provider: str, model: str, status: int, message: str,
                 retry_after: float | None = None, *, billed: Usage | None = None,
                 attempts: Sequence[Attempt] = ()) -> None:
        self.status, self.retry_after, self.reason = status, retry_after, message
        self.billed, self.attempts = billed, list(attempts)
        super().__init__(provider, model, f"HTTP {status}: {message}")

    def own_words(self) -> str:
        words = f"{self.provider}/{self.model}: {_status(self.status)}"
        if len(self.attempts) <= 1:
            return words
        return f"{words}; {AllTargetsFailed(self.attempts, 'attempts of this call').own_words()}"


class ProviderTimeout(ProviderError):
    """No complete answer arrived within the time the attempt was given."""


class ProviderUnavailable(ProviderError):
    """The upstream could not be reached (refused, reset, name not found)."""


class ProviderProtocolError(ProviderError):
    """The upstream answered something we cannot read: malformed JSON, a cut stream."""


class ProviderNotConfigured(ProviderError):
    """The provider's API key variable is unset, so it is skipped."""


class ProviderOverBudget(ProviderError):
    """This target's worst-case cost would pass a budget; the route steps down to the next."""


class DeadlineExceeded(RouterError):
    """The call's overall deadline passed before any target answered."""


class AllTargetsFailed(RouterError):
    """Every target was tried or skipped; carries every attempt and why."""

    def __init__(self, attempts: Sequence[Attempt], message: str = "all targets failed") -> None:
        self.attempts, self.headline = list(attempts), message
        super().__init__(self._listed([a.error for a in self.attempts]))

    def own_words(self) -> str:
        return self._listed([_attempt_gist(a) for a in self.attempts])

    def _listed(self, errors: list[str | None]) -> str:
        lines = [f"  - {a.provider}/{a.model}: {a.outcome}" + (f" ({error})" if error else "")
                 for a, error in zip(self.attempts, errors, strict=True)]
        return "\n".join([f"{self.headline}:", *lines]) if lines else self.headline


class BudgetExceeded(RouterError):
    """A budget would be passed by this call."""


class PolicyBlocked(RouterError):
    """The content policy refused the request; names the entity types, never the values."""


class AccessDenied(RouterError):
    """The client may not use this route or model; the message lists what it may use."""

    def __init__(self, client: str, message: str) -> None:
        self.client = client
        super().__init__(message)


class RateLimited(RouterError):
    """The client sent more calls than its rate allows; `retry_after_s` says when to retry."""

    def __init__(self, client: str, retry_after_s: float, per_min: int) -> None:
        self.client, self.retry_after_s, self.per_min = client, retry_after_s, per_min
        super().__init__(f"client {client!r} is over its rate limit of {per_min} calls per "
                         f"minute; retry after {retry_after_s:.1f} s")


class InternalError(RouterError):
    """A bug in mcp-router met by one call: the message names the trace id under which the
    server's log (stderr) has the traceback, and the call's audit line says it too."""


def _status(status: int) -> str:
    """An HTTP status with its standard phrase, as our words say it (never the upstream's)."""
    try:
        return f"HTTP {status} {HTTPStatus(status).phrase}"
    except ValueError:  # 529 and other statuses outside the standard's list
        return f"HTTP {status}"


# Failures whose text after the colon is ours or a transport exception's repr, never a
# response's body: the operator needs the cause to tell a refused connection from a DNS or
# TLS failure. The repr of an exception about what the upstream sent (h11's
# RemoteProtocolError quotes the bytes of a malformed status line or chunk) is cut to its
# name; an OS-level one is kept whole.
_TRANSPORT_CAUSES = ("cannot reach upstream: ", "no answer within ", "body stalled: ",
                     "stream stalled: ", "body cut: ", "stream cut: ")
_LOCAL_EXCEPTIONS = frozenset({"ConnectError", "ConnectTimeout", "ReadTimeout", "WriteTimeout",
                               "PoolTimeout", "TimeoutException", "ReadError", "WriteError",
                               "NetworkError", "CloseError", "InvalidURL", "UnsupportedProtocol"})
_REPR = re.compile(r"([A-Za-z_]\w*)\(")


def _gist(detail: str) -> str:
    """A failure without a status in our words: up to its first colon (`malformed JSON
    body`, `unexpected response shape`), what an upstream or its exception said follows;
    a transport failure (`_TRANSPORT_CAUSES`) with its cause, an exception's name alone
    when it is about what the upstream sent."""
    head, _, rest = detail.partition(": ")
    if not detail.startswith(_TRANSPORT_CAUSES):
        return head
    if (name := _REPR.match(rest)) is None or name[1] in _LOCAL_EXCEPTIONS:
        return detail  # our own words (`stream cut: it ended before [DONE]`), or the OS's
    return f"{head}: {name[1]}"


def _attempt_gist(attempt: Attempt) -> str | None:
    """An attempt's error without an upstream's words. A skip's reason is whole: it is ours,
    and a circuit's reason keeps a status, never the body (`routing.verdicts.what`)."""
    if attempt.status is not None:
        return _status(attempt.status)
    if attempt.error is None or attempt.outcome == "skipped":
        return attempt.error
    return _gist(attempt.error)
