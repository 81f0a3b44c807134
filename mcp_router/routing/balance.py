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
    `weight` times, interleaved rather than in runs. The pick goes first; the other children
    follow in descending weight, under the same rules as Fallback.
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

    def order(self) -> list[ChatProvider]:
        """Advance the rotation by one call: the pick, then the rest by descending weight.

        No await in here, so concurrent calls on one event loop each see a consistent step.
        """
        for index, weight in enumerate(self._weights):
            self._current[index] += weight
        pick = max(range(len(self._current)), key=self._current.__getitem__)
        self._current[pick] -= self._total
        return [self._children[pick]] + [self._children[i] for i in self._by_weight if i != pick]

    async def complete(self, request: ChatRequest, call: Call) -> ChatResponse:
        """The picked child's answer, or the first answer among the fallbacks."""
        return await try_in_order(self.order(), request, call, self._clock, self._move_on)
