"""Budgets as a caller meets them: step down to a cheaper target, refuse, never overspend."""

from __future__ import annotations

import random
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from mcp_router.clock import LoopClock
from mcp_router.config import parse_config
from mcp_router.errors import AllTargetsFailed, BudgetExceeded
from mcp_router.ledger import Ledger, LedgerRow
from mcp_router.messages import ChatCall
from mcp_router.router import Router
from mcp_router.wiring import open_router

pytestmark = pytest.mark.anyio

CONFIG = """\
providers:
  anthropic: {{kind: anthropic, base_url: "{url}"}}
  deepseek: {{kind: openai, base_url: "{url}/v1"}}
  ollama: {{kind: openai, base_url: "{url}/v1"}}
routes:
  default:
    targets:
      - {{provider: anthropic, model: claude-3-opus-20240229}}
      - {{provider: deepseek, model: deepseek-chat}}
  dear:
    targets: [{{provider: anthropic, model: claude-3-opus-20240229}}]
  unpriced_first:
    targets:
      - {{provider: deepseek, model: deepseek-unlisted}}
      - {{provider: deepseek, model: deepseek-chat}}
  free_last:
    targets:
      - {{provider: deepseek, model: deepseek-chat}}
      - {{provider: ollama, model: llama3}}
cache: {{enabled: false}}
budgets: {{daily_usd: {daily}}}
prices:
  ollama/*: {{input_per_mtok: 0, output_per_mtok: 0}}
"""


async def with_router(sim: Any, home: Path, daily: str, body: Any) -> None:
    config = parse_config(CONFIG.format(url=sim.url, daily=daily), env={})
    async with httpx.AsyncClient() as http:
        with open_router(config, http=http, keys={}, home=home, clock=LoopClock(),
                         rng=random.Random(0)) as router:
            await body(router)


async def test_a_target_over_budget_steps_down_to_a_cheaper_one(sim: Any, tmp_path: Path):
    async def body(router: Router) -> None:
        # opus's worst case for 100 output tokens is about $0.0075; deepseek's is far less
        result = await router.complete(ChatCall(prompt="hi", max_tokens=100))
        assert (result.provider, result.model) == ("deepseek", "deepseek-chat")
        first = result.attempts[0]
        assert (first.provider, first.outcome) == ("anthropic", "skipped")
        assert first.error is not None and first.error.startswith("over budget: daily budget")
        assert sim.state.hits["claude-3-opus-20240229"] == 0

    await with_router(sim, tmp_path, "0.001", body)


@pytest.mark.parametrize("target", [{"route": "dear"},
                                    {"model": "anthropic/claude-3-opus-20240229"}])
async def test_a_route_with_nothing_cheaper_is_refused_stating_budget_spent_and_quote(
        sim: Any, tmp_path: Path, target: dict[str, str]):
    async def body(router: Router) -> None:
        with pytest.raises(BudgetExceeded) as info:
            await router.complete(ChatCall(prompt="hi", max_tokens=100, **target))
        message = str(info.value)
        assert "daily budget of $0.001" in message and "spent $0" in message
        assert "this call may cost up to $" in message
        assert message.endswith("; a smaller max_tokens lowers the quote")
        assert sum(sim.state.hits.values()) == 0

    await with_router(sim, tmp_path, "0.001", body)


async def test_when_every_target_is_over_budget_the_refusal_names_the_cheapest(
        sim: Any, tmp_path: Path):
    async def body(router: Router) -> None:
        with pytest.raises(BudgetExceeded) as info:
            await router.complete(ChatCall(prompt="hi", max_tokens=4000))
        message = str(info.value)
        assert "may cost up to $0.30" in message  # opus, asked first
        assert re.search(r"every target was over budget, the cheapest \(deepseek/deepseek-chat"
                         r"\) at up to \$0\.00\d+; a smaller max_tokens lowers each quote$",
                         message), message

    await with_router(sim, tmp_path, "0.000001", body)


async def test_a_model_without_a_price_is_not_sent_while_a_budget_is_set(
        sim: Any, tmp_path: Path):
    async def body(router: Router) -> None:
        result = await router.complete(ChatCall(prompt="hi", route="unpriced_first"))
        assert (result.model, result.cost_usd is not None) == ("deepseek-chat", True)
        first = result.attempts[0]
        assert (first.model, first.outcome) == ("deepseek-unlisted", "skipped")
        assert first.error is not None and "has no price" in first.error
        with pytest.raises(BudgetExceeded, match="^deepseek/deepseek-unlisted: the daily "
                                                 "budget of \\$100 cannot be kept"):
            await router.complete(ChatCall(prompt="hi", model="deepseek/deepseek-unlisted"))
        assert sim.state.hits.get("deepseek-unlisted", 0) == 0

    await with_router(sim, tmp_path, "100", body)


