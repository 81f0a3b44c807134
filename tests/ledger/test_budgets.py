"""Budgets: reserve the worst case, settle or release, refuse what would not fit, alert once."""

from __future__ import annotations

import random
import sqlite3
from decimal import Decimal
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest

from mcp_router.budgets import BudgetGuard
from mcp_router.config import BudgetsConfig
from mcp_router.errors import BudgetExceeded
from mcp_router.ledger import LEDGER_FILE, Ledger, LedgerRow
from mcp_router.spend import ClientSpend
from tests.ledger.conftest import FakeClock

D = Decimal


def _guard(ledger: Ledger, clock: FakeClock, **limits: str) -> BudgetGuard:
    cfg = BudgetsConfig(**{k: D(v) for k, v in limits.items()})  # type: ignore[arg-type]
    return BudgetGuard(cfg, ledger, clock)


def _spend(guard: BudgetGuard, ledger: Ledger, amount: str) -> None:
    """What the router does for an answered call: reserve, record the row, settle."""
    with guard.reserve(D(amount)) as held:
        ledger.record(LedgerRow(provider="p", model="m", outcome="ok", cost_usd=D(amount)))
        held.settle(D(amount))


def test_settle_replaces_the_hold_by_the_actual_cost(ledger: Ledger, clock: FakeClock) -> None:
    guard = _guard(ledger, clock, daily_usd="1")
    held = guard.reserve(D("0.40"))
    assert (guard.reserved, guard.spent_today) == (D("0.40"), D(0))
    held.settle(D("0.15"))
    assert (guard.reserved, guard.spent_today, guard.spent_month) == (D(0), D("0.15"), D("0.15"))
    assert held.state == "settled"


def test_a_ledger_that_cannot_be_read_at_settling_keeps_nothing_held(
        ledger: Ledger, clock: FakeClock) -> None:
    guard = _guard(ledger, clock, daily_usd="1")
    held = guard.reserve(D("0.40"))
    with sqlite3.connect(ledger.path) as other:  # another process breaks the file's table
        other.execute("DROP TABLE calls")
    held.settle(D("0.15"))
    assert (held.state, guard.reserved) == ("settled", D(0))


def test_release_returns_the_hold_and_both_are_idempotent(ledger: Ledger,
                                                          clock: FakeClock) -> None:
    guard = _guard(ledger, clock, daily_usd="1")
    held = guard.reserve(D("0.40"))
    held.release()
    held.release()
    held.settle(D("0.40"))  # after a release: no effect, no error
    assert (held.state, guard.reserved, guard.spent_today) == ("released", D(0), D(0))
    settled = guard.reserve(D("0.40"))
    settled.settle(D("0.10"))
    settled.settle(D("0.10"))
    settled.release()
    assert (guard.reserved, guard.spent_today) == (D(0), D("0.10"))


def test_a_reservation_is_released_when_the_attempt_raises(ledger: Ledger,
                                                           clock: FakeClock) -> None:
    guard = _guard(ledger, clock, daily_usd="1")
    with pytest.raises(TimeoutError), guard.reserve(D("0.40")):
        raise TimeoutError
    assert guard.reserved == D(0)


@pytest.mark.anyio
async def test_a_reservation_is_released_when_the_call_is_cancelled(ledger: Ledger,
                                                                    clock: FakeClock) -> None:
    guard = _guard(ledger, clock, daily_usd="1")
    with anyio.CancelScope() as scope:
        async with guard.reserve(D("0.40")):
            scope.cancel()
            await anyio.sleep(3600)  # cancelled at once: no real wait
    assert scope.cancelled_caught
    assert guard.reserved == D(0)


def test_a_call_that_would_pass_the_budget_is_refused_with_the_figures(
        ledger: Ledger, clock: FakeClock) -> None:
    guard = _guard(ledger, clock, daily_usd="150", monthly_usd="3000")
    _spend(guard, ledger, "149.5")
    guard.reserve(D("0.25"))
    with pytest.raises(BudgetExceeded) as info:
        guard.reserve(D("0.30"))
    assert str(info.value) == (
        "daily budget of $150 would be exceeded: spent $149.5 (+ $0.25 reserved by calls in "
        "flight), and this call may cost up to $0.3; $0.25 is left")
    assert guard.reserved == D("0.25")  # the refused call holds nothing


def test_the_monthly_budget_is_checked_too(ledger: Ledger, clock: FakeClock) -> None:
    guard = _guard(ledger, clock, daily_usd="150", monthly_usd="100")
    _spend(guard, ledger, "99.99")
    with pytest.raises(BudgetExceeded, match=r"^monthly budget of \$100 would be exceeded"):
        guard.reserve(D("0.02"))
    guard.reserve(D("0.01")).settle(D("0.01"))  # exactly the limit fits


