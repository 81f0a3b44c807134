"""The simulator's timing settings do what README's knob table says: `drip-<ms>` waits only
between streamed text pieces, the same on every wire, and a latency is a finite number of
milliseconds, 0 or more, wherever it is set."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from itertools import pairwise

import httpx
import pytest

from mcp_router.cli import parse_args
from mcp_router.simulator import RunningSimulator

DRIP_S = 0.1
MODEL = f"m+drip-{int(DRIP_S * 1000)}"
SHORT = 5  # max tokens: an answer of three pieces, so a stream lasts about two drips
SLACK_S = DRIP_S / 2  # generous: the machine is shared, and no wait is shorter than a drip

# (path, headers, body) of one streamed call per wire; Gemini without alt=sse is one JSON
# array written element by element.
STREAMS = {
    "openai": ("/v1/chat/completions", {},
               {"model": MODEL, "stream": True, "max_tokens": SHORT,
                "messages": [{"role": "user", "content": "hello there my friend"}]}),
    "anthropic": ("/v1/messages", {"anthropic-version": "2023-06-01"},
                  {"model": MODEL, "stream": True, "max_tokens": SHORT,
                   "messages": [{"role": "user", "content": "hello there my friend"}]}),
    "gemini-sse": (f"/v1beta/models/{MODEL}:streamGenerateContent?alt=sse", {},
                   {"contents": [{"role": "user", "parts": [{"text": "hello there my friend"}]}],
                    "generationConfig": {"maxOutputTokens": SHORT}}),
    "gemini-array": (f"/v1beta/models/{MODEL}:streamGenerateContent", {},
                     {"contents": [{"role": "user",
                                    "parts": [{"text": "hello there my friend"}]}],
                      "generationConfig": {"maxOutputTokens": SHORT}}),
}


@pytest.fixture
def client(sim: RunningSimulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sim.url, timeout=5.0) as http:
        yield http


def _is_text(line: str) -> bool:
    """Whether a streamed line carries a piece of the answer's text, on any of the wires."""
    data = line.removeprefix("data:").strip().lstrip("[").rstrip(",]")
    if not data.startswith("{"):
        return False
    frame = json.loads(data)
    if frame.get("type") == "content_block_delta":
        return True
    choice = (frame.get("choices") or [{}])[0]
    if choice.get("delta", {}).get("content"):
        return True
    return bool(frame.get("candidates"))


def _timeline(client: httpx.Client, wire: str) -> tuple[list[float], float]:
    """When each text piece arrived and when the body ended, in seconds after the headers."""
    path, headers, body = STREAMS[wire]
    pieces: list[float] = []
    with client.stream("POST", path, headers=headers, json=body) as response:
        assert response.status_code == 200
        start = time.monotonic()
        for line in response.iter_lines():
            if _is_text(line):
                pieces.append(time.monotonic() - start)
        return pieces, time.monotonic() - start


@pytest.mark.parametrize("wire", list(STREAMS))
def test_drip_waits_only_between_text_pieces_on_every_wire(client: httpx.Client, wire: str):
    pieces, closed = _timeline(client, wire)
    assert len(pieces) == 3, pieces
    # Opening frames go at once: the first text comes with them, whatever the wire.
    assert pieces[0] < SLACK_S, (pieces, closed)
    gaps = [later - earlier for earlier, later in pairwise(pieces)]
    assert all(gap > DRIP_S * 0.8 for gap in gaps), gaps
    # The closing frames follow the last piece at once, and the body ends with them.
    assert closed - pieces[-1] < SLACK_S, (pieces, closed)
    assert closed < (len(pieces) - 1) * DRIP_S + SLACK_S, (pieces, closed)


def test_a_cut_stream_ends_right_after_its_second_piece(client: httpx.Client):
    path, headers, body = STREAMS["anthropic"]
    started = time.monotonic()
    response = client.post(path, headers=headers, json=body | {"model": f"{MODEL}+cut"})
    took = time.monotonic() - started
    assert response.text.count("event: content_block_delta") == 2
    assert DRIP_S * 0.8 < took < DRIP_S + SLACK_S


@pytest.mark.parametrize("raw", [b'{"ms": NaN}', b'{"ms": Infinity}', b'{"ms": -Infinity}',
                                 b'{"ms": 1e400}', b'{"ms": ' + b"9" * 400 + b"}",
                                 b'{"ms": -1}', b'{"ms": "fast"}', b'{"ms": true}', b"{}"])
def test_latency_endpoint_refuses_what_is_not_a_finite_number_of_ms(
        sim: RunningSimulator, client: httpx.Client, raw: bytes):
    assert client.post("/_sim/latency", json={"ms": 7}).json() == {"latency_ms": 7.0}
    refused = client.post("/_sim/latency", content=raw)
    assert refused.status_code == 400
    assert '"ms"' in refused.json()["error"]
    assert sim.state.latency_ms == 7.0
    assert client.get("/_sim/stats").json()["latency_ms"] == 7.0
    answer = client.post("/v1/chat/completions", timeout=2,
                         json={"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    assert answer.status_code == 200


@pytest.mark.parametrize(("given", "read"), [("0", 0.0), ("50", 50.0), ("2.5", 2.5)])
def test_simulate_reads_a_latency_of_0_or_more_ms(given: str, read: float):
    assert parse_args(["simulate", "--latency-ms", given]).latency_ms == read


@pytest.mark.parametrize(("given", "said"), [
    ("nan", "'nan' is not a usable number of milliseconds: use a finite number, 0 or more"),
    ("inf", "'inf' is not a usable number of milliseconds: use a finite number, 0 or more"),
    ("-inf", "'-inf' is not a usable number of milliseconds: use a finite number, 0 or more"),
    ("1e400", "'1e400' is not a usable number of milliseconds: use a finite number, 0 or more"),
    ("-5", "'-5' is not a usable number of milliseconds: use a finite number, 0 or more"),
    ("fast", "'fast' is not a number of milliseconds"),
])
def test_simulate_refuses_a_latency_that_is_not_a_finite_number_of_ms(
        given: str, said: str, capsys: pytest.CaptureFixture[str]):
    with pytest.raises(SystemExit) as exited:
        parse_args(["simulate", f"--latency-ms={given}"])
    assert exited.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"mcp-router simulate: error: argument --latency-ms: {said}")
