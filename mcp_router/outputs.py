"""Answers sized for hosts: a default max_tokens, truncation of what is still too long, pages."""

from __future__ import annotations

import math
from collections import OrderedDict

ANSWER_URI = "mcp-router://answers/{trace_id}/{page}"
CHARS_PER_TOKEN = 4  # the usual estimate for English text and code
RESULT_OVERHEAD_TOKENS = 1000  # provenance fields, attempts, usage


class AnswerPages:
    """Full texts of truncated answers, kept in memory (newest `keep`) and read in pages.

    Each is kept for its `owner` (the token's client on a shared server) and read back only
    by that owner: a trace id that leaks (it is in the audit log) opens no one else's answer.
    """

    def __init__(self, page_chars: int, keep: int = 64) -> None:
        self.page_chars = page_chars
        self._keep = keep
        self._texts: OrderedDict[tuple[str, str], str] = OrderedDict()

    def put(self, owner: str, trace_id: str, text: str) -> int:
        """Keep `text`; returns its number of pages."""
        self._texts[owner, trace_id] = text
        self._texts.move_to_end((owner, trace_id))
        while len(self._texts) > self._keep:
            self._texts.popitem(last=False)
        return self.pages(text)

    def page(self, owner: str, trace_id: str, page: int) -> str | None:
        """Page `page` (1-based) of a kept answer of `owner`'s; None when unknown or out of
        range."""
        text = self._texts.get((owner, trace_id))
        if text is None or not 1 <= page <= self.pages(text):
            return None
        start = (page - 1) * self.page_chars
        return text[start:start + self.page_chars]

    def count(self, owner: str, trace_id: str) -> int | None:
        """How many pages a kept answer of `owner`'s has; None when it is not kept."""
        text = self._texts.get((owner, trace_id))
        return None if text is None else self.pages(text)

    def pages(self, text: str) -> int:
        return max(1, math.ceil(len(text) / self.page_chars))


def content_budget_tokens(max_result_tokens: int) -> int:
    """Tokens the answer may take: the result carries it twice (text and structured)."""
    return max(256, (max_result_tokens - RESULT_OVERHEAD_TOKENS) // 2)


def truncate(text: str, budget_tokens: int) -> str | None:
    """The head of `text` that fits `budget_tokens`, or None when it fits whole."""
    limit = budget_tokens * CHARS_PER_TOKEN
    return None if len(text) <= limit else text[:limit]
