"""`PiiPolicy`: what to look for and what to do with each entity type, built from `PiiConfig`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mcp_router.config import PII_ENTITIES
from mcp_router.pii.actions import ACTIONS, Action

if TYPE_CHECKING:
    from mcp_router.config import PiiConfig

# Defined with the config, which checks the names a file gives before a policy is built.
BUILTIN_ENTITIES: tuple[str, ...] = PII_ENTITIES


def _default_answer_actions() -> dict[str, Action]:
    # A key the model writes out (one it memorised or invented) should not reach the
    # caller's terminal, logs or commits; the caller's own pseudonymized values are
    # restored untouched, because they were detected before the answer was written.
    return {"secret": "redact"}


@dataclass(frozen=True)
class PiiPolicy:
    """The PII filter's settings: the config's fields plus the ones `PiiConfig` lacks so far.

    - `action`: the default for every entity type; `actions` overrides it per type.
    - `custom`: `(name, pattern)` pairs; a name equal to a built-in type adds places to look
      for that type, and its matches must still pass that type's checksum or range check.
    - `entities`: when set, only these types are looked for (built-in or custom names).
    - `profanity`: whether the built-in profanity list is used.
    - `answer_actions`: what to do with types found in the model's answer (`pseudonymize`
      is not allowed there); types not listed pass, after pseudonyms are restored.
    """

    enabled: bool = True
    action: Action = "redact"
    actions: Mapping[str, Action] = field(default_factory=dict)
    custom: tuple[tuple[str, str], ...] = ()
    entities: frozenset[str] | None = None
    profanity: bool = True
    answer_actions: Mapping[str, Action] = field(default_factory=_default_answer_actions)

    def __post_init__(self) -> None:
        # Config lists, sets and dicts arrive as they are: keep copies nobody else can change.
        if self.entities is not None:
            object.__setattr__(self, "entities", frozenset(self.entities))
        object.__setattr__(self, "custom", tuple((n, p) for n, p in self.custom))
        object.__setattr__(self, "actions", dict(self.actions))
        object.__setattr__(self, "answer_actions", dict(self.answer_actions))
        for where, action in [("action", self.action), *self.actions.items()]:
            if action not in ACTIONS:
                raise ValueError(f"{where}: unknown action {action!r}; use one of {ACTIONS}")
        for entity, action in self.answer_actions.items():
            if action not in ("redact", "mask", "block"):
                raise ValueError(f"answer_actions.{entity}: use redact, mask or block")
        known = set(BUILTIN_ENTITIES) | {name for name, _ in self.custom}
        for name in [*self.actions, *self.answer_actions, *(self.entities or ())]:
            if name not in known:
                raise ValueError(f"unknown entity type {name!r}; known: {sorted(known)}")

    def action_for(self, entity: str) -> Action:
        """The action for one entity type in requests."""
        return self.actions.get(entity, self.action)

    @classmethod
    def from_config(cls, cfg: PiiConfig, **overrides: Any) -> PiiPolicy:
        """Build from a `PiiConfig`; fields it does not have yet come from `overrides`.

        Once `PiiConfig` grows `actions`, `entities`, `profanity` and `answer_actions`, they
        are read from it too (an override still wins).
        """
        values: dict[str, Any] = {
            "enabled": cfg.enabled,
            "action": cfg.action,
            "custom": tuple((c.name, c.pattern) for c in cfg.custom),
        }
        for name in ("actions", "entities", "profanity", "answer_actions"):
            if getattr(cfg, name, None) is not None:
                values[name] = getattr(cfg, name)
        values.update(overrides)
        return cls(**values)
