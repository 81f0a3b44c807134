"""What an HTTP server accepts: the loopback address it binds, and request bodies up to
`server.max_body_bytes`, past which the host is told so in a JSON-RPC error it can show (as
it is for an SSE message that is no JSON-RPC message, which the log does not quote)."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from mcp.shared.exceptions import MCPError
from mcp.types import JSONRPCRequest

from mcp_router.config import parse_config
from mcp_router.server.http_auth import http_app
from mcp_router.server.http_bind import transport_security
from mcp_router.shared_config import ServerConfig
from tests.fixtures.configs import ONE_MODEL
from tests.shared.served import connected, served, serving_app
from tests.shared.test_http_auth import ALICE, INIT, MCP_HEADERS, tiny_server

CONFIG = """\
providers:
  deepseek: {{kind: openai, base_url: "{url}/v1"}}
routes:
  default:
    targets: [{{provider: deepseek, model: deepseek-chat}}]
cache: {{enabled: false}}
server: {{max_body_bytes: 20000}}
"""
LIMIT_SAID = "is over the limit of 20,000 bytes (server.max_body_bytes)"
TOOL_CALL = {"jsonrpc": "2.0", "id": 7, "method": "tools/call",
             "params": {"name": "chat_completion", "arguments": {"prompt": "文" * 10_000}}}


@pytest.mark.anyio
async def test_a_server_bound_to_another_loopback_address_answers_there(sim: Any,
                                                                        tmp_path: Path):
    with served(CONFIG.format(url=sim.url), "streamable-http", tmp_path,
                host="127.0.0.2") as url:
        port = url.split(":")[2].split("/")[0]
        with anyio.fail_after(30):
            async with connected(url) as host:
                providers = await host.call_tool("list_providers", {})
        assert not providers.is_error
        own_page = httpx.post(url, json=INIT, timeout=10,
                              headers={**MCP_HEADERS, "Origin": f"http://127.0.0.2:{port}"})
        assert own_page.status_code == 200, own_page.text
        assert httpx.post(url, json=INIT, timeout=10, headers={
            **MCP_HEADERS, "Host": f"127.0.0.3:{port}"}).status_code == 421


@pytest.mark.parametrize(("host", "added"), [
    ("127.0.0.2", "127.0.0.2"), ("0:0:0:0:0:0:0:1", "[0:0:0:0:0:0:0:1]"),
    ("127.0.0.1", None), ("localhost", None), ("::1", None), ("[::1]", None)])
def test_the_loopback_address_bound_is_allowed_as_host_and_origin(host: str, added: str | None):
    checks = transport_security(host, ServerConfig(allowed_hosts=["router.lan:*"]))
    names = ["127.0.0.1", "localhost", "[::1]"] + ([added] if added else [])
    assert checks.allowed_hosts == [f"{n}:*" for n in names] + ["router.lan:*"]
    assert checks.allowed_origins == [f"http://{n}:*" for n in names]


@pytest.fixture
def limited(sim: Any, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    with served(CONFIG.format(url=sim.url), request.param, tmp_path) as url:
        yield url


@pytest.mark.anyio
@pytest.mark.parametrize("limited", ["streamable-http", "sse"], indirect=True)
async def test_a_body_over_max_body_bytes_is_an_error_naming_the_setting_and_the_host_goes_on(
        limited: str):
    with anyio.fail_after(15):  # over SSE the call used to wait for an answer that never came
        async with connected(limited) as host:
            with pytest.raises(MCPError) as refused:
                await host.call_tool("chat_completion", {"prompt": "文" * 10_000})
            after = await host.call_tool("chat_completion", {"prompt": "文" * 1_000})
    assert LIMIT_SAID in str(refused.value)
    assert not after.is_error


@pytest.mark.parametrize("limited", ["streamable-http"], indirect=True)
@pytest.mark.parametrize("chunked", [False, True])
def test_the_refusal_is_a_413_with_the_error_for_the_request_s_id(limited: str, chunked: bool):
    body = json.dumps(TOOL_CALL).encode()
    content: Any = iter([body[:5000], body[5000:]]) if chunked else body
    answer = httpx.post(limited, content=content, timeout=10,
                        headers={**MCP_HEADERS, "Content-Type": "application/json"})
    assert (answer.status_code, answer.headers["content-type"]) == (413, "application/json")
    error = answer.json()
    assert (error["id"], error["error"]["code"]) == (7, -32600)
    size = "" if chunked else f" of {len(body):,} bytes"
    assert error["error"]["message"].startswith(f"request body{size} {LIMIT_SAID}")


@pytest.mark.parametrize("limited", ["streamable-http"], indirect=True)
def test_a_chunked_body_within_the_limit_is_served(limited: str):
    answer = httpx.post(limited, content=iter([json.dumps(INIT).encode()]), timeout=10,
                        headers={**MCP_HEADERS, "Content-Type": "application/json"})
    assert answer.status_code == 200, answer.text


def test_a_request_without_a_token_is_told_401_before_its_size():
    app = http_app(tiny_server(), "streamable-http", host="127.0.0.1",
                   config=ServerConfig(max_body_bytes=10_000))
    body = json.dumps(TOOL_CALL).encode()
    headers = {**MCP_HEADERS, "Content-Type": "application/json"}
    with serving_app(app) as port:
        url = f"http://127.0.0.1:{port}/mcp"
        assert httpx.post(url, content=body, headers=headers, timeout=10).status_code == 401
        with_token = httpx.post(url, content=body, timeout=10,
                                headers={**headers, "Authorization": f"Bearer {ALICE}"})
        assert with_token.status_code == 413
        assert "server.max_body_bytes" in with_token.json()["error"]["message"]


def sent_by_a_client(arguments: dict[str, Any], *, ascii_only: bool = False) -> int:
    """The bytes of a tools/call body as the SDK's client (httpx) writes it, or as a client
    that escapes every non-ASCII character does."""
    message = JSONRPCRequest(jsonrpc="2.0", id=1, method="tools/call",
                             params={"name": "chat_completion", "arguments": arguments})
    dumped = message.model_dump(by_alias=True, mode="json", exclude_unset=True)
    return len(json.dumps(dumped, ensure_ascii=ascii_only, separators=(",", ":")).encode())


@pytest.mark.parametrize("server", ["", "server: {max_chars: 1000000}\n"],
                         ids=["default", "raised-max_chars"])
@pytest.mark.parametrize("char", ["a", "é", "文", "😀", '"', "\n"],
                         ids=["ascii", "latin", "cjk", "emoji", "quote", "newline"])
def test_a_prompt_within_max_chars_fits_the_default_body_limit_in_any_script(server: str,
                                                                              char: str):
    limits = parse_config(ONE_MODEL + server, env={}).server
    prompt = {"prompt": char * limits.max_chars}
    messages = {"messages": [{"role": "user", "content": char * (limits.max_chars // 200)}
                             for _ in range(200)], "metadata": {"run": "nightly"}}
    assert sent_by_a_client(prompt) <= limits.max_body_bytes
    assert sent_by_a_client(messages) <= limits.max_body_bytes


def test_at_the_defaults_escaped_text_fits_too_and_a_limit_set_is_kept():
    limits = ServerConfig()
    assert sent_by_a_client({"prompt": "文" * limits.max_chars},
                            ascii_only=True) <= limits.max_body_bytes
    assert ServerConfig(max_chars=1_000_000, max_body_bytes=5000).max_body_bytes == 5000


PROMPT = "PATIENT-Jane-Roe diagnosis: stage 2 carcinoma"


async def sse_data(lines: AsyncIterator[str], event: str) -> str:
    """The data of the next `event` on an SSE stream read as `lines`."""
    kind = None
    async for line in lines:
        if line.startswith("event:"):
            kind = line.partition(":")[2].strip()
        elif line.startswith("data:") and kind == event:
            return line.partition(":")[2].strip()
    raise AssertionError(f"the stream ended before a {event} event")


class SseSession:
    """An initialized SSE session of `ALICE` on a served app: `send` posts a message (its
    status), `next` reads the data of the next message event."""

    def __init__(self, http: httpx.AsyncClient, endpoint: str,
                 lines: AsyncIterator[str]) -> None:
        self._http, self._endpoint, self._lines = http, endpoint, lines

    async def send(self, content: str) -> int:
        posted = await self._http.post(self._endpoint, content=content,
                                       headers={"Content-Type": "application/json"})
        return posted.status_code

    async def next(self) -> str:
        return await sse_data(self._lines, "message")


@asynccontextmanager
async def sse_session(app: Any) -> AsyncIterator[SseSession]:
    with serving_app(app) as port, anyio.fail_after(15):
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(headers={"Authorization": f"Bearer {ALICE}"},
                                     timeout=10) as http, \
                http.stream("GET", f"{base}/sse") as stream:
            lines = stream.aiter_lines()
            session = SseSession(http, base + await sse_data(lines, "endpoint"), lines)
            await session.send(json.dumps(INIT))
            await session.next()
            await session.send(json.dumps({"jsonrpc": "2.0",
                                           "method": "notifications/initialized"}))
            yield session


@contextmanager
def mcp_session(app: Any) -> Iterator[tuple[httpx.Client, str]]:
    """An initialized streamable-HTTP session of `ALICE` on a served app: a client that
    sends its headers, and the endpoint's URL."""
    headers = {**MCP_HEADERS, "Content-Type": "application/json",
               "Authorization": f"Bearer {ALICE}"}
    with serving_app(app) as port, httpx.Client(headers=headers, timeout=10) as http:
        url = f"http://127.0.0.1:{port}/mcp"
        session = http.post(url, json=INIT).headers["mcp-session-id"]
        http.headers.update({"mcp-session-id": session, "mcp-protocol-version": "2025-06-18"})
        http.post(url, json={"jsonrpc": "2.0", "method": "notifications/initialized"})
        yield http, url


