"""The SQLite ledger: one durable row per upstream attempt or cache hit, and sums over them.

Durability: WAL with `synchronous=NORMAL`. A commit is a `write()` into the WAL file, so once
`record` returns the row is in the operating system's hands and survives the process being
killed (kill -9); only an OS crash or power cut can drop the last commits (the database stays
consistent). `synchronous=FULL` would add an fsync per call (milliseconds on most disks),
far over the router's 0.3 ms overhead budget.

Exactness: money is stored as Decimal strings (never REAL) and summed by a Decimal aggregate
registered on the connection, so every sum is exact to the price table.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sqlite3
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio

from mcp_router.clock import Clock
from mcp_router.config import BudgetsConfig, make_data_dir, make_private_file
from mcp_router.errors import ConfigError, DataError
from mcp_router.ledger_sql import (
    DSUM_COST,
    ESTIMATED,
    GROUP_KEY,
    MOVE_ASIDE,
    SUMS,
    UNPRICED,
    DecimalSum,
    GroupBy,
    MonthButToday,
    Period,
    Reader,
    damage_advice,
    listed,
    period_where,
    unreadable,
)
from mcp_router.ledger_wait import LockWaiter, locked
from mcp_router.messages import Usage
from mcp_router.money import EXACT, utc_day_month
from mcp_router.reports import Budgets, BudgetStatus, CostReport, Tally, build_alerts

__all__ = ["LEDGER_FILE", "CostReport", "GroupBy", "Ledger", "LedgerRow", "Period"]

log = logging.getLogger("mcp_router.ledger")

LEDGER_FILE = "ledger.sqlite3"
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    id INTEGER PRIMARY KEY,
    ts REAL NOT NULL,
    day TEXT NOT NULL,
    month TEXT NOT NULL,
    trace_id TEXT NOT NULL,
    client TEXT,
    route TEXT,
    provider TEXT NOT NULL,
    model TEXT NOT NULL,
    outcome TEXT NOT NULL,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    cached_input_tokens INTEGER NOT NULL,
    cost_usd TEXT,
    saved_usd TEXT,
    latency_ms REAL NOT NULL,
    metadata TEXT NOT NULL,
    writer TEXT,
    estimated INTEGER
);
CREATE INDEX IF NOT EXISTS calls_day_client ON calls(day, client);
DROP INDEX IF EXISTS calls_day;
DROP INDEX IF EXISTS calls_month;
"""
# One index, as each is one more page every row's commit writes. (day, client) finds a day, a
# month (a range of days, 'YYYY-MM-01' to 'YYYY-MM-31' as text) and one client's day, and
# walks a client's month in the index alone, reading only that client's rows. (A second index
# on (client, day) would speed a client's month and all-time reports at ~50% more time per
# INSERT.) Ledgers made before had a day index, and a month index before that; an older
# mcp-router opening this file makes them again, which changes no result.
_COLUMNS = ("ts, day, month, trace_id, client, route, provider, model, outcome, input_tokens, "
            "output_tokens, cached_input_tokens, cost_usd, saved_usd, latency_ms, metadata")
_INSERT = f"INSERT INTO calls ({_COLUMNS}, writer, estimated) VALUES ({', '.join('?' * 18)})"
# Another process's write lock: a row waits for it on the event loop at most _ON_LOOP_BUSY_MS
# (another mcp-router holds it for microseconds per row), then in the background writer
# (a `sqlite3` shell's open BEGIN, a VACUUM, a stopped process hold it for seconds or more).
_ON_LOOP_BUSY_MS = 30
_CHECK_PATH_S = 1.0  # how often `record` checks that the file at the path is the one open

@dataclass(frozen=True)
class LedgerRow:
    """One upstream attempt that could have cost money, or one cache hit.

    `outcome` is `ok`, `error`, `cancelled` or `cache_hit`. `cost_usd` is None when the price
    is unknown; a cache hit costs 0 and carries the cost it avoided in `saved_usd`.
    `estimated`: the provider reported no usage, so `usage` and the cost are our estimate.
    `ts` defaults to the ledger clock's wall time when recorded.
    """

    provider: str
    model: str
    outcome: str
    trace_id: str = ""
    client: str | None = None
    route: str | None = None
    usage: Usage = field(default_factory=Usage)
    cost_usd: Decimal | None = None
    saved_usd: Decimal | None = None
    latency_ms: float = 0.0
    metadata: Mapping[str, str] = field(default_factory=dict)
    ts: float | None = None
    estimated: bool = False


