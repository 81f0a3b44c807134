"""Invisible characters: a text as a reader sees it, and its offsets mapped back to the original.

Zero-width spaces and joiners, word joiners, byte-order marks, soft hyphens, bidirectional
controls and variation selectors render as nothing, so `jane\u200b@example.com` reads as an
address and `4111 11\u00ad11 1111 1111` as a card. Detectors look at the visible text too, and
what they find there is mapped back onto the original, spanning the invisible characters, so
the whole value is replaced in what leaves the process.

Between two digits an invisible character may also stand where a separator was meant:
`4111 1111\u200b1111 1111` is a card once it is read as a space, `4111-1111\u200b1111-1111`
once it is read as a hyphen. Those readings are searched as well.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Sequence

from mcp_router.pii.detectors import Finding

_INVISIBLE = re.compile(
    "[\u00ad\u034f\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069"
    "\ufe00-\ufe0f\ufeff]+")


def without_invisible(text: str) -> str:
    """`text` with its invisible characters removed (ASCII text has none)."""
    return text if text.isascii() else _INVISIBLE.sub("", text)


class VisibleText:
    """A text without its invisible characters, and the way back to offsets in the original.

    Each run of invisible characters is removed, or in a separated reading replaced by one
    separator where it stands between two digits.
    """

    def __init__(self, original: str, runs: list[tuple[int, int]],
                 fills: list[str] | None = None) -> None:
        pieces: list[str] = []
        # For each run of invisible characters: where the visible text goes on after it, and
        # how many characters fewer than the original it has up to there.
        self._at: list[int] = []
        self._removed: list[int] = []
        pos = removed = 0
        for (start, end), fill in zip(runs, fills or [""] * len(runs), strict=True):
            pieces += (original[pos:start], fill)
            self._at.append(start - removed + len(fill))
            removed += end - start - len(fill)
            self._removed.append(removed)
            pos = end
        pieces.append(original[pos:])
        self.text = "".join(pieces)

    @classmethod
    def readings(cls, text: str, separators: Sequence[str] = ()) -> list[VisibleText]:
        """The visible forms of `text`: its invisible runs removed, then, when some run stands
        between two digits, one form for each of `separators` with those runs read as it.
        Empty when nothing in `text` is invisible."""
        if text.isascii():
            return []
        runs = [m.span() for m in _INVISIBLE.finditer(text)]
        if not runs:
            return []
        forms = [cls(text, runs)]
        between = [text[start - 1:start].isdigit() and text[end:end + 1].isdigit()
                   for start, end in runs]
        if any(between):
            forms += [cls(text, runs, [sep if b else "" for b in between]) for sep in separators]
        return forms

    @classmethod
    def of(cls, text: str) -> VisibleText | None:
        """The visible form of `text`, or None when nothing in it is invisible."""
        forms = cls.readings(text)
        return forms[0] if forms else None

    @classmethod
    def separated(cls, text: str, separator: str) -> VisibleText | None:
        """The visible form with each invisible run between two digits read as `separator`,
        or None when no run stands between two digits."""
        forms = cls.readings(text, (separator,))
        return forms[1] if len(forms) > 1 else None

    def original(self, finding: Finding) -> Finding:
        """`finding` in the visible text as a span of the original: from its first visible
        character to its last, with the invisible characters between them."""
        start = self._offset(finding.start)
        end = self._offset(finding.end - 1) + 1 if finding.end > finding.start else start
        return Finding(finding.entity, start, end)

    def _offset(self, i: int) -> int:
        """Where the visible text's character `i` is in the original."""
        k = bisect_right(self._at, i)  # the runs removed before that character
        return i + (self._removed[k - 1] if k else 0)

    def __repr__(self) -> str:
        return f"<VisibleText: {len(self._at)} invisible runs>"
