"""What an attempt costs when no answer with a usage report ends it: an estimate set high, in
the ledger and against the budgets, or nothing when the upstream refused or was never reached."""

from __future__ import annotations

import logging
import math
import sqlite3
from contextlib import closing, suppress
from decimal import Decimal

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mcp_router.budgets import BudgetGuard
from mcp_router.clock import LoopClock
from mcp_router.config import BudgetsConfig
from mcp_router.errors import ProviderError, ProviderStatusError
from mcp_router.ledger import Ledger
from mcp_router.messages import Call, ChatRequest, ChatResponse, Completion, Message, Usage
from mcp_router.prices import PriceBook
from mcp_router.routing import Target
from mcp_router.spend import CallGate, Spend, estimate_input_tokens, estimate_text_tokens
from tests.fixtures.scripted import (
    HANG,
    ScriptedAdapter,
    Step,
    Streamed,
    completion,
    cut_stream,
    status_error,
    timeout_error,
    unavailable,
)
from tests.ledger.conftest import FakeClock

pytestmark = [pytest.mark.virtual_time, pytest.mark.anyio]

D = Decimal
COUNTED_HIGH = "counted high (a token per 3 ASCII characters, up to 7/3 per other character)"


def gpt_4o(input_tokens: int, output_tokens: int) -> Decimal:
    """What openai/gpt-4o costs at the bundled table's $2.50 and $10 per million tokens."""
    return (input_tokens * D("2.50") + output_tokens * D(10)).scaleb(-6)


@pytest.fixture
def spend(ledger: Ledger, clock: FakeClock) -> Spend:
    return Spend(PriceBook.bundled(), ledger,
                 BudgetGuard(BudgetsConfig(daily_usd=D(1)), ledger, clock))


async def ask(spend: Spend, script: list[Step], *, stream: bool = True, timeout_s: float = 60,
              max_tokens: int = 100, model: str = "gpt-4o") -> CallGate:
    """One attempt at a scripted openai adapter through a call gate; the host gives up on it
    after 5 s (virtual). The gate, with what the call was charged."""
    gate = spend.gate(trace_id="t-1", client="local", route=None, metadata={})
    call = Call(deadline=anyio.current_time() + 10, gate=gate)
    adapter = ScriptedAdapter("openai", script, stream=stream, timeout_s=timeout_s)
    request = ChatRequest(messages=(Message(role="user", content="hi"),), max_tokens=max_tokens)
    with anyio.move_on_after(5), suppress(ProviderError):
        await Target(adapter, model, LoopClock()).complete(request, call)
    return gate


def charged(spend: Spend) -> list[tuple[str, Usage, Decimal | None, bool]]:
    """The ledger's rows, oldest first: outcome, usage, cost and whether it is our estimate."""
    return [(r.outcome, r.usage, r.cost_usd, r.estimated) for r in reversed(spend.ledger.recent())]


# "hi" is 2 characters (a token) plus 4 for the message; max_tokens is 100
HI_INPUT = 5


async def test_an_error_event_after_text_streamed_is_charged_for_the_input_and_the_text(
        spend: Spend) -> None:
    gate = await ask(spend, [Streamed("x" * 150, status_error("openai", 529))])

    cost = gpt_4o(HI_INPUT, 50)  # 150 ASCII characters: 50 tokens
    assert charged(spend) == [("error", Usage(input_tokens=HI_INPUT, output_tokens=50),
                               cost, True)]
    assert (spend.budgets.spent_today, spend.budgets.reserved) == (cost, 0)
    assert gate.total == (cost, "estimated: openai/gpt-4o failed with HTTP 529 mid-answer; "
                                "charged for the request's input and the text received, "
                                + COUNTED_HIGH)


@pytest.mark.parametrize("refusal", [status_error("openai", 503), status_error("openai", 429),
                                     unavailable("openai")], ids=["503", "429", "unreachable"])
async def test_a_refusal_before_any_text_costs_nothing_and_leaves_no_row(
        spend: Spend, refusal: ProviderError) -> None:
    gate = await ask(spend, [refusal])

    assert charged(spend) == []
    assert (spend.budgets.spent_today, spend.budgets.reserved) == (0, 0)
    assert gate.total == (0, None)


