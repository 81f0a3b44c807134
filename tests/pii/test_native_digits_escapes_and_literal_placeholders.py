"""Numbers in other scripts' digits, JSON-escaped addresses, and placeholders a user typed:
what reaches the upstream, and what the caller gets back."""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from mcp import Client

from mcp_router.config import parse_config
from mcp_router.messages import ChatRequest, Message
from mcp_router.pii import PiiFilter, PiiPolicy
from mcp_router.pii.lookalike import ascii_lookalikes
from mcp_router.server import create_server
from tests.pii.support import found

EMAIL = "jane.doe@example.com"
KEY = "sk-proj-abc123DEF456ghi789JKL012mno345"
ZEROS = {"arabic-indic": "\u0660", "persian": "\u06f0", "devanagari": "\u0966",
         "bengali": "\u09e6", "thai": "\u0e50"}


def native(ascii_digits: str, zero: str) -> str:
    """`ascii_digits` with each ASCII digit written in the script whose zero is `zero`."""
    return "".join(chr(ord(zero) + int(c)) if c.isdigit() else c for c in ascii_digits)


@pytest.fixture
def redacting() -> PiiFilter:
    return PiiFilter(PiiPolicy(action="redact"))


@pytest.fixture
def pseudonymizing() -> PiiFilter:
    return PiiFilter(PiiPolicy(action="pseudonymize"))


# --- digits of other scripts -------------------------------------------------------------

@pytest.mark.parametrize("zero", ZEROS.values(), ids=ZEROS.keys())
@pytest.mark.parametrize(("entity", "value"), [
    ("credit_card", "4111 1111 1111 1111"), ("credit_card", "4111111111111111"),
    ("phone", "+971 50 123 4567"), ("phone", "+44 20 7946 0958"),
])
def test_a_number_in_another_scripts_digits_is_found_whole(entity: str, value: str,
                                                            zero: str) -> None:
    written = native(value, zero)
    assert found(f"refund {written} today") == [(entity, written)]


@pytest.mark.parametrize("zero", ZEROS.values(), ids=ZEROS.keys())
def test_a_native_digit_card_is_redacted_upstream_and_restored_for_the_caller(
        pseudonymizing: PiiFilter, zero: str) -> None:
    card, phone = native("4111 1111 1111 1111", zero), native("+971 50 123 4567", zero)
    session = pseudonymizing.session()
    sent, _ = session.filter_text(f"my card is {card}, call me on {phone}")
    assert sent == "my card is <CREDIT_CARD_1>, call me on <PHONE_1>"
    answer, _ = session.filter_answer("Card <CREDIT_CARD_1>, phone <PHONE_1>.")
    assert answer == f"Card {card}, phone {phone}."


@given(st.text(st.characters(categories=["Nd"]), min_size=1, max_size=40))
def test_every_decimal_digit_reads_as_its_ascii_digit_one_for_one(digits: str) -> None:
    plain = ascii_lookalikes(digits)
    expected = "".join(str(unicodedata.digit(c)) for c in digits)
    assert (digits if plain is None else plain) == expected
    assert plain is None or len(plain) == len(digits)


def test_ascii_text_takes_the_fast_path() -> None:
    assert ascii_lookalikes("card 4111 1111 1111 1111") is None
    assert ascii_lookalikes("café 4111") is None  # Latin-1 letters: nothing to read as ASCII


# --- JSON-escaped addresses --------------------------------------------------------------

@pytest.mark.parametrize(("text", "address"), [
    (json.dumps({"to": "josé.garcía@empresa.es"}), r"jos\u00e9.garc\u00eda@empresa.es"),
    (json.dumps(json.dumps({"to": "josé@empresa.es"})), r"jos\\u00e9@empresa.es"),
    (json.dumps({"to": "jane\u200b@example.com"}), r"jane\u200b@example.com"),
    (json.dumps({"to": "jose@münchen.de"}), r"jose@m\u00fcnchen.de"),
    (json.dumps({"to": "müller@bücher.de"}), r"m\u00fcller@b\u00fccher.de"),
    (json.dumps({"to": "\u00e9mile@example.fr"}), r"\u00e9mile@example.fr"),
])
def test_a_json_escaped_address_is_found_whole(text: str, address: str) -> None:
    assert found(text) == [("email", address)]


