"""Filter fixes as a host meets them through `chat_completion`: what is sent, what comes back."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp import Client

from mcp_router.config import parse_config
from mcp_router.server import create_server

pytestmark = pytest.mark.anyio

SIMULATED = """\
providers:
  deepseek: {{kind: openai, base_url: "{url}/v1"}}
routes:
  default:
    targets: [{{provider: deepseek, model: deepseek-chat}}]
pii:
  action: pseudonymize
  custom:
    - {{name: {name}, pattern: '\\bOTP-\\d{{6}}\\b'}}
"""


@pytest.mark.parametrize("name", ["otp_code", "2fa_code"])
async def test_a_custom_placeholder_is_put_back_in_the_answer(sim: Any, tmp_path: Path,
                                                              name: str) -> None:
    server = create_server(parse_config(SIMULATED.format(url=sim.url, name=name), env={}),
                           home=tmp_path, env={})
    async with Client(server) as client:
        result = (await client.call_tool(
            "chat_completion", {"prompt": "Repeat OTP-123456 please"})).structured_content
    assert "OTP-123456" not in str([r["body"] for r in sim.state.requests])
    assert result is not None
    assert result["content"].endswith("Repeat OTP-123456 please")  # the simulator echoes


MOCKED = """\
providers:
  local: {kind: openai, base_url: "http://upstream.test/v1", stream: false}
routes:
  default:
    targets: [{provider: local, model: m}]
"""
CODE = ("```python\ndef refresh(token: OAuth2Token) -> None:\n"
        "async def handler(secret: SecretBytes):\n"
        "client = Client(api_key=settings.API_KEY)\n```")


async def test_code_in_the_answer_comes_back_unchanged(tmp_path: Path) -> None:
    def upstream(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={
            "id": "x", "object": "chat.completion", "model": "m",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": CODE}}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 50, "total_tokens": 55}})

    server = create_server(parse_config(MOCKED, env={}), home=tmp_path, env={},
                           transport=httpx.MockTransport(upstream))
    async with Client(server) as client:
        result = (await client.call_tool(
            "chat_completion", {"prompt": "Write a token refresher"})).structured_content
    assert result is not None and result["content"] == CODE


LEDGER = """\
providers:
  deepseek: {{kind: openai, base_url: "{url}/v1"}}
routes:
  default:
    targets: [{{provider: deepseek, model: deepseek-chat}}]
"""


@pytest.mark.parametrize(("name", "value", "kept"), [
    ("customer_phone", "4155552671", "<PHONE>"),
    ("ssn", "123456789", "<SSN>"),
    ("password", "Tr0ub4dor&3", "<SECRET>"),
    ("api_key", "0123456789abcdef0123456789abcdef", "<SECRET>"),
])
async def test_a_label_value_named_by_its_key_is_redacted_in_the_ledger(
        sim: Any, tmp_path: Path, name: str, value: str, kept: str) -> None:
    server = create_server(parse_config(LEDGER.format(url=sim.url), env={}),
                           home=tmp_path, env={})
    async with Client(server) as client:
        await client.call_tool("chat_completion", {
            "prompt": "hello", "cache": "skip", "metadata": {name: value, "team": "billing"}})
    with closing(sqlite3.connect(tmp_path / "ledger.sqlite3")) as db:
        rows = db.execute("SELECT metadata FROM calls").fetchall()
    assert [json.loads(row[0]) for row in rows] == [{name: kept, "team": "billing"}]
