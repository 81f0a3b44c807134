"""A first text that arrives once a hop's share has run out is too late to run on: the hop times
out, what streamed is charged, and the route moves on."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import anyio
import pytest

from mcp_router.budgets import BudgetGuard
from mcp_router.clock import LoopClock
from mcp_router.config import BudgetsConfig
from mcp_router.ledger import Ledger
from mcp_router.messages import ChatRequest, Completion, Message, ModelList, TextFn, Usage
from mcp_router.prices import PriceBook
from mcp_router.routing import Fallback, Target
from mcp_router.spend import Spend
from tests.fixtures.clock import FakeClock
from tests.fixtures.scripted import ScriptedAdapter, completion
from tests.routing.support import call_for

pytestmark = [pytest.mark.virtual_time, pytest.mark.anyio]
CLOCK = LoopClock()
HI = ChatRequest(messages=(Message(role="user", content="hi"),), max_tokens=100)
HI_INPUT = 5  # "hi" is a token, plus 4 for the message


class TextAfterTheShareRanOut:
    """A streaming openai adapter whose first text reaches the router after its hop's share
    has run out but before the share's cancel has been delivered, as when the bytes are read
    in the turn the deadline fires. The shield holds that cancel off for the half second."""

    provider, configured, timeout_s, stream = "openai", True, 60.0, True

    def __init__(self) -> None:
        self.asked = 0

    async def send(self, request: ChatRequest, model: str,
                   on_text: TextFn | None = None) -> Completion:
        self.asked += 1
        with anyio.CancelScope(shield=True):
            await anyio.sleep(5.5)  # the share (5 s of the call's 10) ends meanwhile
        assert on_text is not None
        await on_text("x" * 150)
        await anyio.sleep(1)  # the rest of the answer; the share's cancel lands here
        return completion("the whole answer")

    async def probe(self) -> ModelList | None:
        return None


@pytest.fixture
def spend(tmp_path: Path) -> Iterator[Spend]:
    clock = FakeClock()
    with Ledger.in_home(tmp_path / "home", clock) as ledger:
        yield Spend(PriceBook.bundled(), ledger,
                    BudgetGuard(BudgetsConfig(daily_usd=Decimal(1)), ledger, clock))


async def test_a_first_text_after_the_share_ran_out_times_out_is_charged_and_the_fallback_answers(
        spend: Spend) -> None:
    primary = TextAfterTheShareRanOut()
    second = ScriptedAdapter("anthropic", [completion("from the fallback")])
    call = call_for(10)
    call.gate = spend.gate(trace_id="t-1", client="local", route=None, metadata={})

    response = await Fallback([Target(primary, "gpt-4o", CLOCK),
                               Target(second, "claude-3-haiku-20240307", CLOCK)],
                              CLOCK).complete(HI, call)

    assert (response.provider, response.completion.content) == ("anthropic",
                                                                "from the fallback")
    assert (primary.asked, second.times) == (1, [5.5])
    assert [(a.provider, a.outcome, a.error, a.ttfb_ms) for a in call.attempts] == [
        ("openai", "error", "still streaming when its 5 s ran out (~37 tokens in): the answer "
                            "was cut off", 5500.0),
        ("anthropic", "ok", None, None)]
    # 150 ASCII characters are 50 tokens, at gpt-4o's $2.50 and $10 per million
    cost = (HI_INPUT * Decimal("2.50") + 50 * Decimal(10)).scaleb(-6)
    rows = [(r.model, r.outcome, r.usage, r.cost_usd, r.estimated)
            for r in reversed(spend.ledger.recent())]
    assert rows[0] == ("gpt-4o", "error", Usage(input_tokens=HI_INPUT, output_tokens=50),
                       cost, True)
    assert [outcome for _, outcome, *_ in rows] == ["error", "ok"]
    assert spend.budgets.reserved == 0


async def test_a_host_that_gives_up_meanwhile_still_cancels_the_call_and_the_text_is_charged(
        spend: Spend) -> None:
    primary = TextAfterTheShareRanOut()
    second = ScriptedAdapter("anthropic", [completion("from the fallback")])
    call = call_for(10)
    call.gate = spend.gate(trace_id="t-1", client="local", route=None, metadata={})

    with anyio.move_on_after(5.2) as host:  # gives up after the share, before the text
        await Fallback([Target(primary, "gpt-4o", CLOCK),
                        Target(second, "claude-3-haiku-20240307", CLOCK)],
                       CLOCK).complete(HI, call)

    assert (host.cancelled_caught, anyio.current_time(), second.calls) == (True, 5.5, [])
    assert [(r.model, r.outcome, r.usage.output_tokens, r.estimated)
            for r in spend.ledger.recent()] == [("gpt-4o", "cancelled", 50, True)]
    assert spend.budgets.reserved == 0
