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
import sqlite3
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from mcp_router.clock import Clock
from mcp_router.config import BudgetsConfig, make_data_dir, make_private_file
from mcp_router.errors import ConfigError, DataError
from mcp_router.messages import Usage
from mcp_router.money import EXACT, exact_sum, utc_day_month
from mcp_router.reports import Budgets, BudgetStatus, CostReport, CostRow, build_alerts

__all__ = ["LEDGER_FILE", "CostReport", "GroupBy", "Ledger", "LedgerRow", "Period"]

Period = Literal["today", "month", "all"]
GroupBy = Literal["provider", "model", "route", "client", "day"]
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
CREATE INDEX IF NOT EXISTS calls_day ON calls(day);
DROP INDEX IF EXISTS calls_month;
"""
# One index: a month is a range of days ('YYYY-MM-01' to 'YYYY-MM-31' as text), and each index
# is one more page every row's commit writes. (Ledgers made before had a month index too; an
# older mcp-router opening this file makes it again, which changes no result.)
_COLUMNS = ("ts, day, month, trace_id, client, route, provider, model, outcome, input_tokens, "
            "output_tokens, cached_input_tokens, cost_usd, saved_usd, latency_ms, metadata")
_INSERT = f"INSERT INTO calls ({_COLUMNS}, writer, estimated) VALUES ({', '.join('?' * 18)})"

# Constant SQL per choice: the argument selects an expression, it is never interpolated.
_GROUP_KEY: dict[str, str] = {
    "provider": "provider",
    "model": "provider || '/' || model",
    "route": "COALESCE(route, '(none)')",
    "client": "COALESCE(client, '(none)')",
    "day": "day",
}
_UNPRICED = "cost_usd IS NULL AND outcome != 'cache_hit'"


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


class _DecimalSum:
    """SQLite aggregate `dsum(text)`: exact Decimal sum of non-null values, as text."""

    def __init__(self) -> None:
        self.total = Decimal(0)

    def step(self, value: str | None) -> None:
        if value is not None:
            self.total = EXACT.add(self.total, Decimal(value))

    def finalize(self) -> str:
        return str(self.total)


class Ledger:
    """Append-only call ledger in one SQLite file; safe to share across threads and processes."""

    def __init__(self, path: Path, clock: Clock) -> None:
        self.path, self._clock = Path(path), clock
        # Marks this connection's rows, so a budget guard adds another process's spend to its
        # own figures without counting its own twice.
        self._writer = uuid.uuid4().hex
        self._lock = threading.Lock()
        try:
            make_data_dir(self.path.parent)
            make_private_file(self.path)  # SQLite gives its -wal and -shm files this mode
            # One connection behind a lock: the server runs on one event loop, but worker
            # threads (anyio.to_thread) may report too. Autocommit: each INSERT is its own
            # transaction.
            self._conn = sqlite3.connect(self.path, isolation_level=None,
                                         check_same_thread=False)
        except (OSError, sqlite3.OperationalError) as exc:
            raise DataError(f"cannot use the data directory {self.path.parent} ({exc}); set "
                            "MCP_ROUTER_HOME to a directory this user can write") from exc
        try:
            # typeshed types aggregates as int-only; SQLite takes any SQL value (here, text).
            self._conn.create_aggregate("dsum", 1, _DecimalSum)  # type: ignore[arg-type]
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute("PRAGMA busy_timeout=5000")  # another process may be writing
            self._migrate()
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            raise DataError(f"the ledger {self.path} cannot be used ({exc}); if it is damaged, "
                            "move it aside and a new one is started (the spend it holds then "
                            "no longer counts against the budgets)") from exc

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
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def record(self, row: LedgerRow) -> None:
        """Append one row; it is durable against a process kill when this returns. Raises
        DataError, naming the file, when SQLite cannot take it (disk full, a lock held past
        the busy timeout)."""
        ts = self._clock.wall() if row.ts is None else row.ts
        day, month = utc_day_month(ts)
        u = row.usage
        values = (ts, day, month, row.trace_id, row.client, row.route, row.provider, row.model,
                  row.outcome, u.input_tokens, u.output_tokens, u.cached_input_tokens,
                  _text(row.cost_usd), _text(row.saved_usd), row.latency_ms,
                  json.dumps(dict(row.metadata), sort_keys=True, ensure_ascii=False),
                  self._writer, int(row.estimated))
        with self._lock:
            try:
                self._conn.execute(_INSERT, values)
            except sqlite3.Error as exc:
                raise DataError(f"cannot write to the ledger {self.path}: {exc}") from exc

    def recent(self, limit: int = 100) -> list[LedgerRow]:
        """The last `limit` rows, newest first."""
        sql = (f"SELECT {_COLUMNS}, estimated FROM calls ORDER BY id DESC LIMIT ?")
        return [_row(r) for r in self._query(sql, (limit,))]

    def spent(self, period: Period, client: str | None = None, *,
              up_to: int | None = None) -> Decimal:
        """The exact sum of known costs over `period` (UTC day or month of the clock's now),
        of one client's calls when `client` is given, of the rows up to `up_to` (a
        `position`) when that is given."""
        where, args = self._where(period)
        if client is not None:
            where, args = f"{where} AND client = ?", (*args, client)
        if up_to is not None:
            where, args = f"{where} AND id <= ?", (*args, up_to)
        ((total,),) = self._query(f"SELECT dsum(cost_usd) FROM calls WHERE {where}", args)
        return Decimal(total or 0)  # an aggregate over no rows is NULL

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
        client's calls, against that client's `budgets`, when `client` is given."""
        where, args = self._where(period)
        if client is not None:
            where, args = f"{where} AND client = ?", (*args, client)
        sql = (f"SELECT {_GROUP_KEY[group_by]} AS k, COUNT(*), SUM(input_tokens), "
               f"SUM(output_tokens), dsum(cost_usd), SUM(outcome = 'cache_hit'), "
               f"dsum(saved_usd), SUM({_UNPRICED}) FROM calls WHERE {where} GROUP BY k")
        rows = [CostRow(key=k, requests=n, input_tokens=i, output_tokens=o, cost_usd=Decimal(c),
                        cache_hits=h, saved_usd=Decimal(s), unpriced_requests=u)
                for k, n, i, o, c, h, s, u in self._query(sql, args)]
        rows.sort(key=lambda r: r.key)
        if group_by != "day":  # the biggest spenders first; days stay in calendar order
            rows.sort(key=lambda r: r.cost_usd, reverse=True)
        cfg = budgets or BudgetsConfig()
        status = Budgets(daily=BudgetStatus.of(cfg.daily_usd, self.spent("today", client)),
                         monthly=BudgetStatus.of(cfg.monthly_usd, self.spent("month", client)))
        return CostReport(
            period=period, group_by=group_by, scope="all" if client is None else client,
            total_usd=exact_sum(r.cost_usd for r in rows),
            requests=sum(r.requests for r in rows),
            cache_hits=sum(r.cache_hits for r in rows),
            saved_usd=exact_sum(r.saved_usd for r in rows),
            unpriced_requests=sum(r.unpriced_requests for r in rows),
            rows=rows, budgets=status,
            alerts=build_alerts(cfg, status, self._day_totals(where, args),
                                self._unpriced(where, args), self._estimated(where, args)))

    def _day_totals(self, where: str, args: tuple[Any, ...]) -> list[tuple[str, Decimal]]:
        sql = f"SELECT day, dsum(cost_usd) FROM calls WHERE {where} GROUP BY day ORDER BY day"
        return [(day, Decimal(total)) for day, total in self._query(sql, args)]

    def _unpriced(self, where: str, args: tuple[Any, ...]) -> list[tuple[str, bool, int]]:
        sql = (f"SELECT provider || '/' || model AS m, outcome = 'ok' AS answered, COUNT(*) "
               f"FROM calls WHERE {where} AND {_UNPRICED} GROUP BY m, answered ORDER BY m")
        return [(m, bool(answered), n) for m, answered, n in self._query(sql, args)]

    def _estimated(self, where: str, args: tuple[Any, ...]) -> list[tuple[str, bool, int]]:
        """`(provider/model, answered, count)` of attempts the provider reported no usage for
        that carry a cost: the estimate `AttemptHold` charges. Rows from before the
        `estimated` column are told by their shape: cut off, yet with output and a cost."""
        old = ("estimated IS NULL AND outcome IN ('error', 'cancelled') AND "
               "cost_usd IS NOT NULL AND output_tokens > 0")
        sql = (f"SELECT provider || '/' || model AS m, outcome = 'ok' AS answered, COUNT(*) "
               f"FROM calls WHERE {where} AND (estimated = 1 OR ({old})) "
               f"GROUP BY m, answered ORDER BY m")
        return [(m, bool(answered), n) for m, answered, n in self._query(sql, args)]

    def _where(self, period: Period) -> tuple[str, tuple[Any, ...]]:
        day, month = utc_day_month(self._clock.wall())
        if period == "today":
            return "day = ?", (day,)
        if period == "month":
            return "day BETWEEN ? AND ?", (f"{month}-01", f"{month}-31")
        return "1", ()

    def _query(self, sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        """The rows of `sql`; DataError, naming the file, when SQLite cannot read them."""
        with self._lock:
            try:
                return self._conn.execute(sql, args).fetchall()
            except sqlite3.Error as exc:
                raise DataError(f"cannot read the ledger {self.path}: {exc}") from exc


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
