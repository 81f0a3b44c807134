"""A small built-in list of unambiguous profanities, matched as whole words in any case."""

from __future__ import annotations

import re

from mcp_router.pii.detectors import Finding, lowered, rare_letter_patterns

# Words that are profane in every common sense; mild or ambiguous words (damn, hell, crap,
# dick, cock) are left out so code and ordinary prose are not flagged. Extend with a custom
# pattern named `profanity`.
_WORDS = (
    r"(?:mother)?fuck(?:s|ed|er|ers|ing|in|wit|face|head|off)?",
    r"shit(?:s|ty|ted|ting|head|heads|hole|holes|show|storm)?", r"bullshit",
    r"bitch(?:es|y|ing)?", r"cunts?", r"(?:ass|arse)holes?", r"bastards?", r"dickheads?",
    r"wank(?:er|ers|ing)?", r"twats?", r"bollocks", r"piss(?:ed|ing)?", r"sluts?",
    r"whores?",
)
_STEMS = ("fuck", "shit", "bitch", "cunt", "asshole", "arsehole", "bastard", "dickhead", "wank",
          "twat", "bollock", "piss", "slut", "whore")
_LONGEST = 24  # characters: longer than any listed word and its suffix
_PATTERN = re.compile(r"\b(?:" + "|".join(_WORDS) + r")\b", re.IGNORECASE)
# Is any stem in the lower-cased text? A few scans for rare letters answer it (see
# `rare_letter_patterns`), so the stems are looked for one by one only in the odd text.
_ANY_STEM = tuple(p.search for p in rare_letter_patterns(dict.fromkeys(_STEMS, "")))


class ProfanityDetector:
    """Profane words from the built-in list (as whole words, so `Scunthorpe` is fine)."""

    name = "profanity"
    entities = frozenset({name})

    def find(self, text: str) -> list[Finding]:
        lower = lowered(text)
        if not any(search(lower) for search in _ANY_STEM):
            return []
        found: set[Finding] = set()
        for stem in _STEMS:
            pos = lower.find(stem)
            while pos != -1:
                # Only the words around a stem can match, so the pattern runs on a window.
                lo, hi = max(0, pos - _LONGEST), min(len(text), pos + _LONGEST)
                found.update(Finding("profanity", m.start(), m.end())
                             for m in _PATTERN.finditer(text, lo, hi) if pos < m.end())
                pos = lower.find(stem, pos + len(stem))
        return sorted(found)
