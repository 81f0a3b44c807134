"""Stop strings a wire leaves out of the body, applied here to the answer instead."""

from __future__ import annotations

from collections.abc import Iterable

from mcp_router.messages import TextFn


class LocalStops:
    """Cuts an answer at the first occurrence of any of `stops`, as an upstream's `stop` does.

    An empty string is no stop (it would cut every answer to nothing); the upstream would
    have refused it or stopped nowhere.
    """

    __slots__ = ("_longest", "stops")

    def __init__(self, stops: Iterable[str] = ()) -> None:
        self.stops = tuple(dict.fromkeys(s for s in stops if s))
        self._longest = max((len(s) for s in self.stops), default=0)

    def __bool__(self) -> bool:
        return bool(self.stops)

    def find(self, text: str) -> int | None:
        """Where the earliest stop string in `text` begins, or None when there is none."""
        found = [at for at in (text.find(s) for s in self.stops) if at >= 0]
        return min(found, default=None)

    def cut(self, text: str) -> str | None:
        """`text` up to (not including) its first stop string; None when it has none."""
        at = self.find(text)
        return None if at is None else text[:at]

    def before(self, text: str) -> str:
        """`text` up to (not including) its first stop string; all of it when it has none."""
        cut = self.cut(text)
        return text if cut is None else cut

    def passing(self, on_text: TextFn | None) -> StopFilter:
        """An `on_text` that passes streamed text on only as far as the first stop string
        (with no `on_text`, one that only watches for it)."""
        return StopFilter(self, on_text)

    def overlap(self, text: str) -> int:
        """The length of the longest end of `text` that begins some stop string: text that
        may turn out to be a stop once the next delta arrives."""
        for size in range(min(len(text), self._longest - 1), 0, -1):
            tail = text[-size:]
            if any(s.startswith(tail) for s in self.stops):
                return size
        return 0


class StopFilter:
    """Passes deltas on up to the first stop string, also one cut between deltas.

    Text that may be the start of a stop is held back until the next delta settles it, and
    nothing after a stop is passed on; `stopped` says one was found. `flush` passes on what
    is held once the stream ended.
    """

    __slots__ = ("_held", "_on_text", "_stopped", "_stops")

    def __init__(self, stops: LocalStops, on_text: TextFn | None) -> None:
        self._stops, self._on_text = stops, on_text
        self._held, self._stopped = "", False

    @property
    def stopped(self) -> bool:
        """A stop string was found: the answer is complete."""
        return self._stopped

    async def __call__(self, delta: str) -> None:
        if self._stopped:
            return
        text = self._held + delta
        cut = self._stops.cut(text)
        if cut is not None:
            self._stopped, self._held = True, ""
        else:
            keep = self._stops.overlap(text)
            cut, self._held = text[:len(text) - keep], text[len(text) - keep:]
        if cut and self._on_text is not None:
            await self._on_text(cut)

    async def flush(self) -> None:
        """Pass on the text held back: the stream ended without it becoming a stop."""
        held, self._held = self._held, ""
        if held and not self._stopped and self._on_text is not None:
            await self._on_text(held)
