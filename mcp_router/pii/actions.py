"""What happens to a finding: typed placeholders, masks, and the per-session pseudonym map."""

from __future__ import annotations

import functools
import re
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Literal

from mcp_router.pii.detectors import Finding
from mcp_router.pii.invisible import without_invisible

Action = Literal["redact", "mask", "pseudonymize", "block"]
ACTIONS: tuple[Action, ...] = ("redact", "mask", "pseudonymize", "block")

_TAG_UNSAFE = re.compile(r"[^A-Za-z0-9]+")
# A tag may start with a digit (a custom type named `2fa_code` is tagged `2FA_CODE`).
_PLACEHOLDER = re.compile(r"<([A-Za-z0-9][A-Za-z0-9_]*?)_(\d{1,6})>")
# Typed placeholders numbered above this are not held off: no session issues half a million
# numbers of one label, and holding them (a planted text of thousands of `<EMAIL_999999>`)
# would raise the floor until numbers grew past the six digits `_PLACEHOLDER` reads back.
_HIGHEST_HELD = 500_000
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
    which, so a stray log line or traceback cannot print them. A session can last days
    (over stdio it is the host's connection), so the map is bounded by values and by the
    characters they hold (20,000 values / 2 M characters, value and normal form counted:
    more than a long agent session pasting logs names, and a few MB per session however
    many sessions a shared server holds). The least recently used value (seen in a request
    or restored in an answer) is dropped first; the newest is always kept. A dropped
    value's number is never issued again: seen again, the value is numbered anew, and an
    answer naming its old placeholder keeps it as written, which is all the upstream saw.
    """

    def __init__(self, max_values: int = 20_000, max_chars: int = 2_000_000,
                 max_written: int = 4096) -> None:
        self._max_values, self._max_chars = max_values, max_chars
        self._max_written = max_written
        self._by_value: dict[tuple[str, str], str] = {}
        # In use order: a value's use moves its placeholder to the end (cheap on every call).
        self._by_placeholder: OrderedDict[str, tuple[tuple[str, str], str]] = OrderedDict()
        self._chars = 0
        self._counters: dict[str, int] = {}  # per label, the highest number issued
        self._written: set[str] = set()  # typed placeholders numbered past their counter
        self._floor = 0  # no label's numbers up to this are issued (see `_forget_written`)

    def placeholder(self, entity: str, value: str) -> str:
        """The session's placeholder for `value`, numbering a new one on first sight; a
        placeholder the inputs already held literally (see `reserve`) is skipped."""
        key = (entity, normal_form(entity, value))
        found = self._by_value.get(key)
        if found is not None:
            self._by_placeholder.move_to_end(found)
            return found
        found = self._issue(tag(entity))
        self._by_value[key] = found
        self._by_placeholder[found] = (key, value)
        self._chars += len(value) + len(key[1])
        while len(self._by_placeholder) > 1 and (len(self._by_placeholder) > self._max_values
                                                 or self._chars > self._max_chars):
            (dropped_key, dropped) = self._by_placeholder.popitem(last=False)[1]
            del self._by_value[dropped_key]
            self._chars -= len(dropped) + len(dropped_key[1])
        return found

    @property
    def crowded(self) -> bool:
        """Whether the map is past half its bound: from then on the placeholders of texts
        filtered before (the history a host sends again, served from the session's memo)
        must count as used too (`touch`), or their values would be dropped while the
        upstream still reads them every turn."""
        return len(self._by_placeholder) * 2 > self._max_values or \
            self._chars * 2 > self._max_chars

    def touch(self, text: str) -> None:
        """Count the session's placeholders in `text`, a filtered text sent again, as used."""
        if "<" not in text:
            return
        for m in _PLACEHOLDER.finditer(text):
            placeholder = _label(m)
            if placeholder in self._by_placeholder:
                self._by_placeholder.move_to_end(placeholder)

    def _issue(self, label: str) -> str:
        """The next number of `label` past its counter, the floor and every typed placeholder;
        counters only grow, so no number is issued twice, even once its value is dropped."""
        n = max(self._counters.get(label, 0), self._floor) + 1
        while f"<{label}_{n}>" in self._written:
            n += 1
        self._counters[label] = n
        return f"<{label}_{n}>"

    def reserve(self, text: str) -> None:
        """Never issue a placeholder that `text` holds literally (`login failed for <EMAIL_1>`
        in a pasted log line, or one planted in fetched text): restoring it would put one of
        the caller's values where the text meant something else. Only one numbered past
        what the session has issued needs remembering; the counters keep the rest out."""
        if "<" not in text:
            return
        for m in _PLACEHOLDER.finditer(text):
            label, n = m.group(1).upper(), int(m.group(2))
            if max(self._counters.get(label, 0), self._floor) < n <= _HIGHEST_HELD:
                self._written.add(f"<{label}_{n}>")
        if len(self._written) > self._max_written:
            self._forget_written()

    def _forget_written(self) -> None:
        """Keep `_written` bounded without ever issuing what it held: drop the typed
        placeholders the counters have passed, then, if still too many, the lowest-numbered
        down to half the bound, raising the floor past them (new numbers then start above it,
        for every label)."""
        kept = sorted((n, p) for p, label, n in map(_parts, self._written)
                      if n > max(self._counters.get(label, 0), self._floor))
        if len(kept) > self._max_written:
            cut = len(kept) - self._max_written // 2
            self._floor = kept[cut - 1][0]
            kept = [(n, p) for n, p in kept[cut:] if n > self._floor]
        self._written = {p for _, p in kept}

    def restore(self, text: str) -> str:
        """Replace this session's placeholders in `text` by the values they stand for (a
        dropped value's placeholder is left as written)."""
        if "<" not in text or not self._by_placeholder:
            return text
        return _PLACEHOLDER.sub(self._original, text)

    def _original(self, m: re.Match[str]) -> str:
        placeholder = _label(m)
        found = self._by_placeholder.get(placeholder)
        if found is None:
            return m.group()
        self._by_placeholder.move_to_end(placeholder)
        return found[1]

    def __len__(self) -> int:
        return len(self._by_placeholder)

    def __repr__(self) -> str:
        return f"<Pseudonyms: {len(self)} values>"


def _parts(placeholder: str) -> tuple[str, str, int]:
    """`<EMAIL_3>` as (`<EMAIL_3>`, `EMAIL`, 3)."""
    label, _, n = placeholder[1:-1].rpartition("_")
    return placeholder, label, int(n)


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

