"""The daily budget alert: told once, to the call that crossed it, and only to a caller who
may see the team's spend."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, closing
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from mcp_router.access import hash_token, new_token
from mcp_router.config import parse_config
from mcp_router.server import create_server
from mcp_router.server.http_auth import http_app
from mcp_router.server.http_bind import ENDPOINT_PATHS
from tests.shared.served import serving_app

pytestmark = pytest.mark.anyio

PRICED = """\
providers:
  sim: {{kind: openai, base_url: "{url}/v1", api_key_env: null}}
routes:
  default: {{targets: [{{provider: sim, model: "gpt-4o+tokens-{tokens}"}}]}}
cache: {{enabled: false}}
budgets: {{alert_daily_usd: {alert}}}
prices:
  sim/*: {{input_per_mtok: 1000, output_per_mtok: 1000}}
"""
ALICE, BOB, CAROL = new_token(), new_token(), new_token()
CLIENTS = """\
clients:
  alice: {{token_sha256: {alice}}}
  bob: {{token_sha256: {bob}}}
  carol: {{token_sha256: {carol}, cost_report: all}}
"""


@asynccontextmanager
async def connected(url: str, token: str) -> AsyncIterator[Client]:
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"},
                                  timeout=30) as http, \
            Client(streamable_http_client(url, http_client=http)) as client:
        yield client


async def test_a_client_kept_to_its_own_calls_is_not_told_the_team_s_spend(
        sim: Any, tmp_path: Path) -> None:
    text = PRICED.format(url=sim.url, tokens=100, alert=0.15) + CLIENTS.format(
        alice=hash_token(ALICE), bob=hash_token(BOB), carol=hash_token(CAROL))
    parsed = parse_config(text, env={})
    server = create_server(parsed, home=tmp_path, env={}, keys={})
    app = http_app(server, "streamable-http", host="127.0.0.1", config=parsed.server)
    with serving_app(app) as port:
        url = f"http://127.0.0.1:{port}{ENDPOINT_PATHS['streamable-http']}"
        async with connected(url, BOB) as bob:  # $0.101, under the $0.15 threshold
            assert not (await bob.call_tool("chat_completion", {"prompt": "b"})).is_error
        async with connected(url, ALICE) as alice:  # $0.202 in all: crossed by alice's call
            crossed = (await alice.call_tool("chat_completion", {"prompt": "a"})
                       ).structured_content
            own = (await alice.call_tool("cost_report", {})).structured_content
        async with connected(url, CAROL) as carol:  # may see every client's spend
            told = (await carol.call_tool("chat_completion", {"prompt": "c"})
                    ).structured_content
            again = (await carol.call_tool("chat_completion", {"prompt": "d"})
                     ).structured_content
    assert crossed is not None and own is not None and told is not None and again is not None
    assert own["total_usd"] == 0.101  # all alice may see: her own call
    assert "budget_alert" not in crossed
    assert told["budget_alert"].endswith(
        "spent $0.202, over the daily alert threshold of $0.15")  # when it was crossed
    assert "budget_alert" not in again  # once a day


async def test_a_charged_call_that_fails_says_it_crossed_the_alert(sim: Any,
                                                                   tmp_path: Path) -> None:
    server = create_server(parse_config(PRICED.format(url=sim.url, tokens=10, alert=0.1),
                                        env={}), home=tmp_path, env={}, keys={})
    async with Client(server) as client:
        cut = await client.call_tool("chat_completion", {
            "prompt": "hi", "model": "sim/gpt-4o+cut+tokens-300"})
        with closing(sqlite3.connect(tmp_path / "ledger.sqlite3")) as db:
            spent = sum(Decimal(c) for (c,) in db.execute("SELECT cost_usd FROM calls"))
        later = (await client.call_tool("chat_completion", {"prompt": "hi"})).structured_content
    assert cut.is_error and spent > Decimal("0.1")  # charged past the threshold
    assert "(budget alert: " in cut.content[0].text  # type: ignore[union-attr]
    assert "over the daily alert threshold of $0.1" in cut.content[0].text  # type: ignore[union-attr]
    assert later is not None and "budget_alert" not in later
