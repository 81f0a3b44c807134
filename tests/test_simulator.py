"""The simulated upstream speaks each vendor's wire format and applies the knobs in model names."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import pytest

from mcp_router._sim_wire import Knobs
from mcp_router.errors import ListenError
from mcp_router.simulator import RunningSimulator, SimState, parse_knobs, serve, start_simulator

ANTHROPIC_HEADERS = {"anthropic-version": "2023-06-01", "x-api-key": "sk-ant-secret"}
USER = "What is the capital of France? Answer in one short sentence please."


@pytest.fixture
def client(sim: RunningSimulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sim.url, timeout=5.0) as http:
        yield http


def openai_body(model: str, **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "system", "content": "Be brief."},
                                         {"role": "user", "content": USER}], **extra}


def anthropic_body(model: str, **extra: Any) -> dict[str, Any]:
    return {"model": model, "max_tokens": 256, "system": "Be brief.",
            "messages": [{"role": "user", "content": USER}], **extra}


def gemini_body(**config: Any) -> dict[str, Any]:
    return {"contents": [{"role": "user", "parts": [{"text": USER}]}],
            "systemInstruction": {"parts": [{"text": "Be brief."}]}, "generationConfig": config}


def call(client: httpx.Client, kind: str, model: str, stream: bool = False,
         **extra: Any) -> httpx.Response:
    """One chat call in the given wire format."""
    if kind == "openai":
        return client.post("/v1/chat/completions", json=openai_body(model, stream=stream, **extra))
    if kind == "anthropic":
        return client.post("/v1/messages", headers=ANTHROPIC_HEADERS,
                           json=anthropic_body(model, stream=stream, **extra))
    action = "streamGenerateContent?alt=sse" if stream else "generateContent"
    return client.post(f"/v1beta/models/{model}:{action}", json=gemini_body(**extra))


def events(text: str) -> list[tuple[str | None, str]]:
    """(event name, data) for each SSE event of a body."""
    found = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "data" in lines:
            found.append((lines.get("event"), lines["data"]))
    return found


def datas(text: str) -> list[Any]:
    return [json.loads(data) for _, data in events(text) if data != "[DONE]"]


def test_openai_json_answer_has_message_finish_reason_and_usage(client: httpx.Client) -> None:
    answer = call(client, "openai", "gpt-4o+cached-3").json()
    assert answer["object"] == "chat.completion" and answer["model"] == "gpt-4o+cached-3"
    choice = answer["choices"][0]
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["content"].startswith("Simulated answer from gpt-4o+cached-3: What")
    assert choice["finish_reason"] == "stop"
    usage = answer["usage"]
    assert usage["prompt_tokens"] == len("Be brief.") // 4 + len(USER) // 4
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert usage["prompt_tokens_details"]["cached_tokens"] == 3


def test_openai_stream_sends_deltas_then_finish_then_usage_then_done(
        client: httpx.Client) -> None:
    response = call(client, "openai", "gpt-4o", stream=True,
                    stream_options={"include_usage": True})
    assert response.headers["content-type"].startswith("text/event-stream")
    assert events(response.text)[-1] == (None, "[DONE]")
    chunks = datas(response.text)
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == call(client, "openai", "gpt-4o").json()["choices"][0]["message"]["content"]
    assert 4 <= len(chunks) - 3 <= 8
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] > 0


def test_openai_max_tokens_truncates_with_finish_reason_length(client: httpx.Client) -> None:
    answer = call(client, "openai", "gpt-4o", max_completion_tokens=3).json()
    assert answer["choices"][0]["finish_reason"] == "length"
    assert answer["usage"]["completion_tokens"] == 3


def test_anthropic_json_answer_counts_cache_reads_apart_from_input(
        client: httpx.Client) -> None:
    answer = call(client, "anthropic", "claude-sonnet-4-5+cached-4").json()
    assert answer["type"] == "message" and answer["role"] == "assistant"
    assert answer["content"][0]["type"] == "text"
    assert answer["content"][0]["text"].startswith("Simulated answer from claude-sonnet-4-5")
    assert answer["stop_reason"] == "end_turn"
    prompt_tokens = len("Be brief.") // 4 + len(USER) // 4
    assert answer["usage"] == {"input_tokens": prompt_tokens - 4, "cache_read_input_tokens": 4,
                               "cache_creation_input_tokens": 0,
                               "output_tokens": answer["usage"]["output_tokens"]}


def test_anthropic_stream_sends_events_in_the_documented_order(client: httpx.Client) -> None:
    response = call(client, "anthropic", "claude-sonnet-4-5", stream=True, max_tokens=5)
    names = [name for name, _ in events(response.text)]
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(names[3:-3]) == {"content_block_delta"}
    payloads = datas(response.text)
    assert payloads[0]["message"]["usage"]["input_tokens"] > 0
    assert payloads[3]["delta"]["type"] == "text_delta"
    assert payloads[-2]["delta"]["stop_reason"] == "max_tokens"
    assert payloads[-2]["usage"]["output_tokens"] == 5


def test_anthropic_stop_sequence_ends_the_answer_there(client: httpx.Client) -> None:
    answer = call(client, "anthropic", "claude", stop_sequences=["capital"]).json()
    assert answer["stop_reason"] == "stop_sequence" and answer["stop_sequence"] == "capital"
    assert answer["content"][0]["text"].endswith("What is the ")


def test_anthropic_without_max_tokens_is_an_invalid_request(client: httpx.Client) -> None:
    body = anthropic_body("claude")
    del body["max_tokens"]
    response = client.post("/v1/messages", headers=ANTHROPIC_HEADERS, json=body)
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_anthropic_without_version_header_is_an_invalid_request(client: httpx.Client) -> None:
    response = client.post("/v1/messages", json=anthropic_body("claude"))
    assert response.status_code == 400
    assert "anthropic-version" in response.json()["error"]["message"]


def test_gemini_json_answer_has_candidates_and_usage_metadata(client: httpx.Client) -> None:
    answer = call(client, "gemini", "gemini-2.0-flash+cached-2").json()
    candidate = answer["candidates"][0]
    assert candidate["content"]["role"] == "model" and candidate["finishReason"] == "STOP"
    assert candidate["content"]["parts"][0]["text"].startswith("Simulated answer")
    usage = answer["usageMetadata"]
    assert usage["totalTokenCount"] == usage["promptTokenCount"] + usage["candidatesTokenCount"]
    assert usage["cachedContentTokenCount"] == 2
    assert answer["modelVersion"] == "gemini-2.0-flash+cached-2"


def test_gemini_max_output_tokens_ends_with_max_tokens(client: httpx.Client) -> None:
    answer = call(client, "gemini", "gemini-2.0-flash", maxOutputTokens=2).json()
    assert answer["candidates"][0]["finishReason"] == "MAX_TOKENS"


def test_gemini_stream_puts_finish_reason_on_the_last_chunk_only(client: httpx.Client) -> None:
    response = call(client, "gemini", "gemini-2.0-flash", stream=True)
    assert "[DONE]" not in response.text
    chunks = datas(response.text)
    assert len(chunks) >= 4
    finishes = [c["candidates"][0].get("finishReason") for c in chunks]
    assert finishes == [None] * (len(chunks) - 1) + ["STOP"]
    assert chunks[-1]["usageMetadata"]["candidatesTokenCount"] > 0


def test_models_list_takes_anthropic_shape_when_anthropic_version_is_sent(
        client: httpx.Client) -> None:
    openai = client.get("/v1/models", headers={"authorization": "Bearer sk"}).json()
    assert openai["object"] == "list" and openai["data"][0]["object"] == "model"
    anthropic = client.get("/v1/models", headers=ANTHROPIC_HEADERS).json()
    assert anthropic["has_more"] is False
    assert {"id", "type", "display_name"} <= set(anthropic["data"][0])
    gemini = client.get("/v1beta/models").json()
    assert gemini["models"][0]["name"].startswith("models/")


@pytest.mark.parametrize(("kind", "shape"), [
    ("openai", {"error": {"type": "server_error", "param": None, "code": None}}),
    ("anthropic", {"type": "error", "error": {"type": "overloaded_error"}}),
    ("gemini", {"error": {"code": 503, "status": "UNAVAILABLE"}}),
])
def test_fail_503_answers_with_the_vendor_error_body(client: httpx.Client, kind: str,
                                                     shape: dict[str, Any]) -> None:
    response = call(client, kind, "m+fail-503")
    assert response.status_code == 503
    body = response.json()
    assert "503" in body["error"].pop("message")
    assert body == shape


def test_fail_529_is_anthropic_overloaded(client: httpx.Client) -> None:
    response = call(client, "anthropic", "claude+fail-529")
    assert response.status_code == 529
    assert response.json()["error"]["type"] == "overloaded_error"


def test_fail_429_sends_retry_after(client: httpx.Client) -> None:
    openai = call(client, "openai", "gpt-4o+fail-429")
    assert openai.status_code == 429
    assert openai.headers["retry-after"] == "1" and openai.headers["retry-after-ms"] == "1000"
    assert openai.json()["error"]["code"] == "rate_limit_exceeded"
    anthropic = call(client, "anthropic", "claude+fail-429")
    assert anthropic.headers["retry-after"] == "1"
    assert anthropic.json()["error"]["type"] == "rate_limit_error"
    gemini = call(client, "gemini", "gemini+fail-429")
    assert gemini.json()["error"]["status"] == "RESOURCE_EXHAUSTED"


def test_retry_after_knob_overrides_the_seconds(client: httpx.Client) -> None:
    response = call(client, "openai", "gpt-4o+fail-503+retry-after-7")
    assert response.headers["retry-after"] == "7"
    assert response.headers["retry-after-ms"] == "7000"


def test_retry_after_date_sends_an_http_date(client: httpx.Client) -> None:
    response = call(client, "openai", "gpt-4o+fail-429+retry-after-date+retry-after-30")
    wait = parsedate_to_datetime(response.headers["retry-after"]).timestamp() - time.time()
    assert 29 <= wait <= 32
    assert "retry-after-ms" not in response.headers


def test_fail_503x2_fails_twice_then_succeeds(client: httpx.Client) -> None:
    statuses = [call(client, "openai", "gpt-4o+fail-503x2").status_code for _ in range(4)]
    assert statuses == [503, 503, 200, 200]


def test_malformed_json_body_is_not_json(client: httpx.Client) -> None:
    response = call(client, "openai", "gpt-4o+malformed")
    assert response.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        response.json()


@pytest.mark.parametrize("kind", ["openai", "anthropic", "gemini"])
def test_malformed_stream_has_a_data_line_that_is_not_json(client: httpx.Client,
                                                           kind: str) -> None:
    response = call(client, kind, "m+malformed", stream=True)
    with pytest.raises(json.JSONDecodeError):
        datas(response.text)


@pytest.mark.parametrize(("kind", "terminal"), [
    ("openai", '"finish_reason": "stop"'), ("anthropic", "message_stop"),
    ("gemini", "finishReason")])
def test_cut_stream_lacks_the_terminal_event(client: httpx.Client, kind: str,
                                             terminal: str) -> None:
    response = call(client, kind, "m+cut", stream=True)
    assert response.status_code == 200
    assert len(datas(response.text)) >= 2
    assert terminal not in response.text and "[DONE]" not in response.text


def test_cut_json_body_is_truncated_mid_object(client: httpx.Client) -> None:
    response = call(client, "anthropic", "claude+cut")
    assert response.status_code == 200 and response.text.startswith("{")
    with pytest.raises(json.JSONDecodeError):
        response.json()


@pytest.mark.parametrize("model", ["grok-beta", "x-ai/grok-beta", "grok-beta+slow-1"])
def test_grok_beta_answers_404_model_not_found(client: httpx.Client, model: str) -> None:
    response = call(client, "openai", model)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "model_not_found"


def test_grok_beta_is_not_found_in_gemini_shape_too(client: httpx.Client) -> None:
    response = call(client, "gemini", "grok-beta")
    assert (response.status_code, response.json()["error"]["status"]) == (404, "NOT_FOUND")


def test_flaky_fails_the_same_calls_on_every_run(sim: RunningSimulator,
                                                 client: httpx.Client) -> None:
    def run() -> list[int]:
        return [call(client, "openai", "gpt-4o+flaky-30").status_code for _ in range(10)]

    first = run()
    sim.state.reset()
    assert run() == first
    assert first.count(503) == 3 and set(first) == {200, 503}


def test_hits_count_per_model_and_per_format(sim: RunningSimulator,
                                             client: httpx.Client) -> None:
    for _ in range(2):
        call(client, "openai", "openai/gpt-3.5-turbo")
    call(client, "openai", "gpt-4o+fail-500")
    call(client, "gemini", "gemini-2.0-flash")
    assert sim.state.hits == {"openai/gpt-3.5-turbo": 2, "gpt-4o+fail-500": 1,
                              "gemini-2.0-flash": 1}
    assert sim.state.format_hits == {"openai": 3, "gemini": 1}
    assert client.get("/_sim/stats").json()["hits"]["openai/gpt-3.5-turbo"] == 2


def test_requests_are_recorded_without_credentials(sim: RunningSimulator,
                                                   client: httpx.Client) -> None:
    call(client, "anthropic", "claude")
    client.post("/v1beta/models/gemini:generateContent?key=AIza-secret", json=gemini_body())
    anthropic, gemini = sim.state.requests
    assert anthropic["headers"]["x-api-key"] == "<redacted>"
    assert anthropic["body"]["messages"][0]["content"] == USER
    assert gemini["query"]["key"] == "<redacted>"
    assert "secret" not in json.dumps(sim.state.requests)
    assert client.get("/_sim/requests").json() == sim.state.requests  # for testers outside


def test_hang_waits_until_the_client_leaves_and_counts_the_disconnect(
        sim: RunningSimulator) -> None:
    with httpx.Client(base_url=sim.url, timeout=0.3) as impatient, \
            pytest.raises(httpx.ReadTimeout):
        call(impatient, "openai", "gpt-4o+hang")
    deadline = time.monotonic() + 3
    while not sim.state.disconnects and time.monotonic() < deadline:
        time.sleep(0.02)
    assert sim.state.disconnects == {"gpt-4o+hang": 1}


def test_stopping_answers_a_hung_call_with_503() -> None:
    statuses: list[int] = []
    state = SimState()
    # The client outlives the server, so the only thing that ends the call is the shutdown.
    with httpx.Client(timeout=5) as http, start_simulator(state=state) as own:
        http.base_url = httpx.URL(own.url)
        waiter = threading.Thread(
            target=lambda: statuses.append(call(http, "openai", "gpt-4o+hang").status_code))
        waiter.start()
        deadline = time.monotonic() + 3
        while not state.hits and time.monotonic() < deadline:
            time.sleep(0.01)
    waiter.join(timeout=5)
    assert statuses == [503]


def test_slow_delays_the_first_byte(client: httpx.Client) -> None:
    started = time.monotonic()
    assert call(client, "gemini", "gemini+slow-150").status_code == 200
    assert time.monotonic() - started >= 0.15


def test_latency_endpoint_adds_latency_to_every_call(sim: RunningSimulator,
                                                     client: httpx.Client) -> None:
    assert client.post("/_sim/latency", json={"ms": 120}).status_code == 200
    started = time.monotonic()
    call(client, "openai", "gpt-4o")
    assert time.monotonic() - started >= 0.12
    assert client.post("/_sim/latency", json={"ms": "fast"}).status_code == 400
    assert sim.state.latency_ms == 120


def test_reset_endpoint_clears_the_counters(sim: RunningSimulator,
                                            client: httpx.Client) -> None:
    call(client, "openai", "gpt-4o")
    client.post("/_sim/reset")
    assert client.get("/_sim/stats").json()["hits"] == {}
    assert sim.state.requests == []


def test_tokens_knob_sets_the_answer_length(client: httpx.Client) -> None:
    answer = call(client, "openai", "gpt-4o+tokens-300").json()
    assert answer["usage"]["completion_tokens"] == 300


def test_base_urls_name_each_vendor_root(sim: RunningSimulator) -> None:
    assert sim.base_urls == {"openai": f"{sim.url}/v1", "anthropic": sim.url,
                             "gemini": f"{sim.url}/v1beta"}
    assert sim.url.startswith("http://127.0.0.1:")


def test_parse_knobs_reads_every_plus_separated_part() -> None:
    assert parse_knobs("openai/gpt-4o+fail-503x2+slow-20+retry-after-3+cached-9") == Knobs(
        fail_status=503, fail_times=2, slow_ms=20, retry_after_s=3, cached=9)
    assert parse_knobs("gpt-4o") == Knobs()


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "example.com"])
def test_serve_refuses_a_non_loopback_host(host: str) -> None:
    with pytest.raises(ValueError, match=host):
        serve(host=host)


def test_a_port_already_taken_is_said_in_one_line_naming_the_address() -> None:
    with start_simulator() as running:
        port = int(running.url.rsplit(":", 1)[1])
        with pytest.raises(ListenError) as refused:
            serve(port=port)
    assert str(refused.value) == (
        f"cannot listen on 127.0.0.1:{port}: Address already in use; another process is "
        "listening there (another mcp-router?); choose another --port")


@pytest.mark.slow
def test_serve_reports_its_url_on_stderr_and_answers_there() -> None:
    code = "from mcp_router.simulator import serve; serve(latency_ms=5)"
    with subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stderr is not None
            line = proc.stderr.readline()
            url = line.rsplit(" ", 1)[-1].strip()
            assert line.startswith("simulated upstream on http://127.0.0.1:")
            stats = httpx.get(f"{url}/_sim/stats", timeout=5).json()
            assert stats["latency_ms"] == 5
        finally:
            proc.terminate()
        stdout, _ = proc.communicate(timeout=10)
    assert stdout == ""
