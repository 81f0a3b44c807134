"""Metadata labels as the cost ledger keeps them: a value is judged with its name before it."""

from __future__ import annotations

import pytest

from mcp_router.pii import PiiFilter, PiiPolicy

DEFAULT = PiiFilter(PiiPolicy())


@pytest.mark.parametrize(("name", "value", "kept"), [
    ("customer_phone", "4155552671", "<PHONE>"),
    ("phone", "4155552671", "<PHONE>"),
    ("ssn", "123456789", "<SSN>"),
    ("employee_ssn", "123456789", "<SSN>"),
    ("password", "Tr0ub4dor&3", "<SECRET>"),
    ("api_key", "0123456789abcdef0123456789abcdef", "<SECRET>"),
    ("DB_PASSWORD", "hunter2hunter2", "<SECRET>"),
])
def test_a_value_that_its_label_names_is_redacted(name: str, value: str, kept: str) -> None:
    assert DEFAULT.redact_label(name, value) == (name, kept)


@pytest.mark.parametrize(("name", "value"), [
    ("customer_phone", "4155552671"), ("ssn", "123456789"), ("password", "Tr0ub4dor&3"),
])
def test_the_same_text_in_a_prompt_is_redacted_too(name: str, value: str) -> None:
    out, summary = DEFAULT.session().filter_text(f"{name}: {value}")
    assert value not in out and summary.counts


@pytest.mark.parametrize(("name", "value", "kept"), [
    ("owner", "jane.doe@example.com", ("owner", "<EMAIL>")),
    ("jane.doe@example.com", "billing", ("<EMAIL>", "billing")),
    ("order", "4111111111111111", ("order", "<CREDIT_CARD>")),  # found alone as before
    ("note", "call 4155552671 today", ("note", "call <PHONE> today")),
])
def test_what_is_found_in_a_name_or_a_value_alone_is_still_redacted(
        name: str, value: str, kept: tuple[str, str]) -> None:
    assert DEFAULT.redact_label(name, value) == kept


@pytest.mark.parametrize(("name", "value"), [
    ("team", "billing"), ("ticket", "OPS-48213"), ("env", "prod"), ("build", "20240115.3"),
    ("version", "v4.2.1"), ("token_budget", "100000"), ("call_id", "4155552671"),
    ("request_id", "550e8400-e29b-41d4-a716-446655440000"),
])
def test_ordinary_labels_are_kept_as_given(name: str, value: str) -> None:
    assert DEFAULT.redact_label(name, value) == (name, value)


@pytest.mark.parametrize("action", ["mask", "pseudonymize", "block"])
def test_a_label_is_redacted_whatever_the_action(action: str) -> None:
    pii = PiiFilter(PiiPolicy(action=action))  # type: ignore[arg-type]
    assert pii.redact_label("ssn", "123456789") == ("ssn", "<SSN>")


def test_a_disabled_filter_keeps_labels_as_given() -> None:
    pii = PiiFilter(PiiPolicy(enabled=False))
    assert pii.redact_label("ssn", "123456789") == ("ssn", "123456789")
