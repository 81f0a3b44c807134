"""What the Anthropic wire adapts per model, so that a request other targets take does not end
the fallback chain on a 400: a closing user turn in place of a prefill for Claude 4.6 and
later, no sampling options for Opus 4.7 and later, and whitespace-only stop strings applied
to the answer instead of sent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from mcp_router.config import ProviderConfig
from mcp_router.messages import Adapter, ChatRequest, Completion, Message, Usage
from mcp_router.providers import make_provider
from mcp_router.providers._sse import SseEvent
from mcp_router.providers.anthropic import CLOSING_USER_TURN, AnthropicStream, build_body
from tests.providers.fakes import KEY, FakeUpstream, TextSink, sent_json, sse_response
from tests.providers.routes import (
    OPENAI_ANSWER,
    Upstreams,
    answering,
    ask,
    router_over,
    tried,
)

TRIMMED = ChatRequest(messages=(Message(role="user", content="Name a colour."),
                                Message(role="assistant", content="Blue. ")))
PREFILL = [{"role": "user", "content": "Name a colour."},
           {"role": "assistant", "content": "Blue."}]
CLOSED = [{"role": "user", "content": "Name a colour."},
          {"role": "assistant", "content": "Blue. "},
          {"role": "user", "content": CLOSING_USER_TURN}]
HI = ChatRequest(messages=(Message(role="user", content="Hi"),))
THREE = "Paris\nBerlin\nMadrid"

NO_PREFILL = ["claude-opus-4-6", "claude-sonnet-4-6", "claude-haiku-4-6", "claude-opus-4-7",
              "claude-opus-4-6-20260101", "anthropic/claude-opus-4.6", "claude-opus-4-10",
              "anthropic.claude-sonnet-4-6-v1:0", "claude-opus-5", "claude-sonnet-5-20270101"]
PREFILL_KEPT = ["claude-sonnet-4-5", "claude-sonnet-4-5-20250929", "claude-opus-4-1-20250805",
                "claude-opus-4-20250514", "claude-3-5-sonnet-20241022", "claude-3-haiku-20240307",
                "claude-haiku-4-5", "claude"]
NO_SAMPLING = ["claude-opus-4-7", "claude-opus-4-7-20260416", "anthropic/claude-opus-4.8",
               "claude-opus-5"]
SAMPLING_KEPT = ["claude-opus-4-6", "claude-sonnet-4-6", "claude-sonnet-5", "claude-haiku-4-7",
                 "claude-3-opus-20240229"]


@pytest.mark.parametrize("model", NO_PREFILL)
def test_claude_4_6_and_later_get_a_closing_user_turn_after_the_assistant(model: str) -> None:
    assert build_body(TRIMMED, model, False)["messages"] == CLOSED


@pytest.mark.parametrize("model", PREFILL_KEPT)
def test_older_models_keep_the_final_assistant_turn_as_a_prefill(model: str) -> None:
    assert build_body(TRIMMED, model, False)["messages"] == PREFILL


def test_a_history_ending_with_the_user_gets_no_closing_turn() -> None:
    request = TRIMMED.model_copy(update={"messages": (*TRIMMED.messages,
                                                      Message(role="user", content="Another?"),
                                                      Message(role="assistant", content=" "))})

    assert build_body(request, "claude-opus-4-6", False)["messages"] == [
        *CLOSED[:2], {"role": "user", "content": "Another?"}]


@pytest.mark.parametrize("model", NO_SAMPLING)
@pytest.mark.parametrize("sampling", [{"temperature": 0.2}, {"top_p": 0.9},
                                      {"temperature": 1.5, "top_p": 0.5}])
def test_opus_4_7_and_later_get_no_temperature_or_top_p(model: str,
                                                        sampling: dict[str, float]) -> None:
    body = build_body(HI.model_copy(update=sampling), model, False)

    assert body == {"model": model, "max_tokens": 1024,
                    "messages": [{"role": "user", "content": "Hi"}]}


@pytest.mark.parametrize("model", SAMPLING_KEPT)
def test_other_models_keep_the_temperature_clamped_or_else_top_p(model: str) -> None:
    both = build_body(HI.model_copy(update={"temperature": 1.5, "top_p": 0.5}), model, False)
    top_p = build_body(HI.model_copy(update={"top_p": 0.5}), model, False)

    assert (both.get("temperature"), both.get("top_p")) == (1.0, None)
    assert (top_p.get("temperature"), top_p.get("top_p")) == (None, 0.5)


def anthropic(http: httpx.AsyncClient, *, stream: bool) -> Adapter:
    cfg = ProviderConfig(kind="anthropic", base_url="https://anthropic.test",
                         api_key_env="ANTHROPIC_API_KEY", stream=stream)
    return make_provider("anthropic", cfg, http, KEY)


def anthropic_like(sent: dict[str, Any]) -> httpx.Response:
    """Anthropic's Messages API with the rules at stake: whitespace-only stop sequences and,
    for the models that refuse them, a final assistant turn and sampling options are 400s;
    a stop sequence sent is obeyed."""
    model, stops = sent["model"], sent.get("stop_sequences") or []
    refused = None
    if any(not s.strip() for s in stops):
        refused = "stop_sequences: each stop sequence must contain non-whitespace"
    elif model.startswith(("claude-opus-4-6", "claude-opus-4-7")) \
            and sent["messages"][-1]["role"] == "assistant":
        refused = ("This model does not support assistant message prefill. The conversation "
                   "must end with a user message.")
    elif model.startswith("claude-opus-4-7") and {"temperature", "top_p"} & sent.keys():
        refused = "temperature is deprecated for this model."
    if refused is not None:
        return httpx.Response(400, json={"type": "error", "error": {
            "type": "invalid_request_error", "message": refused}})
    at = min((i for i in (THREE.find(s) for s in stops) if i >= 0), default=None)
    return httpx.Response(200, json={
        "type": "message", "model": model, "content": [{"type": "text", "text": THREE[:at]}],
        "stop_reason": "end_turn" if at is None else "stop_sequence",
        "usage": {"input_tokens": 9, "output_tokens": 6}})


@pytest.mark.anyio
async def test_a_whitespace_stop_is_left_out_of_the_body_and_cuts_a_json_answer(
        http: httpx.AsyncClient, upstream: FakeUpstream) -> None:
    upstream.answer(lambda request: anthropic_like(sent_json(request)))
    request = HI.model_copy(update={"stop": ("\n", "", "END", " \n")})

    completion = await anthropic(http, stream=False).send(request, "claude-sonnet-4-5")

    assert sent_json(upstream.request)["stop_sequences"] == ["END"]
    assert completion.model_copy(update={"ttfb_ms": None}) == Completion(
        content="Paris", finish_reason="stop", usage=Usage(input_tokens=9, output_tokens=6),
        upstream_model="claude-sonnet-4-5", generated_chars=len(THREE),
        generated_utf8_bytes=len(THREE))


def delta(text: str) -> tuple[str, dict[str, Any]]:
    return ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                    "delta": {"type": "text_delta", "text": text}})


@pytest.mark.anyio
async def test_a_whitespace_stop_cuts_a_streamed_answer_and_nothing_after_it_is_passed_on(
        http: httpx.AsyncClient, upstream: FakeUpstream) -> None:
    upstream.answer(sse_response(
        ("message_start", {"type": "message_start", "message": {
            "model": "claude-sonnet-4-5", "usage": {"input_tokens": 9, "output_tokens": 1}}}),
        delta("Par"), delta("is\nBer"), delta("lin\nMadrid"),
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                           "usage": {"output_tokens": 6}}),
        ("message_stop", {"type": "message_stop"}),
    ))
    sink = TextSink()
    request = HI.model_copy(update={"stop": ("\n",)})

    completion = await anthropic(http, stream=True).send(request, "claude-sonnet-4-5",
                                                         on_text=sink)

    assert "stop_sequences" not in sent_json(upstream.request)
    assert "".join(sink.deltas) == "Paris"
    # read no further than the stop: message_start counted only the input, so no usage report
    assert completion.model_copy(update={"ttfb_ms": None}) == Completion(
        content="Paris", finish_reason="stop", usage_reported=False,
        upstream_model="claude-sonnet-4-5", generated_chars=len("Paris\nBer"),
        generated_utf8_bytes=len("Paris\nBer"))


def test_a_stream_read_so_far_reports_usage_only_once_message_delta_counted_the_output() -> None:
    stream = AnthropicStream()
    stream.feed(SseEvent("message_start", '{"type": "message_start", "message": '
                         '{"usage": {"input_tokens": 9, "output_tokens": 1}}}'))
    stream.feed(SseEvent("content_block_delta", '{"type": "content_block_delta", '
                         '"delta": {"type": "text_delta", "text": "Paris"}}'))
    before = stream.so_far()
    stream.feed(SseEvent("message_delta", '{"type": "message_delta", "delta": '
                         '{"stop_reason": "end_turn"}, "usage": {"output_tokens": 2}}'))
    after = stream.so_far()

    assert (before.usage, before.usage_reported) == (Usage(), False)
    assert (after.usage, after.usage_reported) == (Usage(input_tokens=9, output_tokens=2), True)
    assert (after.content, after.finish_reason) == ("Paris", "stop")


@pytest.mark.virtual_time
@pytest.mark.anyio
@pytest.mark.parametrize(("model", "call"), [
    ("anthropic/claude-opus-4-6", {"messages": TRIMMED.messages}),
    ("anthropic/claude-opus-4-7", {"messages": TRIMMED.messages}),
    ("anthropic/claude-opus-4-7", {"prompt": "Name a colour.", "temperature": 0.2}),
    ("anthropic/claude-opus-4-7", {"prompt": "Name a colour.", "top_p": 0.9}),
    ("anthropic/claude-opus-4-7", {"prompt": "Name a colour.", "temperature": 1.5,
                                   "top_p": 0.5}),
], ids=["prefill 4.6", "prefill 4.7", "temperature", "top_p", "both"])
async def test_requests_the_other_targets_take_are_answered_by_claude(
        tmp_path: Path, model: str, call: dict[str, Any]) -> None:
    # Before, Anthropic's 400 ended the route and the fallback was never asked.
    upstreams = Upstreams({"anthropic.test": anthropic_like,
                           "openai.test": answering(200, OPENAI_ANSWER)})
    async with router_over(upstreams, tmp_path) as router:
        result = await ask(router, model=model, fallbacks=("openai/gpt-4o-mini",), **call)

    assert (result.provider, result.content) == ("anthropic", THREE)
    assert tried(result.attempts) == [("anthropic", "ok", None)]
    assert upstreams.hits("openai.test") == 0


@pytest.mark.virtual_time
@pytest.mark.anyio
async def test_a_newline_stop_cuts_claudes_answer_as_it_cuts_openais_and_the_cut_is_cached(
        tmp_path: Path) -> None:
    upstreams = Upstreams({"anthropic.test": anthropic_like})
    async with router_over(upstreams, tmp_path) as router:
        first = await ask(router, prompt="Three capitals, one per line.", stop=("\n",),
                          model="anthropic/claude-sonnet-4-5", cache="use")
        again = await ask(router, prompt="Three capitals, one per line.", stop=("\n",),
                          model="anthropic/claude-sonnet-4-5", cache="use")

    assert (first.provider, first.content, first.finish_reason) == ("anthropic", "Paris", "stop")
    assert (again.content, again.finish_reason, again.cached) == ("Paris", "stop", True)
    assert upstreams.hits("anthropic.test") == 1
