"""What a host sees at the protocol level: content blocks of the version it negotiated, the
`logging` capability behind the log notifications, JSON booleans refused as numbers, and an
answer (for its id) to a message that is too large or no message at all."""

from __future__ import annotations

import asyncio
import json
import subprocess
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from mcp import Client
from mcp.server.mcpserver import MCPServer
from mcp.shared.message import SessionMessage
from mcp.types import jsonrpc_message_adapter

from mcp_router.config import parse_config
from mcp_router.server import create_server
from mcp_router.server.oversized import refusal, trailing_members
from mcp_router.server.stdio import MAX_LINE_BYTES, PipeReader
from tests.shared.served import served
from tests.shared.test_http_auth import MCP_HEADERS
from tests.test_stdio import echo_params

pytestmark = pytest.mark.anyio

LONG = """\
providers:
  sim: {{kind: openai, base_url: "{url}/v1", api_key_env: null}}
routes:
  default: {{targets: [{{provider: sim, model: "gpt-4o-mini+tokens-6000"}}]}}
cache: {{enabled: false}}
output: {{max_result_tokens: 2000, page_chars: 1000}}
"""
ALERTING = """\
providers:
  sim: {{kind: openai, base_url: "{url}/v1", api_key_env: null}}
routes:
  default: {{targets: [{{provider: sim, model: gpt-4o-mini}}]}}
cache: {{enabled: false}}
prices: {{"sim/*": {{input_per_mtok: 1, output_per_mtok: 1}}}}
budgets: {{daily_usd: 100, alert_daily_usd: 0.0000001}}
"""


class RawHost:
    """A host speaking JSON-RPC to the server in memory, message by message, so it can pick
    the protocol version it offers and see every notification."""

    def __init__(self, send: Any, receive: Any) -> None:
        self._send, self._receive = send, receive
        self.notifications: list[dict[str, Any]] = []
        self._next = 0

    async def request(self, method: str, params: dict[str, Any] | None = None
                      ) -> dict[str, Any]:
        self._next += 1
        await self.notify(method, params, id=self._next)
        with anyio.fail_after(30):
            while True:
                message = (await self._receive.receive()).message.model_dump(
                    by_alias=True, mode="json", exclude_unset=True)
                if message.get("id") == self._next:
                    return message
                self.notifications.append(message)

    async def notify(self, method: str, params: dict[str, Any] | None = None,
                     **more: Any) -> None:
        message = {"jsonrpc": "2.0", "method": method, **more}
        if params is not None:
            message["params"] = params
        await self._send.send(SessionMessage(jsonrpc_message_adapter.validate_python(message)))


@asynccontextmanager
async def raw_host(server: MCPServer[Any], version: str) -> AsyncIterator[tuple[RawHost, dict]]:
    """A `RawHost` that has initialized at `version`, and the server's initialize result."""
    to_server, server_in = anyio.create_memory_object_stream[Any](16)
    server_out, to_host = anyio.create_memory_object_stream[Any](16)
    lowlevel = server._lowlevel_server
    async with to_server, server_in, server_out, to_host, anyio.create_task_group() as tasks:
        tasks.start_soon(lowlevel.run, server_in, server_out,
                         lowlevel.create_initialization_options())
        host = RawHost(to_server, to_host)
        init = await host.request("initialize", {
            "protocolVersion": version, "capabilities": {},
            "clientInfo": {"name": "raw-host", "version": "1"}})
        await host.notify("notifications/initialized")
        yield host, init["result"]
        tasks.cancel_scope.cancel()


# 1. A truncated answer carries only content types of the version the host negotiated.

@pytest.mark.parametrize("version", ["2024-11-05", "2025-03-26"])
async def test_a_host_older_than_resource_links_gets_a_truncated_answer_without_one(
        sim: Any, tmp_path: Path, version: str):
    server = create_server(parse_config(LONG.format(url=sim.url), env={}), home=tmp_path, env={})
    async with raw_host(server, version) as (host, init):
        assert init["protocolVersion"] == version
        called = await host.request("tools/call", {
            "name": "chat_completion", "arguments": {"prompt": "long", "max_tokens": 8000}})
        result = called["result"]
        assert [block["type"] for block in result["content"]] == ["text"]
        said = json.loads(result["content"][0]["text"])
        assert said["truncated"] is True and said["pages"] > 1
        page = await host.request("resources/read", {"uri": said["full_text"]})
    assert page["result"]["contents"][0]["text"]


