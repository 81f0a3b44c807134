"""Token counts no tokenizer gave, estimated high from a text's size in UTF-8, in any script."""

from __future__ import annotations

import math


def estimate_tokens(chars: int, utf8_bytes: int) -> int:
    """Tokens in a text of `chars` characters and `utf8_bytes` bytes of UTF-8, estimated high
    for any script: (2 × bytes − characters) / 3, so a token per 3 ASCII characters, 1 per
    Cyrillic or Greek letter, 5/3 per Chinese, Japanese or Korean character, 7/3 per emoji,
    where tokenizers commonly give about a quarter, a half, one, and one or two."""
    return math.ceil((2 * utf8_bytes - chars) / 3)


def utf8_size(text: str) -> int:
    """The bytes `text` takes in UTF-8 (a lone surrogate counted as the 3 it would take)."""
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def estimate_text_tokens(text: str) -> int:
    """`estimate_tokens` of `text`."""
    return estimate_tokens(len(text), utf8_size(text))
