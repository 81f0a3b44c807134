"""The audit log: one JSON line per tool call in a private, size-rotated file under the home."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from logging.handlers import RotatingFileHandler
from pathlib import Path
from types import TracebackType

from mcp_router.clock import Clock
from mcp_router.shared_config import AuditConfig

__all__ = ["AUDIT_FILE", "AuditEntry", "AuditLog"]

AUDIT_FILE = "audit.jsonl"
ERROR_CHARS = 300  # an error is a hint for whoever reads the log, not a traceback


@dataclass(frozen=True)
class AuditEntry:
    """What one tool call did; `prompt` and `answer` are written only with include_content."""

    client: str
    tool: str
    outcome: str  # ok | error | denied | rate_limited | ...
    trace_id: str | None = None
    route: str | None = None
    provider: str | None = None
    model: str | None = None
    cost_usd: Decimal | None = None
    pii: Mapping[str, int] = field(default_factory=dict)
    error: str | None = None
    prompt: str | None = None
    answer: str | None = None


def _create_private(path: str) -> None:
    """Create `path` as an empty 0600 file, or tighten an existing one to 0600."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


def _rotate(source: str, dest: str) -> None:
    # The handler opens the base file again right after rotating; creating it here first
    # means it opens an existing 0600 file instead of making one under the process umask.
    os.replace(source, dest)
    _create_private(source)


class AuditLog:
    """Appends audit entries as JSON lines to `<home>/audit.jsonl`, rotated by size.

    Each line is flushed as it is written. Rotation is the stdlib's RotatingFileHandler:
    `audit.jsonl.1` … `audit.jsonl.<backups>`, oldest dropped.
    """

    def __init__(self, home: Path, config: AuditConfig, clock: Clock, *,
                 scrub: Callable[[str], str] = str) -> None:
        self._config, self._clock, self._scrub = config, clock, scrub
        self.path = home / AUDIT_FILE
        self._handler: RotatingFileHandler | None = None

    def write(self, entry: AuditEntry) -> None:
        """Append one line for `entry` (nothing when the log is disabled)."""
        if not self._config.enabled:
            return
        record = logging.makeLogRecord({"msg": self.line(entry), "levelno": logging.INFO,
                                        "levelname": "INFO", "name": "mcp_router.audit"})
        self._open().handle(record)

    def _open(self) -> RotatingFileHandler:
        # Opened on first use, so building an AuditLog does no I/O and one instance can be
        # shared by every session (SSE enters the server lifespan once per connection).
        if self._handler is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            _create_private(str(self.path))
            handler = RotatingFileHandler(self.path, maxBytes=self._config.max_bytes,
                                          backupCount=self._config.backups, encoding="utf-8")
            handler.rotator = _rotate
            handler.setFormatter(logging.Formatter("%(message)s"))
            self._handler = handler
        return self._handler

    def line(self, entry: AuditEntry) -> str:
        """The JSON line written for `entry`."""
        data: dict[str, object] = {
            "ts": datetime.fromtimestamp(self._clock.wall(), UTC).isoformat(
                timespec="milliseconds"),
            "client": entry.client, "tool": entry.tool, "route": entry.route,
            "provider": entry.provider, "model": entry.model, "outcome": entry.outcome,
            "cost_usd": None if entry.cost_usd is None else format(entry.cost_usd, "f"),
            "trace_id": entry.trace_id, "pii": dict(entry.pii),
            "error": None if entry.error is None else self._scrub(entry.error)[:ERROR_CHARS],
        }
        if self._config.include_content:
            data["prompt"] = None if entry.prompt is None else self._scrub(entry.prompt)
            data["answer"] = None if entry.answer is None else self._scrub(entry.answer)
        # ASCII only: U+2028 and friends would split the line for readers using splitlines().
        return json.dumps(data, separators=(",", ":"))

    def close(self) -> None:
        """Flush and close the file; a later write opens it again."""
        if self._handler is not None:
            self._handler.close()
            self._handler = None

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