async def test_an_answer_cut_off_by_the_timeout_is_charged_for_the_text_it_streamed(
        sim: Any, tmp_path: Path):
    async def body(router: Router) -> None:
        with pytest.raises(AllTargetsFailed, match="still streaming"):
            await router.complete(ChatCall(prompt="hi", model="deepseek/deepseek-chat+drip-200",
                                           timeout_s=0.4, max_tokens=100))
        rows = router.spend.ledger.recent()
        assert rows and all(r.outcome == "error" and r.usage.output_tokens > 0 for r in rows)
        charged = sum(r.cost_usd or 0 for r in rows)
        assert charged > 0  # the provider billed what it generated; the budget counts it
        assert router.spend.budgets.reserved == 0
        assert router.spend.ledger.spent("today") == charged
        alerts = router.spend.ledger.report().alerts
        assert any(a.startswith(f"{len(rows)} attempt(s) to deepseek/deepseek-chat+drip-200 "
                                "ended mid-answer") for a in alerts), alerts

    await with_router(sim, tmp_path, "100", body)


async def test_sixty_four_concurrent_calls_never_spend_past_the_budget(sim: Any, tmp_path: Path):
    outcomes: list[str] = []

    async def body(router: Router) -> None:
        async def one(i: int) -> None:
            try:
                await router.complete(ChatCall(prompt=f"question {i}", max_tokens=50,
                                               route="dear"))
                outcomes.append("answered")
            except BudgetExceeded:
                outcomes.append("refused")

        async with anyio.create_task_group() as tg:
            for i in range(64):
                tg.start_soon(one, i)
        spent = router.spend.ledger.spent("today")
        assert spent <= Decimal("0.02")
        assert router.spend.budgets.reserved == 0

    await with_router(sim, tmp_path, "0.02", body)
    assert 0 < outcomes.count("answered") < 64
    assert outcomes.count("answered") == sim.state.hits["claude-3-opus-20240229"]


async def test_a_dry_run_shows_the_budget_skip_and_holds_nothing(sim: Any, tmp_path: Path):
    async def body(router: Router) -> None:
        result = await router.complete(ChatCall(prompt="hi", max_tokens=100, dry_run=True))
        assert result.dry_run is not None
        opus, deepseek = result.dry_run.targets
        assert (opus.would, deepseek.would) == ("skip", "ask")
        assert opus.reason is not None and opus.reason.startswith("over budget: daily budget")
        assert router.spend.budgets.reserved == 0
        assert sum(sim.state.hits.values()) == 0

    await with_router(sim, tmp_path, "0.001", body)


async def test_once_the_budget_is_used_up_the_route_steps_down_to_a_free_local_target(
        sim: Any, tmp_path: Path):
    # today's spend so far is exactly the budget, written by an earlier server
    with Ledger.in_home(tmp_path, LoopClock()) as earlier:
        earlier.record(LedgerRow(provider="deepseek", model="deepseek-chat", outcome="ok",
                                 cost_usd=Decimal("1")))

    async def body(router: Router) -> None:
        call = ChatCall(prompt="hi", max_tokens=50, route="free_last")
        plan = await router.complete(call.model_copy(update={"dry_run": True}))
        assert plan.dry_run is not None
        assert [t.would for t in plan.dry_run.targets] == ["skip", "ask"]
        result = await router.complete(call)
        assert (result.provider, result.model, result.cost_usd) == ("ollama", "llama3", 0)
        skipped = result.attempts[0]
        assert (skipped.provider, skipped.outcome) == ("deepseek", "skipped")
        assert skipped.error is not None and skipped.error.startswith("over budget: daily")
        assert sim.state.hits.get("deepseek-chat", 0) == 0
        assert router.spend.budgets.reserved == 0

    await with_router(sim, tmp_path, "1", body)


# --- usage reports that are no token counts --------------------------------------------------

