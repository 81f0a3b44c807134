"""The host's own model as a call's last resort: the time the targets leave it, and asking it
with what is left of the deadline, its attempt listed with the others whatever happens."""

from __future__ import annotations

import anyio

from mcp_router.clock import Clock
from mcp_router.errors import (
    AllTargetsFailed,
    ProviderError,
    ProviderNotConfigured,
    ProviderTimeout,
    RouterError,
)
from mcp_router.messages import (
    Attempt,
    Call,
    ChatRequest,
    ChatResponse,
    HostUnreachable,
    LastResort,
    Outcome,
)
from mcp_router.routing.deadline import MIN_TRY_S

# With a last resort offered, the targets leave it a fifth of the deadline, at most this
# much: a host's model needs seconds, and a hanging last target would leave it none.
HOST_SHARE = 0.2
HOST_RESERVE_S = 10.0


def host_reserve_s(timeout_s: float) -> float:
    """The time kept back from the targets for the host's model, of a `timeout_s` deadline."""
    return min(HOST_RESERVE_S, timeout_s * HOST_SHARE)


async def ask_host(last_resort: LastResort, request: ChatRequest, state: Call,
                    refusal: RouterError, clock: Clock) -> ChatResponse:
    """The host's own model as the last target, within what is left of the call's deadline;
    if it cannot answer (or no time is left to ask it), the original error, whose list of
    attempts now ends with the host's and why."""
    started = clock.now()
    left = state.end - started
    if left < MIN_TRY_S and not isinstance(last_resort, HostUnreachable):
        # Asking would spend the host's quota on an answer thrown away; one that cannot be
        # asked still says why.
        raise _ending_with(refusal, state, Attempt(
            provider="host", model="sampling", outcome="skipped",
            error="no time left before the deadline"))
    try:
        try:
            with anyio.fail_after(max(left, 0)):
                response = await last_resort(request, state.progress)
        except TimeoutError as exc:
            raise ProviderTimeout("host", "sampling",
                                  f"no answer within the deadline ({left:.1f} s left)") from exc
    except ProviderError as exc:
        outcome: Outcome = "skipped" if isinstance(exc, ProviderNotConfigured) else "error"
        raise _ending_with(refusal, state, Attempt(
            provider=exc.provider, model=exc.model, outcome=outcome, error=exc.detail,
            latency_ms=_ms(clock.now() - started))) from exc
    state.attempts.append(Attempt(provider=response.provider, model=response.model,
                                  outcome="ok", latency_ms=_ms(clock.now() - started)))
    return response


def _ending_with(refusal: RouterError, state: Call, host: Attempt) -> RouterError:
    """`refusal` once the host's attempt is among the call's (AllTargetsFailed lists it)."""
    state.attempts.append(host)
    if isinstance(refusal, AllTargetsFailed):
        return AllTargetsFailed(state.attempts, refusal.headline)
    return refusal


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)