async def test_a_host_on_2025_06_18_still_gets_the_link_to_the_whole_answer(
        sim: Any, tmp_path: Path):
    server = create_server(parse_config(LONG.format(url=sim.url), env={}), home=tmp_path, env={})
    async with raw_host(server, "2025-06-18") as (host, _):
        called = await host.request("tools/call", {
            "name": "chat_completion", "arguments": {"prompt": "long", "max_tokens": 8000}})
    content = called["result"]["content"]
    assert [block["type"] for block in content] == ["text", "resource_link"]
    assert content[1]["uri"] == json.loads(content[0]["text"])["full_text"]


# 3. Log notifications come with the `logging` capability, at the level the host sets.

async def test_the_server_declares_logging_and_takes_the_level_a_host_sets(
        sim: Any, tmp_path: Path):
    server = create_server(parse_config(ALERTING.format(url=sim.url), env={}), home=tmp_path,
                           env={})
    async with raw_host(server, "2025-06-18") as (host, init):
        set_level = await host.request("logging/setLevel", {"level": "warning"})
        await host.request("tools/call", {"name": "chat_completion",
                                          "arguments": {"prompt": "hi"}})
    assert init["capabilities"]["logging"] == {}
    assert set_level["result"] == {}
    logged = [n for n in host.notifications if n["method"] == "notifications/message"]
    assert [n["params"]["level"] for n in logged] == ["warning"]
    assert "over the daily alert threshold" in logged[0]["params"]["data"]


async def test_a_host_that_asks_for_errors_only_gets_no_warning_but_the_alert_in_the_result(
        sim: Any, tmp_path: Path):
    server = create_server(parse_config(ALERTING.format(url=sim.url), env={}), home=tmp_path,
                           env={})
    async with raw_host(server, "2025-03-26") as (host, _):
        await host.request("logging/setLevel", {"level": "error"})
        called = await host.request("tools/call", {"name": "chat_completion",
                                                   "arguments": {"prompt": "hi"}})
    assert [n["method"] for n in host.notifications
            if n["method"] == "notifications/message"] == []
    assert called["result"]["structuredContent"]["budget_alert"]


# 4. JSON booleans are no numbers.

@pytest.mark.parametrize("field", ["max_tokens", "timeout_s", "temperature", "top_p",
                                   "cache_ttl_s"])
@pytest.mark.parametrize("value", [True, False])
async def test_a_boolean_for_a_number_is_refused_naming_the_field(
        sim: Any, tmp_path: Path, field: str, value: bool):
    server = create_server(parse_config(ALERTING.format(url=sim.url), env={}), home=tmp_path,
                           env={})
    async with Client(server) as client:
        result = await client.call_tool("chat_completion", {"prompt": "hi", field: value})
    assert result.is_error
    assert result.content[0].text == (  # type: ignore[union-attr]
        f"Error executing tool chat_completion: {field}: must be a number, not true or false")
    assert sim.state.requests == []


async def test_numbers_are_taken_as_before_and_the_published_schema_is_unchanged(
        sim: Any, tmp_path: Path):
    server = create_server(parse_config(ALERTING.format(url=sim.url), env={}), home=tmp_path,
                           env={})
    async with Client(server) as client:
        result = await client.call_tool("chat_completion", {
            "prompt": "hi", "max_tokens": 100.0, "temperature": 1, "top_p": 0.5,
            "timeout_s": 30, "cache_ttl_s": 0})
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    assert not result.is_error, result.content
    assert sim.state.requests[-1]["body"]["max_tokens"] == 100
    schema = tools["chat_completion"].input_schema["properties"]
    left_out = [{"type": "null"}, {"enum": ["", None]}]
    assert schema["max_tokens"]["anyOf"] == [{"exclusiveMinimum": 0, "type": "integer"},
                                             *left_out]
    assert schema["temperature"]["anyOf"] == [{"maximum": 2, "minimum": 0, "type": "number"},
                                              *left_out]
    assert schema["top_p"]["anyOf"] == [{"exclusiveMinimum": 0, "maximum": 1,
                                         "type": "number"}, *left_out]
    assert schema["timeout_s"]["anyOf"] == [{"exclusiveMinimum": 0, "maximum": 600,
                                             "type": "number"}, *left_out]
    assert schema["cache_ttl_s"]["anyOf"] == [{"minimum": 0, "type": "number"}, *left_out]


# 2. A message over the limit is answered for its id, wherever the sender wrote it.

TS_HEAD = b'{"method": "tools/call", "params": {"name": "chat_completion", "arguments": {'
TS_TAIL = b'}}, "jsonrpc": "2.0", "id": 7}'


