"""Retrying: the one retry layer, which asks the same target again after a transient failure."""

from __future__ import annotations

import random
from collections.abc import Callable

from mcp_router.clock import Clock
from mcp_router.config import RetryConfig
from mcp_router.errors import (
    ProviderError,
    ProviderProtocolError,
    ProviderStatusError,
    ProviderTimeout,
    ProviderUnavailable,
)
from mcp_router.messages import Call, ChatProvider, ChatRequest, ChatResponse
from mcp_router.routing.deadline import MIN_TRY_S, room_for_retry
from mcp_router.routing.decisions import tries_allowed
from mcp_router.routing.node import label_of, record_skipped, usable


class Retrying:
    """Retries its child as the decision table says, within the call's deadline.

    The n-th retry waits `b/2 + rng.uniform(0, b/2)` with
    `b = min(backoff_max_s, backoff_initial_s * 2**(n-1))` ("equal jitter": never less than
    half the backoff, so waits still grow, while concurrent callers spread out). A respected
    Retry-After replaces that wait exactly; one above `backoff_max_s` means "not soon", so
    the target is given up and the fallback moves on. No wait starts unless it leaves
    `min_try_s` before the deadline; otherwise the error is re-raised so the next target
    gets the time.

    Whoever needs to know of each failed try as it happens, not only of the error a whole
    hop ends with, listens (`on_failed_try`): a Breaker learns of a Retry-After while this
    call waits it out, so other calls are held off meanwhile.
    """

    def __init__(self, child: ChatProvider, retry: RetryConfig, clock: Clock,
                 rng: random.Random, *, min_try_s: float = MIN_TRY_S) -> None:
        self._child, self._retry, self._clock, self._rng = child, retry, clock, rng
        self._min_try_s = min_try_s
        self._listeners: list[Callable[[ProviderError], None]] = []

    @property
    def label(self) -> str:
        return label_of(self._child)

    def skip(self, call: Call, reason: str) -> None:
        """Record the wrapped targets as skipped."""
        record_skipped(self._child, call, reason)

    def usable(self, call: Call) -> bool:
        """Whether the wrapped target may be asked under `call` (see `node.usable`)."""
        return usable(self._child, call)

    def on_failed_try(self, listener: Callable[[ProviderError], None]) -> None:
        """Call `listener(error)` after every failed try, before any wait for the next."""
        self._listeners.append(listener)

    async def complete(self, request: ChatRequest, call: Call) -> ChatResponse:
        """Ask the child, retrying transient failures; re-raise the last error when giving up."""
        tries = 0
        while True:
            tries += 1
            first_attempt = len(call.attempts)
            try:
                return await self._child.complete(request, call)
            except ProviderError as error:
                for listener in self._listeners:
                    listener(error)
                wait = self._wait_before_retry(error, tries, call, first_attempt)
                if wait is None:
                    raise
                await call.progress(f"{_what_happened(error)}, retrying in {_duration(wait)}")
                await self._clock.sleep(wait)

    def backoff_s(self, retry_number: int) -> float:
        """The jittered wait before the `retry_number`-th retry (1-based), without Retry-After."""
        cap = self._retry.backoff_max_s
        base = min(cap, self._retry.backoff_initial_s * 2 ** (retry_number - 1))
        return base / 2 + self._rng.uniform(0, base / 2)

    def _wait_before_retry(self, error: ProviderError, tries: int, call: Call,
                           first_attempt: int) -> float | None:
        if tries >= tries_allowed(error, self._retry):
            return None
        retry_after = _retry_after(error) if self._retry.respect_retry_after else None
        cap = self._retry.backoff_max_s
        if retry_after is not None and retry_after > cap:
            _annotate(call, first_attempt,
                      f"not retried: Retry-After {retry_after:g} s is over the {cap:g} s cap "
                      "(retry.backoff_max_s)")
            return None
        wait = retry_after if retry_after is not None else self.backoff_s(tries)
        now = self._clock.now()
        if now >= call.deadline:  # an answer that ran on past the share (see `Target`)
            _annotate(call, first_attempt, "not retried: the time this target has (its share "
                      "of the deadline) is used up")
            return None
        if not room_for_retry(now, wait, call.deadline, self._min_try_s):
            after = f"after a {wait:.1f} s wait " if wait >= 0.05 else ""
            _annotate(call, first_attempt,
                      f"not retried: {after}too little would be left of the time this target "
                      "has (its share of the deadline)")
            return None
        return wait


def _retry_after(error: ProviderError) -> float | None:
    if isinstance(error, ProviderStatusError) and error.retry_after is not None:
        return max(0.0, error.retry_after)
    return None


def _annotate(call: Call, first_attempt: int, note: str) -> None:
    """Say on the failed try's attempt why it was not retried, so the caller sees it."""
    if len(call.attempts) <= first_attempt:
        return
    last = call.attempts[-1]
    error = f"{last.error}; {note}" if last.error else note
    call.attempts[-1] = last.model_copy(update={"error": error})


def _what_happened(error: ProviderError) -> str:
    if isinstance(error, ProviderStatusError):
        what = str(error.status)
    elif isinstance(error, ProviderTimeout):
        what = "timed out"
    elif isinstance(error, ProviderUnavailable):
        what = "unreachable"
    elif isinstance(error, ProviderProtocolError):
        what = "sent a malformed or cut answer"
    else:
        what = "failed"
    return f"{error.provider} {what}"


def _duration(seconds: float) -> str:
    """A wait as people read it: "1.2 s", or "40 ms" for one too short to show in tenths."""
    return f"{seconds:.1f} s" if seconds >= 0.1 else f"{seconds * 1000:.0f} ms"