@pytest.mark.anyio
async def test_an_sse_message_that_is_no_json_rpc_gets_an_error_for_its_id_and_is_not_logged(
        caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.INFO, logger="mcp.server.sse")  # as MESSAGE_LOGGERS pins it
    app = http_app(tiny_server(), "sse", host="127.0.0.1", config=ServerConfig())
    listed = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": [{"prompt": PROMPT}]}
    cut = ('{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"whoami",'
           '"arguments":{"prompt":"' + PROMPT)
    whoami = {"jsonrpc": "2.0", "id": 3, "method": "tools/call",
              "params": {"name": "whoami", "arguments": {}}}
    async with sse_session(app) as sse:
        # A 400 would make the SDK's SSE client stop posting on the session.
        assert [await sse.send(json.dumps(listed)), await sse.send(cut)] == [202, 202]
        refused = [json.loads(await sse.next()) for _ in range(2)]
        assert await sse.send(json.dumps(whoami)) == 202
        after = json.loads(await sse.next())
    assert [(r["id"], r["error"]["code"]) for r in refused] == [(1, -32600), (2, -32700)]
    assert "params" in refused[0]["error"]["message"]
    assert "not JSON" in refused[1]["error"]["message"]
    assert (after["id"], after["result"]["content"][0]["text"]) == (3, "alice")
    assert "refused a message on an SSE session" in caplog.text
    assert "PATIENT" not in caplog.text and "carcinoma" not in caplog.text
    assert "Traceback" not in caplog.text


