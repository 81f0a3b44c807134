"""Per-call size limits, checked before anything is sent."""

from __future__ import annotations

import pytest

from mcp_router.errors import InvalidRequest
from mcp_router.limits import check_limits
from mcp_router.messages import ChatCall, Message
from mcp_router.shared_config import ServerConfig

SMALL = ServerConfig(max_messages=3, max_chars=10)


def test_calls_within_the_limits_pass():
    check_limits(ChatCall(prompt="0123456789"), SMALL)
    check_limits(ChatCall(messages=(Message(role="user", content="01234"),) * 2), SMALL)
    check_limits(ChatCall(messages=(Message(role="user", content="hi"),) * 200), ServerConfig())


def test_too_many_messages_names_the_count_the_limit_and_the_key():
    call = ChatCall(messages=(Message(role="user", content="x"),) * 250)
    with pytest.raises(InvalidRequest) as caught:
        check_limits(call, ServerConfig())
    assert caught.value.field == "messages"
    assert str(caught.value) == ("messages: 250 messages is over the limit of 200 "
                                 "(server.max_messages)")


def test_too_many_characters_counts_every_message():
    call = ChatCall(messages=(Message(role="system", content="12345"),
                              Message(role="user", content="123456")))
    with pytest.raises(InvalidRequest) as caught:
        check_limits(call, SMALL)
    assert str(caught.value) == ("messages: 11 characters is over the limit of 10 "
                                 "(server.max_chars)")


def test_an_oversized_prompt_is_blamed_on_the_prompt():
    with pytest.raises(InvalidRequest) as caught:
        check_limits(ChatCall(prompt="x" * 400_001), ServerConfig())
    assert caught.value.field == "prompt"
    assert "400,001 characters is over the limit of 400,000" in str(caught.value)


def test_stop_sequences_count_towards_the_characters():
    with pytest.raises(InvalidRequest):
        check_limits(ChatCall(prompt="12345", stop=("123456",)), SMALL)
