"""The stdio transport: one JSON-RPC message a line over the event loop's pipes, and a wire
that nothing else in the process can write into."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import anyio
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.shared.message import SessionMessage
from mcp.types import JSONRPCRequest

from mcp_router.server.stdio import PipeReader
from mcp_router.server.terminal import TerminalLines

ECHO = str(Path(__file__).parent / "fixtures" / "stdio_echo.py")
REPO = str(Path(__file__).resolve().parents[1])


def request(n: int, method: str = "ping") -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": n, "method": method}).encode()


def reader_of(data: bytes, limit: int = 1 << 16) -> PipeReader:
    stream = asyncio.StreamReader(limit=limit)
    stream.feed_data(data)
    stream.feed_eof()
    return PipeReader(stream)


async def ids(reader: PipeReader) -> list[int | str]:
    return [item.message.id if isinstance(item, SessionMessage)
            and isinstance(item.message, JSONRPCRequest) else type(item).__name__
            async for item in reader]


@pytest.mark.anyio
async def test_reader_takes_a_message_a_line_and_the_last_without_its_newline():
    data = request(1) + b"\n\n  \n" + request(2) + b"\r\n" + request(3)
    assert await ids(reader_of(data)) == [1, 2, 3]


@pytest.mark.anyio
async def test_reader_hands_on_a_line_that_is_not_json_rpc_and_reads_on(
        caplog: pytest.LogCaptureFixture):
    data = request(1) + b"\n{not json\n" + b'{"jsonrpc": "2.0"}\n' + request(2) + b"\n"
    assert await ids(reader_of(data)) == [1, "ValidationError", "ValidationError", 2]
    assert "not a JSON-RPC message" in caplog.text


@pytest.mark.anyio
@pytest.mark.parametrize("chunk", [1, 7, 4096])
async def test_reader_drops_a_line_over_the_limit_and_reads_the_next(
        chunk: int, caplog: pytest.LogCaptureFixture):
    long = b'{"jsonrpc": "2.0", "id": 9, "method": "' + b"x" * 500 + b'"}'
    data = request(1) + b"\n" + long + b"\n" + request(2) + b"\n"
    stream = asyncio.StreamReader(limit=100)
    reader = PipeReader(stream)

    async def feed() -> None:
        for start in range(0, len(data), chunk):
            stream.feed_data(data[start:start + chunk])
            await asyncio.sleep(0)
        stream.feed_eof()

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(feed)
        assert await ids(reader) == [1, 2]
    assert "was dropped" in caplog.text


async def answers_to_overlong(first: bytes) -> list[dict[str, object]]:
    """What the reader answers to a line over its limit that begins with `first`."""
    answered: list[SessionMessage] = []

    async def answer(message: SessionMessage) -> None:
        answered.append(message)

    stream = asyncio.StreamReader(limit=200)
    stream.feed_data(first + b"x" * 500 + b'"}}\n' + request(2) + b"\n")
    stream.feed_eof()
    assert await ids(PipeReader(stream, answer)) == [2]
    return [m.message.model_dump(by_alias=True, exclude_unset=True) for m in answered]


OVER_THE_LIMIT = {"code": -32600, "message": "message over the 64 MiB limit of mcp-router's "
                                             "stdin: dropped, not read"}


@pytest.mark.anyio
async def test_a_request_over_the_limit_is_answered_with_an_error_for_its_id():
    first = b'{"jsonrpc": "2.0", "id": "call-7", "method": "tools/call", "params": {"a": "'
    assert await answers_to_overlong(first) == [
        {"jsonrpc": "2.0", "id": "call-7", "error": OVER_THE_LIMIT}]


@pytest.mark.anyio
@pytest.mark.parametrize("first", [
    b'{"jsonrpc": "2.0", "method": "tools/call", "params": {"id": 5, "a": "',  # id after params
    b'{"jsonrpc": "2.0", "id": 123456',  # an id cut where the first bytes end
    b'not json at all "',
])
async def test_a_line_over_the_limit_whose_id_cannot_be_read_is_answered_for_id_null(
        first: bytes):
    assert await answers_to_overlong(first) == [
        {"jsonrpc": "2.0", "id": None, "error": OVER_THE_LIMIT}]


@pytest.mark.anyio
async def test_a_response_over_the_limit_gets_no_answer():
    first = b'{"jsonrpc": "2.0", "id": 3, "result": {"a": "'
    assert await answers_to_overlong(first) == []


@pytest.mark.anyio
async def test_reader_ends_at_a_line_over_the_limit_cut_by_the_end_of_input():
    assert await ids(reader_of(request(1) + b"\n" + b"x" * 500, limit=100)) == [1]


@pytest.mark.anyio
async def test_terminal_lines_skip_blank_ones_and_take_the_last_without_its_newline():
    read, write = os.pipe()
    lines = TerminalLines(read)
    os.write(write, b'{"a": 1}\n\n  \n{"b"')
    os.write(write, b": 2}")
    os.close(write)
    with anyio.fail_after(10):
        assert [line async for line in lines] == ['{"a": 1}', '{"b": 2}']
    lines.close()
    os.close(read)


@pytest.mark.anyio
async def test_waiting_for_a_terminal_line_is_cancelled_at_once_and_reading_goes_on():
    read, write = os.pipe()
    lines = TerminalLines(read)
    with anyio.fail_after(10):
        with anyio.move_on_after(0.05) as waited:
            await lines.__anext__()  # nothing typed: the reading thread stays blocked
        assert waited.cancelled_caught
        os.write(write, b"typed\n")
        os.close(write)
        assert [line async for line in lines] == ["typed"]
    lines.close()
    os.close(read)


def echo_params() -> StdioServerParameters:
    env = {"PYTHONPATH": REPO, "PATH": os.environ.get("PATH", "")}
    return StdioServerParameters(command=sys.executable, args=[ECHO], env=env)


@pytest.mark.slow
@pytest.mark.anyio
async def test_a_tool_writing_to_stdout_cannot_corrupt_the_protocol():
    big = "é" * 150_000 + "the end."  # a request line well over any pipe buffer
    with anyio.fail_after(30):
        async with Client(echo_params()) as client:
            for _ in range(3):
                result = await client.call_tool("echo", {"text": big})
                assert not result.is_error, result.content
                assert result.structured_content == {"length": len(big), "tail": big[-10:]}


@pytest.mark.slow
def test_stdin_closed_ends_the_server_and_leaves_the_descriptors_as_they_were():
    lines = [
        {"jsonrpc": "2.0", "id": 1, "method": "initialize",
         "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                    "clientInfo": {"name": "raw", "version": "0"}}},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
         "params": {"name": "echo", "arguments": {"text": "hello"}}},
    ]
    with subprocess.Popen([sys.executable, ECHO], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          env=echo_params().env) as proc:
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        try:
            proc.stdin.write(("\n".join(json.dumps(line) for line in lines) + "\n").encode())
            proc.stdin.flush()
            answers = [json.loads(proc.stdout.readline()) for _ in range(2)]
            proc.stdin.close()  # the host has gone: the server ends by itself
            assert proc.wait(timeout=30) == 0
            stderr = proc.stderr.read().decode()
        finally:
            proc.kill()
    assert [a["id"] for a in answers] == [1, 2]
    assert answers[1]["result"]["structuredContent"] == {"length": 5, "tail": "hello"}
    assert "junk from print" in stderr and "junk from a child" in stderr
    assert "after serving: blocking True True" in stderr


@pytest.mark.slow
def test_a_host_sending_a_request_over_the_limit_gets_an_error_for_it_and_serving_goes_on():
    from mcp_router.server.stdio import MAX_LINE_BYTES

    def call(n: int, text: str) -> bytes:
        return json.dumps({"jsonrpc": "2.0", "id": n, "method": "tools/call",
                           "params": {"name": "echo", "arguments": {"text": text}}}).encode()

    opening = [json.dumps(line).encode() for line in [
        {"jsonrpc": "2.0", "id": 1, "method": "initialize",
         "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                    "clientInfo": {"name": "raw", "version": "0"}}},
        {"jsonrpc": "2.0", "method": "notifications/initialized"}]]
    with subprocess.Popen([sys.executable, ECHO], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                          env=echo_params().env) as proc:
        assert proc.stdin is not None and proc.stdout is not None
        try:
            lines = [*opening, call(2, "x" * (MAX_LINE_BYTES + 1)), call(3, "after")]
            # stdin stays open until the answers are in: a host that closes it has gone, and
            # the server then ends the calls still running ("Connection closed").
            writer = threading.Thread(target=lambda: (proc.stdin.write(b"\n".join(lines) + b"\n"),
                                                      proc.stdin.flush()))
            writer.start()
            answers = {}
            for _ in range(3):
                answer = json.loads(proc.stdout.readline())
                answers[answer["id"]] = answer
            writer.join(timeout=30)
            proc.stdin.close()
            assert proc.wait(timeout=30) == 0
        finally:
            proc.kill()
    assert answers[2]["error"]["code"] == -32600
    assert "over the 64 MiB limit" in answers[2]["error"]["message"]
    assert answers[3]["result"]["structuredContent"] == {"length": 5, "tail": "after"}


def test_off_the_main_thread_signals_are_left_alone_and_serving_goes_on():
    from mcp_router.server.stdio import _cancel_on_signal

    outcome: list[str] = []

    async def watch() -> None:
        with anyio.CancelScope() as scope:
            await _cancel_on_signal(scope)  # returns at once: nothing to watch from here
        outcome.append("cancelled" if scope.cancel_called else "left alone")

    worker = threading.Thread(target=anyio.run, args=(watch,))
    worker.start()
    worker.join(timeout=10)
    assert outcome == ["left alone"]


ROUTER_CONFIG = """\
providers:
  up: {kind: openai, base_url: "http://127.0.0.1:9/v1"}
