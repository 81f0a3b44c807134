"""Streamed answers: placeholders split across deltas are restored whole, secrets redacted whole."""

from __future__ import annotations

import pytest

from mcp_router.messages import PiiSummary
from mcp_router.pii import Finding, PiiFilter, PiiPolicy, PiiSession

EMAIL = "jane.doe@example.com"
KEY = "ghp_" + "Ab1" * 12


@pytest.fixture
def session() -> PiiSession:
    s = PiiFilter(PiiPolicy(action="pseudonymize")).session()
    s.filter_text(f"contact {EMAIL}")
    return s


def stream(session: PiiSession, deltas: list[str]) -> tuple[list[str], str]:
    restorer = session.stream_filter()
    shown = [restorer.feed(d) for d in deltas]
    return shown, restorer.flush()


def test_a_placeholder_split_across_deltas_is_restored(session: PiiSession) -> None:
    shown, rest = stream(session, ["Write to <EMA", "IL_", "1", "> today."])
    assert "".join(shown) + rest == f"Write to {EMAIL} today."
    assert not any("<EMA" in part for part in shown)


def test_one_character_deltas_give_the_same_answer_as_the_whole(session: PiiSession) -> None:
    answer = ("Sure. I will email <EMAIL_1> tomorrow; meanwhile here is a token you can use: "
              f"{KEY} and a longer paragraph to push text past the hold-back window.\n" * 3)
    shown, rest = stream(session, list(answer))
    assert "".join(shown) + rest == session.filter_answer(answer)[0]
    assert KEY not in "".join(shown) + rest


def test_text_is_released_before_the_end_of_a_long_stream(session: PiiSession) -> None:
    words = [f"word{i} " for i in range(200)]
    shown, rest = stream(session, words)
    assert "".join(shown).startswith("word0 word1")
    assert len(rest) < 200


def test_a_secret_split_across_deltas_never_shows_a_part(session: PiiSession) -> None:
    deltas = ["Here: ", KEY[:10], KEY[10:25], KEY[25:], " done. " + "padding " * 30]
    restorer = session.stream_filter()
    released = ""
    for delta in deltas:
        released += restorer.feed(delta)
        assert KEY[:10] not in released
    released += restorer.flush()
    assert released.startswith("Here: <SECRET> done.")
    assert restorer.summary == PiiSummary(action="redact", counts={"secret": 1})


def test_a_private_key_block_is_held_until_it_ends(session: PiiSession) -> None:
    body = "\n".join(["MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7"] * 6)
    block = f"-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----"
    restorer = session.stream_filter()
    released = "".join(restorer.feed(line + "\n") for line in f"key:\n{block}\nend".split("\n"))
    assert "MIIE" not in released
    assert (released + restorer.flush()).strip() == "key:\n<SECRET>\nend"


def test_an_empty_stream_flushes_to_nothing(session: PiiSession) -> None:
    assert stream(session, []) == ([], "")
    assert stream(session, ["", ""]) == (["", ""], "")


class CountingDetector:
    """A detector that finds nothing and counts how much text it was shown."""

    name = "counting"
    entities = frozenset({"secret"})  # so that the answer filter asks it

    def __init__(self) -> None:
        self.chars = 0

    def find(self, text: str) -> list[Finding]:
        self.chars += len(text)
        return []


def test_a_long_unbroken_token_is_held_without_quadratic_rescans() -> None:
    counter = CountingDetector()
    policy = PiiPolicy(answer_actions={"secret": "redact"})
    restorer = PiiFilter(policy, detectors=[counter]).session().stream_filter()
    blob = "A" * 200_000
    shown = "".join(restorer.feed(blob[i:i + 4]) for i in range(0, len(blob), 4))
    assert shown == "" and restorer.flush() == blob
    assert counter.chars < 10 * len(blob)  # re-reading the whole buffer per delta: ~5000x