async def test_an_answer_that_failed_with_the_usage_it_was_billed_is_charged_that_usage(
        spend: Spend) -> None:
    # an empty 200 that reported usage but neither text nor why it ended: a 502 (moves on)
    empty = ProviderStatusError("openai", "gpt-4o", 502, "no answer: …",
                                billed=Usage(input_tokens=7, output_tokens=1))

    gate = await ask(spend, [empty])

    cost = gpt_4o(7, 1)
    assert charged(spend) == [("error", Usage(input_tokens=7, output_tokens=1), cost, False)]
    assert (spend.budgets.spent_today, spend.budgets.reserved) == (cost, 0)
    assert gate.total == (cost, None)


async def test_a_streamed_answer_that_times_out_before_any_text_is_charged_its_input(
        spend: Spend) -> None:
    gate = await ask(spend, [timeout_error("openai")])

    cost = gpt_4o(HI_INPUT, 0)
    assert charged(spend) == [("error", Usage(input_tokens=HI_INPUT), cost, True)]
    assert (spend.budgets.spent_today, spend.budgets.reserved) == (cost, 0)
    assert gate.total == (cost, "estimated: openai/gpt-4o timed out before any answer; "
                                "charged for the request's input")


async def test_a_json_answer_that_times_out_is_charged_its_whole_worst_case(
        spend: Spend) -> None:
    gate = await ask(spend, [HANG], stream=False, timeout_s=2)

    quote = gpt_4o(HI_INPUT, 100)
    assert charged(spend) == [("error", Usage(input_tokens=HI_INPUT, output_tokens=100),
                               quote, True)]
    assert (spend.budgets.spent_today, spend.budgets.reserved) == (quote, 0)
    assert gate.total == (quote, "estimated: openai/gpt-4o timed out before any answer; "
                                 "charged its worst case (the request's input and "
                                 "max_tokens of answer), as how much of it was made cannot "
                                 "be seen")


async def test_a_json_answer_cancelled_by_the_host_is_charged_its_whole_worst_case(
        spend: Spend) -> None:
    gate = await ask(spend, [HANG], stream=False)

    quote = gpt_4o(HI_INPUT, 100)
    assert charged(spend) == [("cancelled", Usage(input_tokens=HI_INPUT, output_tokens=100),
                               quote, True)]
    assert (spend.budgets.spent_today, spend.budgets.reserved) == (quote, 0)
    _, note = gate.total
    assert note is not None and note.startswith(
        "estimated: openai/gpt-4o was cancelled before any answer; charged its worst case")


async def test_a_streamed_answer_cancelled_before_any_text_is_charged_its_input(
        spend: Spend) -> None:
    await ask(spend, [HANG])

    assert charged(spend) == [("cancelled", Usage(input_tokens=HI_INPUT),
                               gpt_4o(HI_INPUT, 0), True)]
    assert spend.budgets.reserved == 0


async def test_text_in_any_script_is_counted_high(spend: Spend) -> None:
    # Tokenizers give about a token per Chinese character and one or two per emoji.
    await ask(spend, [Streamed("请总结以下内容" * 3 + "🙂" * 3, cut_stream("openai"))])

    [(_, usage, _, _)] = charged(spend)
    assert usage.output_tokens == 35 + 7  # 21 characters at 5/3, 3 emoji at 7/3
    assert usage.output_tokens >= 21 + 2 * 3


async def test_an_estimate_never_charges_more_than_the_worst_case_held(
        spend: Spend) -> None:
    await ask(spend, [Streamed("x" * 3000, cut_stream("openai"))], max_tokens=100)

    [(_, usage, cost, _)] = charged(spend)
    assert (usage.output_tokens, cost) == (100, gpt_4o(HI_INPUT, 100))


async def test_an_unpriced_model_that_times_out_has_an_unknown_cost_that_says_why(
        ledger: Ledger, clock: FakeClock) -> None:
    unlimited = Spend(PriceBook.bundled(), ledger, BudgetGuard(BudgetsConfig(), ledger, clock))

    gate = await ask(unlimited, [timeout_error("openai")], model="mystery-model")

    assert charged(unlimited) == [("error", Usage(), None, False)]
    cost, note = gate.total
    assert cost is None and note is not None and note.startswith(
        "no price for openai/mystery-model")