def echoing_server() -> Any:
    server = tiny_server()

    @server.tool()
    def echo(text: str) -> str:
        """`text` as the server read it."""
        return text

    return server


# Valid JSON that pydantic's reader refuses: lone halves of an emoji (either case), beside
# a whole one, an escaped backslash that is no escape, and a lone half as an argument's name.
HALVES = ('{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"echo","arguments":'
          '{"text":"hi \\ud83d \\uDE00 \\ud83d\\ude00 \\\\ud83d"}}}')
HALF_A_NAME = ('{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"whoami",'
               '"arguments":{"\\ud800":1}}}')
MENDED = "hi \ufffd \ufffd 😀 \\ud83d"


def test_half_an_emoji_over_streamable_http_arrives_as_u_fffd_and_is_answered_for_its_id():
    app = http_app(echoing_server(), "streamable-http", host="127.0.0.1", config=ServerConfig())
    with mcp_session(app) as (http, url):
        answers = [http.post(url, content=HALVES % 2), http.post(url, content=HALF_A_NAME % 3)]
        cut = http.post(url, content=(HALVES % 4)[:-3])
    assert [a.status_code for a in answers] == [200, 200]
    echoed, named = (json.loads(a.text.partition("data: ")[2]) for a in answers)
    assert (echoed["id"], echoed["result"]["content"][0]["text"]) == (2, MENDED)
    assert (named["id"], named["result"]["content"][0]["text"]) == (3, "alice")
    # A body that is not JSON for another reason gets the SDK's answer, as before.
    assert (cut.status_code, cut.json()["error"]["code"]) == (400, -32700)