routes:
  d: {targets: [{provider: up, model: m}]}
default_route: d
"""


@pytest.mark.slow
def test_half_an_emoji_or_deep_labels_from_a_javascript_host_get_a_tool_answer(tmp_path: Path):
    """JSON.stringify of a string cut between an emoji's halves writes a lone `\\ud83d`:
    valid JSON that pydantic's reader refuses. Such calls are answered, and an error that
    echoes the half (an unknown argument's name) still reaches the host."""
    config = tmp_path / "c.yaml"
    config.write_text(ROUTER_CONFIG)

    def call(n: int, arguments: str) -> str:
        return (f'{{"jsonrpc": "2.0", "id": {n}, "method": "tools/call", "params": '
                f'{{"name": "chat_completion", "arguments": {arguments}}}}}')

    lines = [json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "raw", "version": "0"}}}),
        json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        call(2, r'{"prompt": "smile \ud83d", "dry_run": true}'),
        call(3, r'{"prompt": "hi", "\ud83d": 1}'),
        call(4, '{"prompt": "hi", "metadata": ' + '{"a": ' * 300 + "1" + "}" * 300 + "}")]
    proc = subprocess.run([sys.executable, "-m", "mcp_router", "--config", str(config)],
                          input="\n".join(lines) + "\n", capture_output=True, text=True,
                          env=dict(os.environ, MCP_ROUTER_HOME=str(tmp_path / "home")),
                          timeout=60)
    answers = {a["id"]: a for a in map(json.loads, proc.stdout.splitlines())}
    assert "error" not in answers[2] and not answers[2]["result"]["isError"]
    assert answers[2]["result"]["structuredContent"]["cost_note"] == "dry run: nothing was sent"
    assert answers[3]["result"]["isError"]
    assert "\ufffd: unknown argument" in answers[3]["result"]["content"][0]["text"]
    assert answers[4]["result"]["isError"]
    assert "metadata.a: must be a string or a number" in answers[4]["result"]["content"][0][
        "text"]
