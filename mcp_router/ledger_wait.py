"""Ledger rows that met another process's write lock, written in order by one background
thread, so the event loop never waits out SQLite's busy timeout.

Another mcp-router holds the lock for microseconds a row, which the loop's own short busy
timeout covers; a `sqlite3` shell's open BEGIN, a VACUUM or a stopped process hold it for
seconds or more, and those rows wait here instead.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections import deque
from contextlib import closing
from pathlib import Path
from typing import Any

__all__ = ["LockWaiter", "locked"]

log = logging.getLogger("mcp_router.ledger")

_WAITING_BUSY_S = 0.25  # the background writer's busy timeout: how soon it sees `close`
_CLOSE_WAIT_S = 2.0  # how long `close` waits for the background writer to finish
_TRACE = 3  # where a row's trace id is among its values


def locked(exc: BaseException) -> bool:
    """Whether SQLite refused for a lock another connection holds (SQLITE_BUSY, _LOCKED)."""
    code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
    return code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


class LockWaiter:
    """The rows of the ledger at `path` waiting for its write lock, oldest first, and the one
    thread that writes them with `insert`; true while any wait."""

    def __init__(self, path: Path, insert: str) -> None:
        self._path, self._insert = path, insert
        self._rows: deque[tuple[Any, ...]] = deque()
        self._lock = threading.Lock()  # guards _rows and _writer
        self._writer: threading.Thread | None = None
        self._closing = threading.Event()

    def __bool__(self) -> bool:
        return bool(self._rows)

    def add(self, values: tuple[Any, ...], exc: BaseException | None) -> None:
        """Queue a row, starting the writer if none runs; `exc` is the lock error this row
        met, None when it queued behind rows that did."""
        with self._lock:
            self._rows.append(values)
            if self._writer is not None:
                return
            self._writer = threading.Thread(target=self._write, args=(exc is not None,),
                                            name="ledger-writer", daemon=True)
            self._writer.start()
        if exc is not None:
            log.warning("another process holds the write lock of the ledger %s (%s); rows wait "
                        "for it in the background", self._path, exc)

    def close(self) -> None:
        """Wait (up to a bound) for the rows still waiting; log by trace id any left."""
        self._closing.set()
        writer = self._writer
        if writer is not None:
            writer.join(_CLOSE_WAIT_S)
        with self._lock:
            left = [values[_TRACE] for values in self._rows]
        if left:
            log.error("%d rows are not in the ledger %s: another process held its write lock "
                      "until mcp-router stopped (traces %s)", len(left), self._path,
                      ", ".join(left))

    def _write(self, announced: bool) -> None:
        """Write the waiting rows in order on a connection of its own, retrying a held lock
        until each is written or the ledger is closed."""
        written = 0
        try:
            conn = sqlite3.connect(self._path, isolation_level=None, timeout=_WAITING_BUSY_S)
        except sqlite3.Error as exc:
            self._give_up(exc)
            return
        with closing(conn):
            while (values := self._next()) is not None:
                try:
                    conn.execute(self._insert, values)
                    written += 1
                except (sqlite3.Error, OverflowError, ValueError) as exc:
                    if not locked(exc):
                        log.error("the row of trace %s is not in the ledger %s: %s; it counts "
                                  "against the budgets until the server restarts",
                                  values[_TRACE], self._path, exc)
                    elif self._closing.is_set():
                        return  # `close` logs the rows left
                    else:
                        continue
                with self._lock:
                    self._rows.popleft()
        if announced:
            log.warning("the ledger %s is writable again; %d rows that waited are written",
                        self._path, written)

    def _next(self) -> tuple[Any, ...] | None:
        """The oldest waiting row, or None when there is none, and then the writer ends."""
        with self._lock:
            if self._rows:
                return self._rows[0]
            self._writer = None
            return None

    def _give_up(self, exc: sqlite3.Error) -> None:
        """Drop every waiting row, by trace id in the log: the writer cannot open the file."""
        with self._lock:
            left, self._writer = [values[_TRACE] for values in self._rows], None
            self._rows.clear()
        log.error("%d rows are not in the ledger %s: %s (traces %s); they count against the "
                  "budgets until the server restarts", len(left), self._path, exc,
                  ", ".join(left))
