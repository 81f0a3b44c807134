"""The SQLite ledger: durable rows, exact sums, and the cost_report groupings."""

from __future__ import annotations

import math
import re
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from contextlib import closing
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from mcp_router.config import BudgetsConfig
from mcp_router.errors import ConfigError, DataError
from mcp_router.ledger import Ledger, LedgerRow
from mcp_router.messages import Usage
from mcp_router.money import utc_day_month
from mcp_router.reports import ESTIMATE_RULE, Budgets, BudgetStatus, CostRow
from tests.ledger.conftest import FakeClock, utc


def _row(provider: str = "deepseek", model: str = "deepseek-chat", cost: str | None = "0.01",
         **kw: object) -> LedgerRow:
    usage = kw.pop("usage", Usage(input_tokens=100, output_tokens=10))
    return LedgerRow(provider=provider, model=model, outcome=str(kw.pop("outcome", "ok")),
                     cost_usd=None if cost is None else Decimal(cost),
                     usage=usage, **kw)  # type: ignore[arg-type]


def test_a_recorded_row_reads_back_whole(ledger: Ledger, clock: FakeClock) -> None:
    row = LedgerRow(provider="anthropic", model="claude-3-haiku-20240307", outcome="ok",
                    trace_id="t-1", client="cursor", route="default",
                    usage=Usage(input_tokens=1200, output_tokens=80, cached_input_tokens=1000),
                    cost_usd=Decimal("0.00009"), latency_ms=412.5, metadata={"task": "review"})
    ledger.record(row)
    assert ledger.recent() == [LedgerRow(**{**row.__dict__, "ts": clock.wall()})]


