"""The ledger's reading side: the SQL its sums and reports use, the exact Decimal aggregate,
and a report's own read-only connection (`Reader`), which may run in a worker thread."""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from mcp_router.errors import DataError
from mcp_router.money import EXACT

__all__ = ["DSUM_COST", "ESTIMATED", "GROUP_KEY", "MOVE_ASIDE", "SUMS", "UNPRICED", "DecimalSum",
           "GroupBy", "MonthButToday", "Period", "Reader", "damage_advice", "listed",
           "period_where", "unreadable"]

Period = Literal["today", "month", "all"]
GroupBy = Literal["provider", "model", "route", "client", "day"]

# Constant SQL per choice: the argument selects an expression, it is never interpolated.
GROUP_KEY: dict[str, str] = {
    "provider": "provider",
    "model": "provider || '/' || model",
    "route": "COALESCE(route, '(none)')",
    "client": "COALESCE(client, '(none)')",
    "day": "day",
}
UNPRICED = "cost_usd IS NULL AND outcome != 'cache_hit'"
# Rows the provider reported no usage for that carry a cost: the estimate `AttemptHold`
# charges. Rows from before the `estimated` column are told by their shape: cut off, yet with
# output and a cost.
ESTIMATED = ("(cost_usd IS NOT NULL AND (estimated = 1 OR (estimated IS NULL AND "
             "outcome IN ('error', 'cancelled') AND output_tokens > 0)))")
# The Python aggregate is called only for rows holding an amount: each call costs about as
# much as reading the row (most saved_usd are NULL).
DSUM_COST = "COALESCE(dsum(cost_usd) FILTER (WHERE cost_usd IS NOT NULL), '0')"
SUMS = (f"COUNT(*), SUM(input_tokens), SUM(output_tokens), {DSUM_COST}, "
         "SUM(outcome = 'cache_hit'), "
         "COALESCE(dsum(saved_usd) FILTER (WHERE saved_usd IS NOT NULL), '0'), "
         f"SUM({UNPRICED}), COUNT(*) FILTER (WHERE {ESTIMATED})")


class DecimalSum:
    """SQLite aggregate `dsum(text)`: exact Decimal sum of non-null values, as text."""

    def __init__(self) -> None:
        self.total = Decimal(0)

    def step(self, value: str | None) -> None:
        if value is not None:
            self.total = EXACT.add(self.total, Decimal(value))

    def finalize(self) -> str:
        return str(self.total)


@dataclass(frozen=True)
class MonthButToday:
    """The spend of a month's days other than `day` in the rows up to `position`."""

    day: str
    position: int
    total: Decimal


MOVE_ASIDE = ("if it is damaged, stop the servers that use it and move it aside: they start "
               "a new one (the spend it holds then no longer counts against the budgets)")


def damage_advice(exc: BaseException) -> str:
    """The fix, after an error's text, when SQLite says the ledger is damaged (a malformed
    page, or not a database at all); nothing for a lock, permissions or a full disk, as
    moving the ledger aside would drop its spend from the budgets for no reason."""
    code = getattr(exc, "sqlite_errorcode", None)  # absent on errors not from SQLite itself
    if code is None or (code & 0xFF) not in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
        return ""
    return f"; {MOVE_ASIDE}"


def unreadable(path: Path, exc: sqlite3.Error) -> DataError:
    """The error for a read of the ledger at `path` that SQLite refused, naming the file."""
    return DataError(f"cannot read the ledger {path}: {exc}{damage_advice(exc)}")


class Reader:
    """One report's own connection, opened and closed in the thread that reads it: in WAL mode
    the writer's INSERTs go on meanwhile, and one read transaction gives every figure of the
    report from the same rows. Setting `stop` (from any thread) aborts the query running."""

    def __init__(self, path: Path, stop: threading.Event) -> None:
        self.path = path
        try:  # mode=rw: a ledger moved away is an error, not a new empty file
            self._conn = sqlite3.connect(f"{path.absolute().as_uri()}?mode=rw", uri=True,
                                         isolation_level=None)
        except sqlite3.Error as exc:
            raise unreadable(path, exc) from exc
        # typeshed types aggregates as int-only; SQLite takes any SQL value (here, text).
        self._conn.create_aggregate("dsum", 1, DecimalSum)  # type: ignore[arg-type]
        self._conn.set_progress_handler(stop.is_set, 10_000)  # looked at every 10k steps
        self.rows("PRAGMA busy_timeout=5000", ())
        self.rows("BEGIN", ())  # the snapshot is taken at the first read

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *exc: object) -> None:
        self._conn.close()  # ends the read transaction

    def rows(self, sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        """The rows of `sql`; DataError, naming the file, when SQLite cannot read them (the
        connection is then closed)."""
        try:
            return self._conn.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            self._conn.close()
            raise unreadable(self.path, exc) from exc


def period_where(period: Period, day: str, month: str) -> tuple[str, tuple[Any, ...]]:
    if period == "today":
        return "day = ?", (day,)
    if period == "month":
        return "day BETWEEN ? AND ?", (f"{month}-01", f"{month}-31")
    return "1", ()


def listed(reader: Reader, where: str, args: tuple[Any, ...],
            which: str) -> list[tuple[str, bool, int]]:
    """`(provider/model, answered, count)` of the rows matching `which` too."""
    sql = (f"SELECT provider || '/' || model AS m, outcome = 'ok' AS answered, COUNT(*) "
           f"FROM calls WHERE {where} AND {which} GROUP BY m, answered ORDER BY m")
    return [(m, bool(answered), n) for m, answered, n in reader.rows(sql, args)]
