"""The detector protocol, the finding type, regex detectors, boundaries and the overlap rule."""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import NamedTuple, Protocol, runtime_checkable


class Finding(NamedTuple):
    """A span of the inspected text and its entity type; the value itself is never stored."""

    entity: str
    start: int
    end: int


@runtime_checkable
class Detector(Protocol):
    """Anything that finds entities in text, in process and without I/O.

    `entities` are the types its findings can have: a search for none of them skips it (the
    answer policy looks for secrets only, so the other detectors need not read answers).
    """

    name: str
    entities: frozenset[str]

    def find(self, text: str) -> Iterable[Finding]: ...


Accept = Callable[[str, "re.Match[str]"], "tuple[int, int] | None"]
"""Given the whole text and a candidate match, the span to report, or None to drop it."""


class PatternDetector:
    """A compiled pattern (a config's custom one) whose matches are reported when `accept` keeps
    them; the entity type is the detector's name."""

    def __init__(self, name: str, pattern: str | re.Pattern[str], *,
                 accept: Accept | None = None) -> None:
        self.name = name
        self.entities = frozenset({name})
        self.regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        self._accept = accept

    def find(self, text: str) -> Iterator[Finding]:
        for m in self.regex.finditer(text):
            span = self._accept(text, m) if self._accept else m.span()
            if span is not None and span[1] > span[0]:
                yield Finding(self.name, span[0], span[1])

    def __repr__(self) -> str:
        return f"PatternDetector({self.name!r})"


# Among overlapping findings the longest names the type; on equal length the more specific
# type (lower rank) does, so a card number inside a longer phone-looking run stays a card.
_RANK = {"secret": 0, "credit_card": 1, "iban": 2, "ssn": 3, "email": 4, "ip_address": 5,
         "phone": 6, "profanity": 8}
_CUSTOM_RANK = 7


def resolve_overlaps(findings: Iterable[Finding]) -> list[Finding]:
    """Non-overlapping findings sorted by start.

    Overlapping findings become one finding over their union, typed by the winner (longest,
    then most specific): a losing finding's text is never left uncovered, so a key block a
    greedy token pattern ran into is still redacted whole.
    """
    merged: list[Finding] = []
    group: list[Finding] = []
    end = -1
    for f in sorted(findings, key=lambda f: (f.start, -f.end)):
        if group and f.start >= end:
            merged.append(_union(group, end))
            group = []
        group.append(f)
        end = max(end, f.end) if len(group) > 1 else f.end
    if group:
        merged.append(_union(group, end))
    return merged


def _union(group: list[Finding], end: int) -> Finding:
    if len(group) == 1:  # the usual case: nothing overlaps
        return group[0]
    winner = min(group, key=lambda f: (f.start - f.end, _RANK.get(f.entity, _CUSTOM_RANK)))
    return Finding(winner.entity, group[0].start, end)


def word_before(text: str, start: int, width: int = 32) -> str:
    """The lower-cased text just before `start`, for context keywords."""
    return text[max(0, start - width):start].lower()


def lowered(text: str) -> str:
    """`text` in lower case character for character, so offsets into it are offsets into
    `text`: the odd character whose lower case is longer (`İ`) is left as it is."""
    lower = text.lower()
    if len(lower) == len(text):
        return lower
    return "".join(low if len(low := ch.lower()) == 1 else ch for ch in text)


def is_word_char(ch: str) -> bool:
    """Letters, digits and underscore: a finding must not continue into one of these."""
    return ch.isalnum() or ch == "_"


# ASCII letters, digits and underscore, and the punctuation that glues a number to a token.
_LEFT_STOP = frozenset(string.ascii_letters + string.digits + "_-./$@&+\\")


def left_ok(text: str, start: int) -> bool:
    """The character before `start` does not make the number part of a longer token."""
    if start == 0:
        return True
    ch = text[start - 1]
    if ch in _LEFT_STOP:
        return False
    if ch == ":":
        return not (start > 1 and text[start - 2].isdigit())
    if ch == "=":  # a version pin (`==1.200.200.1000`, `>=`, `~=`), not an assignment
        return not (start > 1 and text[start - 2] in "=<>~!")
    return not ch.isalnum()


def right_ok(text: str, end: int) -> bool:
    """The character after `end` does not continue the number (a full stop then a space is fine)."""
    if end >= len(text):
        return True
    ch = text[end]
    if is_word_char(ch):
        return False
    return not (ch in "-./" and end + 1 < len(text) and text[end + 1].isdigit())


def skeleton(text: str, table: dict[int, str], ascii_table: bytes) -> str:
    """`text` with characters mapped to classes by `table`; ASCII text goes through bytes,
    which translate several times faster (the offsets are the same)."""
    if text.isascii():
        return text.encode().translate(ascii_table).decode("ascii")
    return text.translate(table)


# Letters from the most to the least common in English text.
_BY_FREQUENCY = "etaoinshrdlcumwfgypbvkjxqz"


def rare_letter_patterns(words: Mapping[str, str], after: str = "") -> list[re.Pattern[str]]:
    """Patterns that together find every lower-case word of `words`, followed by the pattern
    it maps to and then by `after`: one pattern per anchor letter.

    `re` jumps from one occurrence of a pattern's leading literal to the next without trying a
    match in between, so each word is written from a rare letter in it (`u` first for `fuck`,
    then a look back for the rest). Every pattern is one more scan of the text, so an anchor
    is dropped, the commonest first, while each word still has another one.
    """
    anchors = {max(word, key=_BY_FREQUENCY.find) for word in words}
    for letter in sorted(anchors, key=_BY_FREQUENCY.find):
        if all(set(word) & (anchors - {letter}) for word in words):
            anchors.discard(letter)
    groups: dict[str, list[str]] = {}
    for word, tail in words.items():
        i = max((k for k, ch in enumerate(word) if ch in anchors),
                key=lambda k: _BY_FREQUENCY.find(word[k]))
        groups.setdefault(word[i], []).append(
            f"{re.escape(word[i + 1:])}(?<={re.escape(word)}){tail}")
    return [re.compile(f"{re.escape(anchor)}(?:{'|'.join(alts)}){after}")
            for anchor, alts in groups.items()]
