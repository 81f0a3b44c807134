"""Answers sized for hosts: a default max_tokens, truncation of what is still too long, pages."""

from __future__ import annotations

import math
import unicodedata
from bisect import bisect_right
from collections import OrderedDict

from mcp_router.token_estimate import estimate_tokens, utf8_size

ANSWER_URI = "mcp-router://answers/{trace_id}/{page}"
CHARS_PER_TOKEN = 4  # ASCII: the usual estimate for English text and code
RESULT_OVERHEAD_TOKENS = 1000  # provenance fields, attempts, usage
# A cut steps back at most this far to keep a symbol whole; a longer run of marks (Zalgo
# text) is cut where the count says rather than leave a page nearly empty.
MAX_STEP_BACK = 32
_ZWJ = "\u200d"


def result_tokens(text: str) -> int:
    """The tokens `text` takes in a tool result, estimated for any script: ASCII characters at
    `CHARS_PER_TOKEN` a token, every other character counted high as the budgets count it
    (`estimate_tokens`: 1 per Cyrillic or Greek letter, 5/3 per CJK character, 7/3 per emoji).
    """
    # The budgets count ASCII high too (3 a token), since charging low costs money; here that
    # would cut English answers a quarter shorter than hosts need.
    ascii_chars = len(text.encode("ascii", "ignore"))
    other_chars = len(text) - ascii_chars
    return (math.ceil(ascii_chars / CHARS_PER_TOKEN)
            + estimate_tokens(other_chars, utf8_size(text) - ascii_chars))


def _head_length(text: str, tokens: int) -> int:
    """The length of the longest head of `text` whose `result_tokens` fit `tokens`."""
    # No character takes less than 1/CHARS_PER_TOKEN of a token: no longer head can fit.
    lengths = range(min(len(text), tokens * CHARS_PER_TOKEN) + 1)
    return bisect_right(lengths, tokens, key=lambda n: result_tokens(text[:n])) - 1


def _extends(char: str) -> bool:
    """Whether `char` is shown as part of the symbol before it: a combining mark, variation
    selector, emoji skin-tone modifier, tag character (subdivision flags) or ZWJ."""
    return (char == _ZWJ
            or "\U0001f3fb" <= char <= "\U0001f3ff"
            or "\U000e0020" <= char <= "\U000e007f"
            or "\ufe00" <= char <= "\ufe0f" or "\U000e0100" <= char <= "\U000e01ef"
            or unicodedata.combining(char) != 0
            or unicodedata.category(char) in ("Mn", "Me", "Mc"))


def _is_regional(char: str) -> bool:
    return "\U0001f1e6" <= char <= "\U0001f1ff"


def _splits_a_symbol(text: str, at: int, floor: int) -> bool:
    """Whether cutting `text` at `at` parts what a reader sees as one symbol; `floor`, where
    the part being cut starts, is itself a boundary."""
    before, after = text[at - 1], text[at]
    if before < "\x80" and after < "\x80":
        return before == "\r" and after == "\n"
    if before == _ZWJ or _extends(after):
        return True
    if not (_is_regional(before) and _is_regional(after)):
        return False
    # Flags are pairs of regional indicators: the cut splits one after an odd run of them.
    start = at - 1
    while start > floor and _is_regional(text[start - 1]):
        start -= 1
    return (at - start) % 2 == 1


def _symbol_boundary(text: str, at: int, floor: int = 0) -> int:
    """`at`, or the nearest cut before it and after `floor` that keeps every symbol whole (a
    flag, a ZWJ emoji sequence, a skin tone or accent with its character, CR LF): what the
    count allows, stepped back at most `MAX_STEP_BACK` characters."""
    if not floor < at < len(text):
        return at
    for cut in range(at, max(floor, at - MAX_STEP_BACK - 1), -1):
        if not _splits_a_symbol(text, cut, floor):
            return cut
    return at


class AnswerPages:
    """Full texts of truncated answers, kept in memory (newest `keep`) and read in pages.

    A page holds at most `page_chars` characters, and no more tokens (`result_tokens`, the
    measure an answer is cut by) than `page_chars` characters of English: in another script
    it holds fewer characters, and fits a host's result as well as an English page does.
    Pages end between symbols as a reader sees them (`_symbol_boundary`), never inside a
    flag, an emoji sequence or an accented letter.

    Each is kept for its `owner` (the token's client on a shared server) and read back only
    by that owner: a trace id that leaks (it is in the audit log) opens no one else's answer.
    """

    def __init__(self, page_chars: int, keep: int = 64) -> None:
        self.page_chars = page_chars
        self._keep = keep
        # Each text with where its pages start and where the last one ends.
        self._texts: OrderedDict[tuple[str, str], tuple[str, tuple[int, ...]]] = OrderedDict()

    def put(self, owner: str, trace_id: str, text: str) -> int:
        """Keep `text`; returns its number of pages."""
        bounds = self.bounds(text)
        self._texts[owner, trace_id] = text, bounds
        self._texts.move_to_end((owner, trace_id))
        while len(self._texts) > self._keep:
            self._texts.popitem(last=False)
        return len(bounds) - 1

    def page(self, owner: str, trace_id: str, page: int) -> str | None:
        """Page `page` (1-based) of a kept answer of `owner`'s; None when unknown or out of
        range."""
        kept = self._texts.get((owner, trace_id))
        if kept is None or not 1 <= page < len(kept[1]):
            return None
        text, bounds = kept
        return text[bounds[page - 1]:bounds[page]]

    def count(self, owner: str, trace_id: str) -> int | None:
        """How many pages a kept answer of `owner`'s has; None when it is not kept."""
        kept = self._texts.get((owner, trace_id))
        return None if kept is None else len(kept[1]) - 1

    def bounds(self, text: str) -> tuple[int, ...]:
        """Where each page of `text` starts, then where the last one ends (one page at least)."""
        tokens = math.ceil(self.page_chars / CHARS_PER_TOKEN)
        bounds = [0]
        while bounds[-1] < len(text) or len(bounds) == 1:
            start = bounds[-1]
            end = start + max(1, _head_length(text[start:start + self.page_chars], tokens))
            bounds.append(_symbol_boundary(text, end, start))
        return tuple(bounds)


def content_budget_tokens(max_result_tokens: int) -> int:
    """Tokens the answer may take: the result carries it twice (text and structured)."""
    return max(256, (max_result_tokens - RESULT_OVERHEAD_TOKENS) // 2)


def truncate(text: str, budget_tokens: int) -> str | None:
    """The longest head of `text` whose `result_tokens` fit `budget_tokens` and that ends
    between symbols (`_symbol_boundary`), or None when `text` fits whole."""
    if result_tokens(text) <= budget_tokens:
        return None
    return text[:_symbol_boundary(text, _head_length(text, budget_tokens))]
