"""What every adapter shares at the HTTP boundary: status errors, Retry-After, network failures."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any, TypeVar

import httpx
import pytest

from mcp_router.config import Kind, ProviderConfig
from mcp_router.errors import (
    ProviderError,
    ProviderNotConfigured,
    ProviderProtocolError,
    ProviderStatusError,
    ProviderTimeout,
    ProviderUnavailable,
)
from mcp_router.messages import Adapter, ChatRequest, Message
from mcp_router.providers import make_provider
from mcp_router.providers._http import parse_retry_after
from tests.providers.fakes import (
    KEY,
    FakeUpstream,
    dying_sse_response,
    json_response,
    sse_response,
)

pytestmark = pytest.mark.anyio

E = TypeVar("E", bound=ProviderError)
HI = ChatRequest(messages=(Message(role="user", content="Hi"),))


@dataclass(frozen=True)
class Vendor:
    """One wire kind as these tests need it: an error body and a stream cut before its end."""

    kind: Kind
    error_body: Callable[[int, str], Any]
    unfinished_stream: tuple[Any, ...]


VENDORS = [
    Vendor("openai", lambda code, msg: {"error": {"message": msg, "code": code}},
           ({"choices": [{"index": 0, "delta": {"content": "Hel"}}]},)),
    Vendor("anthropic",
           lambda code, msg: {"type": "error", "error": {"type": "api_error", "message": msg}},
           (("message_start", {"type": "message_start", "message": {"usage": {}}}),
            ("content_block_delta", {"type": "content_block_delta",
                                     "delta": {"type": "text_delta", "text": "Hel"}}))),
    Vendor("gemini", lambda code, msg: {"error": {"code": code, "message": msg}},
           ({"candidates": [{"content": {"parts": [{"text": "Hel"}]}}]},)),
]


@pytest.fixture(params=VENDORS, ids=[v.kind for v in VENDORS])
def vendor(request: pytest.FixtureRequest) -> Vendor:
    return request.param  # type: ignore[no-any-return]


def adapter_for(vendor: Vendor, http: httpx.AsyncClient,
                env: dict[str, str] | None = None) -> Adapter:
    cfg = ProviderConfig(kind=vendor.kind, base_url="https://upstream.test/v1",
                         api_key_env="THE_KEY", timeout_s=7)
    return make_provider("acme", cfg, http, KEY if env is None else env.get("THE_KEY"))


async def fails_with(adapter: Adapter, error: type[E]) -> E:
    """The error `send` raised, after checking it names the provider and model."""
    with pytest.raises(error) as caught:
        await adapter.send(HI, "some-model")
    assert (caught.value.provider, caught.value.model) == ("acme", "some-model")
    return caught.value


@pytest.mark.parametrize("status", [400, 401, 403, 404, 408, 422, 429, 500, 502, 503, 529])
async def test_an_error_status_is_a_status_error_with_the_vendors_message(
        vendor: Vendor, http: httpx.AsyncClient, upstream: FakeUpstream, status: int) -> None:
    upstream.answer(json_response(vendor.error_body(status, "Something specific"), status))

    error = await fails_with(adapter_for(vendor, http), ProviderStatusError)

    assert (error.status, error.detail, error.retry_after) == (
        status, f"HTTP {status}: Something specific", None)


async def test_an_error_status_with_an_empty_body_is_named_by_its_reason_phrase(
        vendor: Vendor, http: httpx.AsyncClient, upstream: FakeUpstream) -> None:
    upstream.answer(httpx.Response(503))

    error = await fails_with(adapter_for(vendor, http), ProviderStatusError)

    assert (error.status, error.detail) == (503, "HTTP 503: Service Unavailable")


async def test_an_error_body_that_echoes_the_key_is_scrubbed(
        vendor: Vendor, http: httpx.AsyncClient, upstream: FakeUpstream) -> None:
    upstream.answer(json_response(vendor.error_body(401, f"Incorrect API key: {KEY}"), 401))

    error = await fails_with(adapter_for(vendor, http), ProviderStatusError)

    assert error.detail == "HTTP 401: Incorrect API key: ***"
    assert KEY not in str(error)


@pytest.mark.parametrize(("headers", "seconds"), [
    ({"Retry-After": "30"}, 30.0),
    ({"Retry-After": "1.5"}, 1.5),
    ({"retry-after-ms": "2500", "Retry-After": "30"}, 2.5),
    ({"retry-after-ms": "soon", "Retry-After": "4"}, 4.0),
    ({"Retry-After": "whenever"}, None),
    ({"Retry-After": "-3"}, None),
])
async def test_retry_after_is_read_from_retry_after_ms_first_then_retry_after(
        vendor: Vendor, http: httpx.AsyncClient, upstream: FakeUpstream,
        headers: dict[str, str], seconds: float | None) -> None:
    upstream.answer(json_response(vendor.error_body(429, "slow down"), 429, headers))

    error = await fails_with(adapter_for(vendor, http), ProviderStatusError)

    assert (error.status, error.retry_after) == (429, seconds)


async def test_retry_after_as_an_http_date_is_the_time_left_until_then(
        vendor: Vendor, http: httpx.AsyncClient, upstream: FakeUpstream) -> None:
    later = datetime.now(UTC).timestamp() + 120
    date = format_datetime(datetime.fromtimestamp(later, UTC), usegmt=True)
    upstream.answer(json_response(vendor.error_body(503, "busy"), 503, {"Retry-After": date}))

    error = await fails_with(adapter_for(vendor, http), ProviderStatusError)

    assert error.retry_after == pytest.approx(120, abs=2)


@pytest.mark.parametrize(("headers", "seconds"), [
    ({"retry-after": "Wed, 21 Oct 2015 07:28:30 GMT"}, 30.0),
    ({"retry-after": "Wed, 21 Oct 2015 07:28:00 -0000"}, 0.0),
    ({"retry-after": "Wed, 21 Oct 2015 07:27:00 GMT"}, 0.0),
    ({"retry-after-ms": "250"}, 0.25),
    ({"retry-after-ms": "nan"}, None),
    ({"retry-after": "inf"}, None),
    ({}, None),
])
def test_retry_after_dates_are_relative_to_now_and_never_negative(
        headers: dict[str, str], seconds: float | None) -> None:
    now = datetime(2015, 10, 21, 7, 28, 0, tzinfo=UTC).timestamp()
    assert parse_retry_after(headers, now) == seconds


async def test_a_refused_connection_is_unavailable(
        vendor: Vendor, http: httpx.AsyncClient, upstream: FakeUpstream) -> None:
    upstream.fail(httpx.ConnectError, "[Errno 111] Connection refused")

    error = await fails_with(adapter_for(vendor, http), ProviderUnavailable)

    assert "Connection refused" in error.detail


async def test_a_connection_dropped_before_the_answer_is_unavailable(
        vendor: Vendor, http: httpx.AsyncClient, upstream: FakeUpstream) -> None:
    upstream.fail(httpx.RemoteProtocolError, "Server disconnected without sending a response.")

    await fails_with(adapter_for(vendor, http), ProviderUnavailable)


async def test_no_answer_in_time_is_a_timeout(
        vendor: Vendor, http: httpx.AsyncClient, upstream: FakeUpstream) -> None:
    upstream.fail(httpx.ReadTimeout, "timed out")

    error = await fails_with(adapter_for(vendor, http), ProviderTimeout)

    assert "7s" in error.detail
    # connecting keeps the shared client's limit (httpx's default 5 s here)
    assert upstream.request.extensions["timeout"] == {
        "connect": 5, "read": 7, "write": 7, "pool": 7}


@pytest.mark.parametrize("error", [httpx.ConnectTimeout, httpx.PoolTimeout])
async def test_no_connection_in_time_is_unavailable_as_nothing_was_sent(
        vendor: Vendor, http: httpx.AsyncClient, upstream: FakeUpstream,
        error: type[httpx.TimeoutException]) -> None:
    upstream.fail(error, "timed out")

    # not a timeout, which may have been billed: the upstream never saw the request
    await fails_with(adapter_for(vendor, http), ProviderUnavailable)


async def test_a_stream_that_stalls_midway_is_a_timeout(
        vendor: Vendor, http: httpx.AsyncClient, upstream: FakeUpstream) -> None:
    async def stalls() -> AsyncIterator[bytes]:
        yield b"data: {}\n\n"
        raise httpx.ReadTimeout("timed out")

    upstream.answer(httpx.Response(200, content=stalls(),
                                   headers={"content-type": "text/event-stream"}))

    await fails_with(adapter_for(vendor, http), ProviderTimeout)


async def test_a_connection_that_dies_midstream_is_a_cut_stream_not_a_short_answer(
        vendor: Vendor, http: httpx.AsyncClient, upstream: FakeUpstream) -> None:
    upstream.answer(dying_sse_response(*vendor.unfinished_stream))

    error = await fails_with(adapter_for(vendor, http), ProviderProtocolError)

    assert error.detail.startswith("stream cut")


async def test_a_stream_that_ends_before_its_terminal_event_is_a_protocol_error(
        vendor: Vendor, http: httpx.AsyncClient, upstream: FakeUpstream) -> None:
    upstream.answer(sse_response(*vendor.unfinished_stream))

    error = await fails_with(adapter_for(vendor, http), ProviderProtocolError)

    assert error.detail.startswith("stream cut")


@pytest.mark.parametrize("body", [b'{"choices": [', b"<html>oops</html>", b"[1, 2]"])
async def test_a_malformed_json_body_is_a_protocol_error(
        vendor: Vendor, http: httpx.AsyncClient, upstream: FakeUpstream, body: bytes) -> None:
    upstream.answer(httpx.Response(200, content=body,
                                   headers={"content-type": "application/json"}))

    error = await fails_with(adapter_for(vendor, http), ProviderProtocolError)

    assert error.detail.startswith("malformed JSON")


async def test_malformed_json_inside_a_stream_is_a_protocol_error(
        vendor: Vendor, http: httpx.AsyncClient, upstream: FakeUpstream) -> None:
    upstream.answer(sse_response('{"choices": [{"delta": '))

    error = await fails_with(adapter_for(vendor, http), ProviderProtocolError)

    assert error.detail.startswith("malformed JSON")


async def test_a_json_object_of_the_wrong_shape_is_a_protocol_error(
        vendor: Vendor, http: httpx.AsyncClient, upstream: FakeUpstream) -> None:
    upstream.answer(json_response({"choices": "none", "content": 3, "candidates": 3}))

    error = await fails_with(adapter_for(vendor, http), ProviderProtocolError)

    assert error.detail.startswith("unexpected response shape")


@pytest.mark.parametrize("env", [{}, {"THE_KEY": ""}], ids=["unset", "empty"])
async def test_a_provider_whose_key_variable_is_unset_is_unconfigured_and_sends_nothing(
        vendor: Vendor, http: httpx.AsyncClient, upstream: FakeUpstream,
        env: dict[str, str]) -> None:
    adapter = adapter_for(vendor, http, env)

    assert (adapter.provider, adapter.configured, adapter.timeout_s) == ("acme", False, 7)
    error = await fails_with(adapter, ProviderNotConfigured)
    assert error.detail == "THE_KEY is not set"
    assert upstream.requests == []


async def test_a_key_no_http_header_can_carry_is_a_provider_error_naming_the_provider(
        vendor: Vendor, http: httpx.AsyncClient, upstream: FakeUpstream) -> None:
    # Refused at load (`provider_keys`); should one still come, the route moves on.
    adapter = adapter_for(vendor, http, {"THE_KEY": "sk-test-0123456789\u2019abcdef"})

    error = await fails_with(adapter, ProviderNotConfigured)

    assert error.detail == ("a header (its key or one from the config) holds the character "
                            "U+2019, which an HTTP header cannot carry: set it again in plain "
                            "ASCII")
    assert upstream.requests == []
