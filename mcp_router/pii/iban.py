"""IBANs, compact or in groups of four, validated by country length and the mod-97 check."""

from __future__ import annotations

import re

from mcp_router.pii.detectors import Finding, is_word_char, skeleton
from mcp_router.pii.validators import iban_length, iban_ok

# Letters to "A", digits to "0", "_" kept and every other ASCII character a space: an IBAN's
# head (country, check digits) at the start of a word is then " AA00", a literal that `re`
# finds fast (on this four-letter alphabet faster than str.find). Hex hashes are full of
# "ab12", but not after a space.
_CLASSES_BYTES = bytes.maketrans(
    bytes(range(128)),
    bytes(ord("A" if c.isalpha() else "0" if c.isdigit() else "_" if c == "_" else " ")
          for c in map(chr, range(128))))
_CLASSES = {i: chr(c) for i, c in enumerate(_CLASSES_BYTES[:128])}
_NON_ASCII = re.compile(r"[^\x00-\x7f]")
_HEAD_AFTER_SPACE = re.compile(" AA00")


class IbanDetector:
    """IBANs, compact or in groups of four, with the country's length and the mod-97 check."""

    name = "iban"
    entities = frozenset({name})

    def find(self, text: str) -> list[Finding]:
        found: list[Finding] = []
        # With a space in front, a head at the very start also follows a space, and the
        # offset of each match is the offset of its head in `text`.
        for head in _HEAD_AFTER_SPACE.finditer(" " + _classes(text)):
            start = head.start()
            country = text[start:start + 2]
            length = iban_length(country.upper())
            if length is not None and (country.isupper() or country.islower()):
                end = _iban_span(text, start, length, country.isupper())
                if end is not None:
                    found.append(Finding("iban", start, end))
        return found


def _classes(text: str) -> str:
    """`text` mapped to the classes above, offset for offset."""
    classes = skeleton(text, _CLASSES, _CLASSES_BYTES)
    if classes.isascii():
        return classes
    # Letters and digits of other scripts are word characters too.
    return _NON_ASCII.sub(lambda m: "_" if is_word_char(m.group()) else " ", classes)


def _iban_span(text: str, start: int, length: int, capitals: bool) -> int | None:
    """Where an IBAN of `length` characters starting at `start` ends, if it is valid.

    An IBAN is written in capitals or all in lower case (`de89 3704 0044 0532 0130 00`): its
    letters have the case of its country code.
    """
    first, last = ("A", "Z") if capitals else ("a", "z")
    spaced = text[start + 4:start + 5] == " "
    chars: list[str] = []
    pos = start
    while len(chars) < length and pos < len(text):
        ch = text[pos]
        if spaced and ch == " " and (pos - start) % 5 == 4:
            pos += 1
            continue
        if not (ch.isdigit() or first <= ch <= last):
            return None
        chars.append(ch)
        pos += 1
    if len(chars) < length or (pos < len(text) and text[pos].isalnum()):
        return None
    return pos if iban_ok("".join(chars).upper()) else None
