"""`StreamRestorer`: a streamed answer filtered delta by delta, holding back what may change."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from mcp_router.messages import PiiSummary
from mcp_router.pii.detectors import Finding
from mcp_router.pii.guard import fail_closed

if TYPE_CHECKING:
    from mcp_router.pii.filter import PiiSession

# Raw characters always held back: more than any entity that contains spaces can span
# (a spaced IBAN is 42, an obfuscated address rarely over 60), so nothing that could still
# grow into a finding is shown early.
HOLD = 64
# Inspect only after this many further characters, so a stream of one-token deltas costs a
# detection pass per BATCH characters rather than per delta.
BATCH = 64
# Already shown text kept as left context for detection (e.g. "SSN:" before the digits).
CONTEXT = 64


class StreamRestorer:
    """Feed deltas in order; show what `feed` returns, and what `flush` returns at the end.

    Text is released only up to a whitespace boundary at least `HOLD` characters before the
    end of what has arrived, and never inside a finding or an unterminated private key
    block, so a placeholder split across deltas (`<EMAIL_` + `1>`) is restored whole and a
    secret split across deltas is redacted whole.
    """

    def __init__(self, session: PiiSession) -> None:
        self._session = session
        self._pending = ""
        self._shown = ""
        self._counts: Counter[str] = Counter()
        self._next_try = HOLD + BATCH

    def feed(self, delta: str) -> str:
        """Take the next delta; return the text that is now safe to show (may be empty)."""
        return fail_closed("answer", self._feed, delta)

    def flush(self) -> str:
        """End of stream: return everything still held back, filtered."""
        return fail_closed("answer", self._release, True)

    @property
    def summary(self) -> PiiSummary:
        """What the answer policy found in the stream so far (counts, never values)."""
        return self._session.answer_summary(self._counts)

    def _feed(self, delta: str) -> str:
        self._pending += delta
        if len(self._pending) < self._next_try:
            return ""
        out = self._release(False)
        # When nothing could be released (one long token, a key block still streaming), wait
        # for the held text to grow by half before looking again: linear, not quadratic.
        self._next_try = HOLD + BATCH if out else len(self._pending) * 3 // 2
        return out

    def _release(self, final: bool) -> str:
        text = self._shown + self._pending
        offset = len(self._shown)
        findings = self._session.answer_findings(text)
        cut = len(self._pending) if final else self._safe_cut(findings, offset)
        if cut <= 0:
            return ""
        # A finding that began in already-shown context is clipped, not skipped: its
        # unshown part is still filtered.
        chunk = [Finding(f.entity, max(f.start - offset, 0), f.end - offset)
                 for f in findings if f.end > offset and f.start - offset < cut]
        out = self._session.render_answer(self._pending[:cut], chunk, self._counts)
        self._shown = text[:offset + cut][-CONTEXT:]
        self._pending = self._pending[cut:]
        return out

    def _safe_cut(self, findings: list[Finding], offset: int) -> int:
        pending = self._pending
        limit = len(pending) - HOLD
        cut = max(pending.rfind(" ", 0, limit), pending.rfind("\n", 0, limit),
                  pending.rfind("\t", 0, limit)) + 1
        for f in findings:
            if f.start - offset < cut < f.end - offset:
                cut = max(f.start - offset, 0)
        begin = pending.rfind("-----BEGIN", 0, cut)
        if begin != -1 and "-----END" not in pending[begin:]:
            cut = begin
        return cut
