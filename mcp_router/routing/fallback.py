"""Fallback: asks its children in order until one answers, sharing one deadline between them."""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Sequence

from mcp_router.clock import Clock
from mcp_router.errors import AllTargetsFailed, ProviderError
from mcp_router.messages import Call, ChatProvider, ChatRequest, ChatResponse
from mcp_router.routing.deadline import DEADLINE_REACHED, plan_hop
from mcp_router.routing.decisions import ends_route
from mcp_router.routing.node import label_of, record_skipped, target_keys, usable


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

    def usable(self, call: Call) -> bool:
        """Whether some child may be asked under `call`."""
        return any(askable(child, call) for child in self._children)

    async def complete(self, request: ChatRequest, call: Call) -> ChatResponse:
        """The first answer among the children, or AllTargetsFailed."""
        return await try_in_order(self._children, request, call, self._clock, self._move_on)


async def try_in_order(children: Sequence[ChatProvider], request: ChatRequest, call: Call,
                       clock: Clock, move_on: Collection[str] = ()) -> ChatResponse:
    """Ask `children` one after another until one answers.

    Any ProviderError or a nested AllTargetsFailed moves on to the next child, except a
    400/422, which is re-raised at once. Each hop runs under `plan_hop`; a hop after which
    no child can be asked (`askable`: no key, marked, open past the deadline, done with)
    is planned as the last and gets all the time left. The children after it are still
    gone through, so `attempts` lists each with its own reason for being skipped. Once the
    deadline has passed, the children that could have been asked are recorded as skipped
    ("deadline reached"). Either way the route ends in AllTargetsFailed carrying every
    attempt of the call so far, in order; it is raised even when nothing could be tried,
    so callers handle one error type per route and always get the attempts.

    Within one call a target is asked in one hop at most (one round of its retries): named
    again (a route nested in another, a `fallbacks` entry repeating a route's target) after
    it failed, it is recorded as skipped, "already tried in this call".

    An answer whose finish_reason is in `move_on` (`retry.fallback_on_finish`) moves on too,
    unless it came from the last hop; its attempt stays `ok` (it was answered, and paid for)
    and its `error` says why the next was asked. Named again, that target is not asked again
    either (the same request would get the same answer, paid for twice): its answer stands
    for it, so it is the route's answer when nothing after it can be asked.
    """
    last_error: Exception | None = None
    late = False
    for index, child in enumerate(children):
        done = _done_with(child, call)
        if done is not None:
            record_skipped(child, call, call.done[done])
            if done in call.answers and _last(children, index, call):
                return call.answers[done]
            continue
        if clock.now() >= call.deadline and usable(child, call):
            late = True
            record_skipped(child, call, DEADLINE_REACHED)
            continue
        # Past the deadline, a child that cannot be asked is still let say why: it sends
        # nothing (a Target never calls its adapter after the deadline).
        last = _last(children, index, call)
        if index and clock.now() < call.deadline:
            await call.progress(f"falling back to {label_of(child)}")
        first = len(call.attempts)
        try:
            response = await child.complete(request, plan_hop(call, clock.now(), last=last))
        except (ProviderError, AllTargetsFailed) as error:
            if ends_route(error):
                raise
            _note_failed(call, first)
            last_error = error
            continue
        reason = response.completion.finish_reason
        if reason not in move_on or last:
            return response
        _note_moved_on(call, response, reason)
    if late:
        raise AllTargetsFailed(call.attempts, "no target answered before the deadline"
                               ) from last_error
    raise AllTargetsFailed(call.attempts) from last_error


def askable(child: ChatProvider, call: Call) -> bool:
    """Whether asking `child` under `call` may reach an upstream: it is `usable` and not one
    target this call is done with."""
    return usable(child, call) and _done_with(child, call) is None


def _last(children: Sequence[ChatProvider], index: int, call: Call) -> bool:
    """Whether no child after `children[index]` can be asked."""
    return not any(askable(later, call) for later in children[index + 1:])


def _done_with(child: ChatProvider, call: Call) -> str | None:
    """The target `child` is, when it is one target (a leaf) this call is done with."""
    if not call.done:  # the common case: nothing has failed yet, so nothing to look up
        return None
    keys = target_keys(child)
    return keys[0] if len(keys) == 1 and keys[0] in call.done else None


def _note_failed(call: Call, first: int) -> None:
    """Mark every target a failed hop asked as done with: it had its round of tries."""
    tries = Counter(f"{a.provider}/{a.model}" for a in call.attempts[first:]
                    if a.outcome == "error")
    for key, count in tries.items():
        call.done.setdefault(key, f"already tried in this call ({count} "
                                  f"{'try' if count == 1 else 'tries'}, failed); not asked again")


def _note_moved_on(call: Call, response: ChatResponse, reason: str | None) -> None:
    """Say on the answered attempt why its answer was not the call's, and keep the answer."""
    key = f"{response.provider}/{response.model}"
    call.answers.setdefault(key, response)
    call.done.setdefault(key, f"already answered in this call with finish_reason {reason} "
                              "(retry.fallback_on_finish); not asked again")
    for i in range(len(call.attempts) - 1, -1, -1):
        attempt = call.attempts[i]
        if (attempt.provider, attempt.model, attempt.outcome) == (
                response.provider, response.model, "ok"):
            call.attempts[i] = attempt.model_copy(update={"error": (
                f"answered with finish_reason {reason}; the next target was asked "
                f"(retry.fallback_on_finish)")})
            return
