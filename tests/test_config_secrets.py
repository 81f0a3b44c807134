"""Credentials in a provider's headers or base URL are scrubbed like its key, everywhere."""

from __future__ import annotations

import base64
import json
import re
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


SIG = "Zm9v/YmFy+cXV4="  # an Azure SAS signature: the base URL carries it percent-encoded
SIG_CANARIES = ("Zm9v", "cXV4")
LOWER_SIG_CONFIG = """\
providers:
  azure: {kind: openai, base_url: "https://az.test/openai/v1?api-version=2024&sig=%s",
          stream: false}
routes:
  default: {targets: [{provider: azure, model: gpt-4o}]}
"""


@pytest.mark.parametrize("written", ["Zm9v%2fYmFy%2bcXV4%3d", "Zm9v%2FYmFy%2bcXV4%3D",
                                     "Zm9v%2FYmFy%2BcXV4%3D"], ids=["lower", "mixed", "upper"])
async def test_list_providers_masks_a_signature_whatever_the_case_of_its_escapes(
        tmp_path: Path, written: str) -> None:
    config = parse_config(LOWER_SIG_CONFIG % written, env={})
    async with Client(create_server(config, home=tmp_path, env={})) as client:
        result = await client.call_tool("list_providers", {})
    assert result.structured_content is not None
    shown = result.structured_content["providers"][0]["base_url"]
    assert shown == "https://az.test/openai/v1?api-version=2024&sig=***"
    assert not any(c in result.content[0].text for c in SIG_CANARIES)  # type: ignore[union-attr]


def test_check_config_masks_a_signature_written_with_lowercase_escapes() -> None:
    text = describe_config(parse_config(LOWER_SIG_CONFIG % "Zm9v%2fYmFy%2bcXV4%3d", env={}), {})
    assert "https://az.test/openai/v1?api-version=2024&sig=***" in text
    assert not any(c in text for c in SIG_CANARIES)


def test_a_short_credential_named_query_value_is_still_masked_where_the_url_is_shown() -> None:
    config = parse_config("providers:\n  g: {kind: openai, base_url: "
                          '"https://g.test/v1?key=abcde&v=1"}\n'
                          "routes:\n  default: {targets: [{provider: g, model: m}]}\n", env={})
    assert "https://g.test/v1?key=***&v=1" in describe_config(config, {})


def echo_url(spelling: str) -> Any:
    """An upstream that refuses every call and echoes the URL it was asked, its query
    re-spelled (`as-sent`, or with every escape upper- or lowercased)."""
    def handle(request: httpx.Request) -> httpx.Response:
        url = str(request.url)
        if spelling != "as-sent":
            url = re.sub(r"%[0-9a-fA-F]{2}", lambda m: getattr(m.group(), spelling)(), url)
        return httpx.Response(500, json={"error": {"message": f"bad request to {url}"}})
    return handle


@pytest.mark.parametrize("spelling", ["as-sent", "upper", "lower"])
async def test_an_error_echoing_a_lowercase_escaped_signature_is_scrubbed_everywhere(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, spelling: str) -> None:
    config = parse_config(LOWER_SIG_CONFIG % "Zm9v%2fYmFy%2bcXV4%3d", env={})
    server = create_server(config, home=tmp_path, env={},
                           transport=httpx.MockTransport(echo_url(spelling)))
    async with Client(server) as client:
        failed = await client.call_tool("chat_completion", {"prompt": "hi"})
        health = await client.call_tool("provider_health", {})
    assert failed.is_error and health.structured_content is not None
    last_error = health.structured_content["providers"][0]["last_error"]
    assert "bad request to https://az.test/openai/v1/chat/completions?api-version=2024&sig=***" \
        in last_error
    everything = json.dumps([failed.content[0].model_dump(), health.structured_content,
                             (tmp_path / "audit.jsonl").read_text(), caplog.text])
    assert not any(c in everything for c in SIG_CANARIES)


GW_TOKEN = "pk-GATEWAYTOKEN-0123456789"
GW_PASS = "GWPASS-abcdef-0123456789"
TEMPLATED_CONFIG = f"""\
providers:
  gw:
    kind: openai
    base_url: "http://gwuser:{GW_PASS}@gw.test/v1"
    headers: {{Helicone-Auth: "Bearer ${{GW_TOKEN}}", X-Org: "org ${{GW_ORG}}"}}
    stream: false
routes:
  default:
    targets: [{{provider: gw, model: m}}]
"""


def refuse_naming_the_token(request: httpx.Request) -> httpx.Response:
    """A gateway that names the token alone, and echoes the headers it got."""
    token = request.headers["helicone-auth"].removeprefix("Bearer ")
    return httpx.Response(401, json={"error": {"message": f"invalid token {token} for org "
                                                          f"{request.headers['x-org']} with "
                                                          f"{dict(request.headers)}"}})


async def test_a_token_in_a_header_template_and_a_url_password_sent_as_basic_are_scrubbed(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    config = parse_config(TEMPLATED_CONFIG, env={"GW_TOKEN": GW_TOKEN,
                                                 "GW_ORG": "ORG-abcdef-0123456789"})
    server = create_server(config, home=tmp_path, env={},
                           transport=httpx.MockTransport(refuse_naming_the_token))
    async with Client(server) as client:
        failed = await client.call_tool("chat_completion", {"prompt": "hi"})
    assert failed.is_error and "invalid token ***" in failed.content[0].text
    basic = base64.b64encode(f"gwuser:{GW_PASS}".encode()).decode()
    everything = json.dumps([failed.content[0].model_dump(),
                             (tmp_path / "audit.jsonl").read_text(), caplog.text])
    assert "'authorization': 'Basic ***'" in everything
    assert not any(s in everything for s in (GW_TOKEN, basic[:16]))
    assert "ORG-abcdef-0123456789" in everything  # an org id in X-Org is no credential
