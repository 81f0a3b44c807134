"""Cards, SSNs and phone numbers, found in one pass over the digit runs of a text."""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Sequence
from itertools import accumulate

from mcp_router.pii.detectors import Finding, is_word_char, left_ok, right_ok, word_before
from mcp_router.pii.phones import national_length, phone_alone, slashed_phones
from mcp_router.pii.validators import card_brand, card_ok, international_ok, nanp_ok, ssn_ok

# Runs of digits and separators: every card, SSN and phone shape, found in one scan so the
# per-format logic only runs on the few runs that qualify. A run starts at the first digit
# (not inside a number) and not at an ISO date, the commonest digit run in logs.
_CLUSTER = re.compile(r"\d(?<!\d\d)(?!\d{3}-\d\d-\d\d(?!\d))[\d \-.()]{8,}")
_SEPARATOR_CHARS = " -.()"
_SEPARATOR_BYTES = _SEPARATOR_CHARS.encode()
# The same scan for ASCII text, over its bytes with every digit made "0" and every character
# that cannot be in a run made "x" (offsets are equal): a pattern that starts with a literal
# is found several times faster by `re` than one that starts with a class.
_CLUSTER_CLASSES = bytes(ord("0" if c in string.digits else c if c in _SEPARATOR_CHARS else "x")
                         for c in map(chr, range(256)))
_CLUSTER_SKELETON = re.compile(rb"0(?<!00)(?!000-00-00(?!0))[0 \-.()]{8,}")
_MIN_DIGITS = 8
# How issuers print a card: what follows one of these in a run of groups may be its expiry
# or CVV (fours with a shorter last group are only a card when nothing follows).
_CARD_LAYOUTS = ([4, 4, 4, 4, 3], [4, 4, 4, 4], [4, 6, 5], [4, 6, 4])
# A cluster with separators must contain one of these shapes to hold a card (groups of 4
# then more, or 12 to 19 digits in a row, whatever digits are around it: `4111… 12/26`), an
# SSN, a North American number, a trunk-zero national number, a Spanish or a Chinese mobile;
# the rest (zip+4, ISBNs, dotted versions and addresses…) are dropped before any per-group
# work.
_SHAPES = re.compile(r"(?<!\d)\d{4}[ .-]\d{2,6}[ .-]\d|(?<!\d)\d{12,19}(?!\d)"
                     r"|(?<!\d)\d{3}[-. ]\d\d[-. ]\d{4}"
                     r"|\d{3}\)?[-. )]{1,2}\d{3}[-. ]\d{4}|(?<!\d)0[1-9]\d{0,4}\)?[ -]\d\d"
                     r"|(?<!\d)[67]\d\d \d\d \d\d \d\d|(?<!\d)1[3-9]\d[ -]\d{4}[ -]\d{4}")
_SEPARATORS = re.compile(r"(\D+)")
_OPENING = re.compile(r"[ ()]")  # separators after which a group may begin a finding
# The sizes a card, SSN or North American number can start with; other formats start with
# a trunk zero or after a "+".
_FIRST_GROUP_SIZES = frozenset((1, 3, 4, 9, 10, 11, *range(12, 20)))
# A custom pattern's match may start before or end after the digits it covers (`SSN: `).
_CUSTOM_MARGIN = 12
_NO_CUSTOM = 1 << 30  # more digits than any cluster has
# An identifier keyword right before a bare digit run ("order 4716…", "#4716…"), unless the
# text says it is a card ("card #4716…").
_ID_CONTEXT = re.compile(r"(?<!card )(?<!cc )(?:\b(?:order|invoice|tracking|ticket|txn|transaction|"
                         r"id|serial|ean|upc|gtin|isbn|sku|imei)\b|#)[\s:=#.-]*$")
# Also as part of a snake_case name (`employee_ssn: …`, `social_security_number=…`).
_SSN_CONTEXT = re.compile(r"(?<![^\W_])(?:ssn|tin|social[ _]security)(?![^\W_])"
                          r"|\b(?:ss#|soc\.? sec|taxpayer)\b")

Hit = tuple[str, int, int, int]  # entity, start, end, index of the next group to look at
CustomCheck = Callable[[str, int, int], bool]
CustomPattern = tuple[str, re.Pattern[str], CustomCheck]


def id_like(text: str, start: int) -> bool:
    """A bare digit run introduced as an order, ticket or other identifier, not as a card."""
    return bool(_ID_CONTEXT.search(word_before(text, start, 24)))


