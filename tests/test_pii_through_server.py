"""The PII filter as a host meets it: what leaves the machine, what comes back, what is kept."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.client.sse import sse_client

from mcp_router.config import parse_config
from mcp_router.server import create_server
from mcp_router.server.sessions import PiiSessions
from tests.fixtures.serve import serving

pytestmark = pytest.mark.anyio
EMAIL, SSN = "jane.doe@example.com", "123-45-6789"
OTHER = "john.roe@example.net"
PROMPT = f"Write to {EMAIL} about SSN {SSN}, order 4711-22."

CONFIG = """\
providers:
  deepseek: {{kind: openai, base_url: "{url}/v1"}}
routes:
  default:
    targets: [{{provider: deepseek, model: deepseek-chat}}]
pii:
  action: {action}
  custom:
    - {{name: ssn, pattern: '\\b\\d{{3}}-\\d{{2}}-\\d{{4}}\\b'}}
audit: {{include_content: true}}
"""


def make(sim: Any, home: Path, action: str) -> Any:
    return create_server(parse_config(CONFIG.format(url=sim.url, action=action), env={}),
                         home=home, env={})


def sent_to_upstream(sim: Any) -> str:
    return json.dumps([r["body"] for r in sim.state.requests])


async def ask(client: Client, prompt: str = PROMPT) -> Any:
    return await client.call_tool("chat_completion", {"prompt": prompt})


async def test_redacted_values_never_reach_the_upstream_and_are_counted(sim: Any,
                                                                       tmp_path: Path):
    async with Client(make(sim, tmp_path, "redact")) as client:
        result = await ask(client)
    data = result.structured_content
    assert data is not None
    assert data["pii"] == {"action": "redact", "counts": {"email": 1, "ssn": 1}}
    upstream = sent_to_upstream(sim)
    assert EMAIL not in upstream and SSN not in upstream
    assert "<EMAIL>" in upstream and "<SSN>" in upstream and "4711-22" in upstream


async def test_pseudonyms_go_out_and_the_answer_comes_back_with_the_values(sim: Any,
                                                                          tmp_path: Path):
    async with Client(make(sim, tmp_path, "pseudonymize")) as client:
        first = (await ask(client)).structured_content
        second = (await ask(client, f"Again: {EMAIL}")).structured_content
    upstream = sent_to_upstream(sim)
    assert EMAIL not in upstream and "<EMAIL_1>" in upstream
    # the simulated model echoes the prompt: its placeholders are restored for the caller
    assert first is not None and EMAIL in first["content"] and SSN in first["content"]
    assert second is not None and EMAIL in second["content"]
    assert upstream.count("<EMAIL_1>") == 2  # the same value, the same pseudonym


async def test_a_connection_keeps_its_pseudonyms_from_call_to_call(sim: Any, tmp_path: Path):
    async with Client(make(sim, tmp_path, "pseudonymize")) as client:
        await ask(client, f"Mail {EMAIL}")
        await ask(client, f"Mail {OTHER}, then {EMAIL}")
        echoed = (await ask(client, "Repeat <EMAIL_1> verbatim")).structured_content
    second = json.dumps(sim.state.requests[1]["body"])
    assert "Mail <EMAIL_2>, then <EMAIL_1>" in second  # numbered on from the first call
    assert echoed is not None and EMAIL in echoed["content"]


async def test_pseudonyms_of_one_session_are_not_restored_in_another(sim: Any,
                                                                     tmp_path: Path):
    server = make(sim, tmp_path, "pseudonymize")
    async with Client(server) as client:
        await ask(client)
    async with Client(server) as other:
        result = (await other.call_tool(
            "chat_completion", {"prompt": "Repeat <EMAIL_1> verbatim"})).structured_content
    assert result is not None and EMAIL not in result["content"]


def connect(url: str, mode: str) -> Client:
    return Client(sse_client(url) if url.endswith("/sse") else url, mode=mode)


@pytest.mark.slow
@pytest.mark.parametrize(("transport", "modes"), [
    ("streamable-http", {"legacy": True, "2026-07-28": False}),  # Mcp-Session-Id, or none
    ("sse", {"auto": True})])
async def test_over_http_pseudonyms_last_as_long_as_the_mcp_session(
        sim: Any, tmp_path: Path, transport: str, modes: dict[str, bool]):
    config = tmp_path / "pii.yaml"
    config.write_text(CONFIG.format(url=sim.url, action="pseudonymize"))
    env = {"MCP_ROUTER_HOME": str(tmp_path / "home"), "MCP_ROUTER_LOG": "WARNING"}
    with serving(config, transport, env, tmp_path / "stderr.log") as served, \
            anyio.fail_after(60):
        url = served.url
        for mode, kept in modes.items():
            async with connect(url, mode) as client:
                await ask(client)
                echoed = (await ask(client, "Repeat <EMAIL_1> verbatim")).structured_content
            assert echoed is not None and (EMAIL in echoed["content"]) is kept, mode
            async with connect(url, mode) as other:
                foreign = (await ask(other, "Repeat <EMAIL_1> verbatim")).structured_content
            assert foreign is not None and EMAIL not in foreign["content"], mode


def test_http_sessions_are_kept_for_the_newest_and_never_shared_between_clients():
    made: list[Any] = []

    def new() -> Any:
        made.append(object())
        return made[-1]

    sessions = PiiSessions(new, keep=2)
    first = sessions.over_http("alice", "s1")
    assert sessions.over_http("alice", "s1") is first
    assert sessions.over_http("bob", "s1") is not first  # the same id under another token
    sessions.over_http("alice", "s2")  # s1 of alice was used before bob's: it is dropped
    assert sessions.over_http("alice", "s1") is not first
    assert len(made) == 4


async def test_block_refuses_naming_types_never_values(sim: Any, tmp_path: Path):
    async with Client(make(sim, tmp_path, "block")) as client:
        result = await ask(client)
    assert result.is_error
    text = result.content[0].text  # type: ignore[union-attr]
    assert "email" in text and "ssn" in text
    assert EMAIL not in text and SSN not in text
    assert sum(sim.state.hits.values()) == 0
    [line] = (tmp_path / "audit.jsonl").read_text().splitlines()
    assert json.loads(line)["pii"] == {"email": 1, "ssn": 1}  # what blocked it, counted


async def test_nothing_detected_is_written_in_clear_anywhere(sim: Any, tmp_path: Path):
    async with Client(make(sim, tmp_path, "pseudonymize")) as client:
        await ask(client)
        await ask(client)  # a cache hit, restored again for this session
    for path in (p for p in tmp_path.rglob("*") if p.is_file()):
        data = path.read_bytes()
        assert EMAIL.encode() not in data and SSN.encode() not in data, path
