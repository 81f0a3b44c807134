"""`PiiPolicy`: built from `PiiConfig` plus the fields it lacks so far, and validated."""

from __future__ import annotations

import pytest

from mcp_router.config import PiiConfig, parse_config
from mcp_router.pii import PiiFilter, PiiPolicy
from tests.pii.support import found


def test_a_policy_is_built_from_the_config() -> None:
    cfg = PiiConfig(action="mask", custom=[{"name": "ssn", "pattern": r"\b\d{3}-\d{2}-\d{4}\b"}])
    assert PiiPolicy.from_config(cfg) == PiiPolicy(
        action="mask", custom=(("ssn", r"\b\d{3}-\d{2}-\d{4}\b"),))


def test_fields_the_config_lacks_come_as_overrides() -> None:
    policy = PiiPolicy.from_config(PiiConfig(), actions={"secret": "block"}, profanity=False,
                                   entities={"email", "secret"})
    assert policy.action_for("secret") == "block"
    assert policy.action_for("email") == "redact"
    assert policy.entities == frozenset({"email", "secret"})
    assert not policy.profanity


def test_the_shipped_team_config_builds_a_working_filter() -> None:
    team = parse_config("""
providers: {p: {kind: openai, base_url: "http://127.0.0.1:1/v1"}}
routes: {default: {targets: [{provider: p, model: m}]}}
pii:
  enabled: true
  action: redact
  custom:
    - {name: ssn, pattern: '\\b\\d{3}-\\d{2}-\\d{4}\\b'}
    - {name: credit_card, pattern: '\\b\\d{16}\\b'}
""")
    pii = PiiFilter(PiiPolicy.from_config(team.pii))
    assert found("order 1234567812345678, ssn 123-45-6789", pii) == [("ssn", "123-45-6789")]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"action": "erase"}, "unknown action 'erase'"),
    ({"actions": {"email": "shred"}}, "unknown action 'shred'"),
    ({"actions": {"passport": "block"}}, "unknown entity type 'passport'"),
    ({"entities": frozenset({"emails"})}, "unknown entity type 'emails'"),
    ({"answer_actions": {"email": "pseudonymize"}},
     "answer_actions.email: use redact, mask or block"),
])
def test_a_policy_with_unknown_actions_or_types_is_rejected(kwargs: dict[str, object],
                                                            message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PiiPolicy(**kwargs)  # type: ignore[arg-type]


def test_custom_names_are_known_entity_types() -> None:
    policy = PiiPolicy(custom=(("employee_id", r"EMP-\d+"),), actions={"employee_id": "block"})
    assert policy.action_for("employee_id") == "block"
