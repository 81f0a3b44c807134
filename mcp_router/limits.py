"""Size limits on one call (messages, characters), checked before anything is sent upstream."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from mcp_router.errors import InvalidRequest
from mcp_router.shared_config import ServerConfig

__all__ = ["check_limits"]


class _HasContent(Protocol):
    @property
    def content(self) -> str: ...


class CallLike(Protocol):
    """The parts of a call the limits look at (a `ChatCall`)."""

    @property
    def messages(self) -> Sequence[_HasContent] | None: ...

    @property
    def prompt(self) -> str | None: ...

    @property
    def stop(self) -> Sequence[str] | None: ...


def check_limits(call: CallLike, cfg: ServerConfig) -> None:
    """Raise InvalidRequest naming the field, the size, the limit and its config key."""
    messages = call.messages or ()
    if len(messages) > cfg.max_messages:
        raise InvalidRequest("messages", f"{len(messages):,} messages is over the limit of "
                                         f"{cfg.max_messages:,} (server.max_messages)")
    chars = sum(len(m.content) for m in messages) + len(call.prompt or "") \
        + sum(len(s) for s in call.stop or ())
    if chars > cfg.max_chars:
        field = "prompt" if call.prompt is not None else "messages"
        raise InvalidRequest(field, f"{chars:,} characters is over the limit of "
                                    f"{cfg.max_chars:,} (server.max_chars)")
