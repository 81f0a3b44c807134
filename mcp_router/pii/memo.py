"""What a session has already filtered: agents send the whole chat history again every turn.

Without a memo each call filters every earlier message once more, so the filter's cost grows
with the conversation. With it, a call filters only the messages it has not seen before.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Mapping

Filtered = tuple[str, Mapping[str, int]]
"""A text's filtered form and the count of findings per entity type in it."""


class FilterMemo:
    """The filtered form of texts one session has filtered, least recently used dropped first.

    Keyed by `memo_key(text)`, a digest, so the memo holds no input in clear: only filtered
    forms, which carry placeholders, masks or redactions instead of what was found. The caller
    computes the key once per text, for both the look-up and the store. Bounded both by
    entries and by the characters it keeps (2 M characters: a few MB per session, however
    many sessions a shared server holds, and far more history than a host resends).
    """

    def __init__(self, max_entries: int = 2048, max_chars: int = 2_000_000) -> None:
        self._max_entries, self._max_chars = max_entries, max_chars
        self._entries: OrderedDict[bytes, Filtered] = OrderedDict()
        self._chars = 0

    def get(self, key: bytes) -> Filtered | None:
        """What filtering the text of `key` gave before in this session, if it is still kept."""
        found = self._entries.get(key)
        if found is not None:
            self._entries.move_to_end(key)
        return found

    def put(self, key: bytes, filtered: str, counts: Mapping[str, int]) -> None:
        """Keep what filtering the text of `key` gave; one longer than the whole memo is not."""
        if len(filtered) > self._max_chars:
            return
        old = self._entries.pop(key, None)
        if old is not None:
            self._chars -= len(old[0])
        self._entries[key] = (filtered, counts)
        self._chars += len(filtered)
        while len(self._entries) > self._max_entries or self._chars > self._max_chars:
            _, (dropped, _) = self._entries.popitem(last=False)
            self._chars -= len(dropped)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"<FilterMemo: {len(self)} texts>"


def memo_key(text: str) -> bytes:
    """The memo's key for `text`: a digest, never the text."""
    # surrogatepass: a lone surrogate in a message must be filtered, not crash the call
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()
