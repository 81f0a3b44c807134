"""cost_report on a big ledger: one index, today without a scan of the month each time, and
the scan in a worker thread while the event loop records rows (or gives up on the report)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextlib import closing
from decimal import Decimal
from pathlib import Path

import anyio
import pytest

from mcp_router.ledger import Ledger, LedgerRow
from mcp_router.reports import CostReport
from tests.ledger.conftest import FakeClock, HeldWall, utc


def _row(cost: str | None, **kw: object) -> LedgerRow:
    return LedgerRow(provider="deepseek", model="deepseek-chat", outcome="ok",
                     cost_usd=None if cost is None else Decimal(cost), **kw)  # type: ignore[arg-type]


def _indexes(path: Path) -> dict[str, list[str]]:
    with closing(sqlite3.connect(path)) as conn:
        names = [name for _, name, *_ in conn.execute("PRAGMA index_list(calls)")]
        return {name: [column for *_, column in conn.execute(f"PRAGMA index_info({name})")]
                for name in names}


async def _until(condition: Callable[[], bool]) -> None:
    """Poll without blocking the loop; the caller bounds the wait with `fail_after`."""
    while not condition():
        await anyio.sleep(0.01)


def test_one_index_finds_a_day_a_month_and_one_client_s_day(ledger: Ledger) -> None:
    assert _indexes(ledger.path) == {"calls_day_client": ["day", "client"]}


def test_a_ledger_an_older_release_opened_again_keeps_one_index_and_its_sums(
        tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "ledger.sqlite3"
    with Ledger(path, clock) as first:
        first.record(_row("1", client="ci", ts=utc("2026-11-01 08:00:00")))
        first.record(_row("2"))
    with closing(sqlite3.connect(path)) as conn:  # an older release makes its day index again
        conn.execute("CREATE INDEX calls_day ON calls(day)")
    with Ledger(path, clock) as reopened:
        assert _indexes(path) == {"calls_day_client": ["day", "client"]}
        assert reopened.report("month", client="ci").total_usd == Decimal(1)
        assert (reopened.spent("month"), reopened.spent("today")) == (Decimal(3), Decimal(2))


def test_a_report_of_today_reads_the_month_s_other_days_once_a_day(ledger: Ledger) -> None:
    """After the day's first report, a report of today reads only the rows written since:
    a row already counted is not read again (made unreadable here to show it)."""
    ledger.record(_row("1", ts=utc("2026-11-01 08:00:00")))
    ledger.record(_row("2"))
    assert ledger.report("today").budgets.monthly.spent_usd == Decimal(3)
    with closing(sqlite3.connect(ledger.path)) as conn, conn:
        conn.execute("UPDATE calls SET cost_usd = 'unreadable' WHERE day = '2026-11-01'")
    ledger.record(_row("4"))
    report = ledger.report("today")
    assert (report.total_usd, report.budgets.daily.spent_usd,
            report.budgets.monthly.spent_usd) == (Decimal(6), Decimal(6), Decimal(7))


def test_a_report_of_today_shows_the_month_as_rows_of_any_day_arrive(ledger: Ledger,
                                                                      clock: FakeClock) -> None:
    def same_as_the_sums() -> None:
        for client in (None, "ci"):
            budgets = ledger.report("today", client=client).budgets
            assert (budgets.daily.spent_usd, budgets.monthly.spent_usd) == (
                ledger.spent("today", client), ledger.spent("month", client))
            assert ledger.report("month", client=client).total_usd == ledger.spent("month",
                                                                                   client)

    same_as_the_sums()
    ledger.record(_row("1", client="ci", ts=utc("2026-11-01 08:00:00")))
    ledger.record(_row("2"))
    same_as_the_sums()
    ledger.record(_row("0.25", client="ci"))
    ledger.record(_row("0.5", ts=utc("2026-11-02 23:00:00")))  # late, from a slow clock
    ledger.record(_row("8", client="ci", ts=utc("2026-11-30 10:00:00")))  # a clock ahead
    ledger.record(_row("16", ts=utc("2026-10-31 23:59:59")))  # last month
    ledger.record(_row(None, client="ci", ts=utc("2026-11-01 09:00:00")))  # no price
    same_as_the_sums()
    clock.set("2026-11-04 00:00:01")  # today's rows become one of the month's other days
    same_as_the_sums()
    ledger.record(_row("32", client="ci"))
    same_as_the_sums()
    clock.set("2026-12-01 00:00:00")
    ledger.record(_row("64"))
    same_as_the_sums()
    assert ledger.report("today").budgets.monthly.spent_usd == Decimal(64)


@pytest.mark.anyio
async def test_a_report_reads_in_a_worker_thread_while_the_loop_records_rows(
        tmp_path: Path, clock: FakeClock) -> None:
    held = HeldWall(clock)
    reports: list[CostReport] = []

    async def report() -> None:
        reports.append(await ledger.report_in_thread())

    with Ledger.in_home(tmp_path, held) as ledger:
        ledger.record(_row("1"))
        held.hold()
        with anyio.fail_after(5):
            async with anyio.create_task_group() as calls:
                calls.start_soon(report)
                await _until(held.reached.is_set)  # the report waits in its thread
                ledger.record(_row("2"))  # the loop writes and reads meanwhile
                assert (ledger.spent("today"), reports) == (Decimal(3), [])
                held.release()
    [done] = reports
    assert (done.requests, done.total_usd) == (2, Decimal(3))


@pytest.mark.anyio
async def test_a_cancelled_report_returns_at_once_and_leaves_the_ledger_usable(
        tmp_path: Path, clock: FakeClock) -> None:
    held = HeldWall(clock)
    with Ledger.in_home(tmp_path, held) as ledger:
        ledger.record(_row("1"))
        held.hold()
        with anyio.fail_after(5):
            async with anyio.create_task_group() as calls:
                calls.start_soon(ledger.report_in_thread)
                await _until(held.reached.is_set)
                calls.cancel_scope.cancel()  # the host gave up: the call ends, not its thread
            ledger.record(_row("2"))
            held.release()  # the abandoned scan stops and closes its connection
            report = await ledger.report_in_thread()
            assert (report.requests, report.total_usd) == (2, Decimal(3))
            await _until(lambda: _no_reader_left(ledger.path))


def _no_reader_left(path: Path) -> bool:
    """Whether the WAL can be checkpointed and emptied: no read transaction holds it."""
    with closing(sqlite3.connect(path, timeout=0)) as conn:
        (busy, _, _), = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    return busy == 0
