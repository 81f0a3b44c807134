"""Which targets' state is kept: the config's targets always, caller-named ones while recent."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable

# A caller may name any model of a provider without a `models` list (a vLLM or Ollama
# server, a gateway), and each name would otherwise keep a routing leaf, a circuit and a
# health window for the life of the process. 256 is several times any team's working set
# of explicitly named models, and holds about a megabyte of state at most.
KEEP_NAMED = 256


class Roster:
    """The targets ("provider/model") whose state is kept.

    Targets the config names (`pin`) are kept forever. Targets only callers name are kept
    while they are among the `keep` most recently used; beyond that the least recently used
    idle one goes. A busy one (an open circuit, a call in flight) is never dropped, so
    naming other models cannot be used to forget an open circuit: when every older target
    is busy, the roster stays over its bound until one is idle.
    """

    def __init__(self, keep: int = KEEP_NAMED) -> None:
        if keep < 1:
            raise ValueError("keep must be at least 1")
        self.keep = keep
        self._pinned: set[str] = set()
        self._named: OrderedDict[str, None] = OrderedDict()  # least recently used first

    def pin(self, keys: Iterable[str]) -> None:
        """Keep `keys` forever: the targets the config names."""
        for key in keys:
            self._pinned.add(key)
            self._named.pop(key, None)

    def pinned(self, key: str) -> bool:
        """Whether the config names `key`."""
        return key in self._pinned

    def use(self, key: str) -> None:
        """`key` was just used: it is now the most recently used caller-named target."""
        if key not in self._pinned:
            self._named[key] = None
            self._named.move_to_end(key)

    def recent(self, keys: Iterable[str], most: int) -> set[str]:
        """Of `keys`, the caller-named ones among the `most` most recently used."""
        wanted, found = set(keys), set[str]()
        for key in reversed(self._named):
            if len(found) >= most:
                break
            if key in wanted:
                found.add(key)
        return found

    def overflow(self, busy: Callable[[str], bool], spare: str | None = None) -> list[str]:
        """The caller-named targets to drop to get back within the bound, least recently
        used first, skipping busy ones and `spare` (the one being used now); each is
        removed from the roster."""
        excess = len(self._named) - self.keep
        if excess <= 0:
            return []
        dropped = list(self._idle_oldest(busy, spare, excess))
        for key in dropped:
            del self._named[key]
        return dropped

    def _idle_oldest(self, busy: Callable[[str], bool], spare: str | None,
                     count: int) -> Iterable[str]:
        found = 0
        for key in self._named:
            if found >= count:
                return
            if key != spare and not busy(key):
                found += 1
                yield key
