"""`PiiFilter` and `PiiSession`: the PII policy on requests and answers of one MCP session."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence

from mcp_router.messages import ChatRequest, PiiSummary
from mcp_router.pii.actions import Pseudonyms, apply_actions, redact
from mcp_router.pii.detectors import Detector, Finding, resolve_overlaps
from mcp_router.pii.guard import PiiBlocked, fail_closed
from mcp_router.pii.memo import Filtered, FilterMemo, memo_key
from mcp_router.pii.policy import PiiPolicy
from mcp_router.pii.registry import Search, build_detectors
from mcp_router.pii.stream import StreamRestorer


class PiiFilter:
    """A policy and its detectors; shared by every session, holding no per-session state."""

    def __init__(self, policy: PiiPolicy, detectors: Sequence[Detector] | None = None) -> None:
        self.policy = policy
        self.detectors: tuple[Detector, ...] = tuple(
            build_detectors(policy) if detectors is None else detectors)
        # What requests and answers are searched for is fixed by the policy, so the detectors
        # each of the two searches needs are chosen here rather than for every text.
        self._request_search = Search(self.detectors, policy.entities)
        self._answer_search = Search(self.detectors,
                                     _within(policy.entities, policy.answer_actions))
        # Whether any type is blocked in requests; most policies block none, and then the
        # findings need not be looked at twice.
        self.blocks_requests = "block" in (policy.action, *policy.actions.values())

    def detect(self, text: str, entities: Iterable[str] | None = None) -> list[Finding]:
        """The policy's entity types (or those of them in `entities`) found in `text`, without
        overlaps, by position."""
        return resolve_overlaps(self.raw_findings(text, entities))

    def raw_findings(self, text: str, entities: Iterable[str] | None = None) -> list[Finding]:
        """Every detector's findings, overlaps not yet resolved; used to decide `block`."""
        if entities is None:
            return self._request_search.find(text)
        return Search(self.detectors, _within(self.policy.entities, entities)).find(text)

    def raw_answer_findings(self, text: str) -> list[Finding]:
        """Findings of the types the answer policy acts on, overlaps not yet resolved."""
        return self._answer_search.find(text)

    def redact_label(self, name: str, value: str) -> tuple[str, str]:
        """One metadata label (`name`, `value`) as the cost ledger may keep it: what the filter
        finds replaced by its typed placeholder (`<PHONE>`), whatever the policy's actions
        (a label never leaves the machine, so there is nothing to pseudonymize or refuse).

        The value is judged together with its name, as `name: value` (and alone too): a bare
        digit run or a password is only told by the word before it, and a label's name is
        that word (`customer_phone`, `ssn`, `password`, `api_key`). The name is judged alone.
        Like every filter step it fails closed (`PiiFilterFailed`); unchanged when the policy
        is disabled.
        """
        if not self.policy.enabled:
            return name, value
        return fail_closed("request", self._redact_label, name, value)

    def _redact_label(self, name: str, value: str) -> tuple[str, str]:
        offset = len(name) + 2
        in_context = [Finding(f.entity, max(f.start - offset, 0), f.end - offset)
                      for f in self.raw_findings(f"{name}: {value}") if f.end > offset]
        found = resolve_overlaps(in_context + self.raw_findings(value))
        return _redacted(name, self.detect(name)), _redacted(value, found)

    def session(self) -> PiiSession:
        """A fresh session: its own pseudonym map, shared with no other session."""
        return PiiSession(self)

    def __repr__(self) -> str:
        return f"PiiFilter(action={self.policy.action!r}, detectors={len(self.detectors)})"


