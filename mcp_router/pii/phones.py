"""Phone numbers judged apart from a run of digit groups: bare digits, national lengths, and
the `0151/23456789` form, whose slash ends a run of digits for the number detector."""

from __future__ import annotations

import re

from mcp_router.pii.detectors import Finding, left_ok, right_ok, word_before
from mcp_router.pii.validators import nanp_ok

# The nouns also as part of a snake_case name (`customer_phone: …`, `mobile_no=…`), as in
# code, config and metadata labels; the verbs only as words (`call_id` is no phone).
_PHONE_CONTEXT = re.compile(r"(?<![^\W_])(?:phone|tel|telephone|mobile|cell|fax|whatsapp|sms)"
                            r"(?![^\W_])|\b(?:call|contact|dial|text me)\b|手机|电话|電話")
# German style `0151/23456789`: an area code, a slash, the subscriber number. The scan starts
# at the slash, a literal `re` finds fast, and the area code is read backwards from there.
_SLASHED = re.compile(r"/(?<=\d/)\d{3,8}(?!\d)")


def national_length(sizes: list[int]) -> bool:
    """Digit groups (trunk zero and area code first) that add up to a national number: 10 or
    11 digits in groups of 2-6, the last up to 8; or 12 as an area code of 3-5 digits and one
    block (0151 23456789). Twelve in groups of four (0319 0032 7157) reads as a reference."""
    total = sum(sizes)
    return (all(size <= 6 for size in sizes[1:-1])
            and (total in (10, 11) or total == 12 and sizes[0] >= 3 and len(sizes) == 2))


def slashed_phones(text: str) -> list[Finding]:
    """Trunk-zero numbers written `0151/23456789` or `030/1234567`; not inside a path
    (`backup/0151/23456789`) or a date (`03/15/2024`)."""
    found: list[Finding] = []
    for m in _SLASHED.finditer(text):
        slash, end = m.span()
        start = slash
        while start > slash - 5 and start > 0 and text[start - 1].isdigit():
            start -= 1
        area = slash - start
        if text[start] == "0" and text[start + 1] != "0" and 2 <= area <= 5 \
                and not text[start - 1:start].isdigit() and left_ok(text, start) \
                and right_ok(text, end) and text[end:end + 1] != "/" \
                and national_length([area, end - slash - 1]):
            found.append(Finding("phone", start, end))
    return found


def phone_alone(text: str, start: int, end: int) -> bool:
    """Ten to twelve digits: a phone only when the text says it is one, and a North American
    number (ten, or 1 + ten), a trunk-zero national number or a Chinese mobile (1[3-9] + nine).
    """
    digits = text[start:end]
    ten = digits[1:] if len(digits) == 11 and digits[0] == "1" else digits
    national = (digits[0] == "0" and digits[1] != "0") or \
        (len(digits) == 11 and digits[0] == "1" and digits[1] in "3456789")
    return (right_ok(text, end) and (nanp_ok(ten, strict=True) or national)
            and _PHONE_CONTEXT.search(word_before(text, start, 24)) is not None)
