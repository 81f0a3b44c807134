"""Which characters a config pattern's matches can be made of, read from the parsed pattern."""

from __future__ import annotations

import re
from typing import Any

# The most code points a class range may span and still be read character by character.
_WIDEST_RANGE = 256
# Zero-width items: they look at the text around a match but add nothing to it.
_ZERO_WIDTH = frozenset({"AT", "ASSERT", "ASSERT_NOT", "GROUPREF"})
_DIGIT_CATEGORIES = frozenset({"CATEGORY_DIGIT", "CATEGORY_UNI_DIGIT"})


def digits_and(pattern: re.Pattern[str], separators: str) -> bool:
    """Whether every character a match of `pattern` can consume is a digit or one of
    `separators` (what look-arounds read does not count: it is not part of the match).

    False whenever that cannot be told: `re` keeps its parser private, so on a Python whose
    parser differs the answer is the safe one, and such a pattern is searched everywhere.
    """
    parser: Any = getattr(re, "_parser", None)  # None: AttributeError below
    try:
        parsed = parser.parse(pattern.pattern, pattern.flags)
        return _within(parsed, frozenset(separators))
    except (AttributeError, TypeError, ValueError, re.error):
        return False


def _within(items: Any, allowed: frozenset[str]) -> bool:
    """Every item of a parsed (sub)pattern consumes only digits and `allowed`."""
    return all(_item_within(str(op), av, allowed) for op, av in items)


def _item_within(op: str, av: Any, allowed: frozenset[str]) -> bool:
    if op in _ZERO_WIDTH:  # a back reference repeats a group already judged
        return True
    if op == "LITERAL":
        return _char_ok(chr(av), allowed)
    if op == "IN":
        return all(_class_item_ok(str(kind), value, allowed) for kind, value in av)
    if op in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
        return _within(av[2], allowed)
    if op == "SUBPATTERN":
        return _within(av[3], allowed)
    if op == "ATOMIC_GROUP":
        return _within(av, allowed)
    if op == "BRANCH":
        return all(_within(branch, allowed) for branch in av[1])
    if op == "GROUPREF_EXISTS":
        return all(_within(branch, allowed) for branch in av[1:] if branch is not None)
    return False  # any character (`.`), a negated literal, or an item not known here


def _class_item_ok(kind: str, value: Any, allowed: frozenset[str]) -> bool:
    if kind == "LITERAL":
        return _char_ok(chr(value), allowed)
    if kind == "CATEGORY":
        return str(value) in _DIGIT_CATEGORIES
    if kind == "RANGE":
        low, high = value
        return high - low <= _WIDEST_RANGE and all(
            _char_ok(chr(code), allowed) for code in range(low, high + 1))
    return False  # a negated class


def _char_ok(ch: str, allowed: frozenset[str]) -> bool:
    return ch in allowed or ch.isdecimal()