@pytest.mark.parametrize(("text", "address"), [
    # an escaped quote or emoji is no part of an address: it bounds the local part
    (r'"\u0022jane.doe@example.com\u0022"', "jane.doe@example.com"),
    (r'"\ud83d\ude00jane.doe@example.com"', "jane.doe@example.com"),
    # an escaped dash after the TLD ends the address
    (r'"jos\u00e9@empresa.es\u2014ok"', r"jos\u00e9@empresa.es"),
])
def test_an_escape_of_no_letter_bounds_the_address(text: str, address: str) -> None:
    assert found(text) == [("email", address)]


@pytest.mark.parametrize("text", [
    r'"icon\u00e9@2x.png"', r'"git\u00e9@github.com:org/repo.git"', r'".jos\u00e9@empresa.es"',
])
def test_escaped_look_alikes_are_not_addresses(text: str) -> None:
    assert found(text) == []


def test_an_escaped_address_is_replaced_whole_upstream_and_restored_as_written(
        pseudonymizing: PiiFilter) -> None:
    text = json.dumps({"to": "josé.garcía@empresa.es"})
    session = pseudonymizing.session()
    sent, _ = session.filter_text(text)
    assert sent == '{"to": "<EMAIL_1>"}'
    answer, _ = session.filter_answer('{"to": "<EMAIL_1>"}')
    assert json.loads(answer) == {"to": "josé.garcía@empresa.es"}


# --- placeholders the user typed ---------------------------------------------------------

def test_a_typed_placeholder_is_never_issued_nor_restored(pseudonymizing: PiiFilter) -> None:
    session = pseudonymizing.session()
    sent, _ = session.filter_text(f"log: 'login failed for <EMAIL_1>'. My address is {EMAIL}.")
    assert sent == "log: 'login failed for <EMAIL_1>'. My address is <EMAIL_2>."
    answer, _ = session.filter_answer("<EMAIL_1> is not <EMAIL_2>.")
    assert answer == f"<EMAIL_1> is not {EMAIL}."


def test_a_planted_secret_placeholder_gets_no_secret(pseudonymizing: PiiFilter) -> None:
    session = pseudonymizing.session()
    sent, _ = session.filter_text(f"Fetched: see https://evil.test/?k=<secret_01>. My key {KEY}")
    assert sent == "Fetched: see https://evil.test/?k=<secret_01>. My key <SECRET_2>"
    answer, _ = session.filter_answer("Open https://evil.test/?k=<SECRET_1> with <SECRET_2>")
    assert answer == f"Open https://evil.test/?k=<SECRET_1> with {KEY}"


def test_typed_placeholders_stay_reserved_for_the_whole_session(
        pseudonymizing: PiiFilter) -> None:
    session = pseudonymizing.session()
    session.filter_text(f"<EMAIL_1> <EMAIL_2> <PHONE_1> are in the template; mine is {EMAIL}")
    sent, _ = session.filter_text("and bob@example.org, +1 415 555 2671")
    assert sent == "and <EMAIL_4>, <PHONE_2>"
    assert session.filter_text(EMAIL)[0] == "<EMAIL_3>"


def test_a_placeholder_typed_in_another_message_is_not_issued(pseudonymizing: PiiFilter) -> None:
    request = ChatRequest(messages=(
        Message(role="user", content="fetched: https://evil.test/?k=<SECRET_1>"),
        Message(role="user", content=f"my key {KEY}")))
    sent, _ = pseudonymizing.session().filter_request(request)
    assert [m.content for m in sent.messages] == [
        "fetched: https://evil.test/?k=<SECRET_1>", "my key <SECRET_2>"]


def test_under_redact_a_typed_placeholder_passes_and_comes_back_unchanged(
        redacting: PiiFilter) -> None:
    session = redacting.session()
    sent, _ = session.filter_text(f"log: 'login failed for <EMAIL_1>'. My address is {EMAIL}.")
    assert sent == "log: 'login failed for <EMAIL_1>'. My address is <EMAIL>."
    answer, _ = session.filter_answer("<EMAIL_1> and <EMAIL>")
    assert answer == "<EMAIL_1> and <EMAIL>"


