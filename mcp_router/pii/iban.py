"""IBANs, compact or in groups of four, validated by country length and the mod-97 check."""

from __future__ import annotations

import string

from mcp_router.pii.detectors import Finding, is_word_char, skeleton
from mcp_router.pii.validators import iban_length, iban_ok

# Upper-case letters to "A" and digits to "0": an IBAN's head (country, check digits) is then
# the literal "AA00", which str.find locates far faster than a regex scan.
_CLASSES = str.maketrans({**dict.fromkeys(string.ascii_uppercase, "A"),
                          **dict.fromkeys(string.digits, "0")})
_CLASSES_BYTES = bytes.maketrans(string.ascii_uppercase.encode() + string.digits.encode(),
                                 b"A" * 26 + b"0" * 10)


class IbanDetector:
    """IBANs, compact or in groups of four, with the country's length and the mod-97 check."""

    name = "iban"
    entities = frozenset({name})

    def find(self, text: str) -> list[Finding]:
        found: list[Finding] = []
        classes = skeleton(text, _CLASSES, _CLASSES_BYTES)
        start = classes.find("AA00")
        while start != -1:
            length = iban_length(text[start:start + 2])
            if length is not None and not (start > 0 and is_word_char(text[start - 1])):
                end = _iban_span(text, start, length)
                if end is not None:
                    found.append(Finding("iban", start, end))
            start = classes.find("AA00", start + 1)
        return found


def _iban_span(text: str, start: int, length: int) -> int | None:
    """Where an IBAN of `length` characters starting at `start` ends, if it is valid."""
    spaced = text[start + 4:start + 5] == " "
    chars: list[str] = []
    pos = start
    while len(chars) < length and pos < len(text):
        ch = text[pos]
        if spaced and ch == " " and (pos - start) % 5 == 4:
            pos += 1
            continue
        if not (ch.isdigit() or "A" <= ch <= "Z"):
            return None
        chars.append(ch)
        pos += 1
    if len(chars) < length or (pos < len(text) and text[pos].isalnum()):
        return None
    return pos if iban_ok("".join(chars)) else None
