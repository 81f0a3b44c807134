"""The audit log: one JSON line per tool call in a private, size-rotated file under the home."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from types import TracebackType

from mcp_router.clock import Clock
from mcp_router.config import make_data_dir
from mcp_router.shared_config import AuditConfig

__all__ = ["AUDIT_FILE", "AuditEntry", "AuditLog"]

AUDIT_FILE = "audit.jsonl"
log = logging.getLogger("mcp_router.audit")
ERROR_CHARS = 300  # an error is a hint for whoever reads the log, not a traceback


@dataclass(frozen=True)
class AuditEntry:
    """What one tool call did; `prompt` and `answer` are written only with include_content."""

    client: str
    tool: str
    outcome: str  # ok | error | denied | rate_limited | cancelled | kept | ...
    trace_id: str | None = None
    route: str | None = None
    provider: str | None = None
    model: str | None = None
    cost_usd: Decimal | None = None
    cached: bool = False  # answered from the cache: nothing was sent upstream
    late: bool = False  # a kept answer (its `kept` line has its cost): nothing sent either
    dry_run: bool = False  # nothing sent: provider/model name the target it would ask first
    pii: Mapping[str, int] = field(default_factory=dict)
    error: str | None = None
    prompt: str | None = None
    answer: str | None = None


def _open_private(path: Path) -> int:
    """`path` opened for appending as a 0600 file (an existing one is tightened to 0600)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.fchmod(fd, 0o600)
    except OSError:
        os.close(fd)
        raise
    return fd


class _RotatingFile:
    """An append-only file rotated by size: `name`, `name.1` … `name.<backups>`, oldest dropped.

    Each line is one `write()` on an O_APPEND descriptor: on disk (in the operating system's
    hands) when `append` returns, and never interleaved with another process's lines. A line
    is whole or absent: one the disk had room for only part of is cut off again, and
    `append` raises OSError. With no backups the file starts again empty when it is full.

    Every server a host starts appends to the same file, so the size is the file's own, and
    a file another process has rotated away is left for the new one at `path`.
    """

    def __init__(self, path: Path, max_bytes: int, backups: int) -> None:
        self.path, self._max_bytes, self._backups = path, max_bytes, backups
        self._fd = _open_private(path)

    def append(self, data: bytes) -> None:
        here = os.fstat(self._fd)
        if not self._still_at_path(here):  # another process has rotated it away
            self.close()
            self._fd = _open_private(self.path)
            here = os.fstat(self._fd)
        if here.st_size and here.st_size + len(data) > self._max_bytes:
            self._rotate()
        written = os.write(self._fd, data)
        if written < len(data):
            self._cut(written)
            raise OSError(f"only {written} of a line's {len(data)} bytes could be written "
                          "(the disk is full, or the file at its size limit)")

    def _cut(self, written: int) -> None:
        """Remove the start of a line a short write left (the disk filled mid-line): the
        next line would be glued onto it, and neither could be read. Best effort: with
        O_APPEND the fragment is at the end, unless another process appended since."""
        with suppress(OSError):
            os.ftruncate(self._fd, os.fstat(self._fd).st_size - written)

    def _still_at_path(self, here: os.stat_result) -> bool:
        try:
            return os.path.samestat(here, os.stat(self.path))
        except FileNotFoundError:
            return False

    def close(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)

    def _rotate(self) -> None:
        self.close()
        name = str(self.path)
        # Another process may be rotating at the same moment: a file it moved first is gone.
        with suppress(FileNotFoundError):
            for i in range(self._backups - 1, 0, -1):
                if os.path.exists(f"{name}.{i}"):
                    os.replace(f"{name}.{i}", f"{name}.{i + 1}")
            if self._backups:
                os.replace(name, f"{name}.1")
            else:
                os.unlink(name)
        self._fd = _open_private(self.path)


class AuditLog:
    """Appends audit entries as JSON lines to `<home>/audit.jsonl`, rotated by size.

    Each line is on disk as soon as it is written: `audit.jsonl.1` … `audit.jsonl.<backups>`
    hold the older lines, oldest dropped; every file is 0600.
    """

    def __init__(self, home: Path, config: AuditConfig, clock: Clock, *,
                 scrub: Callable[[str], str] = str) -> None:
        self._config, self._clock, self._scrub = config, clock, scrub
        self.path = home / AUDIT_FILE
        self._file: _RotatingFile | None = None
        self._warned = False

    def write(self, entry: AuditEntry) -> None:
        """Append one line for `entry` (nothing when the log is disabled).

        A file that cannot be written (disk full, a directory in its place) does not fail the
        call being audited: the first such problem is logged, and each later line is tried
        again.
        """
        if not self._config.enabled:
            return
        try:
            self._open().append(self.line(entry).encode() + b"\n")
        except OSError as exc:
            self.close()
            if not self._warned:
                self._warned = True
                log.warning("audit log %s cannot be written (%s); calls go on, and their "
                            "lines are lost until it can (logged once)", self.path, exc)

    def _open(self) -> _RotatingFile:
        # Opened on first use, so building an AuditLog does no I/O and one instance can be
        # shared by every session (SSE enters the server lifespan once per connection).
        if self._file is None:
            make_data_dir(self.path.parent)
            self._file = _RotatingFile(self.path, self._config.max_bytes, self._config.backups)
        return self._file

    def line(self, entry: AuditEntry) -> str:
        """The JSON line written for `entry`."""
        data: dict[str, object] = {
            "ts": datetime.fromtimestamp(self._clock.wall(), UTC).isoformat(
                timespec="milliseconds"),
            "client": entry.client, "tool": entry.tool, "route": entry.route,
            "provider": entry.provider, "model": entry.model, "outcome": entry.outcome,
            "cost_usd": None if entry.cost_usd is None else format(entry.cost_usd, "f"),
            "cached": entry.cached, "trace_id": entry.trace_id, "pii": dict(entry.pii),
            "error": None if entry.error is None else self._scrub(entry.error)[:ERROR_CHARS],
        }
        if entry.late:  # only then: keys added later, so older lines read the same
            data["late"] = True
        if entry.dry_run:
            data["dry_run"] = True
        if self._config.include_content:
            data["prompt"] = None if entry.prompt is None else self._scrub(entry.prompt)
            data["answer"] = None if entry.answer is None else self._scrub(entry.answer)
        # ASCII only: U+2028 and friends would split the line for readers using splitlines().
        return json.dumps(data, separators=(",", ":"))

    def close(self) -> None:
        """Close the file; a later write opens it again."""
        file, self._file = self._file, None
        if file is not None:
            file.close()

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
