"""Helpers for the PII tests: what a default filter finds, and check digits computed apart."""

from __future__ import annotations

from mcp_router.pii import PiiFilter, PiiPolicy

DEFAULT = PiiFilter(PiiPolicy())


def found(text: str, pii: PiiFilter = DEFAULT) -> list[tuple[str, str]]:
    """(entity, matched text) for every finding of `pii` in `text`."""
    return [(f.entity, text[f.start:f.end]) for f in pii.detect(text)]


def entities(text: str, pii: PiiFilter = DEFAULT) -> set[str]:
    return {entity for entity, _ in found(text, pii)}


def with_luhn_digit(body: str) -> str:
    """`body` plus the digit that makes it pass the Luhn check (written apart from the package)."""
    digits = [int(c) for c in body]
    for i in range(len(digits) - 1, -1, -2):
        digits[i] = digits[i] * 2 - 9 if digits[i] > 4 else digits[i] * 2
    return body + str(-sum(digits) % 10)


def with_iban_check(country: str, bban: str) -> str:
    """A valid IBAN for `bban` in `country` (ISO 13616 check digits, written apart)."""
    number = int("".join(str(int(c, 36)) for c in bban + country + "00"))
    return f"{country}{98 - number % 97:02d}{bban}"
