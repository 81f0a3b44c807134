"""Config models for a server shared over HTTP: client tokens and limits, bind policy, audit log."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["AuditConfig", "ClientBudgets", "ClientConfig", "ServerConfig", "body_bytes_for",
           "valid_client_name"]

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
# Names end up in YAML keys, ledger rows and cache scopes: keep them plain.
_CLIENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")

Money = Annotated[Decimal, Field(ge=0)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def valid_client_name(name: str) -> bool:
    """Whether `name` may name a client: letters, digits and `_.@-`, at most 64 characters."""
    return _CLIENT_NAME.fullmatch(name) is not None


class ClientBudgets(_Model):
    """One client's own spending limits, counted over that client's ledger rows only."""

    daily_usd: Money | None = None
    monthly_usd: Money | None = None


class ClientConfig(_Model):
    """A client of a shared server ("virtual key"): its token's hash and what it may use.

    `routes` and `models` are allow-lists. Both empty: everything. Otherwise the client may
    use exactly the routes listed and the explicit `provider/model`s matching a pattern of
    `models` (`*` matches any run of characters), so listing one route does not leave
    explicit models open.
    """

    token_sha256: str = Field(description="sha256 hex of the token (mcp-router token new NAME)")
    routes: list[str] = Field(default_factory=list)
    models: list[str] = Field(default_factory=list)
    budgets: ClientBudgets = Field(default_factory=ClientBudgets)
    rate_per_min: int | None = Field(default=None, gt=0)
    # own: cost_report shows this client its own calls and budgets; all: every client's
    # (for whoever watches the team's spend).
    cost_report: Literal["own", "all"] = "own"

    @field_validator("token_sha256")
    @classmethod
    def _is_sha256_hex(cls, value: str) -> str:
        if not _SHA256_HEX.fullmatch(value):
            raise ValueError("must be the 64 lowercase hex digits `mcp-router token new` prints "
                             "(the token's hash, never the token itself)")
        return value


MAX_CHARS = 400_000
BODY_OVERHEAD_BYTES = 1 << 20


def body_bytes_for(max_chars: int) -> int:
    """The `max_body_bytes` a config leaves out: room for `max_chars` characters in any
    script (UTF-8 takes at most 4 bytes a character, an escaped quote or newline 2) and 1 MiB
    for the rest of the request (roles, model names, metadata). At the default `max_chars`
    it also fits text a client sends as 6-byte \\uXXXX escapes, save emoji and the other
    characters beyond the Basic Multilingual Plane."""
    return 4 * max_chars + BODY_OVERHEAD_BYTES


class ServerConfig(_Model):
    """What the HTTP transports accept: extra Host/Origin values, request size limits, and how
    long streamable-HTTP sessions are kept."""

    allowed_hosts: list[str] = Field(default_factory=list)  # e.g. "router.lan:*"
    allowed_origins: list[str] = Field(default_factory=list)  # e.g. "https://app.lan:*"
    max_body_bytes: int = Field(default=body_bytes_for(MAX_CHARS), gt=0, description=(
        "HTTP: a request body over this many bytes is refused unread, with a JSON-RPC error "
        "naming this key; left out, it follows max_chars (4 bytes a character, plus 1 MiB), "
        "so text within max_chars fits in any script"))
    max_messages: int = Field(default=200, gt=0)
    max_chars: int = Field(default=MAX_CHARS, gt=0)
    # The MCP SDK's own defaults: a host that keeps no stream open between calls keeps its
    # session over a half-hour pause. A client that goes away without ending its session
    # (a killed bot) leaves it held (tens of KB) until then.
    session_idle_s: float | None = Field(default=1800, gt=0, allow_inf_nan=False, description=(
        "streamable-http: a session with no request in flight and no open stream for this "
        "many seconds is closed, and its client must initialize a new one (hosts do so on "
        "the 404 it then gets); null keeps sessions until their client ends them"))
    max_sessions: int | None = Field(default=10_000, gt=0, description=(
        "streamable-http: sessions open at once; past this, a client opening another gets "
        "503 until one ends or goes idle; null: no limit"))

    @model_validator(mode="before")
    @classmethod
    def _body_follows_chars(cls, data: Any) -> Any:
        # A prompt within max_chars must not be refused for its bytes before the router
        # could read it: a raised max_chars raises the body limit left out with it.
        if isinstance(data, dict) and "max_body_bytes" not in data:
            chars = data.get("max_chars")
            if isinstance(chars, int) and not isinstance(chars, bool) and chars > 0:
                return {**data, "max_body_bytes": body_bytes_for(chars)}
        return data


class AuditConfig(_Model):
    """The audit log: one JSON line per tool call; prompt and answer text only on request."""

    enabled: bool = True
    include_content: bool = False
    max_bytes: int = Field(default=10_000_000, gt=0)
    backups: int = Field(default=5, ge=0)
