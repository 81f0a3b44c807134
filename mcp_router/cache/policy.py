"""Which answers the cache may hold (complete, successful ones, sampled ones only on opt-in), and
which failures identical waiting calls share.

The rules, and why:

- Only a finished answer is stored: `finish_reason` is `stop` (the model ended it) or `length`
  (it is the whole answer to that `max_tokens`, which is part of the key). Anything else
  (`content_filter`, a provider's own reason, or none at all) is not known to be complete.
- Empty (or whitespace-only) content is never stored, whatever the finish reason: it is what
  a refused or broken answer looks like, and replaying it would hide the next good one.
- Errors, cut streams and answers cancelled half-way never reach the cache at all: they
  surface as exceptions, not responses, so there is nothing to store.
- `temperature > 0` asks for a fresh sample each time, so such a request neither reads nor
  writes the cache unless the config or the call opts in. An unset temperature is treated
  as "no variety asked for" and is cached: it is what most callers send for a repeatable
  question, even though a provider's own default may sample.
- A last resort's answer (the host's own model, asked by sampling once every target failed)
  is returned but never stored nor shared: it is not the route's answer, and once the route
  answers again it must be asked (the cache step applies this rule).
- A failure is shared with the identical calls waiting on it only when it is the upstream's
  own verdict on this very request: an HTTP error status from every target asked (a 400
  refusing the request, a route whose every target answered 503). Those calls would meet
  the same. A failure that depends on the failing call itself (its deadline, a timeout, a
  dropped connection, a skipped target, the host's own model) is not: each waiter asks
  upstream itself, and its error lists its own attempts.
"""

from __future__ import annotations

from mcp_router.errors import AllTargetsFailed, ProviderStatusError
from mcp_router.messages import ChatRequest, ChatResponse

__all__ = ["COMPLETE_FINISH_REASONS", "is_complete", "is_sampled", "may_cache",
           "shared_failure", "should_store"]

COMPLETE_FINISH_REASONS = frozenset({"stop", "length"})


def is_sampled(request: ChatRequest) -> bool:
    """Whether the caller asked for variety (an explicit temperature above zero)."""
    return request.temperature is not None and request.temperature > 0


def may_cache(request: ChatRequest, *, sampled_ok: bool) -> bool:
    """Whether answers to `request` may come from, or go into, the cache at all."""
    return sampled_ok or not is_sampled(request)


def is_complete(response: ChatResponse) -> bool:
    """Whether `response` is a whole, successful answer worth replaying."""
    completion = response.completion
    return (completion.finish_reason in COMPLETE_FINISH_REASONS
            and bool(completion.content.strip()))


def should_store(request: ChatRequest, response: ChatResponse, *, sampled_ok: bool) -> bool:
    """Whether `response`, the answer to `request`, may be stored (see the module rules)."""
    return may_cache(request, sampled_ok=sampled_ok) and is_complete(response)


def shared_failure(error: Exception) -> Exception | None:
    """What a call waiting on an identical in-flight call raises when that call failed with
    `error` (a copy of its own, one per waiter), or None: the waiter asks upstream itself."""
    if isinstance(error, ProviderStatusError):
        return ProviderStatusError(error.provider, error.model, error.status, error.reason,
                                   error.retry_after)
    if isinstance(error, AllTargetsFailed) and error.attempts and all(
            attempt.status is not None for attempt in error.attempts):
        return AllTargetsFailed(error.attempts, error.headline)
    return None