class Ledger:
    """Append-only call ledger in one SQLite file; safe to share across threads and processes."""

    def __init__(self, path: Path, clock: Clock) -> None:
        self.path, self._clock = Path(path), clock
        # Marks this connection's rows, so a budget guard adds another process's spend to its
        # own figures without counting its own twice.
        self._writer = uuid.uuid4().hex
        self._lock = threading.Lock()
        # Reports read on their own connections, one at a time: a second waits its turn off
        # the event loop, and the loop shares the GIL with one scan at most.
        self._reports = anyio.CapacityLimiter(1)
        self._month_lock = threading.Lock()
        self._month_but_today: dict[str | None, MonthButToday] = {}
        self._waiting = LockWaiter(self.path, _INSERT)  # rows that met another's write lock
        try:
            make_data_dir(self.path.parent)
            make_private_file(self.path)  # SQLite gives its -wal and -shm files this mode
            # One connection behind a lock: the server runs on one event loop, but worker
            # threads (anyio.to_thread) may report too. Autocommit: each INSERT is its own
            # transaction.
            self._conn = sqlite3.connect(self.path, isolation_level=None,
                                         check_same_thread=False)
        except (OSError, sqlite3.OperationalError) as exc:
            if self.path.exists() and not self.path.is_file():  # a stray mkdir, a sync folder
                kind = "a directory" if self.path.is_dir() else "not a regular file"
                raise DataError(f"the ledger {self.path} is {kind}, so it cannot be used; "
                                "move it out of the way, and a new ledger is started") from exc
            raise DataError(f"cannot use the data directory {self.path.parent} ({exc}); set "
                            "MCP_ROUTER_HOME to a directory this user can write") from exc
        try:
            # typeshed types aggregates as int-only; SQLite takes any SQL value (here, text).
            self._conn.create_aggregate("dsum", 1, DecimalSum)  # type: ignore[arg-type]
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute("PRAGMA busy_timeout=5000")  # another process may be writing
            self._migrate()
            self._conn.execute(f"PRAGMA busy_timeout={_ON_LOOP_BUSY_MS}")  # see record
            # What `_check_path` compares: the file open, and the -wal it writes into.
            self._opened, self._wal = _identity(self.path), _identity(self._wal_path)
            self._checked_at, self._moved = -math.inf, False
        except sqlite3.OperationalError as exc:  # permissions, a lock: nothing is damaged
            self._conn.close()
            raise DataError(_unusable(self.path, exc)) from exc
        except sqlite3.DatabaseError as exc:  # not a database, or a malformed one
            self._conn.close()
            raise DataError(f"the ledger {self.path} cannot be used ({exc}); "
                            f"{MOVE_ASIDE}") from exc

    @classmethod
    def in_home(cls, home: Path, clock: Clock) -> Ledger:
        """The ledger under `$MCP_ROUTER_HOME` (the directory is created if missing)."""
        return cls(Path(home) / LEDGER_FILE, clock)

    def _migrate(self) -> None:
        (version,) = self._conn.execute("PRAGMA user_version").fetchone()
        if version > SCHEMA_VERSION:
            self._conn.close()
            raise ConfigError(f"ledger schema version {version} is newer than this mcp-router "
                              f"understands ({SCHEMA_VERSION}); upgrade mcp-router",
                              file=str(self.path))
        self._conn.executescript(_SCHEMA)
        # Ledgers made before may lack the writer and estimated columns. Rows without a writer
        # (also those an older mcp-router still writes) count as another process's; rows
        # without `estimated` are judged as before it (see `_estimated`). Columns are added
        # without a version change: older releases read and write the table as before.
        columns = {name for _, name, *_ in self._conn.execute("PRAGMA table_info(calls)")}
        for column, kind in (("writer", "TEXT"), ("estimated", "INTEGER")):
            if column in columns:
                continue
            try:
                self._conn.execute(f"ALTER TABLE calls ADD COLUMN {column} {kind}")
            except sqlite3.OperationalError as exc:  # another process added it meanwhile
                if "duplicate column" not in str(exc):
                    raise
        self._conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def close(self) -> None:
        """Close, after waiting (up to a bound) for rows that wait for another process's
        write lock; any still unwritten are logged by trace id, naming the file."""
        self._waiting.close()
        with self._lock:
            if not self._moved:
                self._check_path(self._checked_at)  # a move in the last second
            self._conn.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def record(self, row: LedgerRow) -> None:
        """Append one row; it is durable against a process kill when this returns, unless it
        waits for a lock (below). Raises DataError, naming the file, when SQLite cannot take
        it (disk full, a number no SQLite integer holds).

        While another process holds the write lock for longer than another mcp-router's
        commits (a `sqlite3` shell's BEGIN, a VACUUM), the row, and every row after it, waits
        for the lock in a background thread instead of stalling the event loop, and this
        returns at once. Until they are written, reads (`spent`, `position`, reports) do not
        see them; the budgets have counted them already. `close` logs any that never are."""
        now = self._clock.wall()
        ts = now if row.ts is None else row.ts
        day, month = utc_day_month(ts)
        u = row.usage
        values = (ts, day, month, row.trace_id, row.client, row.route, row.provider, row.model,
                  row.outcome, u.input_tokens, u.output_tokens, u.cached_input_tokens,
                  _text(row.cost_usd), _text(row.saved_usd), row.latency_ms,
                  json.dumps(dict(row.metadata), sort_keys=True, ensure_ascii=False),
                  self._writer, int(row.estimated))
        with self._lock:
            if abs(now - self._checked_at) >= _CHECK_PATH_S:
                self._check_path(now)
            if self._moved:
                raise DataError(f"the ledger {self.path} was moved or replaced while mcp-router "
                                "ran: restart mcp-router (every server using this data "
                                "directory) to write to the ledger at that path")
            if self._waiting:  # rows wait for the lock already: this one goes behind them
                self._waiting.add(values, None)
                return
            try:
                self._conn.execute(_INSERT, values)
            except (sqlite3.Error, OverflowError, ValueError) as exc:
                if locked(exc):
                    self._waiting.add(values, exc)
                    return
                raise DataError(f"cannot write to the ledger {self.path}: "
                                f"{exc}{damage_advice(exc)}") from exc

    @property
    def _wal_path(self) -> Path:
        return self.path.with_name(self.path.name + "-wal")

    def _check_path(self, now: float) -> None:
        """Whether the file at the path is still the one open; if it was moved aside or
        replaced, put the rows written so far into the moved file and refuse the next ones.

        SQLite names the -wal after the path, not the file: after a move it goes on writing
        into a -wal that belongs to no database, which a ledger opened at the path (by a
        server starting) then takes over or deletes. So rows are checkpointed into the moved
        file only while that -wal is still the one this connection opened, and nothing is
        reopened at the path while running: the other servers sharing the ledger may still
        write into the old -wal, and a new file's row ids start again, which the budgets'
        reading of other servers' spend goes by. A restart (of every server using it) opens
        the ledger at the path. Checked once a second rather than per row (a stat is ~5% of
        an INSERT); the rows of that second are in the -wal, and checkpointed with the rest."""
        self._checked_at = now
        if _identity(self.path) == self._opened:
            self._wal = _identity(self._wal_path) or self._wal
            return
        self._moved = True
        ours = self._wal is not None and _identity(self._wal_path) == self._wal
        kept = ours and self._keep_in_moved_file()
        log.error("the ledger %s was moved or replaced while mcp-router ran; %s; restart "
                  "mcp-router (every server using this data directory) to write to the "
                  "ledger at that path", self.path,
                  "the rows written until now are in the moved file" if kept else
                  "its latest rows may not be in the moved file")

    def _keep_in_moved_file(self) -> bool:
        """Copy the rows in this connection's -wal into the moved database file itself
        (SQLite does not on closing a moved database); False when some could not be."""
        try:
            busy, frames, copied = self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.Error:
            return False
        return not busy and copied >= frames

    def recent(self, limit: int = 100) -> list[LedgerRow]:
        """The last `limit` rows, newest first."""
        sql = (f"SELECT {_COLUMNS}, estimated FROM calls ORDER BY id DESC LIMIT ?")
        return [_row(r) for r in self._query(sql, (limit,))]

    def spent(self, period: Period, client: str | None = None, *,
              up_to: int | None = None) -> Decimal:
        """The exact sum of known costs over `period` (UTC day or month of the clock's now),
        of one client's calls when `client` is given, of the rows up to `up_to` (a
        `position`) when that is given."""
        where, args = period_where(period, *utc_day_month(self._clock.wall()))
        if client is not None:
            where, args = f"{where} AND client = ?", (*args, client)
        if up_to is not None:
            where, args = f"{where} AND id <= ?", (*args, up_to)
        ((total,),) = self._query(f"SELECT {DSUM_COST} FROM calls WHERE {where}", args)
        return Decimal(total)

    def position(self) -> int:
        """The newest row's id. Rows are written one transaction at a time, so every row up
        to it is there, whichever process wrote it."""
        ((newest,),) = self._query("SELECT COALESCE(MAX(id), 0) FROM calls", ())
        return int(newest)

    def spent_elsewhere(self, after: int,
                        client: str | None = None) -> tuple[int, list[tuple[str, Decimal]]]:
        """The newest position, and `(day, cost)` of each priced row after position `after`
        that another process (another ledger connection) wrote, of `client`'s calls if given.
        """
        rows = self._query("SELECT id, day, cost_usd, writer, client FROM calls WHERE id > ? "
                           "ORDER BY id", (after,))
        newest = rows[-1][0] if rows else after
        return newest, [(day, Decimal(cost)) for _, day, cost, writer, of in rows
                        if cost is not None and writer != self._writer
                        and (client is None or of == client)]

    def report(self, period: Period = "today", group_by: GroupBy = "provider",
               budgets: BudgetsConfig | None = None, client: str | None = None) -> CostReport:
        """The `cost_report` result: rows per group, totals, budgets and alerts; of one
        client's calls, against that client's `budgets`, when `client` is given. It reads on
        a connection of its own, so it may run in a worker thread (`report_in_thread`)."""
        return self._report(period, group_by, budgets, client, threading.Event())

    async def report_in_thread(self, period: Period = "today", group_by: GroupBy = "provider",
                               budgets: BudgetsConfig | None = None,
                               client: str | None = None) -> CostReport:
        """`report` in a worker thread: the event loop, and the rows it records meanwhile, do
        not wait for the scan. A cancelled call returns at once; its scan stops within a few
        thousand SQLite steps and closes its connection."""
        stop = threading.Event()
        try:
            return await anyio.to_thread.run_sync(
                self._report, period, group_by, budgets, client, stop,
                abandon_on_cancel=True, limiter=self._reports)
        except anyio.get_cancelled_exc_class():
            stop.set()
            raise

    def _report(self, period: Period, group_by: GroupBy, budgets: BudgetsConfig | None,
                client: str | None, stop: threading.Event) -> CostReport:
        day, month = utc_day_month(self._clock.wall())
        where, args = period_where(period, day, month)
        if client is not None:
            where, args = f"{where} AND client = ?", (*args, client)
        with Reader(self.path, stop) as reader:  # one scan; budgets come from its day sums
            tally = Tally.of(reader.rows(f"SELECT {GROUP_KEY[group_by]} AS k, day, {SUMS} "
                                         f"FROM calls WHERE {where} GROUP BY k, day", args),
                             by_cost=group_by != "day")
            if period == "today":
                month_spent = EXACT.add(self._month_but(reader, day, client), tally.total)
            else:
                month_spent = tally.spent(f"{month}-01", f"{month}-31")
            unpriced = listed(reader, where, args, UNPRICED) if tally.unpriced else []
            estimated = listed(reader, where, args, ESTIMATED) if tally.estimated else []
        cfg = budgets or BudgetsConfig()
        status = Budgets(daily=BudgetStatus.of(cfg.daily_usd, tally.spent(day, day)),
                         monthly=BudgetStatus.of(cfg.monthly_usd, month_spent))
        alerts = build_alerts(cfg, status, list(tally.days.items()), unpriced, estimated)
        return tally.report(period, group_by, "all" if client is None else client, status,
                            alerts)

    def _month_but(self, reader: Reader, day: str, client: str | None) -> Decimal:
        """The spend of this month's days other than `day`, of `client`'s calls if given:
        summed once a day, then only the rows written since are read (by id, not by the
        index), so a report of today does not scan the month each time."""
        first, last = f"{day[:7]}-01", f"{day[:7]}-31"
        ((newest,),) = reader.rows("SELECT COALESCE(MAX(id), 0) FROM calls", ())
        with self._month_lock:
            known = self._month_but_today.get(client)
        if known is not None and known.day == day and known.position <= newest:
            base, where = known.total, "id > ? AND +day BETWEEN ? AND ? AND +day != ?"
            args: tuple[Any, ...] = (known.position, first, last, day)
        else:
            base, where, args = Decimal(0), "day BETWEEN ? AND ? AND day != ?", (first, last, day)
        if client is not None:
            where, args = f"{where} AND +client = ?", (*args, client)
        ((more,),) = reader.rows(f"SELECT {DSUM_COST} FROM calls WHERE {where}", args)
        total = EXACT.add(base, Decimal(more))
        with self._month_lock:
            if client not in self._month_but_today and len(self._month_but_today) >= 64:
                self._month_but_today.clear()  # one per client of the config: never, really
            self._month_but_today[client] = MonthButToday(day, newest, total)
        return total

    def _query(self, sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        """The rows of `sql`; DataError, naming the file, when SQLite cannot read them."""
        with self._lock:
            try:
                return self._conn.execute(sql, args).fetchall()
            except sqlite3.Error as exc:
                raise unreadable(self.path, exc) from exc


def _unusable(path: Path, exc: sqlite3.OperationalError) -> str:
    """Why SQLite could not open or write the ledger, when it is not damaged: which of the
    file, its -wal and -shm files and its directory this user cannot write, and the fix
    (never moving it aside, which would drop its spend from the budgets)."""
    files = [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")]
    closed = [str(f) for f in files if f.exists() and not os.access(f, os.W_OK)]
    if not os.access(path.parent, os.W_OK | os.X_OK):
        closed.append(str(path.parent))
    if not closed:
        return f"the ledger {path} cannot be used ({exc})"
    return (f"the ledger {path} cannot be used ({exc}): this user cannot write "
            f"{', '.join(closed)}. Keep the ledger (its spend counts against the budgets) and "
            f"give this user write access (chmod u+w {' '.join(closed)}, or chown "
            f"{'them' if len(closed) > 1 else 'it'} to this user), or set MCP_ROUTER_HOME to "
            "a directory this user can write")


def _identity(path: Path) -> tuple[int, int] | None:
    """Device and inode of the file at `path`, None if there is none."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _text(amount: Decimal | None) -> str | None:
    return None if amount is None else str(amount)


def _row(r: tuple[Any, ...]) -> LedgerRow:
    (ts, _day, _month, trace_id, client, route, provider, model, outcome, i, o, c,
     cost_usd, saved_usd, latency_ms, metadata, estimated) = r
    return LedgerRow(provider=provider, model=model, outcome=outcome, trace_id=trace_id,
                     client=client, route=route,
                     usage=Usage(input_tokens=i, output_tokens=o, cached_input_tokens=c),
                     cost_usd=None if cost_usd is None else Decimal(cost_usd),
                     saved_usd=None if saved_usd is None else Decimal(saved_usd),
                     latency_ms=latency_ms, metadata=json.loads(metadata), ts=ts,
                     estimated=bool(estimated))
