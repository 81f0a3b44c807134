"""What routing nodes add to ChatProvider: a label for progress, and a way to record a skip."""

from __future__ import annotations

from typing import Protocol

from mcp_router.messages import Attempt, Call, ChatProvider


class Node(ChatProvider, Protocol):
    """A ChatProvider that can name itself and record its targets as skipped."""

    @property
    def label(self) -> str: ...

    def skip(self, call: Call, reason: str) -> None: ...


def label_of(provider: ChatProvider) -> str:
    """The node's label, or its class name for a foreign ChatProvider."""
    # An attribute check, not isinstance on a runtime Protocol: this is on every call's path
    # and a Protocol isinstance check costs tens of microseconds.
    label = getattr(provider, "label", None)
    return label if isinstance(label, str) else type(provider).__name__


def record_skipped(provider: ChatProvider, call: Call, reason: str) -> None:
    """Record every target under `provider` as skipped, so `attempts` lists the whole route."""
    skip = getattr(provider, "skip", None)
    if callable(skip):
        skip(call, reason)
    else:
        # A foreign node cannot name its provider and model; its label is the best we have.
        call.attempts.append(Attempt(provider=label_of(provider), model="",
                                     outcome="skipped", error=reason))
