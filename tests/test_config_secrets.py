"""Credentials in a provider's headers or base URL are scrubbed like its key, everywhere."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp import Client

from mcp_router.cli import describe_config
from mcp_router.config import parse_config
from mcp_router.server import create_server

pytestmark = pytest.mark.anyio

VKEY = "pk-HEADERCANARY-0123456789"
URL_KEY = "AIzaURLCANARY0123456789"
CONFIG = f"""\
providers:
  gateway:
    kind: openai
    base_url: "http://gw.test/v1?api_key={URL_KEY}"
    headers: {{x-portkey-api-key: "${{PORTKEY_VKEY}}", x-portkey-provider: openai}}
    stream: false
  backup: {{kind: openai, base_url: "http://backup.test/v1", stream: false}}
routes:
  default:
    targets: [{{provider: gateway, model: m}}, {{provider: backup, model: m}}]
  lone:
    targets: [{{provider: gateway, model: m}}]
"""


def echo_headers(request: httpx.Request) -> httpx.Response:
    """The gateway refuses every call and echoes what it received; the backup answers."""
    if request.url.host == "gw.test":
        return httpx.Response(500, json={"error": {"message": f"bad request to {request.url} "
                                                              f"with {dict(request.headers)}"}})
    return httpx.Response(200, json={"model": "m", "choices": [{"index": 0, "message": {
        "role": "assistant", "content": "fine"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1}})


async def test_a_secret_header_or_url_key_never_reaches_a_result_a_report_or_the_audit_log(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    config = parse_config(CONFIG, env={"PORTKEY_VKEY": VKEY})
    server = create_server(config, home=tmp_path, env={},
                           transport=httpx.MockTransport(echo_headers))
    shown: list[Any] = []
    async with Client(server) as client:
        answered = await client.call_tool("chat_completion", {"prompt": "hi"})
        failed = await client.call_tool("chat_completion", {"prompt": "hi", "route": "lone"})
        for tool in ("provider_health", "list_providers"):
            shown.append((await client.call_tool(tool, {})).structured_content)
    assert answered.structured_content is not None and failed.is_error
    attempt = answered.structured_content["attempts"][0]
    assert attempt["outcome"] == "error" and "***" in attempt["error"]  # the echo, scrubbed
    everything = json.dumps([answered.structured_content, failed.content[0].model_dump(), shown,
                             (tmp_path / "audit.jsonl").read_text(), caplog.text])
    assert VKEY not in everything and URL_KEY not in everything
    assert "x-portkey-provider" in everything  # headers not named like credentials stay


def test_check_config_masks_a_key_in_the_base_url() -> None:
    text = describe_config(parse_config(CONFIG, env={"PORTKEY_VKEY": VKEY}), {})
    assert "http://gw.test/v1?api_key=***" in text and URL_KEY not in text


@pytest.mark.parametrize(("query", "shown"), [
    ("code=AZFUNCKEY0123456&api-version=2024-06-01", "code=***&api-version=2024-06-01"),
    ("sv=2024&sig=SASSIGNATURE0123456", "sv=2024&sig=***"),
])
def test_azure_function_keys_and_sas_signatures_in_the_base_url_are_masked(
        query: str, shown: str) -> None:
    config = parse_config("providers:\n  az: {kind: openai, base_url: "
                          f'"https://az.test/v1?{query}"}}\n'
                          "routes:\n  default: {targets: [{provider: az, model: m}]}\n", env={})
    assert f"https://az.test/v1?{shown}" in describe_config(config, {})