class NumberDetector:
    """Cards (brand ranges + Luhn), SSNs (issuable ranges) and phones (dialling plans).

    `custom` holds config patterns named like a numeric built-in, with that built-in's check.
    They run only around digit runs, which is where a match that passes a card or SSN check
    can be, instead of over the whole text.
    """

    name = "numbers"
    entities = frozenset({"credit_card", "ssn", "phone"})  # custom patterns are of the first two

    def __init__(self, custom: Sequence[CustomPattern] = ()) -> None:
        # A card has at least 12 digits and an SSN 9, so shorter runs need not be searched.
        self._custom = tuple((entity, regex, check, 12 if entity == "credit_card" else 9)
                             for entity, regex, check in custom)
        self._custom_digits = min((c[3] for c in self._custom), default=_NO_CUSTOM)

    def find(self, text: str) -> list[Finding]:
        found: list[Finding] = []
        custom_digits = self._custom_digits
        for start, end, digits in _clusters(text):
            found += _Run.findings_in(text, start, end, digits)
            if digits >= custom_digits:
                found += self._custom_findings(text, start, end, digits)
        if "/" in text:
            found += slashed_phones(text)
        return found

    def _custom_findings(self, text: str, start: int, end: int, digits: int) -> list[Finding]:
        """Matches of the custom patterns around one cluster that pass their type's check."""
        # This runs for most clusters and nearly always finds nothing: one search per pattern
        # says so, and only a pattern that matches is run again for all its matches.
        lo, hi = max(0, start - _CUSTOM_MARGIN), end + _CUSTOM_MARGIN  # `re` clips `hi`
        found: list[Finding] = []
        for entity, regex, check, least in self._custom:
            if digits >= least and regex.search(text, lo, hi) is not None:
                found += [Finding(entity, *m.span()) for m in regex.finditer(text, lo, hi)
                          if m.end() > m.start() and check(text, *m.span())]
        # Two custom patterns of one name can find the same span: it is reported once.
        return list(dict.fromkeys(found)) if len(found) > 1 else found


def _clusters(text: str) -> list[tuple[int, int, int]]:
    """(start, end, digit count) of each run with enough digits, trailing separators cut."""
    found: list[tuple[int, int, int]] = []
    if text.isascii():
        for b in _CLUSTER_SKELETON.finditer(text.encode().translate(_CLUSTER_CLASSES)):
            run = b.group().rstrip(_SEPARATOR_BYTES)
            digits = run.count(b"0")
            if digits >= _MIN_DIGITS:
                found.append((b.start(), b.start() + len(run), digits))
        return found
    for m in _CLUSTER.finditer(text):
        seg = m.group().rstrip(_SEPARATOR_CHARS)
        digits = sum(c.isdigit() for c in seg)
        if digits >= _MIN_DIGITS:
            found.append((m.start(), m.start() + len(seg), digits))
    return found