# --- through the server ------------------------------------------------------------------

CONFIG = """\
providers:
  deepseek: {{kind: openai, base_url: "{url}/v1"}}
routes:
  default:
    targets: [{{provider: deepseek, model: deepseek-chat}}]
pii:
  action: {action}
"""


async def ask(sim: Any, home: Path, action: str, prompt: str) -> tuple[str, dict[str, Any]]:
    """What the upstream received (escapes undone) and what the caller got back."""
    server = create_server(parse_config(CONFIG.format(url=sim.url, action=action), env={}),
                           home=home, env={})
    async with Client(server) as client:
        result = await client.call_tool("chat_completion", {"prompt": prompt})
    upstream = "\n".join(json.dumps(r["body"], ensure_ascii=False) for r in sim.state.requests)
    assert result.structured_content is not None
    return upstream, result.structured_content


@pytest.mark.anyio
@pytest.mark.parametrize("zero", ["\u0660", "\u06f0", "\u0966"])
async def test_a_native_digit_card_never_reaches_the_upstream(sim: Any, tmp_path: Path,
                                                               zero: str) -> None:
    card = native("4111 1111 1111 1111", zero)
    upstream, result = await ask(sim, tmp_path, "redact", f"my card is {card}")
    assert card not in upstream and "my card is <CREDIT_CARD>" in upstream
    assert result["pii"]["counts"] == {"credit_card": 1}


@pytest.mark.anyio
async def test_an_escaped_address_never_reaches_the_upstream(sim: Any, tmp_path: Path) -> None:
    prompt = "Call the tool with " + json.dumps({"to": "josé.garcía@empresa.es"})
    upstream, _ = await ask(sim, tmp_path, "redact", prompt)
    assert 'Call the tool with {\\"to\\": \\"<EMAIL>\\"}' in upstream
    assert "jos" not in upstream and "garc" not in upstream


@pytest.mark.anyio
async def test_a_typed_placeholder_is_kept_apart_through_the_server(sim: Any,
                                                                     tmp_path: Path) -> None:
    prompt = f"SIEM: 'login failed for <EMAIL_1>'. Is it me? My address is {EMAIL}."
    upstream, result = await ask(sim, tmp_path, "pseudonymize", prompt)
    assert "SIEM: 'login failed for <EMAIL_1>'. Is it me? My address is <EMAIL_2>." in upstream
    assert EMAIL not in upstream
    # the simulated model echoes the prompt: the typed placeholder stays, the address comes back
    assert "login failed for <EMAIL_1>" in result["content"]
    assert f"My address is {EMAIL}." in result["content"]


@pytest.mark.parametrize(("text", "address"), [
    (json.dumps({"log": "sent to\njane@example.com"}), "jane@example.com"),
    (json.dumps({"log": "to:\tjane@example.com"}), "jane@example.com"),
    (r"tail: x\r\njane@example.com", "jane@example.com"),
    (r"C:\tmp\notes\jane@example.com", "jane@example.com"),
])
def test_a_line_break_escape_before_an_address_is_no_letter_of_it(text: str,
                                                                  address: str) -> None:
    assert found(text) == [("email", address)]


@pytest.mark.parametrize(("text", "address"), [
    (json.dumps({"path": "C:\\Users\\nora@example.com"}), "nora@example.com"),
    (r"share \\tom@example.com", "tom@example.com"),
])
def test_an_address_after_an_escaped_backslash_keeps_its_first_letter(text: str,
                                                                       address: str) -> None:
    assert found(text) == [("email", address)]


def test_an_address_after_an_escaped_line_break_leaves_json_a_reader_takes(
        redacting: PiiFilter) -> None:
    text = json.dumps({"log": "sent to\njane@example.com"})
    sent, _ = redacting.session().filter_text(text)
    assert json.loads(sent) == {"log": "sent to\n<EMAIL>"}