async def answers(data: bytes, limit: int = 200) -> tuple[list[Any], list[dict[str, Any]]]:
    """What a PipeReader fed `data` hands on, and what it answers its sender."""
    answered: list[SessionMessage] = []

    async def answer(message: SessionMessage) -> None:
        answered.append(message)

    stream = asyncio.StreamReader(limit=limit)
    stream.feed_data(data)
    stream.feed_eof()
    handed = [item.message.model_dump(by_alias=True, exclude_unset=True)
              if isinstance(item, SessionMessage) else type(item).__name__
              async for item in PipeReader(stream, answer)]
    return handed, [m.message.model_dump(by_alias=True, exclude_unset=True) for m in answered]


@pytest.mark.parametrize(("tail", "request_id"), [
    (TS_TAIL, 7),  # JSON.stringify of the TypeScript SDK's `{...request, jsonrpc, id}`
    (b'}} , "jsonrpc" : "2.0" ,\t "id" : "call-7" }  \r', "call-7"),
])
async def test_a_line_over_the_limit_with_its_id_last_is_answered_for_that_id(
        tail: bytes, request_id: object):
    arguments = b'"prompt": "' + b"x" * 10_000 + b'"'
    handed, answered = await answers(TS_HEAD + arguments + tail + b"\n"
                                     + b'{"jsonrpc": "2.0", "id": 8, "method": "ping"}\n')
    assert [m["id"] for m in handed] == [8]
    assert [(a["id"], a["error"]["code"]) for a in answered] == [(request_id, -32600)]


@pytest.mark.parametrize("tail", [
    b'"id": 5}}, "jsonrpc": "2.0"}',  # the last "id" is the arguments', not the request's
    b'"x": {"id": 5}, "jsonrpc": "2.0"}}',  # nested, with members after it
    b'"x": "a \\"id\\": 5}", "jsonrpc": "2.0"}',  # inside a string
    b'"x": 1}}, "jsonrpc": "2.0", "id": 5',  # cut before its end
])
def test_an_id_that_is_not_the_top_level_one_at_the_end_is_not_taken(tail: bytes):
    assert trailing_members(tail) == {}
    error = refusal(TS_HEAD + b'"y": "', "over", tail)
    assert error is not None and error.id is None


def test_a_response_over_the_limit_with_its_id_last_gets_no_answer():
    assert refusal(b'{"result": {"content": [{"text": "', "over",
                   b'"}]}, "jsonrpc": "2.0", "id": 3}') is None


@pytest.mark.parametrize("transport", ["sse", "streamable-http"])
async def test_an_http_body_over_the_limit_with_its_id_last_is_answered_for_that_id(
        sim: Any, tmp_path: Path, transport: str):
    config = LONG.format(url=sim.url) + "server: {max_body_bytes: 2000}\n"
    body = TS_HEAD + b'"prompt": "' + b"x" * 50_000 + b'"' + TS_TAIL
    headers = {**MCP_HEADERS, "Content-Type": "application/json"}
    with served(config, transport, tmp_path) as url, anyio.fail_after(30):
        if transport == "streamable-http":
            answer = httpx.post(url, content=body, headers=headers, timeout=10)
            assert answer.status_code == 413
            error = answer.json()
        else:
            error = await _over_sse(url, body, headers)
    assert (error["id"], error["error"]["code"]) == (7, -32600)
    assert "server.max_body_bytes" in error["error"]["message"]


def ts_call(n: int, text: str) -> bytes:
    """A tools/call of the echo fixture as the TypeScript SDK writes it: the id last."""
    return json.dumps({"method": "tools/call", "params": {"name": "echo",
                                                          "arguments": {"text": text}},
                       "jsonrpc": "2.0", "id": n}).encode()