def test_an_unpriced_target_is_refused_while_a_budget_is_set(
        ledger: Ledger, clock: FakeClock) -> None:
    with pytest.raises(BudgetExceeded, match=r"monthly budget of \$50 cannot be kept: this "
                                             r"model has no price.*under `prices:`"):
        _guard(ledger, clock, monthly_usd="50").reserve(None)
    assert _guard(ledger, clock).reserve(None).amount == D(0)  # no budget: runs unreserved


def test_a_refusal_withheld_from_the_caller_names_the_budget_without_its_figures(
        ledger: Ledger, clock: FakeClock) -> None:
    guard = _guard(ledger, clock, daily_usd="150", monthly_usd="3000")
    _spend(guard, ledger, "149.5")
    with pytest.raises(BudgetExceeded) as info:
        guard.reserve(D("0.75"), withhold=True)
    assert str(info.value) == (
        "the team's daily budget would be exceeded by this call, which may cost up to $0.75 "
        "(its spend is shown only to clients with `cost_report: all`)")
    with pytest.raises(BudgetExceeded, match=r"^the team's daily budget cannot be kept: this "
                                             r"model has no price"):
        guard.reserve(None, withhold=True)
    assert guard.reserved == D(0)


def test_no_limits_means_nothing_is_refused(ledger: Ledger, clock: FakeClock) -> None:
    guard = _guard(ledger, clock)
    guard.reserve(D("1000000")).settle(D("1000000"))
    assert guard.reserve(D("1000000")).amount == D("1000000")


@pytest.mark.anyio
async def test_64_concurrent_reservations_never_spend_past_the_budget(
        ledger: Ledger, clock: FakeClock) -> None:
    guard = _guard(ledger, clock, daily_usd="1.00")
    rng = random.Random(7)
    quotes = [D(rng.randint(5, 12)) / 100 for _ in range(64)]  # 64 × ~$0.085 ≫ $1
    admitted: list[Decimal] = []
    refused: list[str] = []

    async def attempt(quote: Decimal, fails: bool) -> None:
        try:
            held = guard.reserve(quote)
        except BudgetExceeded as exc:
            refused.append(str(exc))
            return
        async with held:
            await anyio.lowlevel.checkpoint()  # let every other call reserve in between
            if fails:
                return  # released by the context manager
            actual = quote  # the worst case happens: the tightest test of the bound
            ledger.record(LedgerRow(provider="p", model="m", outcome="ok", cost_usd=actual))
            held.settle(actual)
            admitted.append(actual)

    async with anyio.create_task_group() as tg:
        for i, quote in enumerate(quotes):
            tg.start_soon(attempt, quote, i % 9 == 0)
    assert admitted and refused
    assert sum(admitted) == guard.spent_today == ledger.spent("today") <= D("1.00")
    assert guard.reserved == D(0)


def test_the_alert_fires_once_per_day(ledger: Ledger, clock: FakeClock) -> None:
    guard = _guard(ledger, clock, daily_usd="150", alert_daily_usd="100")
    _spend(guard, ledger, "60")
    assert guard.check_alert() is None
    _spend(guard, ledger, "40")
    assert guard.check_alert() == (
        "2026-11-03: spent $100, over the daily alert threshold of $100")
    _spend(guard, ledger, "5")
    assert guard.check_alert() is None
    clock.advance(24 * 3600)
    assert guard.check_alert() is None
    _spend(guard, ledger, "101")
    assert guard.check_alert() == (
        "2026-11-04: spent $101, over the daily alert threshold of $100")
    assert guard.check_alert() is None


def test_a_restarted_guard_resumes_from_the_ledger(ledger: Ledger, clock: FakeClock) -> None:
    first = _guard(ledger, clock, daily_usd="150", monthly_usd="3000", alert_daily_usd="100")
    _spend(first, ledger, "120")
    assert first.check_alert() is not None
    again = _guard(ledger, clock, daily_usd="150", monthly_usd="3000", alert_daily_usd="100")
    assert (again.spent_today, again.spent_month) == (D(120), D(120))
    assert again.check_alert() is None  # already alerted today, before the restart
    with pytest.raises(BudgetExceeded, match=r"spent \$120"):
        again.reserve(D(31))


