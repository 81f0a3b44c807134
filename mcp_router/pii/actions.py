"""What happens to a finding: typed placeholders, masks, and the per-session pseudonym map."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from typing import Literal

from mcp_router.pii.detectors import Finding
from mcp_router.pii.invisible import without_invisible

Action = Literal["redact", "mask", "pseudonymize", "block"]
ACTIONS: tuple[Action, ...] = ("redact", "mask", "pseudonymize", "block")

_TAG_UNSAFE = re.compile(r"[^A-Za-z0-9]+")
# A tag may start with a digit (a custom type named `2fa_code` is tagged `2FA_CODE`).
_PLACEHOLDER = re.compile(r"<([A-Za-z0-9][A-Za-z0-9_]*?)_(\d{1,6})>")
_ALNUM = re.compile(r"[A-Za-z0-9]")
_OBFUSCATED_AT = re.compile(r"\s*[\[({<]\s*at\s*[\])}>]\s*|\s+at\s+")
_OBFUSCATED_DOT = re.compile(r"\s*[\[({<]\s*dot\s*[\])}>]\s*|\s+dot\s+")
_NON_DIGIT = re.compile(r"\D")


@functools.lru_cache(maxsize=256)
def tag(entity: str) -> str:
    """The placeholder tag of an entity type: `credit_card` → `CREDIT_CARD`."""
    return _TAG_UNSAFE.sub("_", entity).strip("_").upper() or "PII"


def redact(entity: str) -> str:
    """The typed placeholder that replaces a redacted value, e.g. `<EMAIL>`."""
    return f"<{tag(entity)}>"


def mask(value: str, entity: str) -> str:
    """Letters and digits become `*`, separators stay; a card keeps its last four digits.

    Keeping the last four is what card receipts show (PCI DSS allows it) and lets a user
    still tell cards apart; every other type is masked completely.
    """
    masked = _ALNUM.sub("*", value)
    if entity != "credit_card":
        return masked
    keep, out = 4, list(masked)
    for i in range(len(value) - 1, -1, -1):
        if keep and value[i].isdigit():
            out[i], keep = value[i], keep - 1
    return "".join(out)


def normal_form(entity: str, value: str) -> str:
    """The spelling-independent form of a value, so `4111 1111…` and `4111-1111…` pair up
    (and a value with invisible characters in it pairs up with the value without them)."""
    value = without_invisible(value)
    if entity in ("credit_card", "ssn", "phone"):
        return _NON_DIGIT.sub("", value)
    if entity == "iban":
        return value.replace(" ", "").upper()
    if entity == "email":
        lowered = _OBFUSCATED_AT.sub("@", value.lower())
        return _OBFUSCATED_DOT.sub(".", lowered).replace(" ", "")
    if entity == "ip_address":
        return value.lower()
    return value


class Pseudonyms:
    """One session's map between values and numbered placeholders, both ways.

    The values live only in this object's memory; `repr` shows how many there are, never
    which, so a stray log line or traceback cannot print them.
    """

    def __init__(self) -> None:
        self._by_value: dict[tuple[str, str], str] = {}
        self._by_placeholder: dict[str, str] = {}
        self._counters: dict[str, int] = {}
        self._written: set[str] = set()

    def placeholder(self, entity: str, value: str) -> str:
        """The session's placeholder for `value`, numbering a new one on first sight; a
        placeholder the inputs already held literally (see `reserve`) is skipped."""
        key = (entity, normal_form(entity, value))
        found = self._by_value.get(key)
        if found is None:
            label = tag(entity)
            n = self._counters.get(label, 0) + 1
            while f"<{label}_{n}>" in self._written:
                n += 1
            self._counters[label] = n
            found = f"<{label}_{n}>"
            self._by_value[key] = found
            self._by_placeholder[found] = value
        return found

    def reserve(self, text: str) -> None:
        """Never issue a placeholder that `text` holds literally (`login failed for <EMAIL_1>`
        in a pasted log line, or one planted in fetched text): restoring it would put one of
        the caller's values where the text meant something else."""
        if "<" in text:
            self._written.update(_label(m) for m in _PLACEHOLDER.finditer(text))

    def restore(self, text: str) -> str:
        """Replace this session's placeholders in `text` by the values they stand for."""
        if "<" not in text or not self._by_placeholder:
            return text
        return _PLACEHOLDER.sub(self._original, text)

    def _original(self, m: re.Match[str]) -> str:
        return self._by_placeholder.get(_label(m), m.group())

    def __len__(self) -> int:
        return len(self._by_placeholder)

    def __repr__(self) -> str:
        return f"<Pseudonyms: {len(self)} values>"


def _label(m: re.Match[str]) -> str:
    """The placeholder a `_PLACEHOLDER` match reads as: `<email_01>` is `<EMAIL_1>`."""
    return f"<{m.group(1).upper()}_{int(m.group(2))}>"


ActionFor = Callable[[str], Action]


def apply_actions(text: str, findings: Sequence[Finding], action_for: ActionFor,
                  pseudonyms: Pseudonyms) -> str:
    """`text` with each finding replaced as its entity's action says (block is decided earlier).
    The placeholders `text` itself holds must be reserved first (`Pseudonyms.reserve`)."""
    if not findings:
        return text
    parts: list[str] = []
    pos = 0
    for f in findings:
        value = text[f.start:f.end]
        action = action_for(f.entity)
        if action == "pseudonymize":
            replacement = pseudonyms.placeholder(f.entity, value)
        elif action == "mask":
            replacement = mask(value, f.entity)
        else:
            replacement = redact(f.entity)
        parts.append(text[pos:f.start])
        parts.append(replacement)
        pos = f.end
    parts.append(text[pos:])
    return "".join(parts)

