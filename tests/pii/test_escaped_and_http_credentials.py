"""Credentials in JSON-escaped tool-call arguments, base64 secrets with `=` padding, and HTTP
Basic credentials (`Authorization: Basic …`, `curl -u user:password`) are found; the shapes
around them that are not credentials are not."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mcp_router.pii import PiiFilter, PiiPolicy
from mcp_router.pii.actions import Action
from tests.pii.support import entities, found

PASSWORD = "S3cr3tP4ss"
API_KEY = "Zx81kQ2mP0aL9vB3nC7d"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzQ8sPLMN3a"
ARGS = {"host": "db.internal", "password": PASSWORD, "api_key": API_KEY,
        "aws_secret_access_key": AWS_SECRET}
CREDS = base64.b64encode(b"admin:S3cr3tP4ss").decode()


def tool_call(arguments: dict[str, str]) -> str:
    """An assistant's tool call as agents send it: the arguments a JSON string inside JSON."""
    return json.dumps({"tool_calls": [{"id": "call_1", "type": "function", "function": {
        "name": "deploy", "arguments": json.dumps(arguments)}}]})


def test_secrets_in_json_escaped_tool_call_arguments_are_found_exactly() -> None:
    assert found(tool_call(ARGS)) == [("secret", PASSWORD), ("secret", API_KEY),
                                      ("secret", AWS_SECRET)]


@pytest.mark.parametrize("action", ["redact", "pseudonymize"])
def test_redacting_escaped_arguments_keeps_them_json(action: Action) -> None:
    out, _ = PiiFilter(PiiPolicy(action=action)).session().filter_text(tool_call(ARGS))
    arguments = json.loads(json.loads(out)["tool_calls"][0]["function"]["arguments"])
    assert arguments["host"] == "db.internal"
    assert not {PASSWORD, API_KEY, AWS_SECRET} & set(arguments.values())
    assert all(arguments[k].startswith("<SECRET") for k in ARGS if k != "host")


@pytest.mark.parametrize(("arguments", "secret"), [
    ({"cmd": "mysql --password=Hunter2Hunter2"}, "Hunter2Hunter2"),  # bare, before `\"`
    ({"headers": {"Authorization": "Bearer opaque-Token-1234567890"}}, "opaque-Token-1234567890"),
    ({"headers": {"Authorization": f"Basic {CREDS}"}}, CREDS),
    ({"cmd": f"curl -u admin:{PASSWORD} https://api.internal"}, PASSWORD),
])
def test_a_credential_before_an_escaped_quote_is_found_without_the_backslash(
        arguments: dict[str, object], secret: str) -> None:
    text = json.dumps({"arguments": json.dumps(arguments)})
    assert found(text) == [("secret", secret)]
    out, _ = PiiFilter(PiiPolicy()).session().filter_text(text)
    assert secret not in out and json.loads(json.loads(out)["arguments"])


def test_secrets_escaped_twice_are_found() -> None:
    text = json.dumps({"log": json.dumps({"request": json.dumps({"password": PASSWORD})})})
    assert found(text) == [("secret", PASSWORD)]


MANIFEST = """apiVersion: v1
kind: Secret
metadata: {name: app-db}
type: Opaque
data:
  DB_PASSWORD: UzNjcjN0UDRzcw==
  API_KEY: Wng4MWtRMm1QMGFMOXZCM25DN2Q=
"""


def test_base64_secrets_with_padding_in_a_kubernetes_secret_are_found() -> None:
    assert found(MANIFEST) == [("secret", "UzNjcjN0UDRzcw=="),
                               ("secret", "Wng4MWtRMm1QMGFMOXZCM25DN2Q=")]


@pytest.mark.parametrize(("text", "secret"), [
    ("client_secret: Zk9vQmFyQmF6MTIzNDU2Nzg5MA==", "Zk9vQmFyQmF6MTIzNDU2Nzg5MA=="),
    ('api_key = "dGhpc2lzYXNlY3JldDEyMz="', "dGhpc2lzYXNlY3JldDEyMz="),
    ("password=token=Abc123XyZ789", "Abc123XyZ789"),  # a nested assignment's value, not its name
])
def test_a_value_ending_in_equals_signs_is_a_secret_unless_it_assigns(text: str,
                                                                     secret: str) -> None:
    assert found(text) == [("secret", secret)]


@pytest.mark.parametrize("text", [
    "data:\n  tls.crt: TUlJQ0RqQ0NBYllDQ1FEdw==\n  ca.crt: Q2VydGlmaWNhdGVBdXRob3JpdHk=",
    "checksum: YWJjZGVmZ2hpams=",
    "password = getpass.getpass()",
    "api_key=settings.API_KEY",
])
def test_base64_outside_a_secret_name_and_references_are_not_secrets(text: str) -> None:
    assert "secret" not in entities(text)


@pytest.mark.parametrize("text", [
    f"Why does this fail?\ncurl -H 'Authorization: Basic {CREDS}' https://api.internal/v1",
    f'{{"headers": {{"Authorization": "Basic {CREDS}"}}}}',
    f"GET /v1 HTTP/1.1\r\nHost: api.internal\r\nAuthorization: Basic {CREDS}\r\n\r\n",
    f"authorization: basic {CREDS}",
])
def test_basic_credentials_are_found(text: str) -> None:
    assert found(text) == [("secret", CREDS)]


def test_basic_credentials_without_padding_are_found() -> None:
    token = CREDS.rstrip("=")
    assert found(f"Authorization: Basic {token}") == [("secret", token)]


# Printable text: letters, digits, punctuation, symbols and the space, in any script.
printable = st.characters(categories=("L", "N", "P", "S"), include_characters=" ")


@given(st.text(st.characters(categories=("L", "N", "P", "S"), exclude_characters=":"),
               min_size=1, max_size=20),
       st.text(printable, min_size=3, max_size=30))
def test_any_basic_user_and_password_are_found_whole(user: str, password: str) -> None:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    assert found(f'-H "Authorization: Basic {token}"') == [("secret", token)]


@pytest.mark.parametrize(("text", "secret"), [
    (f"curl -u admin:{PASSWORD} https://api.internal/v1/users", PASSWORD),
    (f"curl --user admin:{PASSWORD} https://api.internal", PASSWORD),
    (f"curl --user=admin:{PASSWORD} https://api.internal", PASSWORD),
    ("curl -u 'admin:P@ss w0rd!' https://api.internal", "P@ss w0rd!"),
    ('curl -u "deploy:Summer!!" https://api.internal', "Summer!!"),  # 8 characters
    ("curl -s -u admin:hunter2 https://api.internal", "hunter2"),  # password-like
])
def test_the_password_of_a_user_option_is_found(text: str, secret: str) -> None:
    assert found(text) == [("secret", secret)]


@pytest.mark.parametrize("text", [
    "The basic idea: basic auth sends Basic credentials in a header, see the basic example.",
    "Authorization: Basic dGVzdA==",  # decodes to `test`: no user:password
    "Use HTTP Basic authentication for the admin API",
    "curl -u root https://api.internal",
    "curl -u $USER:$PASS https://api.internal",
    'curl -u "${API_USER}:${API_PASS}" https://api.internal',
    "docker run -u 1000:1000 app",
    'docker run -u "$(id -u):$(id -g)" app',
    "docker exec -u www-data:www-data web php artisan migrate",
    "git push -u origin main:main",
    "sudo -u postgres psql",
    "sort -u names.txt > unique.txt",
])
def test_prose_and_options_that_are_not_credentials_are_left_alone(text: str) -> None:
    assert "secret" not in entities(text)
