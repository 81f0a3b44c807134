"""Money a caller would miss: attempts that end without an answer, text in any script, and a
ledger that cannot take a row. Each is charged, held against the budgets and said so."""

from __future__ import annotations

import json
import random
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, closing
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from mcp import Client

from mcp_router.clock import LoopClock
from mcp_router.config import parse_config
from mcp_router.errors import AllTargetsFailed, BudgetExceeded
from mcp_router.messages import ChatCall
from mcp_router.router import Router
from mcp_router.server import create_server
from mcp_router.wiring import open_router

pytestmark = pytest.mark.anyio

Handler = Callable[[httpx.Request], Any]


@asynccontextmanager
async def mocked(config_text: str, handler: Handler, home: Path,
                 keys: dict[str, str]) -> AsyncIterator[Router]:
    """A router whose upstream is `handler` (an httpx MockTransport)."""
    config = parse_config(config_text, env={})
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        with open_router(config, http=http, keys=keys, home=home, clock=LoopClock(),
                         rng=random.Random(0)) as router:
            yield router


def sse(name: str, **data: object) -> bytes:
    return f"event: {name}\ndata: {json.dumps({'type': name, **data})}\n\n".encode()


ANTHROPIC = """\
providers:
  anthropic: {kind: anthropic, base_url: "http://upstream.test"}
routes:
  default:
    targets: [{provider: anthropic, model: claude-3-haiku-20240307}]
retry: {attempts: 2, backoff_initial_s: 0.01, backoff_max_s: 0.02}
cache: {enabled: false}
budgets: {daily_usd: 100}
"""


def overloaded_midway(request: httpx.Request) -> httpx.Response:
    """Anthropic streams 2,000 characters, then its in-band `error` event (overloaded)."""
    body = b"".join([
        sse("message_start", message={
            "id": "msg_1", "type": "message", "role": "assistant", "content": [],
            "model": "claude-3-haiku-20240307", "stop_reason": None,
            "usage": {"input_tokens": 2000, "output_tokens": 1}}),
        sse("content_block_start", index=0, content_block={"type": "text", "text": ""}),
        *[sse("content_block_delta", index=0, delta={"type": "text_delta", "text": "word " * 40})
          for _ in range(10)],
        sse("error", error={"type": "overloaded_error", "message": "Overloaded"}),
    ])
    return httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})


async def test_a_stream_ended_by_an_error_event_midway_is_charged_for_what_streamed(
        tmp_path: Path):
    async with mocked(ANTHROPIC, overloaded_midway, tmp_path, {"anthropic": "k"}) as router:
        with pytest.raises(AllTargetsFailed) as info:
            await router.complete(ChatCall(prompt="hi", max_tokens=1000))
        assert [(a.outcome, a.status) for a in info.value.attempts] == [("error", 529)] * 2
        rows = router.spend.ledger.recent()
        # each try: the request's input and 2,000 characters at 3 a token, our estimate
        assert [(r.outcome, r.usage.output_tokens, r.estimated) for r in rows] == [
            ("error", 667, True)] * 2
        spent = sum(r.cost_usd or 0 for r in rows)
        assert spent > 0
        assert (router.spend.budgets.spent_today, router.spend.budgets.reserved) == (spent, 0)
        assert router.spend.ledger.report().total_usd == spent


OPENROUTER = """\
providers:
  openrouter: {kind: openai, base_url: "http://upstream.test/api/v1"}
routes:
  default:
    targets: [{provider: openrouter, model: openai/gpt-4o}]
retry: {attempts: 1}
cache: {enabled: false}
budgets: {daily_usd: 100}
"""


def disconnected_midway(request: httpx.Request) -> httpx.Response:
    """OpenRouter's documented mid-stream error: a chunk carrying `error`, after content."""
    def chunk(data: object) -> bytes:
        return f"data: {json.dumps(data)}\n\n".encode()

    delta = {"id": "gen-1", "model": "openai/gpt-4o", "object": "chat.completion.chunk",
             "choices": [{"index": 0, "delta": {"content": "word " * 40}}]}
    failed = {"id": "gen-1", "object": "chat.completion.chunk",
              "error": {"code": "server_error", "message": "Provider disconnected"},
              "choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": "error"}]}
    body = b"".join([*(chunk(delta) for _ in range(10)), chunk(failed)])
    return httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})


async def test_an_openrouter_error_chunk_after_text_is_charged_for_what_streamed(
        tmp_path: Path):
    async with mocked(OPENROUTER, disconnected_midway, tmp_path, {"openrouter": "k"}) as router:
        with pytest.raises(AllTargetsFailed):
            await router.complete(ChatCall(prompt="hi", max_tokens=1000))
        [row] = router.spend.ledger.recent()
        assert (row.outcome, row.usage.output_tokens, row.estimated) == ("error", 667, True)
        assert row.cost_usd is not None and row.cost_usd > 0
        assert router.spend.budgets.spent_today == row.cost_usd


CJK_BUDGET = """\
providers:
  anthropic: {kind: anthropic, base_url: "http://upstream.test", stream: false}
routes:
  default:
    targets: [{provider: anthropic, model: claude-3-haiku-20240307}]
cache: {enabled: false}
budgets: {daily_usd: 0.01}
"""