def test_the_ledger_is_wal_with_a_schema_version(ledger: Ledger) -> None:
    with sqlite3.connect(ledger.path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert conn.execute("PRAGMA user_version").fetchone() == (1,)
    conn.close()


def test_a_ledger_an_older_release_left_readable_by_all_is_made_private(
        tmp_path: Path, clock: FakeClock) -> None:
    """Releases before the ledger was created 0600 left it (and a crash, its -wal file) with
    the umask's 0644: the spend of every call readable by every user of the machine."""
    path = tmp_path / "ledger.sqlite3"
    with Ledger(path, clock) as first:
        first.record(_row(cost="1"))
    wal = path.with_name(path.name + "-wal")
    wal.write_bytes(b"")
    for file in (path, wal):
        file.chmod(0o644)
    with Ledger(path, clock) as reopened:
        assert reopened.spent("today") == Decimal(1)
        assert {f.name: oct(f.stat().st_mode & 0o777) for f in tmp_path.iterdir()
                if f.name.startswith(path.name)} == {
            f.name: "0o600" for f in tmp_path.iterdir() if f.name.startswith(path.name)}


def test_tightening_a_read_only_ledger_does_not_make_it_writable(tmp_path: Path) -> None:
    from mcp_router.config import make_private_file

    path = tmp_path / "ledger.sqlite3"
    path.write_bytes(b"")
    path.chmod(0o444)  # read-only for everyone, its owner included
    make_private_file(path)
    assert oct(path.stat().st_mode & 0o777) == "0o400"


def test_a_ledger_with_the_earlier_month_index_keeps_its_sums(tmp_path: Path,
                                                              clock: FakeClock) -> None:
    """Ledgers made before the month index was dropped (and older releases that make it
    again) read the same sums: months are ranges of the day index now."""
    path = tmp_path / "ledger.sqlite3"
    with Ledger(path, clock) as first:
        first.record(_row(cost="1", ts=utc("2026-10-31 23:59:59")))
        first.record(_row(cost="2", ts=utc("2026-11-01 00:00:00")))
        first.record(_row(cost="4"))
    conn = sqlite3.connect(path)
    conn.execute("CREATE INDEX calls_month ON calls(month)")  # as an older release left it
    conn.close()
    with Ledger(path, clock) as reopened:
        assert (reopened.spent("month"), reopened.spent("today")) == (Decimal(6), Decimal(4))
        assert reopened.report("month").total_usd == Decimal(6)


def test_a_ledger_from_a_newer_release_is_refused(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "ledger.sqlite3"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version=99")
    conn.close()
    with pytest.raises(ConfigError, match="schema version 99"):
        Ledger(path, clock)


def test_a_damaged_ledger_is_refused_by_name_and_left_as_it_is(tmp_path: Path,
                                                               clock: FakeClock) -> None:
    path = tmp_path / "ledger.sqlite3"
    damaged = b"not a database, whatever it once held " * 40
    path.write_bytes(damaged)
    with pytest.raises(DataError, match=f"the ledger {path} cannot be used .*move it aside"):
        Ledger(path, clock)
    assert path.read_bytes() == damaged  # spend records are never replaced behind the user


def damage_row_pages(path: Path, clock: FakeClock) -> None:
    """A ledger of a few calls whose header and schema (page 1) are whole but every other page
    is zeros (a bad sector, a torn copy): it opens, and fails when its rows are read."""
    with Ledger(path, clock) as first:
        for _ in range(50):
            first.record(_row(metadata={"pad": "x" * 200}))
    size = path.stat().st_size
    with path.open("r+b") as f:
        f.seek(4096)
        f.write(bytes(size - 4096))


def test_a_ledger_damaged_past_its_schema_is_refused_with_the_advice_when_read(
        tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "ledger.sqlite3"
    damage_row_pages(path, clock)
    with Ledger(path, clock) as damaged:
        for use in (damaged.position, lambda: damaged.spent("month"),
                    lambda: damaged.record(_row()), lambda: damaged.report("month")):
            with pytest.raises(DataError, match=re.escape(
                    f"the ledger {path}: database disk image is malformed; if it is damaged, "
                    "stop the servers that use it and move it aside")):
                use()


def test_a_directory_in_the_ledgers_place_is_named_not_the_data_directory(
        tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "ledger.sqlite3"
    path.mkdir()
    with pytest.raises(DataError) as info:
        Ledger(path, clock)
    assert str(info.value) == (f"the ledger {path} is a directory, so it cannot be used; move "
                               "it out of the way, and a new ledger is started")


def test_a_home_that_cannot_be_a_directory_is_refused_by_name(tmp_path: Path,
                                                             clock: FakeClock) -> None:
    home = tmp_path / "home"
    home.write_text("a file where the data directory should be")
    with pytest.raises(DataError, match=f"cannot use the data directory {home} .*MCP_ROUTER_HOME"):
        Ledger.in_home(home, clock)


def test_a_row_sqlite_cannot_take_is_refused_naming_the_ledger(ledger: Ledger) -> None:
    with closing(sqlite3.connect(ledger.path)) as conn:  # fails every write, as a full disk
        conn.execute("CREATE TRIGGER full BEFORE INSERT ON calls "
                     "BEGIN SELECT RAISE(FAIL, 'database or disk is full'); END")
    with pytest.raises(DataError) as info:
        ledger.record(_row())
    assert str(info.value) == (f"cannot write to the ledger {ledger.path}: database or disk "
                               "is full")


def test_a_token_count_no_sqlite_integer_holds_is_refused_naming_the_ledger(
        ledger: Ledger) -> None:
    row = LedgerRow(provider="openai", model="gpt-4o", outcome="ok",
                    usage=Usage(input_tokens=2**63))

    with pytest.raises(DataError, match=re.escape(f"cannot write to the ledger {ledger.path}: "
                                                  "Python int too large")):
        ledger.record(row)
    assert ledger.recent() == []


def test_a_ledger_that_cannot_be_read_is_named_in_the_error(ledger: Ledger) -> None:
    with closing(sqlite3.connect(ledger.path)) as conn:
        conn.execute("DROP TABLE calls")
    for read in (ledger.recent, ledger.report, ledger.position, lambda: ledger.spent("today"),
                 lambda: ledger.spent_elsewhere(0)):
        with pytest.raises(DataError) as info:
            read()
        # not damaged: no advice to move it aside, which would drop its spend from the budgets
        assert str(info.value) == f"cannot read the ledger {ledger.path}: no such table: calls"


CHILD = textwrap.dedent("""
    import os, signal, sys
    from decimal import Decimal
    from pathlib import Path
    from mcp_router.ledger import Ledger, LedgerRow
    from mcp_router.clock import LoopClock

    ledger = Ledger(Path(sys.argv[1]), LoopClock())
    ledger.record(LedgerRow(provider="openai", model="gpt-4o", outcome="ok",
                            trace_id="answered", cost_usd=Decimal("0.0125")))
    os.kill(os.getpid(), signal.SIGKILL)
""")


def test_a_row_survives_the_process_being_killed_right_after(tmp_path: Path,
                                                            clock: FakeClock) -> None:
    path = tmp_path / "home" / "ledger.sqlite3"
    child = subprocess.run([sys.executable, "-c", CHILD, str(path)], timeout=60,
                           capture_output=True, text=True)
    assert child.returncode == -signal.SIGKILL, child.stderr
    with Ledger(path, clock) as reopened:
        [row] = reopened.recent()
    assert (row.trace_id, row.cost_usd) == ("answered", Decimal("0.0125"))


def _trace_ids(path: Path) -> list[str]:
    with closing(sqlite3.connect(path)) as conn:
        return [t for (t,) in conn.execute("SELECT trace_id FROM calls ORDER BY id")]


def _written(ledger: Ledger, count: int) -> list[str]:
    """The ledger's trace ids once it holds `count` rows (waits at most 2 s)."""
    deadline = time.monotonic() + 2
    while len(rows := ledger.recent()) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    return [row.trace_id for row in reversed(rows)]


def test_a_write_lock_another_process_holds_does_not_stall_recording(
        ledger: Ledger, caplog: pytest.LogCaptureFixture) -> None:
    ledger.record(_row(trace_id="before"))
    holder = sqlite3.connect(ledger.path, isolation_level=None)  # a sqlite3 shell's BEGIN
    holder.execute("BEGIN IMMEDIATE")
    started = time.monotonic()
    for trace in ("held-1", "held-2", "held-3"):
        ledger.record(_row(trace_id=trace))
    waited = time.monotonic() - started
    assert _written(ledger, 1) == ["before"]  # the others wait for the lock, off the loop
    holder.execute("COMMIT")
    holder.close()

    assert waited < 0.5, f"recording waited {waited:.2f} s for another process's lock"
    assert _written(ledger, 4) == ["before", "held-1", "held-2", "held-3"]
    said = [r.getMessage() for r in caplog.records if r.name == "mcp_router.ledger"]
    assert said == [f"another process holds the write lock of the ledger {ledger.path} "
                    "(database is locked); rows wait for it in the background",
                    f"the ledger {ledger.path} is writable again; 3 rows that waited are "
                    "written"]


def test_rows_still_waiting_for_a_lock_at_close_are_named(
        tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    ledger = Ledger.in_home(tmp_path, clock)
    with closing(sqlite3.connect(ledger.path, isolation_level=None)) as holder:
        holder.execute("BEGIN IMMEDIATE")
        ledger.record(_row(trace_id="t-waits"))
        started = time.monotonic()
        ledger.close()
        assert time.monotonic() - started < 1.5
    [said] = [r for r in caplog.records if r.levelname == "ERROR"]
    assert said.getMessage() == (f"1 rows are not in the ledger {ledger.path}: another process "
                                 "held its write lock until mcp-router stopped (traces t-waits)")


def test_a_ledger_moved_aside_while_open_keeps_its_rows_and_refuses_the_next_ones(
        tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    path, aside = tmp_path / "ledger.sqlite3", tmp_path / "aside.sqlite3"
    with Ledger(path, clock) as ledger:
        ledger.record(_row(trace_id="before"))
        path.rename(aside)  # what the damaged-ledger message says to do (servers stopped)
        ledger.record(_row(trace_id="same second"))  # the path is checked once a second
        clock.advance(1)
        with pytest.raises(DataError, match="was moved or replaced while mcp-router ran: "
                                            "restart mcp-router"):  # "not in the ledger"
            ledger.record(_row(trace_id="after"))
    assert _trace_ids(aside) == ["before", "same second"]
    [said] = [r.getMessage() for r in caplog.records if r.name == "mcp_router.ledger"]
    assert said == (f"the ledger {path} was moved or replaced while mcp-router ran; the rows "
                    "written until now are in the moved file; restart mcp-router (every "
                    "server using this data directory) to write to the ledger at that path")
    with Ledger(path, clock) as restarted:  # a restart starts a new ledger at the path
        restarted.record(_row(trace_id="restarted"))
    assert (_trace_ids(aside), _trace_ids(path)) == (["before", "same second"], ["restarted"])


def test_servers_sharing_a_ledger_moved_aside_keep_every_row_in_the_moved_file(
        tmp_path: Path, clock: FakeClock) -> None:
    path, aside = tmp_path / "ledger.sqlite3", tmp_path / "aside.sqlite3"
    with Ledger(path, clock) as one, Ledger(path, clock) as two:
        one.record(_row(trace_id="one"))
        two.record(_row(trace_id="two"))
        path.rename(aside)
        one.record(_row(trace_id="one again"))
        clock.advance(1)
        for ledger in (two, one):  # the one noticing first must not cost the other its rows
            with pytest.raises(DataError):
                ledger.record(_row(trace_id="refused"))
    assert _trace_ids(aside) == ["one", "two", "one again"]
    assert not path.exists()


def test_rows_of_the_last_second_before_a_move_reach_the_moved_file_at_close(
        tmp_path: Path, clock: FakeClock) -> None:
    path, aside = tmp_path / "ledger.sqlite3", tmp_path / "aside.sqlite3"
    with Ledger(path, clock) as ledger:
        ledger.record(_row(trace_id="before"))
        path.rename(aside)
        ledger.record(_row(trace_id="same second"))
    assert _trace_ids(aside) == ["before", "same second"]


def test_sums_are_exact_where_floats_would_drift(ledger: Ledger) -> None:
    for _ in range(1000):
        ledger.record(_row(cost="0.0000001"))
    assert ledger.spent("today") == Decimal("0.0001")


def test_spent_follows_the_utc_day_and_month(ledger: Ledger, clock: FakeClock) -> None:
    ledger.record(_row(cost="1", ts=utc("2026-10-31 23:59:59")))
    ledger.record(_row(cost="2", ts=utc("2026-11-02 00:00:00")))
    ledger.record(_row(cost="4"))
    ledger.record(_row(cost=None))
    assert (ledger.spent("today"), ledger.spent("month"), ledger.spent("all")) == (
        Decimal(4), Decimal(6), Decimal(7))
    assert utc_day_month(clock.wall()) == ("2026-11-03", "2026-11")


@pytest.fixture
def busy(ledger: Ledger) -> Ledger:
    """Three days of mixed traffic: attempts, an error, a cache hit, an unpriced call."""
    yesterday = utc("2026-11-02 09:00:00")
    ledger.record(_row(cost="0.50", route="coding", client="cursor", ts=yesterday))
    ledger.record(_row("anthropic", "claude-3-haiku-20240307", cost="0.25", route="default",
                       client="claude-code"))
    ledger.record(_row("anthropic", "claude-3-haiku-20240307", cost="0", outcome="error",
                       route="default", client="claude-code", usage=Usage()))
    ledger.record(_row(cost="0.125", route="coding", client="cursor"))
    ledger.record(_row(cost="0", outcome="cache_hit", saved_usd=Decimal("0.125"),
                       route="coding", client="cursor", usage=Usage(input_tokens=100)))
    ledger.record(_row("xai", "grok-9", cost=None, client="cursor",
                       usage=Usage(input_tokens=5, output_tokens=1)))
    ledger.record(_row(cost="9", ts=utc("2026-10-30 09:00:00")))
    return ledger


def test_cost_report_today_by_provider(busy: Ledger) -> None:
    report = busy.report("today", "provider")
    assert report.rows == [
        CostRow(key="anthropic", requests=2, input_tokens=100, output_tokens=10,
                cost_usd=Decimal("0.25"), cache_hits=0, saved_usd=Decimal(0)),
        CostRow(key="deepseek", requests=2, input_tokens=200, output_tokens=10,
                cost_usd=Decimal("0.125"), cache_hits=1, saved_usd=Decimal("0.125")),
        CostRow(key="xai", requests=1, input_tokens=5, output_tokens=1, cost_usd=Decimal(0),
                cache_hits=0, saved_usd=Decimal(0), unpriced_requests=1),
    ]
    assert (report.total_usd, report.requests, report.cache_hits, report.saved_usd,
            report.unpriced_requests) == (Decimal("0.375"), 5, 1, Decimal("0.125"), 1)


@pytest.mark.parametrize(("group_by", "keys"), [
    ("model", ["deepseek/deepseek-chat", "anthropic/claude-3-haiku-20240307", "xai/grok-9"]),
    ("route", ["coding", "default", "(none)"]),
    ("client", ["cursor", "claude-code"]),
    ("day", ["2026-11-02", "2026-11-03"]),
])
def test_cost_report_month_groupings(busy: Ledger, group_by: str, keys: list[str]) -> None:
    report = busy.report("month", group_by)  # type: ignore[arg-type]
    assert [r.key for r in report.rows] == keys
    assert report.total_usd == Decimal("0.875")
    assert sum(r.requests for r in report.rows) == report.requests == 6


def test_cost_report_all_includes_every_month(busy: Ledger) -> None:
    report = busy.report("all", "day")
    assert [r.key for r in report.rows] == ["2026-10-30", "2026-11-02", "2026-11-03"]
    assert report.total_usd == Decimal("9.875")


def test_cost_report_budgets_show_limit_spent_and_remaining(busy: Ledger) -> None:
    report = busy.report("all", "provider", BudgetsConfig(daily_usd=Decimal("0.30")))
    assert report.budgets == Budgets(
        daily=BudgetStatus(limit_usd=Decimal("0.30"), spent_usd=Decimal("0.375"),
                           remaining_usd=Decimal(0)),
        monthly=BudgetStatus(limit_usd=None, spent_usd=Decimal("0.875"), remaining_usd=None))


def test_cost_report_alerts_are_readable_and_once_per_day(busy: Ledger) -> None:
    cfg = BudgetsConfig(daily_usd=Decimal("0.375"), alert_daily_usd=Decimal("0.3"))
    assert busy.report("month", "day", cfg).alerts == [
        "2026-11-02: spent $0.5, over the daily alert threshold of $0.3",
        "2026-11-03: spent $0.375, over the daily alert threshold of $0.3",
        "daily budget of $0.375 is used up (spent $0.375): calls are refused until "
        "tomorrow (UTC)",
        "cost unknown for 1 call(s) to xai/grok-9: no price in the table or config prices; "
        "totals leave them out",
    ]


def test_attempts_that_ended_without_usage_are_told_apart_from_unknown_prices(
        ledger: Ledger) -> None:
    for outcome in ("error", "cancelled"):  # a cut stream, a host that gave up
        ledger.record(_row(cost=None, outcome=outcome, usage=Usage()))
    ledger.record(_row("xai", "grok-9", cost=None))
    assert ledger.report("today", "provider").alerts == [
        "cost unknown for 1 call(s) to xai/grok-9: no price in the table or config prices; "
        "totals leave them out",
        "cost unknown for 2 attempt(s) to deepseek/deepseek-chat that ended without a usage "
        "report (timed out, cut off or cancelled): the provider may have billed them; totals "
        "leave them out",
    ]


def test_an_unpriced_answer_without_usage_is_told_as_unknown_not_as_estimated(
        ledger: Ledger) -> None:
    ledger.record(_row("xai", "grok-9", cost=None, estimated=True))  # no price, no usage
    ledger.record(_row(cost="0.02", estimated=True))  # priced at an estimate
    assert ledger.report("today", "provider").alerts == [
        "cost unknown for 1 call(s) to xai/grok-9: no price in the table or config prices; "
        "totals leave them out",
        "1 answer(s) from deepseek/deepseek-chat came without a usage report: each is charged "
        f"at an estimate set high, the request's input and the answer ({ESTIMATE_RULE})",
    ]


def test_cost_report_serialises_money_as_json_numbers(busy: Ledger) -> None:
    data = busy.report("today", "provider", BudgetsConfig(monthly_usd=Decimal(3000))).model_dump(
        mode="json")
    assert data["total_usd"] == 0.375
    assert data["rows"][0]["cost_usd"] == 0.25
    assert data["budgets"]["monthly"] == {"limit_usd": 3000.0, "spent_usd": 0.875,
                                          "remaining_usd": 2999.125, "reserved_usd": 0.0}
    assert data["budgets"]["daily"]["limit_usd"] is None


def test_an_empty_ledger_reports_zeros(ledger: Ledger) -> None:
    report = ledger.report()
    assert (report.rows, report.total_usd, report.requests, report.alerts) == (
        [], Decimal(0), 0, [])


@given(st.floats(min_value=-1e10, max_value=1e10, allow_nan=False))
@example(-5e-324)  # divided by a day it rounds to -0.0, yet it is in the day before the epoch
def test_a_row_is_counted_in_the_utc_day_and_month_of_its_time(ts: float):
    day = time.strftime("%Y-%m-%d", time.gmtime(math.floor(ts)))
    assert utc_day_month(ts) == (day, day[:7])