def test_day_and_month_roll_over_by_the_utc_wall_clock(ledger: Ledger, clock: FakeClock) -> None:
    clock.set("2026-01-31 23:59:58")
    guard = _guard(ledger, clock, daily_usd="10", monthly_usd="12")
    _spend(guard, ledger, "9")
    with pytest.raises(BudgetExceeded, match=r"^daily budget of \$10"):
        guard.reserve(D(2))
    held = guard.reserve(D(1))  # in flight across midnight
    clock.advance(2)  # 2026-02-01 00:00:00 UTC
    assert (guard.spent_today, guard.spent_month, guard.reserved) == (D(0), D(0), D(1))
    held.settle(D(1))  # counted where it ended: the new day and month
    assert (guard.spent_today, guard.spent_month) == (D(1), D(1))
    _spend(guard, ledger, "9")  # would not have fitted January's monthly budget
    assert (guard.spent_today, guard.spent_month) == (D(10), D(10))
    assert [r.key for r in ledger.report("month", "day").rows] == ["2026-02-01"]
    assert ledger.spent("all") == D(18)


def test_a_new_day_in_the_same_month_keeps_the_month(ledger: Ledger, clock: FakeClock) -> None:
    guard = _guard(ledger, clock, daily_usd="10", monthly_usd="12")
    _spend(guard, ledger, "8")
    clock.advance(24 * 3600)
    assert (guard.spent_today, guard.spent_month) == (D(0), D(8))
    with pytest.raises(BudgetExceeded, match=r"^monthly budget of \$12"):
        guard.reserve(D(5))


def test_servers_sharing_a_ledger_keep_to_one_budget_together(tmp_path: Path,
                                                              clock: FakeClock) -> None:
    # Each host starts its own server: two connections to one ledger file, as two processes.
    with Ledger.in_home(tmp_path, clock) as desktop_ledger, \
            Ledger.in_home(tmp_path, clock) as editor_ledger:
        desktop = _guard(desktop_ledger, clock, daily_usd="1", monthly_usd="5")
        editor = _guard(editor_ledger, clock, daily_usd="1", monthly_usd="5")
        _spend(desktop, desktop_ledger, "0.70")
        with pytest.raises(BudgetExceeded, match=r"spent \$0\.7 "):
            editor.reserve(D("0.40"))
        _spend(editor, editor_ledger, "0.20")
        assert (desktop.spent_today, editor.spent_today) == (D("0.90"), D("0.90"))
        assert (desktop.spent_month, editor.spent_month) == (D("0.90"), D("0.90"))
        with pytest.raises(BudgetExceeded):
            desktop.reserve(D("0.20"))
        clock.advance(24 * 3600)  # a new day: the month still counts what both spent
        _spend(editor, editor_ledger, "0.50")
        assert (desktop.spent_today, desktop.spent_month) == (D("0.50"), D("1.40"))


def test_a_clients_budget_counts_that_clients_spend_from_other_processes(
        tmp_path: Path, clock: FakeClock) -> None:
    with Ledger.in_home(tmp_path, clock) as mine, Ledger.in_home(tmp_path, clock) as theirs:
        alice = BudgetGuard(BudgetsConfig(daily_usd=D(1)), ClientSpend(mine, "alice"), clock)
        for client, amount in (("alice", "0.30"), ("bob", "0.50"), ("alice", "0.25")):
            theirs.record(LedgerRow(provider="p", model="m", outcome="ok", client=client,
                                    cost_usd=D(amount)))
        assert alice.spent_today == D("0.55")


def test_rows_of_an_older_release_without_a_writer_count_as_another_process(
        tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / LEDGER_FILE
    with sqlite3.connect(path) as old:  # the table as releases before the writer column made it
        old.executescript(OLD_SCHEMA)
    with Ledger(path, clock) as ledger:
        guard = _guard(ledger, clock, daily_usd="1")
        with sqlite3.connect(path) as old:
            old.execute("INSERT INTO calls (ts, day, month, trace_id, provider, model, outcome, "
                        "input_tokens, output_tokens, cached_input_tokens, cost_usd, latency_ms, "
                        "metadata) VALUES (?, '2026-11-03', '2026-11', 't', 'p', 'm', 'ok', "
                        "0, 0, 0, '0.25', 1.0, '{}')", (clock.wall(),))
        _spend(guard, ledger, "0.50")
        assert guard.spent_today == D("0.75") == ledger.spent("today")


OLD_SCHEMA = """
CREATE TABLE calls (
    id INTEGER PRIMARY KEY, ts REAL NOT NULL, day TEXT NOT NULL, month TEXT NOT NULL,
    trace_id TEXT NOT NULL, client TEXT, route TEXT, provider TEXT NOT NULL,
    model TEXT NOT NULL, outcome TEXT NOT NULL, input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL, cached_input_tokens INTEGER NOT NULL, cost_usd TEXT,
    saved_usd TEXT, latency_ms REAL NOT NULL, metadata TEXT NOT NULL
);
CREATE INDEX calls_day ON calls(day);
PRAGMA user_version = 1;
"""
