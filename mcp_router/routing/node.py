"""What routing nodes add to ChatProvider: a label, a way to record a skip, a usability check."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from mcp_router.errors import ProviderError
from mcp_router.messages import Attempt, Call, ChatProvider


class Node(ChatProvider, Protocol):
    """A ChatProvider that can name itself and record its targets as skipped.

    A node may also offer `usable(call) -> bool`: False only when asking it under `call`
    would surely ask no upstream (every target under it is unconfigured, marked, open for
    longer than the call has, or done with in this call). A fallback plans its time by it.
    A node that retries may offer `on_failed_try(listener)`: it calls `listener(error)` after
    each failed try, as it happens.
    """

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


def usable(provider: ChatProvider, call: Call) -> bool:
    """Whether `provider` may ask an upstream under `call`; True unless its node knows not."""
    check = getattr(provider, "usable", None)
    return bool(check(call)) if callable(check) else True


def hear_failed_tries(provider: ChatProvider,
                      listener: Callable[[ProviderError], None]) -> bool:
    """Have `provider` tell `listener` of each failed try; False when it offers no way to."""
    listen = getattr(provider, "on_failed_try", None)
    if not callable(listen):
        return False
    listen(listener)
    return True


def target_keys(provider: ChatProvider) -> tuple[str, ...]:
    """Every "provider/model" under `provider`, once each, in order.

    Nodes already list their targets by recording them as skipped, so that is asked of them
    on a scratch call, rather than teaching every node a second way to walk its children.
    """
    scratch = Call(deadline=0.0)
    record_skipped(provider, scratch, "")
    return tuple(dict.fromkeys(f"{a.provider}/{a.model}" for a in scratch.attempts))
