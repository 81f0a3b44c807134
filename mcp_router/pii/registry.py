"""The detector registry: built-ins plus the config's custom patterns, and searches over them."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Sequence

from mcp_router.pii.alphabet import digits_and
from mcp_router.pii.assignments import AssignmentDetector
from mcp_router.pii.detectors import Detector, Finding, PatternDetector, resolve_overlaps
from mcp_router.pii.iban import IbanDetector
from mcp_router.pii.invisible import VisibleText
from mcp_router.pii.lookalike import ascii_lookalikes
from mcp_router.pii.network import EmailDetector, Ipv4Detector, Ipv6Detector
from mcp_router.pii.numeric import CustomPattern, NumberDetector, id_like, in_hyphenated_code
from mcp_router.pii.policy import PiiPolicy
from mcp_router.pii.profanity import ProfanityDetector
from mcp_router.pii.secrets import PrivateKeyDetector, UrlCredentialDetector, VendorKeyDetector
from mcp_router.pii.validators import (
    card_ok,
    iban_ok,
    ipv4_sensitive,
    ipv6_sensitive,
    ssn_ok,
)

_NON_DIGIT = re.compile(r"\D")


def _ip_ok(value: str) -> bool:
    try:
        version = ipaddress.ip_address(value.split("%", 1)[0]).version
    except ValueError:
        return False
    return ipv4_sensitive(value) if version == 4 else ipv6_sensitive(value)


def _card_ok(text: str, start: int, end: int) -> bool:
    return card_ok(_NON_DIGIT.sub("", text[start:end])) and not id_like(text, start)


# A custom pattern named like one of these built-ins keeps the built-in's validation, so the
# team config's `credit_card: \b\d{16}\b` finds Luhn-valid cards, not every 16-digit id.
_CHECKS: dict[str, Callable[[str, int, int], bool]] = {
    "credit_card": _card_ok,
    "ssn": lambda text, a, b: (ssn_ok(_NON_DIGIT.sub("", text[a:b]))
                               and not in_hyphenated_code(text, a, b)),
    "iban": lambda text, a, b: iban_ok(text[a:b].replace(" ", "").upper()),
    "ip_address": lambda text, a, b: _ip_ok(text[a:b]),
}


# Card and SSN checks need eight or more digits in a row, so custom patterns with these names
# only need to run where the number detector finds such runs, if those runs can hold every
# match: when the pattern matches only digits and what joins them in a run.
_DIGIT_RUN_TYPES = ("credit_card", "ssn")
_RUN_SEPARATORS = " -.()"  # see `numeric._CLUSTER`


def builtin_detectors(*, profanity: bool = True,
                      numeric_custom: Sequence[tuple[str, str]] = ()) -> list[Detector]:
    """One instance of every built-in detector; `numeric_custom` are card/SSN custom patterns.

    Such a pattern is searched around the number detector's digit runs when its matches can
    only be digits, spaces, `-`, `.` and parentheses (as the team's SSN and card patterns);
    any other (groups joined by `/`, `_` or tabs) is searched over the whole text.
    """
    in_runs: list[CustomPattern] = []
    anywhere: list[Detector] = []
    for name, pattern in numeric_custom:
        regex = re.compile(pattern)
        if digits_and(regex, _RUN_SEPARATORS):
            in_runs.append((name, regex, _CHECKS[name]))
        else:
            anywhere.append(custom_detector(name, pattern))
    found: list[Detector] = [
        NumberDetector(in_runs), IbanDetector(), Ipv4Detector(), Ipv6Detector(),
        EmailDetector(), VendorKeyDetector(), PrivateKeyDetector(), UrlCredentialDetector(),
        AssignmentDetector(),
    ]
    if profanity:
        found.append(ProfanityDetector())
    return found + anywhere


def custom_detector(name: str, pattern: str) -> PatternDetector:
    """A detector for a config pattern, searching the whole text; built-in names keep the
    built-in's validation."""
    check = _CHECKS.get(name)
    if check is None:
        return PatternDetector(name, pattern)

    def accept(text: str, m: re.Match[str]) -> tuple[int, int] | None:
        return m.span() if check(text, *m.span()) else None

    return PatternDetector(name, pattern, accept=accept)


def build_detectors(policy: PiiPolicy) -> list[Detector]:
    """The built-ins (profanity if the policy wants it) followed by the custom patterns."""
    numeric = [(n, p) for n, p in policy.custom if n in _DIGIT_RUN_TYPES]
    return [*builtin_detectors(profanity=policy.profanity, numeric_custom=numeric),
            *(custom_detector(n, p) for n, p in policy.custom if n not in _DIGIT_RUN_TYPES)]


GROUP_SEPARATORS = (" ", "-")
"""What an invisible character between two digits is also read as: how digit groups are set
apart in cards, SSNs, IBANs and phone numbers."""


class Search:
    """The detectors a search for some entity types runs, chosen once (per policy, not per text).

    `allowed` None means every type. The visible text is searched too when invisible
    characters could hide a value (see `invisible`), its findings mapped back to `text`, and
    so is the text with look-alike dashes, spaces and digits read as ASCII (see `lookalike`).
    """

    def __init__(self, detectors: Sequence[Detector], allowed: frozenset[str] | None) -> None:
        self.allowed = allowed
        self.detectors = tuple(d for d in detectors
                               if allowed is None or not d.entities.isdisjoint(allowed))

    def find(self, text: str) -> list[Finding]:
        """Every finding of the chosen detectors in `text`, overlaps not resolved."""
        found = self._find(text)
        plain = ascii_lookalikes(text)
        if plain is not None:
            found += self._find(plain)  # same offsets: one character for one
        forms = [form for base in (text, plain) if base is not None
                 for form in VisibleText.readings(base, GROUP_SEPARATORS)]
        if not forms and plain is None:
            return found
        for form in forms:
            found += [form.original(f) for f in self._find(form.text)]
        return list(dict.fromkeys(found))  # a value found in several readings counts once

    def _find(self, text: str) -> list[Finding]:
        found = [f for d in self.detectors for f in d.find(text)]
        allowed = self.allowed
        return found if allowed is None else [f for f in found if f.entity in allowed]

    def __repr__(self) -> str:
        return f"Search({len(self.detectors)} detectors)"


def detect(text: str, detectors: Sequence[Detector], entities: Iterable[str] | None = None,
           *, resolve: bool = True) -> list[Finding]:
    """Every finding of every detector, limited to `entities`, overlaps resolved, by start."""
    found = Search(detectors, None if entities is None else frozenset(entities)).find(text)
    return resolve_overlaps(found) if resolve and len(found) > 1 else found