@pytest.mark.slow
def test_a_host_writing_the_id_last_gets_the_error_for_its_request_over_stdio():
    opening = [json.dumps(line).encode() for line in [
        {"jsonrpc": "2.0", "id": 1, "method": "initialize",
         "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                    "clientInfo": {"name": "ts-host", "version": "0"}}},
        {"jsonrpc": "2.0", "method": "notifications/initialized"}]]
    lines = b"\n".join([*opening, ts_call(2, "x" * (MAX_LINE_BYTES + 1)), ts_call(3, "after")])
    params = echo_params()
    with subprocess.Popen([params.command, *params.args], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                          env=params.env) as proc:
        assert proc.stdin is not None and proc.stdout is not None
        stdin, stdout = proc.stdin, proc.stdout

        def write() -> None:  # stdin closes once the answers are in: a closed one ends calls
            stdin.write(lines + b"\n")
            stdin.flush()

        try:
            writer = threading.Thread(target=write)
            writer.start()
            answers = {}
            for _ in range(3):
                answer = json.loads(stdout.readline())
                answers[answer["id"]] = answer
            writer.join(timeout=30)
            stdin.close()
            assert proc.wait(timeout=30) == 0
        finally:
            proc.kill()
    assert answers[2]["error"]["code"] == -32600
    assert "over the 64 MiB limit" in answers[2]["error"]["message"]
    assert answers[3]["result"]["structuredContent"] == {"length": 5, "tail": "after"}


async def _over_sse(url: str, body: bytes, headers: dict[str, str]) -> dict[str, Any]:
    """The message the SSE stream carries after `body` is posted to its session."""
    async with httpx.AsyncClient(timeout=10) as http, \
            http.stream("GET", url, headers={"Accept": "text/event-stream"}) as events:
        lines = events.aiter_lines()
        async for line in lines:
            if line.startswith("data: ") and "session_id=" in line:
                endpoint = url.rsplit("/", 1)[0] + line.removeprefix("data: ")
                break
        posted = await http.post(endpoint, content=body, headers=headers)
        assert posted.status_code == 202
        async for line in lines:
            if line.startswith("data: "):
                return json.loads(line.removeprefix("data: "))
    raise AssertionError("the event stream ended without an answer")


# 5. A line that is no JSON-RPC message is answered, as JSON-RPC asks, unless it has no id.

@pytest.mark.parametrize(("line", "code", "request_id", "said"), [
    (b'{"jsonrpc": "2.0", "id": 5, "method": "tools/list", "params": [1, 2]}', -32600, 5,
     "Invalid request: params: Input should be a valid dictionary"),
    (b'{"jsonrpc": "2.0", "id": "six", "method": 42}', -32600, "six",
     "Invalid request: method: Input should be a valid string"),
    (b'{"jsonrpc": "1.0", "id": 6, "method": "ping"}', -32600, 6,
     "Invalid request: jsonrpc: Input should be '2.0'"),
    (b'[{"jsonrpc": "2.0", "id": 1, "method": "ping"}]', -32600, None,
     "Invalid request: a batch (a JSON array of messages) is not taken: send each message on "
     "its own (protocol 2025-06-18 and later have no batches)"),
    (b'"ping"', -32600, None, "Invalid request: a message must be one JSON object"),
    (b'{"jsonrpc": "2.0", "id": 7, "method": "tools/list"', -32700, None,
     "Parse error: the line is not JSON: Expecting ',' delimiter at character 51"),
    (b"\xff\xfenot json", -32700, None, "Parse error: the line is not JSON"),
])
async def test_a_line_that_is_no_message_is_answered_and_reading_goes_on(
        line: bytes, code: int, request_id: object, said: str):
    handed, answered = await answers(
        line + b"\n" + b'{"jsonrpc": "2.0", "id": 8, "method": "ping"}\n', limit=1 << 16)
    assert handed == ["ValidationError", {"jsonrpc": "2.0", "id": 8, "method": "ping"}]
    assert answered == [{"jsonrpc": "2.0", "id": request_id,
                         "error": {"code": code, "message": said}}]


@pytest.mark.parametrize("line", [
    b'{"jsonrpc": "2.0", "method": "notifications/progress", "params": [1]}',  # no id
    b'{"jsonrpc": "2.0", "id": 3, "result": 5}',  # a response
    b'{"jsonrpc": "2.0", "id": 3, "error": "bad"}',
])
async def test_a_notification_or_response_that_is_no_message_gets_no_answer(line: bytes):
    handed, answered = await answers(line + b"\n", limit=1 << 16)
    assert (handed, answered) == (["ValidationError"], [])


@pytest.mark.parametrize("line", [
    b'{"jsonrpc": "2.0", "id": 1.5, "method": "ping"}',
    b'{"jsonrpc": "2.0", "id": 1.0, "method": "tools/list"}',
    b'{"jsonrpc": "2.0", "id": null, "method": "ping"}',
    b'{"jsonrpc": "2.0", "id": true, "method": "ping"}',
    b'{"jsonrpc": "2.0", "method": "ping", "\\u0069d": [7]}',
    b'{"jsonrpc": "2.0", "id": 2.5, "method": "ping", "params": {"note": "\\ud83d"}}',
])
async def test_a_request_whose_id_is_no_string_or_integer_is_answered_not_dropped(line: bytes):
    """The SDK's parser takes such a line for a notification (it ignores the id), so without
    an answer the host would wait for one until its own timeout. MCP ids are strings or
    integers, never null; one that cannot be echoed is answered with id null."""
    handed, answered = await answers(
        line + b"\n" + b'{"jsonrpc": "2.0", "id": 8, "method": "ping"}\n', limit=1 << 16)
    assert handed == [{"jsonrpc": "2.0", "id": 8, "method": "ping"}]
    assert answered == [{"jsonrpc": "2.0", "id": None, "error": {
        "code": -32600, "message": "Invalid request: id: must be a string or an integer"}}]


async def test_a_notification_naming_an_id_in_its_params_is_taken_without_an_answer():
    line = (b'{"jsonrpc": "2.0", "method": "notifications/cancelled", "params": '
            b'{"requestId": "id", "reason": "caf\\u00e9", "extra": {"id": 1.5}}}\n')
    handed, answered = await answers(line, limit=1 << 16)
    assert answered == []
    assert handed == [{"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {
        "requestId": "id", "reason": "café", "extra": {"id": 1.5}}}]


