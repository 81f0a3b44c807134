"""Target: the leaf of a route, one adapter bound to one model, asked exactly once per call."""

from __future__ import annotations

from collections.abc import Callable

import anyio

from mcp_router.clock import Clock
from mcp_router.errors import (
    BudgetExceeded,
    ProviderError,
    ProviderNotConfigured,
    ProviderOverBudget,
    ProviderStatusError,
    ProviderTimeout,
)
from mcp_router.messages import (
    Adapter,
    Attempt,
    Call,
    ChatRequest,
    ChatResponse,
    Hold,
    Outcome,
    StreamState,
    TextFn,
)
from mcp_router.routing.deadline import DEADLINE_REACHED

NOT_CONFIGURED = "no API key configured"
STREAM_PROGRESS_EVERY_S = 0.5  # hosts show each notification; more often is noise


class Target:
    """Asks one adapter for one model, within the adapter's timeout and the call's deadline.

    Every try appends exactly one Attempt to the call; an unconfigured provider or a passed
    deadline appends a `skipped` one and raises without calling the adapter. A streamed
    answer whose text has begun may run past the hop's share of the deadline (`call.deadline`)
    up to the whole call's (`call.end`): the share keeps a target that does not answer from
    eating its fallbacks' time, and one that answers is being paid for. A JSON answer shows
    no text before it is whole, so it keeps its share.
    """

    def __init__(self, adapter: Adapter, model: str, clock: Clock) -> None:
        self._adapter, self._model, self._clock = adapter, model, clock

    @property
    def label(self) -> str:
        return f"{self._adapter.provider}/{self._model}"

    def skip(self, call: Call, reason: str) -> None:
        """Record this target as not asked, with the reason."""
        call.attempts.append(self._attempt("skipped", error=reason))

    def usable(self, call: Call) -> bool:
        """False when asking would surely send nothing: the provider has no API key."""
        return self._adapter.configured

    async def complete(self, request: ChatRequest, call: Call) -> ChatResponse:
        """Send the request once; raise the adapter's ProviderError, or ProviderTimeout."""
        provider, model = self._adapter.provider, self._model
        if not self._adapter.configured:
            self.skip(call, NOT_CONFIGURED)
            raise ProviderNotConfigured(provider, model, NOT_CONFIGURED)
        if self._allowed_s(call) <= 0:
            self.skip(call, DEADLINE_REACHED)
            raise ProviderTimeout(provider, model, DEADLINE_REACHED)
        await call.progress(f"asking {self.label}")
        hold = self._reserve(request, call)
        started = self._clock.now()
        allowed = self._allowed_s(call)  # progress reporting may have taken some of it
        try:
            with anyio.fail_after(allowed) as scope:
                granted = scope.deadline  # `_run_on` may move it later
                on_text = self._on_text(call, lambda: self._run_on(call, scope, started))
                completion = await self._adapter.send(request, model, on_text)
            if scope.cancelled_caught:  # its deadline fired, then moved (see `_run_on`):
                raise TimeoutError  # still a timeout, charged, and the route moves on
            latency_ms = self._record(call, started, None, hold, completion.ttfb_ms)
            if hold is not None:
                charged = hold.settle(completion, latency_ms)
                if not completion.usage_reported:  # the result shows what was charged
                    completion = completion.model_copy(update={"usage": charged})
        except TimeoutError as exc:
            had = allowed + (scope.deadline - granted)  # what it had, with any run-on
            timeout = ProviderTimeout(provider, model, _timed_out(call.stream, had))
            ttfb_ms = None if call.stream.first_text_at is None else \
                round((call.stream.first_text_at - started) * 1000, 1)
            self._record(call, started, timeout, hold, ttfb_ms)
            call.stream.clear()  # over: a backoff or the next hop is not being paid for
            raise timeout from exc
        except ProviderError as error:
            self._record(call, started, error, hold)
            call.stream.clear()
            raise
        except anyio.get_cancelled_exc_class():
            # The host gave up: the upstream request is aborted with this scope, and what
            # the provider may already have billed is written down before the hold goes.
            if hold is not None:
                hold.cancelled(round((self._clock.now() - started) * 1000, 1), call.stream)
            raise
        finally:
            if hold is not None:
                hold.release()  # a no-op once settled; frees the money on cancellation
        return ChatResponse(completion=completion, provider=provider, model=model)

    def _on_text(self, call: Call, answering: Callable[[], None]) -> TextFn:
        """Counts streamed text, passes it on, and reports progress now and then; calls
        `answering` once, on the first text of a streamed answer."""
        call.stream.clear()
        call.stream.streaming, call.stream.reported_at = self._adapter.stream, self._clock.now()
        call.stream.first_text_at = None

        async def on_text(delta: str) -> None:
            if not call.stream.chars and delta:
                call.stream.first_text_at = self._clock.now()
                if self._adapter.stream:
                    answering()
            call.stream.add(delta)
            if call.on_text is not None:
                await call.on_text(delta)
            now = self._clock.now()
            if now - call.stream.reported_at >= STREAM_PROGRESS_EVERY_S:
                call.stream.reported_at = now
                await call.progress(f"{self.label}: ~{call.stream.chars // 4} tokens received")

        return on_text

    def _reserve(self, request: ChatRequest, call: Call) -> Hold | None:
        """Hold this attempt's worst case against the budgets, or skip the target."""
        if call.gate is None:
            return None
        try:
            return call.gate.reserve(self._adapter.provider, self._model, request)
        except BudgetExceeded as exc:
            self.skip(call, f"over budget: {exc}")
            raise ProviderOverBudget(self._adapter.provider, self._model, str(exc)) from exc

    def _allowed_s(self, call: Call) -> float:
        return min(self._adapter.timeout_s, call.deadline - self._clock.now())

    def _run_on(self, call: Call, scope: anyio.CancelScope, started: float) -> None:
        """Let an attempt that has begun answering run on to the call's own deadline (never
        past the adapter's timeout, and never shorter than it already had). Not once the
        share has run out: its cancel may be on its way in this very turn, and a deadline
        moved past it would make `fail_after` swallow that cancel instead of timing out."""
        if call.outer is None:  # no share of a longer deadline: it has all it may have
            return
        if scope.cancel_called:  # too late: the timeout charges the text received
            return
        now = self._clock.now()
        left = min(self._adapter.timeout_s - (now - started), call.end - now)
        later = anyio.current_time() + left
        if later > scope.deadline:
            scope.deadline = later

    def _record(self, call: Call, started: float, error: ProviderError | None,
                hold: Hold | None, ttfb_ms: float | None = None) -> float:
        latency_ms = round((self._clock.now() - started) * 1000, 1)
        if error is None:
            call.attempts.append(self._attempt("ok", latency_ms=latency_ms, ttfb_ms=ttfb_ms))
            return latency_ms
        if hold is not None:
            hold.fail(error, latency_ms, call.stream)
        status = error.status if isinstance(error, ProviderStatusError) else None
        call.attempts.append(self._attempt("error", status=status, error=error.detail,
                                           latency_ms=latency_ms, ttfb_ms=ttfb_ms))
        return latency_ms

    def _attempt(self, outcome: Outcome, *, status: int | None = None,
                 error: str | None = None, latency_ms: float = 0.0,
                 ttfb_ms: float | None = None) -> Attempt:
        return Attempt(provider=self._adapter.provider, model=self._model, outcome=outcome,
                       status=status, error=error, latency_ms=latency_ms,
                       ttfb_ms=None if ttfb_ms is None else round(ttfb_ms, 1))


def _timed_out(stream: StreamState, allowed_s: float) -> str:
    """Why the attempt ran out of time: no answer, or one that was still coming in."""
    if stream.started:
        return (f"still streaming when its {allowed_s:.3g} s ran out "
                f"(~{max(1, stream.chars // 4)} tokens in): the answer was cut off")
    return f"no answer within {allowed_s:.3g} s"