REPORTING = """\
providers:
  up: {kind: openai, base_url: "https://up.test/v1", stream: false}
routes:
  default: {targets: [{provider: up, model: m}]}
cache: {enabled: false}
budgets: {daily_usd: 1}
prices:
  up/*: {input_per_mtok: 1, output_per_mtok: 1}
"""


async def with_reports(home: Path, prompt_tokens: list[int], body: Any) -> None:
    """A router over one upstream that answers "Hello" reporting `prompt_tokens` in turn."""
    reported = iter(prompt_tokens)

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello"},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": next(reported), "completion_tokens": 3}})

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as http:
        with open_router(parse_config(REPORTING, env={}), http=http, keys={}, home=home,
                         clock=LoopClock(), rng=random.Random(0)) as router:
            await body(router)


@pytest.mark.parametrize("reported", [-10**12, 2**63], ids=["negative", "past 2**63"])
async def test_a_usage_report_that_is_no_token_count_is_charged_an_estimate_not_believed(
        tmp_path: Path, reported: int):
    async def body(router: Router) -> None:
        first = await router.complete(ChatCall(prompt="hi"))
        assert first.content == "Hello"
        assert first.cost_usd is not None and first.cost_usd > 0  # never a refund
        assert first.cost_note is not None and first.cost_note.startswith("estimated: up/m ")
        # the budget and the ledger agree: $1 then fits once, not again
        spent = router.spend.ledger.spent("today")
        assert router.spend.budgets.spent_today == spent == first.cost_usd
        second = await router.complete(ChatCall(prompt="a $1 answer"))
        assert second.cost_usd is not None and second.cost_usd > 1
        with pytest.raises(BudgetExceeded):
            await router.complete(ChatCall(prompt="and another"))

    await with_reports(tmp_path, [reported, 10**6, 10**6], body)


# --- what a client kept to its own calls is told -------------------------------------------

SHARED = """\
providers:
  deepseek: {{kind: openai, base_url: "{url}/v1"}}
routes:
  default:
    targets: [{{provider: deepseek, model: deepseek-chat}}]
cache: {{enabled: false}}
budgets: {{{period}_usd: 1}}
clients:
  alice: {{token_sha256: {hash}, budgets: {{daily_usd: 0.000001}}}}
"""


@pytest.mark.parametrize("period", ["daily", "monthly"])
async def test_a_team_budget_refusal_gives_a_client_kept_to_its_own_calls_no_team_figures(
        sim: Any, tmp_path: Path, period: str):
    # Another client spent all but $0.00001 of the team's $1: alice must not learn the figures.
    with Ledger.in_home(tmp_path, LoopClock()) as earlier:
        earlier.record(LedgerRow(provider="deepseek", model="deepseek-chat", outcome="ok",
                                 client="bob", cost_usd=Decimal("0.99999")))
    config = parse_config(SHARED.format(url=sim.url, period=period, hash="a" * 64), env={})
    call = ChatCall(prompt="hi", max_tokens=100)
    withheld = (f"the team's {period} budget would be exceeded by this call, which may cost up "
                "to $0.0000434 (its spend is shown only to clients with `cost_report: all`)")

    async with httpx.AsyncClient() as http:
        with open_router(config, http=http, keys={}, home=tmp_path, clock=LoopClock(),
                         rng=random.Random(0)) as router:
            with pytest.raises(BudgetExceeded) as info:
                await router.complete(call, client="alice", sees_team=False)
            assert str(info.value) == (f"deepseek/deepseek-chat: {withheld}; a smaller "
                                       "max_tokens lowers the quote")
            plan = await router.complete(call.model_copy(update={"dry_run": True}),
                                         client="alice", sees_team=False)
            assert plan.dry_run is not None
            assert plan.dry_run.targets[0].reason == f"over budget: {withheld}"
            # The same call by a client who may see the team's spend is told the figures.
            with pytest.raises(BudgetExceeded, match=rf"{period} budget of \$1 would be "
                                                     r"exceeded: spent \$0\.99999"):
                await router.complete(call, client="bob")
            # Alice's own budget's figures are her own: a refusal by it keeps them.
            small = ChatCall(prompt="hi", max_tokens=1)
            with pytest.raises(BudgetExceeded, match=r"client alice's daily budget of "
                                                     r"\$0\.000001 would be exceeded: spent \$0 "):
                await router.complete(small, client="alice", sees_team=False)
    assert sim.state.hits.get("deepseek-chat", 0) == 0
