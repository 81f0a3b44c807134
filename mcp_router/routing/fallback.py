"""Fallback: asks its children in order until one answers, sharing one deadline between them."""

from __future__ import annotations

from collections.abc import Collection, Sequence

from mcp_router.clock import Clock
from mcp_router.errors import AllTargetsFailed, ProviderError
from mcp_router.messages import Call, ChatProvider, ChatRequest, ChatResponse
from mcp_router.routing.deadline import DEADLINE_REACHED, plan_hop
from mcp_router.routing.decisions import ends_route
from mcp_router.routing.node import label_of, record_skipped


class Fallback:
    """Tries children in order; see `try_in_order` for the move-on and deadline rules."""

    def __init__(self, children: Sequence[ChatProvider], clock: Clock, *,
                 label: str | None = None, move_on: Collection[str] = ()) -> None:
        if not children:
            raise ValueError("a fallback needs at least one child")
        self._children, self._clock = list(children), clock
        self._move_on = frozenset(move_on)
        self._label = label or " → ".join(label_of(c) for c in self._children)

    @property
    def label(self) -> str:
        return self._label

    def skip(self, call: Call, reason: str) -> None:
        """Record every child's targets as skipped."""
        for child in self._children:
            record_skipped(child, call, reason)

    async def complete(self, request: ChatRequest, call: Call) -> ChatResponse:
        """The first answer among the children, or AllTargetsFailed."""
        return await try_in_order(self._children, request, call, self._clock, self._move_on)


async def try_in_order(children: Sequence[ChatProvider], request: ChatRequest, call: Call,
                       clock: Clock, move_on: Collection[str] = ()) -> ChatResponse:
    """Ask `children` one after another until one answers.

    Any ProviderError or a nested AllTargetsFailed moves on to the next child, except a
    400/422, which is re-raised at once. Each hop runs under `plan_hop`. When the deadline
    has passed before a hop, the children not yet asked are recorded as skipped
    ("deadline reached"). Either way the route ends in AllTargetsFailed carrying every
    attempt of the call so far, in order; it is raised even when nothing could be tried,
    so callers handle one error type per route and always get the attempts.

    An answer whose finish_reason is in `move_on` (`retry.fallback_on_finish`) moves on too,
    unless no child is left; its attempt stays `ok` (it was answered, and paid for) and its
    `error` says why the next was asked.
    """
    last_error: Exception | None = None
    for index, child in enumerate(children):
        if clock.now() >= call.deadline:
            for untried in children[index:]:
                record_skipped(untried, call, DEADLINE_REACHED)
            raise AllTargetsFailed(call.attempts, "no target answered before the deadline"
                                   ) from last_error
        if index:
            await call.progress(f"falling back to {label_of(child)}")
        hop = plan_hop(call, clock.now(), last=index == len(children) - 1)
        try:
            response = await child.complete(request, hop)
        except (ProviderError, AllTargetsFailed) as error:
            if ends_route(error):
                raise
            last_error = error
            continue
        reason = response.completion.finish_reason
        if reason not in move_on or index == len(children) - 1:
            return response
        _note_moved_on(call, response, reason)
    raise AllTargetsFailed(call.attempts) from last_error


def _note_moved_on(call: Call, response: ChatResponse, reason: str | None) -> None:
    """Say on the answered attempt why its answer was not the call's."""
    for i in range(len(call.attempts) - 1, -1, -1):
        attempt = call.attempts[i]
        if (attempt.provider, attempt.model, attempt.outcome) == (
                response.provider, response.model, "ok"):
            call.attempts[i] = attempt.model_copy(update={"error": (
                f"answered with finish_reason {reason}; the next target was asked "
                f"(retry.fallback_on_finish)")})
            return
