"""Look-alike characters: a text with typographic dashes, no-break spaces, full-width forms and
the decimal digits of other scripts read as the ASCII they stand for, one character for one, so
offsets stay valid.

`4111–1111–1111–1111` (en dashes), `123‑45‑6789` (non-breaking hyphens), `4111 1111 1111 1111`
with no-break spaces, `４１１１ １１１１ …` in full-width digits and `٤١١١ ١١١١ …` in Arabic-Indic
(or Persian, Devanagari, Bengali, …) digits are what a word processor, a chat client or an input
method makes of a number someone typed, and what a model reads as that number. Detectors read the
ASCII form as well as the original, and what they find there has the same offsets in the
original. The original is still read too: an em dash used as punctuation (`card—4111 …`) is
not a hyphen that joins the number to the word before it.
"""

from __future__ import annotations

import unicodedata

# NFKC maps the full-width forms U+FF01-U+FF5E to ASCII one for one; it would also change
# the length of other characters (ligatures, compatibility forms), so only these are taken.
_FULL_WIDTH = {0xFF01 + i: chr(0x21 + i) for i in range(0x5E)}
_DASHES = dict.fromkeys(map(ord, "\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe58\ufe63"), "-")
_SPACES = dict.fromkeys(map(ord, "\u00a0\u2007\u2009\u202f\u3000"), " ")
# Every decimal digit (category Nd, which is what `isdecimal` tells) outside ASCII:
# Arabic-Indic `٤`, Persian `۴`, Devanagari `४`, math bold `𝟒`, … Each is one code point, so
# the table stays one for one. Planes 0 and 1 hold them all (planes 2 and up are ideographs
# and private use), and reading only those keeps the import fast.
_DIGITS = {c: str(unicodedata.digit(chr(c))) for c in range(0x80, 0x20000) if chr(c).isdecimal()}
_ASCII = {**_DIGITS, **_FULL_WIDTH, **_DASHES, **_SPACES}
# Below the first of them, a non-ASCII text (accents, most European scripts) has none.
_LOWEST = min(_ASCII)


def ascii_lookalikes(text: str) -> str | None:
    """`text` with its look-alike characters in ASCII, or None when it has none."""
    if text.isascii() or max(text) < chr(_LOWEST):
        return None
    plain = text.translate(_ASCII)
    return None if plain == text else plain