@pytest.mark.anyio
async def test_half_an_emoji_over_sse_arrives_as_u_fffd_and_is_answered_for_its_id():
    app = http_app(echoing_server(), "sse", host="127.0.0.1", config=ServerConfig())
    async with sse_session(app) as sse:
        assert [await sse.send(HALVES % 2), await sse.send(HALF_A_NAME % 3)] == [202, 202]
        echoed, named = [json.loads(await sse.next()) for _ in range(2)]
    assert (echoed["id"], echoed["result"]["content"][0]["text"]) == (2, MENDED)
    assert (named["id"], named["result"]["content"][0]["text"]) == (3, "alice")


def test_a_body_over_the_limit_whose_id_is_half_an_emoji_is_refused_with_u_fffd_for_it():
    app = http_app(tiny_server(), "streamable-http", host="127.0.0.1",
                   config=ServerConfig(max_body_bytes=10_000))
    body = json.dumps({**TOOL_CALL, "id": "\ud83d"}).encode()  # ASCII: the id as "\ud83d"
    with serving_app(app) as port:
        refused = httpx.post(f"http://127.0.0.1:{port}/mcp", content=body, timeout=10,
                             headers={**MCP_HEADERS, "Content-Type": "application/json",
                                      "Authorization": f"Bearer {ALICE}"})
    assert refused.status_code == 413  # not a 500 from failing to write the id
    assert (refused.json()["id"], refused.json()["error"]["code"]) == ("\ufffd", -32600)


ODD_IDS = ["1.5", "1.0", "null", "true", "1e3"]


def test_a_request_whose_id_is_no_string_or_integer_is_answered_over_streamable_http():
    app = http_app(tiny_server(), "streamable-http", host="127.0.0.1", config=ServerConfig())
    with mcp_session(app) as (http, url):
        refused = [http.post(url, content=f'{{"jsonrpc":"2.0","id":{odd},"method":"ping"}}')
                   for odd in ODD_IDS]
        # an "id" among a notification's params is no id of its own: taken, no answer
        taken = http.post(url, json={"jsonrpc": "2.0", "method": "notifications/cancelled",
                                     "params": {"requestId": 9, "id": 1.5}})
    assert [(r.status_code, r.json()["id"], r.json()["error"]["code"]) for r in refused] == \
        [(400, None, -32600)] * len(ODD_IDS)
    assert "id: must be a string or an integer" in refused[0].json()["error"]["message"]
    assert taken.status_code == 202


@pytest.mark.anyio
async def test_a_request_whose_id_is_no_string_or_integer_is_answered_over_sse():
    app = http_app(tiny_server(), "sse", host="127.0.0.1", config=ServerConfig())
    async with sse_session(app) as sse:
        assert await sse.send('{"jsonrpc":"2.0","id":1.5,"method":"ping"}') == 202
        refused = json.loads(await sse.next())
        assert await sse.send('{"jsonrpc":"2.0","id":4,"method":"ping"}') == 202
        after = json.loads(await sse.next())
    assert (refused["id"], refused["error"]["code"]) == (None, -32600)
    assert after == {"jsonrpc": "2.0", "id": 4, "result": {}}


def test_a_batch_is_refused_saying_so_without_the_values_posted():
    batch = [{"jsonrpc": "2.0", "id": 5, "method": "ping"},
             {"jsonrpc": "2.0", "id": 6, "method": "tools/call",
              "params": {"name": "whoami", "arguments": {"prompt": PROMPT}}}]
    with mcp_session(http_app(tiny_server(), "streamable-http", host="127.0.0.1",
                              config=ServerConfig())) as (http, url):
        refused = http.post(url, json=batch)
        answered = http.post(url, json={"jsonrpc": "2.0", "id": 7, "method": "ping"})
    assert (refused.status_code, refused.json()["id"], refused.json()["error"]["code"]) == \
        (400, None, -32600)
    assert "a batch (a JSON array of messages) is not taken" in refused.json()["error"]["message"]
    assert "PATIENT" not in refused.text
    assert answered.status_code == 200