class PiiSession:
    """One MCP session's view of the filter: it owns the pseudonym map (values never logged).

    Every public method is fail-closed: a failure inside detection raises `PiiFilterFailed`
    (a `PolicyBlocked`), and a `block` type raises `PiiBlocked`; text is never passed on
    unfiltered.
    """

    def __init__(self, pii_filter: PiiFilter) -> None:
        self._filter = pii_filter
        self._policy = pii_filter.policy
        self._pseudonyms = Pseudonyms()
        self._memo = FilterMemo()  # the same placeholders as before, since the map is ours

    def filter_request(self, request: ChatRequest) -> tuple[ChatRequest, PiiSummary]:
        """The request with every message (and stop string) filtered, and what was found."""
        return fail_closed("request", self._filter_request, request)

    def filter_text(self, text: str) -> tuple[str, PiiSummary]:
        """One outgoing string (e.g. a tool argument) filtered like a request message."""
        out, summary = fail_closed("request", self._filter_texts, [text])
        return out[0], summary

    def restore(self, text: str) -> str:
        """`text` with this session's placeholders replaced by the values (for the caller only)."""
        return fail_closed("answer", self._pseudonyms.restore, text)

    def filter_answer(self, text: str) -> tuple[str, PiiSummary]:
        """The model's answer for the caller: answer policy applied, then pseudonyms restored.

        Detection runs on the answer as the model wrote it, so the caller's own values coming
        back through placeholders are restored untouched, while a secret the model wrote
        itself is redacted (default `answer_actions`).
        """
        return fail_closed("answer", self._filter_answer, text, True)

    def redact_answer(self, text: str) -> tuple[str, PiiSummary]:
        """The answer policy applied but placeholders kept: what a response cache may store.

        Restoring is per session (`<EMAIL_1>` is another address in another session), so a
        cache holds this form and each hit goes through `restore` for its own caller.
        """
        return fail_closed("answer", self._filter_answer, text, False)

    def stream_filter(self) -> StreamRestorer:
        """A filter for one streamed answer: feed it deltas, show what it returns, then flush."""
        return StreamRestorer(self)

    def answer_findings(self, text: str) -> list[Finding]:
        """Findings of the types the answer policy acts on (also used by `StreamRestorer`);
        raises `PiiBlocked` when one of them is set to `block`."""
        acts = self._policy.answer_actions
        if not self._policy.enabled or not acts:
            return []
        raw = self._filter.raw_answer_findings(text)
        if not raw:
            return raw
        _refuse_blocked(raw, acts.__getitem__, "answer")
        return resolve_overlaps(raw)

    def render_answer(self, text: str, findings: Sequence[Finding], counts: Counter[str],
                      restore: bool = True) -> str:
        """Apply the answer policy to `findings` of `text`, then restore pseudonyms."""
        filtered = text
        if findings:
            counts.update(f.entity for f in findings)
            acts = self._policy.answer_actions
            self._pseudonyms.reserve(text)
            filtered = apply_actions(text, findings, acts.__getitem__, self._pseudonyms)
        return self._pseudonyms.restore(filtered) if restore else filtered

    def answer_summary(self, counts: Mapping[str, int]) -> PiiSummary:
        """The summary of what the answer policy did to `counts`."""
        return summarize(counts, self._policy.answer_actions.__getitem__, "none")

    def _filter_request(self, request: ChatRequest) -> tuple[ChatRequest, PiiSummary]:
        texts = [m.content for m in request.messages] + list(request.stop or ())
        filtered, summary = self._filter_texts(texts)
        if filtered == texts:
            return request, summary
        n = len(request.messages)
        messages = tuple(m if m.content == new else m.model_copy(update={"content": new})
                         for m, new in zip(request.messages, filtered[:n], strict=True))
        stop = tuple(filtered[n:]) if request.stop is not None else None
        return request.model_copy(update={"messages": messages, "stop": stop}), summary

    def _filter_texts(self, texts: list[str]) -> tuple[list[str], PiiSummary]:
        """Detect in all new texts first, so a blocked request leaves no trace in the
        pseudonyms; texts this session filtered before (the chat history) are not redone."""
        policy = self._policy
        if not policy.enabled:
            return texts, PiiSummary(action="none")
        keys = [memo_key(t) for t in texts]
        seen = [self._memo.get(k) for k in keys]
        raw = {i: self._filter.raw_findings(t) for i, t in enumerate(texts) if seen[i] is None}
        if self._filter.blocks_requests and raw:
            _refuse_blocked([f for fs in raw.values() for f in fs], policy.action_for, "request")
        for i in raw:  # a placeholder typed in any message is never issued, here or later
            self._pseudonyms.reserve(texts[i])
        if self._pseudonyms.crowded:  # history sent again keeps its values from being dropped
            for done in seen:
                if done is not None:
                    self._pseudonyms.touch(done[0])
        out: list[str] = []
        counts: dict[str, int] = {}
        for i, text in enumerate(texts):
            done = seen[i]
            if done is None:
                done = self._apply(text, raw[i])
                self._memo.put(keys[i], *done)
            out.append(done[0])
            for entity, n in done[1].items():
                counts[entity] = counts.get(entity, 0) + n
        return out, summarize(counts, policy.action_for, policy.action)

    def _apply(self, text: str, raw: list[Finding]) -> Filtered:
        """`text` with the request policy applied to its findings, and their count per type."""
        if not raw:
            return text, {}
        found = resolve_overlaps(raw)
        return (apply_actions(text, found, self._policy.action_for, self._pseudonyms),
                Counter(f.entity for f in found))

    def _filter_answer(self, text: str, restore: bool) -> tuple[str, PiiSummary]:
        counts: Counter[str] = Counter()
        out = self.render_answer(text, self.answer_findings(text), counts, restore)
        return out, self.answer_summary(counts)

    def __repr__(self) -> str:
        return f"<PiiSession: {len(self._pseudonyms)} pseudonyms>"


def _redacted(text: str, findings: Sequence[Finding]) -> str:
    """`text` with each of its (non-overlapping) findings replaced by its typed placeholder."""
    for f in reversed(findings):
        text = text[:f.start] + redact(f.entity) + text[f.end:]
    return text


def _within(types: frozenset[str] | None, entities: Iterable[str]) -> frozenset[str]:
    """The types of `entities` that the policy's `types` (None: every type) allow."""
    wanted = frozenset(entities)
    return wanted if types is None else types & wanted


def _refuse_blocked(findings: Sequence[Finding], action_for: Callable[[str], str],
                    where: str) -> None:
    """Raise `PiiBlocked` if any finding's type is set to `block`, judged before overlaps are
    merged, so a blocked value inside a longer finding of another type still blocks."""
    blocked = Counter(f.entity for f in set(findings) if action_for(f.entity) == "block")
    if blocked:
        raise PiiBlocked(blocked, where)


def summarize(counts: Mapping[str, int], action_for: Callable[[str], str],
              default: str) -> PiiSummary:
    """Counts per type and the action(s) applied, comma-joined (`default` if nothing was found)."""
    if not counts:
        return PiiSummary(action=default)
    actions = sorted({action_for(e) for e in counts}) or [default]
    return PiiSummary(action=",".join(actions), counts=dict(sorted(counts.items())))


def combine_summaries(*summaries: PiiSummary) -> PiiSummary:
    """One summary for a call: counts added up, the distinct actions listed."""
    counts: Counter[str] = Counter()
    actions: set[str] = set()
    for s in summaries:
        counts.update(s.counts)
        actions.update(a for a in s.action.split(",") if a and a != "none")
    return PiiSummary(action=",".join(sorted(actions)) or "none",
                      counts=dict(sorted(counts.items())))
