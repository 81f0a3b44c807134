"""Size limits on one call (messages, characters, model names), checked before anything is sent."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from mcp_router.errors import InvalidRequest
from mcp_router.shared_config import ServerConfig

__all__ = ["MAX_FALLBACKS", "MAX_MODEL_CHARS", "check_limits", "check_model_names"]

# Model ids run to some 100 characters ("provider/org/model-name:variant"); a name far longer
# is a mistake or an attempt to make the server keep a large key per call.
MAX_MODEL_CHARS = 200
# A route's chain is some eight targets; a call naming far more fallbacks cannot be served
# within one deadline anyway, and each is a tree node built for the call.
MAX_FALLBACKS = 32


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


class NamesModels(Protocol):
    """The parts of a call that name models (a `ChatCall`)."""

    @property
    def model(self) -> str | None: ...

    @property
    def fallbacks(self) -> Sequence[str]: ...


def check_model_names(call: NamesModels) -> None:
    """Raise InvalidRequest naming the field when a model name is over MAX_MODEL_CHARS (the
    name itself is not repeated), or when there are over MAX_FALLBACKS fallbacks."""
    if len(call.fallbacks) > MAX_FALLBACKS:
        raise InvalidRequest("fallbacks", f"{len(call.fallbacks)} fallbacks is over the limit "
                                          f"of {MAX_FALLBACKS}")
    named = [("model", call.model)] if call.model is not None else []
    named += [(f"fallbacks[{i}]", spec) for i, spec in enumerate(call.fallbacks)]
    for field, spec in named:
        if len(spec) > MAX_MODEL_CHARS:
            raise InvalidRequest(field, f"a model name of {len(spec):,} characters is over the "
                                        f"limit of {MAX_MODEL_CHARS}")


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
