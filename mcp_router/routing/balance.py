"""Balanced: spreads calls over weighted children (smooth weighted round robin) and falls back."""

from __future__ import annotations

from collections.abc import Collection, Sequence

from mcp_router.clock import Clock
from mcp_router.messages import Call, ChatProvider, ChatRequest, ChatResponse
from mcp_router.routing.fallback import askable, try_in_order
from mcp_router.routing.node import label_of, record_skipped


class Balanced:
    """Picks a child by nginx's smooth weighted round robin, then falls back to the others.

    Over any window of `sum(weights)` calls (integer weights) each child is picked exactly
    `weight` times, interleaved rather than in runs. As nginx does for a peer that is down,
    the rotation runs over the children that can be asked now (see `order`), so while one is
    out the others keep their relative shares, and the whole split returns when it is back.
    The pick goes first, then the others under the same rules as Fallback.
    """

    def __init__(self, children_with_weights: Sequence[tuple[ChatProvider, float]],
                 clock: Clock, *, label: str | None = None,
                 move_on: Collection[str] = ()) -> None:
        if not children_with_weights:
            raise ValueError("a balanced route needs at least one child")
        if any(weight <= 0 for _, weight in children_with_weights):
            raise ValueError("balance weights must be positive")
        self._children = [child for child, _ in children_with_weights]
        self._weights = [float(weight) for _, weight in children_with_weights]
        self._current = [0.0] * len(self._children)
        self._move_on = frozenset(move_on)
        self._total = sum(self._weights)
        # sorted() is stable, so equal weights keep their configured order.
        self._by_weight = sorted(range(len(self._children)), key=lambda i: -self._weights[i])
        self._rank = [0] * len(self._children)
        for rank, index in enumerate(self._by_weight):
            self._rank[index] = rank
        self._indices = list(range(len(self._children)))
        self._clock = clock
        self._label = label or "balance(" + ", ".join(
            f"{label_of(c)}:{w:g}" for c, w in zip(self._children, self._weights, strict=True)
        ) + ")"

    @property
    def label(self) -> str:
        return self._label

    def skip(self, call: Call, reason: str) -> None:
        """Record every child's targets as skipped, heaviest first."""
        for index in self._by_weight:
            record_skipped(self._children[index], call, reason)

    def usable(self, call: Call) -> bool:
        """Whether some child may be asked under `call`."""
        return any(askable(child, call) for child in self._children)

    def order(self, call: Call) -> list[ChatProvider]:
        """Advance the rotation by one call: the pick, then the others to fall back to.

        Only children that can be asked now take part: `askable` under the call narrowed to
        this instant, so a circuit that is open now (or a Retry-After hold-off) counts as
        out even if it reopens before the deadline; one with no key, marked misconfigured or
        missing, or done with in this call is out too. The live children get their weight
        added and the pick loses the live total, so they keep their relative shares. A child
        that is out keeps its value (it gathers no credit while out) and the rotation goes
        on from there when it returns; a window of calls spanning such a change may be one
        call off per child. When none is live, all take part as before, so the pick order
        still reaches the all-open last resort.

        After the pick come the other live children by the credit the rotation's next step
        would give them (current value plus weight; ties heaviest first): the first fallback
        is the child the rotation would pick next, which moves with the rotation instead of
        always being the heaviest. A child that keeps failing is soon out (its circuit
        opens), and from then on its share is spread by weight through the pick. The children
        that are out come last, heaviest first: listed as skipped, or asked late in the call
        if their circuit has reopened by then.

        No await in here, so concurrent calls on one event loop each see a consistent step.
        """
        now = call.within(self._clock.now())
        children, weights, current = self._children, self._weights, self._current
        live = [i for i in self._indices if askable(children[i], now)]
        if len(live) == len(children) or not live:
            live, total = self._indices, self._total
        else:
            total = sum(weights[i] for i in live)
        for index in live:
            current[index] += weights[index]
        pick = max(live, key=current.__getitem__)
        current[pick] -= total
        rest = sorted((i for i in live if i != pick),
                      key=lambda i: (-current[i] - weights[i], self._rank[i]))
        if live is not self._indices:
            rest += [i for i in self._by_weight if i not in live]
        return [children[pick], *(children[i] for i in rest)]

    async def complete(self, request: ChatRequest, call: Call) -> ChatResponse:
        """The picked child's answer, or the first answer among the fallbacks."""
        return await try_in_order(self.order(call), request, call, self._clock, self._move_on)