async def test_an_answer_without_a_usage_report_is_charged_for_its_text_counted_high(
        spend: Spend) -> None:
    answer = completion("ответ" * 6).model_copy(update={"usage_reported": False})

    gate = await ask(spend, [answer])

    cost = gpt_4o(HI_INPUT, 30)  # 30 Cyrillic letters: a token each
    assert charged(spend) == [("ok", Usage(input_tokens=HI_INPUT, output_tokens=30), cost,
                               True)]
    assert gate.total == (cost, "estimated: openai/gpt-4o sent no usage report, so the cost "
                                "is for the request's input and the answer, " + COUNTED_HIGH)


def test_the_input_estimate_of_ascii_text_is_a_token_per_3_characters() -> None:
    request = ChatRequest(messages=(Message(role="system", content="Be brief."),
                                    Message(role="user", content="x" * 3000)))
    assert estimate_input_tokens(request) == (3 + 4) + (1000 + 4)


@given(st.text())
def test_the_estimate_counts_every_character_beyond_ascii_as_a_token_at_least(text: str):
    ascii = sum(c.isascii() for c in text)
    assert estimate_text_tokens(text) >= math.ceil(ascii / 3) + (len(text) - ascii)


# --- a ledger that cannot take a row --------------------------------------------------------

def fill_up(ledger: Ledger) -> None:
    """Make every write to `ledger` fail as a full disk does (another connection's trigger:
    SQLite's own error, reads still work)."""
    with closing(sqlite3.connect(ledger.path)) as conn:
        conn.execute("CREATE TRIGGER full BEFORE INSERT ON calls "
                     "BEGIN SELECT RAISE(FAIL, 'database or disk is full'); END")


async def test_an_answer_the_ledger_cannot_record_still_counts_and_its_note_says_why(
        spend: Spend, caplog: pytest.LogCaptureFixture) -> None:
    fill_up(spend.ledger)
    gate = spend.gate(trace_id="t-1", client="local", route=None, metadata={})
    call = Call(deadline=anyio.current_time() + 10, gate=gate)
    answer = Completion(content="hello", finish_reason="stop",
                        usage=Usage(input_tokens=10, output_tokens=2))
    adapter = ScriptedAdapter("openai", [answer])

    with caplog.at_level(logging.ERROR, "mcp_router"):
        response = await Target(adapter, "gpt-4o", LoopClock()).complete(
            ChatRequest(messages=(Message(role="user", content="hi"),)), call)

    assert response == ChatResponse(completion=answer, provider="openai", model="gpt-4o")
    assert spend.ledger.recent() == []
    cost = gpt_4o(10, 2)
    assert (spend.budgets.spent_today, spend.budgets.reserved) == (cost, 0)
    assert gate.total == (cost, f"not in the ledger: cannot write to the ledger "
                                f"{spend.ledger.path}: database or disk is full; the spend "
                                "counts against the budgets until restart")
    assert f"openai/gpt-4o (trace t-1, cost {cost}) is not in the ledger" in caplog.text


async def test_a_charge_the_ledger_cannot_record_still_counts_against_the_budgets(
        spend: Spend) -> None:
    fill_up(spend.ledger)

    gate = await ask(spend, [Streamed("x" * 150, cut_stream("openai"))])

    cost = gpt_4o(HI_INPUT, 50)
    assert (spend.budgets.spent_today, spend.budgets.reserved) == (cost, 0)
    assert spend.ledger.recent() == []
    total, note = gate.total
    assert total == cost and note is not None and "; not in the ledger: " in note


def test_a_cache_hit_the_ledger_cannot_record_is_still_served(spend: Spend) -> None:
    fill_up(spend.ledger)
    hit = ChatResponse(completion=completion(), provider="openai", model="gpt-4o")

    spend.record_hit(hit, D("0.01"), trace_id="t-1", client="local", route=None, metadata={})

    assert spend.ledger.recent() == []
