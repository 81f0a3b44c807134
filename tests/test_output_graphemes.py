"""A truncated answer's head and each of its pages end between symbols as a reader sees them:
never inside a flag, a ZWJ emoji sequence, a letter with its skin tone or accent, or CR LF."""

from __future__ import annotations

import unicodedata
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mcp import Client

from mcp_router.config import parse_config
from mcp_router.outputs import CHARS_PER_TOKEN, AnswerPages, result_tokens, truncate
from mcp_router.server import create_server

FRANCE = "\U0001f1eb\U0001f1f7"
GERMANY = "\U0001f1e9\U0001f1ea"
FAMILY = "\U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466"
THUMBS_UP_MEDIUM = "\U0001f44d\U0001f3fd"
E_ACUTE_CIRCUMFLEX = "e\u0301\u0302"
SCOTLAND = "\U0001f3f4\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f"
RED_HEART = "\u2764\ufe0f"

TEXTS = {
    "flags": "a" + FRANCE * 2000,
    "zwj_family": "a" + FAMILY * 2000,
    "skin_tone": "x" + THUMBS_UP_MEDIUM * 2000,
    "combining": "ab" + E_ACUTE_CIRCUMFLEX * 3000,
}


def is_regional(char: str) -> bool:
    return "\U0001f1e6" <= char <= "\U0001f1ff"


def starts_attached(char: str) -> bool:
    """Whether `char` is drawn as part of the symbol before it."""
    return (char == "\u200d" or "\U0001f3fb" <= char <= "\U0001f3ff"
            or "\U000e0020" <= char <= "\U000e007f" or "\ufe00" <= char <= "\ufe0f"
            or unicodedata.category(char) in ("Mn", "Me", "Mc"))


def splits_a_symbol(text: str, at: int) -> bool:
    """Whether cutting `text` at `at` parts one symbol (for texts whose flags are all pairs)."""
    if not 0 < at < len(text):
        return False
    before, after = text[at - 1], text[at]
    if before == "\u200d" or starts_attached(after) or (before, after) == ("\r", "\n"):
        return True
    run = len(text[:at]) - len(text[:at].rstrip("".join(map(chr, range(0x1F1E6, 0x1F200)))))
    return is_regional(after) and run % 2 == 1


def page_ends(text: str, page_chars: int) -> list[int]:
    return list(AnswerPages(page_chars).bounds(text)[1:-1])


@pytest.mark.parametrize("name", list(TEXTS))
def test_a_truncated_head_ends_between_symbols(name: str) -> None:
    text = TEXTS[name]
    head = truncate(text, 499)  # a budget whose count alone cuts inside each kind of symbol
    assert head is not None and text.startswith(head)
    assert not splits_a_symbol(text, len(head))
    assert result_tokens(head) <= 499


@pytest.mark.parametrize("name", list(TEXTS))
def test_every_page_ends_between_symbols(name: str) -> None:
    text = TEXTS[name]
    pages = AnswerPages(1000)
    bounds = pages.bounds(text)
    assert [e for e in bounds[1:-1] if splits_a_symbol(text, e)] == []
    assert "".join(text[a:b] for a, b in zip(bounds, bounds[1:], strict=False)) == text
    assert max(result_tokens(text[a:b]) for a, b in zip(bounds, bounds[1:], strict=False)) \
        <= 1000 // CHARS_PER_TOKEN


def test_a_flag_on_a_page_of_its_own_reads_as_the_same_flag() -> None:
    text = "a" + FRANCE * 2000
    bounds = AnswerPages(1000).bounds(text)
    for start, end in zip(bounds[1:], bounds[2:], strict=False):
        assert text[start:end] == FRANCE * ((end - start) // 2)


def test_a_cr_lf_pair_stays_on_one_page() -> None:
    text = "x" * 999 + "\r\n" + "y" * 3000
    assert AnswerPages(1000).bounds(text)[1] == 999
    assert truncate(text, 250) == "x" * 999


def test_ascii_is_cut_where_the_count_says() -> None:
    text = "word " * 2000
    assert AnswerPages(1000).bounds(text) == tuple(range(0, 10_001, 1000))
    head = truncate(text, 500)
    assert head is not None and len(head) == 2000


def test_a_run_of_marks_longer_than_the_step_back_is_cut_where_the_count_says() -> None:
    # Zalgo text: no boundary within reach, so the page is cut rather than nearly emptied
    # (a mark counts as a token: 250 fill a page of 1,000 English characters).
    text = "z" + "\u0301" * 5000
    bounds = AnswerPages(1000).bounds(text)
    assert bounds[:4] == (0, 250, 500, 750) and bounds[-1] == len(text)


def test_a_page_too_small_for_one_symbol_still_moves_forward() -> None:
    text = FAMILY * 10
    bounds = AnswerPages(4).bounds(text)
    assert bounds[-1] == len(text)
    assert all(b > a for a, b in zip(bounds, bounds[1:], strict=False))


SYMBOLS = st.sampled_from([FRANCE, GERMANY, FAMILY, THUMBS_UP_MEDIUM, E_ACUTE_CIRCUMFLEX,
                           SCOTLAND, RED_HEART, "\r\n", "a", " ", "é", "\u4e2d", "\u0416"])


@settings(max_examples=200, deadline=None)
@given(symbols=st.lists(SYMBOLS, min_size=1, max_size=400),
       page_chars=st.integers(min_value=80, max_value=400))
def test_pages_of_any_mix_of_symbols_end_between_symbols(symbols: list[str],
                                                          page_chars: int) -> None:
    text = "".join(symbols)
    bounds = AnswerPages(page_chars).bounds(text)
    pages = [text[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
    assert "".join(pages) == text
    tokens = -(-page_chars // CHARS_PER_TOKEN)
    for start, page in zip(bounds, pages, strict=False):
        assert page and result_tokens(page) <= tokens
        assert not starts_attached(page[0])
        assert start + len(page) == len(text) or not (
            page.endswith("\u200d") or splits_a_symbol(text, start + len(page)))
    head = truncate(text, tokens)
    assert head is None or not splits_a_symbol(text, len(head))


LOCAL = """\
providers:
  local: {kind: openai, base_url: "http://local.test/v1", stream: false}
routes:
  default: {targets: [{provider: local, model: m}]}
cache: {enabled: false}
output: {max_result_tokens: 2000, page_chars: 1000}
"""


def answering(text: str, tmp_path: Path) -> Any:
    def upstream(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"model": "m", "choices": [{
            "index": 0, "message": {"role": "assistant", "content": text},
            "finish_reason": "stop"}], "usage": {"prompt_tokens": 3, "completion_tokens": 9}})

    return create_server(parse_config(LOCAL, env={}), home=tmp_path, env={},
                         transport=httpx.MockTransport(upstream))


@pytest.mark.anyio
async def test_a_host_reading_the_pages_of_a_flag_answer_sees_the_same_flags(
        tmp_path: Path) -> None:
    text = TEXTS["flags"]
    async with Client(answering(text, tmp_path)) as client:
        result = await client.call_tool("chat_completion", {"prompt": "x", "max_tokens": 100000})
        data = result.structured_content
        assert data is not None and data["truncated"] is True
        base = data["full_text"].rsplit("/", 1)[0]
        pages = [(await client.read_resource(f"{base}/{n}")).contents[0].text  # type: ignore
                 for n in range(1, data["pages"] + 1)]
    assert "".join(pages) == text
    assert data["content"].endswith(FRANCE)
    assert all(page.replace(FRANCE, "") in ("", "a") for page in pages)