async def a_token_a_character(request: httpx.Request) -> httpx.Response:
    """Answers after 0.2 s (so calls are in flight together), reporting a token per character
    of input, as vendors' tokenizers count Chinese text."""
    body = json.loads(request.content)
    text = "".join(m["content"] if isinstance(m["content"], str) else
                   "".join(p["text"] for p in m["content"]) for m in body["messages"])
    await anyio.sleep(0.2)
    return httpx.Response(200, json={
        "id": "msg_1", "type": "message", "role": "assistant", "model": body["model"],
        "content": [{"type": "text", "text": "好"}], "stop_reason": "end_turn",
        "stop_sequence": None, "usage": {"input_tokens": len(text), "output_tokens": 1}})


async def test_concurrent_chinese_prompts_cannot_spend_past_the_daily_budget(tmp_path: Path):
    prompt = "请总结以下内容" * 1000  # 7,000 characters, ~$0.00175 each at haiku's input price
    outcomes: list[str] = []
    async with mocked(CJK_BUDGET, a_token_a_character, tmp_path, {"anthropic": "k"}) as router:
        async def one(i: int) -> None:
            try:
                await router.complete(ChatCall(prompt=f"{i} {prompt}", max_tokens=10))
                outcomes.append("answered")
            except BudgetExceeded:
                outcomes.append("refused")

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                for i in range(8):
                    tg.start_soon(one, i)
        spent = router.spend.ledger.spent("today")
    # 8 × $0.00175 would pass $0.01: the quotes, counted high, admit only what fits
    assert 0 < outcomes.count("answered") < 8
    assert spent <= Decimal("0.01")


GEMINI = """\
providers:
  google: {{kind: gemini, base_url: "{url}/v1beta"}}
routes:
  default:
    targets: [{{provider: google, model: gemini-2.5-pro+slow-3000}}]
retry: {{attempts: 1}}
cache: {{enabled: false}}
budgets: {{daily_usd: 0.0022}}
"""


async def test_json_answers_that_time_out_count_their_worst_case_against_the_budget(
        sim: Any, tmp_path: Path):
    config = parse_config(GEMINI.format(url=sim.url), env={})
    async with httpx.AsyncClient() as http:
        with open_router(config, http=http, keys={}, home=tmp_path, clock=LoopClock(),
                         rng=random.Random(0)) as router:
            for i in range(2):  # each held at ~$0.001: 100 tokens of gemini-2.5-pro's output
                with pytest.raises(AllTargetsFailed, match="no answer within"):
                    await router.complete(ChatCall(prompt=f"question {i}", max_tokens=100,
                                                   timeout_s=0.1))
            with pytest.raises(BudgetExceeded):
                await router.complete(ChatCall(prompt="question 2", max_tokens=100,
                                               timeout_s=0.1))
            rows = router.spend.ledger.recent()
            report = router.spend.ledger.report(budgets=config.budgets)
            counted = router.spend.budgets.spent_today
    assert sim.state.hits["gemini-2.5-pro+slow-3000"] == 2
    assert [(r.outcome, r.usage.output_tokens, r.estimated) for r in rows] == [
        ("error", 100, True)] * 2
    assert counted == sum(r.cost_usd or 0 for r in rows) == report.total_usd > Decimal("0.002")
    assert any("or its whole worst case when the answer was not streamed" in a
               for a in report.alerts), report.alerts


# --- a ledger that cannot take a row or be read ---------------------------------------------

DEEPSEEK = """\
providers:
  deepseek: {{kind: openai, base_url: "{url}/v1"}}
routes:
  default:
    targets: [{{provider: deepseek, model: deepseek-chat}}]
budgets: {{daily_usd: 1}}
"""


def change_ledger(home: Path, sql: str) -> None:
    """Run `sql` on the server's ledger from another connection, as another process could."""
    with closing(sqlite3.connect(home / "ledger.sqlite3")) as conn:
        conn.execute(sql)


async def test_a_paid_answer_is_returned_when_the_ledger_cannot_record_it(
        sim: Any, tmp_path: Path):
    home = tmp_path / "home"
    server = create_server(parse_config(DEEPSEEK.format(url=sim.url), env={}), home=home,
                           env={})
    async with Client(server) as client:
        change_ledger(home, "CREATE TRIGGER full BEFORE INSERT ON calls "
                            "BEGIN SELECT RAISE(FAIL, 'database or disk is full'); END")
        result = await client.call_tool("chat_completion", {"prompt": "hello"})
    assert sim.state.hits["deepseek-chat"] == 1
    assert not result.is_error, result.content
    data = result.structured_content
    assert data is not None and data["content"] and data["cost_usd"] > 0
    assert data["cost_note"] == (
        f"not in the ledger: cannot write to the ledger {home / 'ledger.sqlite3'}: database or "
        "disk is full; the spend counts against the budgets until restart")


async def test_cost_report_names_a_ledger_it_cannot_read(sim: Any, tmp_path: Path):
    home = tmp_path / "home"
    server = create_server(parse_config(DEEPSEEK.format(url=sim.url), env={}), home=home,
                           env={})
    async with Client(server) as client:
        change_ledger(home, "DROP TABLE calls")
        result = await client.call_tool("cost_report", {})
    assert result.is_error
    text = result.content[0].text  # type: ignore[union-attr]
    assert f"cannot read the ledger {home / 'ledger.sqlite3'}: no such table: calls" in text