async def test_a_notification_written_with_a_null_id_is_taken_as_one():
    """As JSON-RPC 1.0 clients write them: dropping a cancellation would leave a call running."""
    line = (b'{"jsonrpc": "2.0", "id": null, "method": "notifications/cancelled", "params": '
            b'{"requestId": 4}}\n')
    handed, answered = await answers(line, limit=1 << 16)
    assert answered == []
    assert handed == [{"jsonrpc": "2.0", "method": "notifications/cancelled",
                       "params": {"requestId": 4}}]


async def test_a_line_nested_past_reading_is_answered_and_reading_goes_on():
    """`[[[…]]]` deeper than Python's recursion limit: answered as not JSON, not a reader that
    raises and ends the stdio server."""
    handed, answered = await answers(b"[" * 100_000 + b"]" * 100_000 + b"\n"
                                     + b'{"jsonrpc": "2.0", "id": 8, "method": "ping"}\n',
                                     limit=2**24)
    assert handed[-1]["id"] == 8
    assert [(a["id"], a["error"]["code"]) for a in answered] == [(None, -32700)]


async def test_a_request_with_arguments_nested_past_reading_is_answered_for_its_id():
    nested = b"[" * 5_000 + b"]" * 5_000
    line = (b'{"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": '
            b'"chat_completion", "arguments": {"prompt": ' + nested + b"}}}\n")
    handed, answered = await answers(line + b'{"jsonrpc": "2.0", "id": 8, "method": "ping"}\n',
                                     limit=2**24)
    assert handed[-1]["id"] == 8
    assert [(a["id"], a["error"]["code"], a["error"]["message"]) for a in answered] == [
        (7, -32600, "Invalid request: params.arguments.prompt: nested too deeply to read")]


async def test_a_request_nested_past_reading_with_its_id_last_is_answered_for_that_id():
    nested = b'{"a": ' * 5_000 + b"1" + b"}" * 5_000
    line = (b'{"method": "tools/call", "params": {"name": "chat_completion", "arguments": '
            b'{"prompt": "hi", "metadata": ' + nested + b'}}, "jsonrpc": "2.0", "id": 7}\n')
    handed, answered = await answers(line, limit=2**24)
    assert handed == ["ValidationError"]
    assert answered == [{"jsonrpc": "2.0", "id": 7, "error": {
        "code": -32600,
        "message": "Invalid request: params.arguments.metadata: nested too deeply to read"}}]


async def test_a_request_pydantic_cannot_read_but_python_can_is_taken_as_sent():
    """Valid JSON that pydantic's reader refuses (a lone UTF-16 surrogate escape, what a
    JavaScript host sends after cutting an emoji in two; nesting past 200 levels) reaches
    the tools as the in-memory transport hands it, not an invalid request."""
    deep = b'{"a": ' * 300 + b"1" + b"}" * 300
    lines = [b'{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "c", '
             b'"arguments": {"prompt": "smile \\ud83d"}}}',
             b'{"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "c", '
             b'"arguments": {"metadata": ' + deep + b"}}}"]
    handed, answered = await answers(b"\n".join(lines) + b"\n", limit=1 << 16)
    assert answered == []
    assert handed[0]["params"]["arguments"] == {"prompt": "smile \ud83d"}
    assert handed[1]["params"]["arguments"]["metadata"] == json.loads(deep)


def test_an_oversized_message_whose_tail_nests_past_reading_is_refused_without_an_id():
    head = b'{"jsonrpc": "2.0", "method": "tools/call", "params": {"a": "'
    tail = b'", "x": 1}, "id": ' + b"[" * 1900 + b"]" * 1900 + b"}"
    error = refusal(head, "too large", tail)
    assert error is not None and error.id is None