class _Run:
    """One cluster split into digit groups: their offsets, sizes and the separators after them."""

    def __init__(self, text: str, start: int, end: int, bare: bool = False) -> None:
        self.text = text
        parts = [text[start:end]] if bare else _SEPARATORS.split(text[start:end])
        self.digits, self.seps = parts[0::2], [*parts[1::2], ""]
        self.sizes = list(map(len, self.digits))
        # Where each part begins: digit groups at even indexes, separators at odd ones.
        offsets = list(accumulate(map(len, parts), initial=start))
        self.starts, self.ends = offsets[0::2], offsets[1::2]

    @classmethod
    def findings_in(cls, text: str, start: int, end: int, digits: int) -> list[Finding]:
        """Findings in one cluster of `digits` digits between `start` and `end`."""
        if digits == end - start:
            hit = cls.bare(text, start, end)
            return [] if hit is None else [Finding(*hit[:3])]
        if not _may_begin(text, start, end):
            return []
        # After a "+" eight digits can be a phone; otherwise nothing has fewer than an SSN's 9.
        if text[start - 1:start] == "+" or digits >= 9 and (
                text.startswith("00", start) or _SHAPES.search(text, start, end)):
            return cls(text, start, end).findings()
        return []

    def findings(self) -> list[Finding]:
        found: list[Finding] = []
        text, i, n, resumed = self.text, 0, len(self.starts), 0
        while i < n:
            start, size = self.starts[i], self.sizes[i]
            before = text[start - 1:start]
            hit: Hit | None = None
            if (size in _FIRST_GROUP_SIZES or text[start] == "0" or before == "+") \
                    and (left_ok(text, start) or before in "+("):
                # Only the formats whose first group can have this size and first digit.
                if 12 <= size <= 19 or size == 4:
                    hit = self.card(i, after_finding=i == resumed)
                if hit is None and size in (3, 9):
                    hit = self.ssn(i)
                if hit is None and (before == "+" or 4 <= size <= 5 and text[start] == "0"):
                    hit = self.international(i)
                if hit is None and size in (1, 3, 10, 11, 12):
                    hit = self.nanp(i)
                if hit is None and text[start] == "0" and size >= 2:
                    hit = self.trunk(i)
                if hit is None and size == 3:
                    hit = self.mobile(i)
            if hit is None:
                i += 1
                continue
            entity, s, e, i = hit
            found.append(Finding(entity, s, e))
            resumed = i
        return found

    @classmethod
    def bare(cls, text: str, start: int, end: int) -> Hit | None:
        """A run of digits alone: a card, `+` and a phone, or an SSN or phone by context."""
        size, before = end - start, text[start - 1:start]
        if before == "+":
            return cls(text, start, end, bare=True).international(0)
        if before == ":" and 7 <= size <= 15 and text[max(0, start - 4):start].lower() == "tel:":
            return ("phone", start, end, 1)  # a tel: link is a phone number whatever its digits
        if not left_ok(text, start):
            return None
        if 12 <= size <= 19 and _card_alone(text, start, end):
            return ("credit_card", start, end, 1)
        if size == 9 and _ssn_alone(text, start, end):
            return ("ssn", start, end, 1)
        if 10 <= size <= 12 and phone_alone(text, start, end):
            return ("phone", start, end, 1)
        return None

    def starts_run(self, i: int, sep: str) -> bool:
        """Group i is not the middle of a longer run joined by the same separator."""
        return i == 0 or self.seps[i - 1] != sep

    def joined(self, i: int, j: int) -> str:
        return "".join(self.digits[i:j + 1])

    def card(self, i: int, after_finding: bool = False) -> Hit | None:
        """A card whose first group is group i: 12 to 19 digits in a row, or printed in groups
        (4-4-4-4, 4-6-5…), whatever digits follow it in the run (an expiry, a CVV, an IP).

        `after_finding`: group i follows a phone or SSN found in the same run, so the groups
        before it are no part of the card (`555-123-4567 4111 1111 1111 1111`).
        """
        text, start, size, sep = self.text, self.starts[i], self.sizes[i], self.seps[i]
        if not left_ok(text, start):
            return None
        if 12 <= size <= 19:
            end = self.ends[i]
            return ("credit_card", start, end, i + 1) if _card_alone(text, start, end) else None
        if size != 4 or sep not in (" ", "-", ".") \
                or not (after_finding or self.opens_card(i, sep)):
            return None
        j, last = i, len(self.starts) - 1
        while j < last and self.seps[j] == sep:
            j += 1
        # The run as a whole first: a 19-digit card is not a 16-digit one and three more.
        sizes = self.sizes[i:j + 1]
        if j > i and _card_groups(sizes) and (sep != "." or _dotted_card(sizes)) \
                and card_ok(self.joined(i, j)) and right_ok(text, self.ends[j]):
            return ("credit_card", start, self.ends[j], j + 1)
        for k in self._card_layout_ends(i, j):
            if card_ok(self.joined(i, k)):
                return ("credit_card", start, self.ends[k], k + 1)
        return None

    def opens_card(self, i: int, sep: str) -> bool:
        """Group i can be the first of a grouped card: it starts its run of groups joined by
        `sep`, or the group before it is no group of four (`cvv 123 4111 1111 1111 1111`,
        `12/26 4111 1111 1111 1111`). A group of four before it makes it the middle of a
        longer grouped number, and so does a run glued to a word (`DE12 3456 7890…`, an IBAN)."""
        first = self.starts[0]
        return self.starts_run(i, sep) or self.sizes[i - 1] != 4 and not (
            first > 0 and is_word_char(self.text[first - 1]))

    def _card_layout_ends(self, i: int, j: int) -> list[int]:
        """The last groups, longest first, of the printed card layouts (4-4-4-4-3, 4-4-4-4,
        4-6-5, 4-6-4) that begin at group i and end before group j, the last joined to it,
        where a card can end: see `_card_stops_at`, or before an expiry month
        (`5555-5555-5555-4444-11/2027`)."""
        sizes, text = self.sizes, self.text
        ends = [i + len(layout) - 1 for layout in _CARD_LAYOUTS
                if i + len(layout) - 1 < j and sizes[i:i + len(layout)] == layout]
        return [k for k in ends if self._card_stops_at(i, k, j) or k + 1 == j and sizes[j] == 2
                and text[self.ends[j]:self.ends[j] + 1] == "/"]

    def _card_stops_at(self, i: int, k: int, j: int) -> bool:
        """Group k, the last of a card layout from group i, ends a card though more groups
        follow it up to group j: an expiry, a CVV, an address (`4111 1111 1111 1111 12 26`).

        Not where a "-" or "." joins the next group to it, nor where another group of four
        that is no expiry (MMYY) follows four fours: the fours go on, and a valid prefix of a
        longer grouped number (an account number) is not a card. Nor where one short group
        ends the run and makes it as long as a card of its network: a mistyped longer card
        (`6271 2803 9079 5067 375`), unless those are three digits, a CVV, and the network
        issues most of its cards with fewer than 19 digits.
        """
        if not right_ok(self.text, self.ends[k]):
            return False
        nxt = self.digits[k + 1]
        if self.sizes[k] == 4 and len(nxt) == 4:
            return "01" <= nxt[:2] <= "12"
        whole = self.joined(i, j)
        if k + 1 < j or len(nxt) > 3 or card_brand(whole) is None \
                or not right_ok(self.text, self.ends[j]):  # `… 1111 0.0.0.0`: no card's end
            return True
        return len(nxt) == 3 and not _mostly_nineteen(whole)

    def ssn(self, i: int) -> Hit | None:
        text, start = self.text, self.starts[i]
        if not left_ok(text, start):
            return None
        if self.sizes[i] == 9:
            end = self.ends[i]
            return ("ssn", start, end, i + 1) if _ssn_alone(text, start, end) else None
        sep = self.seps[i]
        if self.sizes[i:i + 3] != [3, 2, 4] or sep not in ("-", " ", ".") \
                or self.seps[i + 1] != sep or self.seps[i + 2] == sep:
            return None
        end = self.ends[i + 2]
        if self.starts_run(i, sep) and right_ok(text, end) and ssn_ok(self.joined(i, i + 2)):
            return ("ssn", start, end, i + 3)
        return None

    def international(self, i: int) -> Hit | None:
        """+CC … or 00CC …; a bracketed trunk zero, as in +44 (0)20, is not dialled."""
        text, start = self.text, self.starts[i]
        if text[start - 1:start] == "+":
            start, skip = start - 1, 0
        elif text.startswith("00", start) and 4 <= self.sizes[i] <= 5 \
                and self.starts_run(i, self.seps[i]):
            skip = 2  # 0049 30 901820: the international prefix, written as a group of its own
        else:
            return None
        if not left_ok(text, start):
            return None
        digits, best = "", None
        for k in range(i, min(len(self.starts), i + 8)):
            a, b = self.starts[k], self.ends[k]
            if not (self.digits[k] == "0" and text[a - 1:a] == "(" and text[b:b + 1] == ")"):
                digits += self.digits[k]
            if international_ok(digits[skip:]) and right_ok(text, b):
                best = ("phone", start, b, k + 1)
        return best

    def nanp(self, i: int) -> Hit | None:
        """North American: (415) 555-2671, 415-555-2671, 1-800-555-0199, or bare with context
        (as are other national numbers in bare digits, see `phones.phone_alone`)."""
        text, start, size = self.text, self.starts[i], self.sizes[i]
        if size in (10, 11, 12):
            end = self.ends[i]
            return ("phone", start, end, i + 1) \
                if left_ok(text, start) and phone_alone(text, start, end) else None
        lead = size == 1 and text[start] == "1" and self.seps[i] in ("-", ".", " ")
        body = i + 1 if lead else i
        if self.sizes[body:body + 3] != [3, 3, 4] or not left_ok(text, start):
            return None
        sep1, sep2 = self.seps[body], self.seps[body + 1]
        area = self.starts[body]
        if not lead and text[area - 1:area] == "(" and sep1 in (")", ") ", ")-", ")."):
            start = area - 1
            if not left_ok(text, start):
                return None
        elif sep1 != sep2 or not (lead or self.starts_run(i, sep1)):
            return None
        end = self.ends[body + 2]
        # Dotted groups are as often a version or an address (1.200.100.1000): with dots, the
        # exchange must be one that can be dialled.
        if (sep2 in ("-", ".", " ") and right_ok(text, end) and self.seps[body + 2] != sep2
                and nanp_ok(self.joined(body, body + 2), strict=sep2 == ".")):
            return ("phone", start, end, body + 3)
        return None

    def trunk(self, i: int) -> Hit | None:
        """National numbers with a trunk zero: 020 7946 0958, 07700 900123, 01 42 68 53 00,
        030 12345678, 0151 23456789, 06-12345678."""
        text, start = self.text, self.starts[i]
        if text[start] != "0" or self.sizes[i] < 2 or text[start + 1] == "0":
            return None
        sep = self.seps[i]
        if text[start - 1:start] == "(" and sep == ") " and i + 1 < len(self.seps):
            # (020) 7946 0958 is British or Australian; (012) 345-6789 is a malformed US number.
            start, sep = start - 1, self.seps[i + 1] or " "
            if sep != " ":
                return None
        if sep not in (" ", "-") or not left_ok(text, start) or not self.starts_run(i, sep):
            return None
        total, k = self.sizes[i], i
        while k + 1 < len(self.starts) and k < i + 4:
            if k > i and self.seps[k] != sep or not 2 <= self.sizes[k + 1] <= 8:
                break
            k, total = k + 1, total + self.sizes[k + 1]
        # The whole run is the number: a prefix of a longer list of digit pairs is not. A
        # subscriber number may be one block of up to 8 digits, but only at the end.
        if k > i and national_length(self.sizes[i:k + 1]) and right_ok(text, self.ends[k]) \
                and (k + 1 == len(self.starts) or self.seps[k] != sep):
            return ("phone", start, self.ends[k], k + 1)
        return None

    def mobile(self, i: int) -> Hit | None:
        """Mobiles in national formats without a trunk zero: Spanish 612 34 56 78 and Chinese
        138 0013 8000 (Spanish 612 345 678 is left out: it reads as 612,345,678)."""
        text, start = self.text, self.starts[i]
        sep = self.seps[i]
        if text[start] in "67" and sep == " ":
            k = i + 3
            shaped = self.sizes[i:k + 1] == [3, 2, 2, 2]
        elif text[start] == "1" and text[start + 1] in "3456789" and sep in (" ", "-"):
            k = i + 2
            shaped = self.sizes[i:k + 1] == [3, 4, 4]
        else:
            return None
        if not shaped or self.seps[i:k] != [sep] * (k - i) or self.seps[k] == sep \
                or not self.starts_run(i, sep) or not left_ok(text, start) \
                or not right_ok(text, self.ends[k]):
            return None
        return ("phone", start, self.ends[k], k + 1)


