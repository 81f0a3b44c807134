"""What routing nodes add to ChatProvider: a label for progress, and a way to record a skip."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from mcp_router.messages import Attempt, Call, ChatProvider


@runtime_checkable
class Node(ChatProvider, Protocol):
    """A ChatProvider that can name itself and record its targets as skipped."""

    @property
    def label(self) -> str: ...

    def skip(self, call: Call, reason: str) -> None: ...


def label_of(provider: ChatProvider) -> str:
    """The node's label, or its class name for a foreign ChatProvider."""
    return provider.label if isinstance(provider, Node) else type(provider).__name__


def record_skipped(provider: ChatProvider, call: Call, reason: str) -> None:
    """Record every target under `provider` as skipped, so `attempts` lists the whole route."""
    if isinstance(provider, Node):
        provider.skip(call, reason)
    else:
        # A foreign node cannot name its provider and model; its label is the best we have.
        call.attempts.append(Attempt(provider=label_of(provider), model="",
                                     outcome="skipped", error=reason))