def _card_groups(sizes: list[int]) -> bool:
    """Groups a card can be printed in: 2 to 6 digits each, only the last may be shorter
    (4000 0000 0000 6)."""
    return all(2 <= size <= 6 for size in sizes[:-1]) and 1 <= sizes[-1] <= 6


def _mostly_nineteen(digits: str) -> bool:
    """19 digits of a network that issues most of its cards with 19 digits: UnionPay (62…,
    also where Discover shares its range) and Maestro (Chinese and European debit cards)."""
    return digits.startswith("62") or card_brand(digits) == "maestro"


def _dotted_card(sizes: list[int]) -> bool:
    """Groups that a card printed with dots has: 4-4-4-4 (the last of 1-4 digits, and a fifth
    for 19 digits) or 4-6-5 and 4-6-4. Anything else with dots is a version or an address."""
    return sizes in ([4, 6, 5], [4, 6, 4]) or (
        4 <= len(sizes) <= 5 and all(size == 4 for size in sizes[:-1]) and 1 <= sizes[-1] <= 4)



def _may_begin(text: str, start: int, end: int) -> bool:
    """Whether a finding can begin in the cluster: at its first group, unless what comes before
    joins it to a longer token, or at a group after a space or bracket. Never after "-" or
    ".": those join a group to the one before it (`left_ok`), as in UUIDs and versions."""
    return (left_ok(text, start) or text[start - 1:start] in "+("
            or _OPENING.search(text, start, end) is not None)


# A group that is all digits, judged as if it stood alone (the caller has checked what comes
# before it): shared by bare runs and the groups of a cluster.

def _card_alone(text: str, start: int, end: int) -> bool:
    """12 to 19 digits in a row: a card, unless the text calls the number an identifier."""
    return card_ok(text[start:end]) and right_ok(text, end) and not id_like(text, start)


def _ssn_alone(text: str, start: int, end: int) -> bool:
    """Nine digits in a row: an SSN only when the text says it is one."""
    return (ssn_ok(text[start:end]) and right_ok(text, end)
            and _SSN_CONTEXT.search(word_before(text, start, 40)) is not None)



def in_hyphenated_code(text: str, start: int, end: int) -> bool:
    """The span continues a code joined by hyphens (`ABC-123-45-6789`, `123-45-6789-01`):
    a part number, not an SSN, unless the word before is the SSN's own label (`SSN-…`)."""
    joined_before = start > 1 and text[start - 1] == "-" and text[start - 2].isalnum() \
        and _SSN_CONTEXT.search(word_before(text, start - 1, 40)) is None
    return joined_before or text[end:end + 1] == "-" and text[end + 1:end + 2].isalnum()
