"""Credentials: vendor keys, JWTs, private key blocks and passwords are found; references not."""

from __future__ import annotations

import pytest

from mcp_router.pii import PiiFilter, PiiPolicy
from tests.pii.support import entities, found

A48 = "aB3dE5fG7hJ9kL1mN2pQ4rS6tU8vW0xY2zA4bC6dE8fG0hJ2"
HEX64 = "0123456789abcdef" * 4
TOKENS = {
    "OpenAI project": f"sk-proj-{A48}T3BlbkFJ{A48}",
    "OpenAI legacy": "sk-" + A48,
    "Anthropic": "sk-ant-api03-" + A48 * 2 + "AA",
    "OpenRouter": "sk-or-v1-" + HEX64,
    "DeepSeek": "sk-" + HEX64[:32],
    "AWS access key id": "AKIAIOSFODNN7EXAMPLE",
    "Google API key": "AIzaSyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY",
    "Google OAuth token": "ya29.a0AfH6SMBx3kL9mN2pQ4rS6tU8vW0",
    "GitHub classic": "ghp_" + A48[:36],
    "GitHub fine-grained": "github_pat_11ABCDEFG0123456789_" + A48 + "abcdefghij",
    "GitLab": "glpat-x9Y8z7W6v5U4t3S2r1Q0",
    "Slack bot": "xoxb-123456789012-1234567890123-" + A48[:24],
    "Hugging Face": "hf_" + "abcdefghijklmnopqrstuvwxyzABCDEFGH",
    "Stripe": "sk_live_" + A48[:24],
    "Groq": "gsk_" + A48,
    "xAI": "xai-" + A48 * 2,
    "npm": "npm_" + A48[:36],
    "JWT": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0."
           "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
}


@pytest.mark.parametrize("token", TOKENS.values(), ids=TOKENS.keys())
def test_a_vendor_key_or_token_is_found(token: str) -> None:
    assert found(f'OPENAI_API_KEY="{token}" # rotate me') == [("secret", token)]


@pytest.mark.parametrize("token", TOKENS.values(), ids=TOKENS.keys())
def test_a_vendor_key_is_found_in_a_header(token: str) -> None:
    assert ("secret", token) in found(f"curl -H 'Authorization: Bearer {token}' https://api.x")


@pytest.mark.parametrize("kind", ["RSA PRIVATE KEY", "PRIVATE KEY", "EC PRIVATE KEY",
                                  "OPENSSH PRIVATE KEY", "PGP PRIVATE KEY BLOCK"])
def test_a_private_key_block_is_found_whole(kind: str) -> None:
    block = f"-----BEGIN {kind}-----\nMIIEpAIBAAKCAQEA1x2y3z\nQkL0mN+/abc=\n-----END {kind}-----"
    assert found(f"key:\n{block}\nthanks") == [("secret", block)]


def test_a_json_escaped_or_cut_short_private_key_is_found() -> None:
    escaped = ("-----BEGIN PRIVATE KEY-----\\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\\n"
               "-----END PRIVATE KEY-----")
    assert found(f'{{"private_key": "{escaped}"}}') == [("secret", escaped)]
    cut = "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA1x2y3zQkL0mN"
    assert found(cut) == [("secret", cut)]


@pytest.mark.parametrize(("text", "secret"), [
    ("postgres://admin:s3cr3tP4ss@db.internal:5432/app", "admin:s3cr3tP4ss"),
    ("git clone https://bot:ghs_tok3nValue@github.com/acme/x.git", "bot:ghs_tok3nValue"),
    ("redis://:Zk8!pass@cache:6379/0", ":Zk8!pass"),
    ('DB_PASSWORD="Tr0ub4dor&3"', "Tr0ub4dor&3"),
    ("password: hunter2hunter2", "hunter2hunter2"),
    ("SMTP_PASS=iKavOOCrlVqx", "iKavOOCrlVqx"),
    ('"client_secret": "d8f7a6s5d4f3g2h1"', "d8f7a6s5d4f3g2h1"),
    ("SECRET_KEY = 'django-insecure-8f7a6s5d4f3g2h1'", "django-insecure-8f7a6s5d4f3g2h1"),
    ("x-api-key: 3f9a7c2e5b1d4f6a8c0e", "3f9a7c2e5b1d4f6a8c0e"),
    ("Authorization: Bearer opaque-Token-1234567890", "opaque-Token-1234567890"),
])
def test_a_password_or_token_given_to_a_secret_name_is_found(text: str, secret: str) -> None:
    assert ("secret", secret) in found(text)


@pytest.mark.parametrize("text", [
    "OPENAI_API_KEY=${OPENAI_API_KEY}",
    "api_key = os.environ['ANTHROPIC_API_KEY']",
    "token: process.env.GITHUB_TOKEN",
    "password: ********",
    "API_KEY=<your-api-key>",
    "OPENAI_API_KEY=sk-your-key-here",
    "from sklearn import sk-learn-compatible-estimator",
    "api_key=None",
    "password = getpass.getpass()",
    "password: str = Field(...)",
    "secretName: tls-cert-prod",
    "password_reset_url = 'https://app.example.com/reset'",
    "max_tokens=100000000",
    "DB_PASSWORD={{ .Values.db.password }}",
    "postgres://app@db:5432/app",
    "https://${GH_USER}:${GH_TOKEN}@github.com/acme/infra.git",
    "commit 3f786850e387550fdab836ed7e6dc881de23001b",
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl ci@host",
    "-----BEGIN CERTIFICATE-----\nMIIDdzCCAl+gAwIBAgIEAgAAuTANBgkq\n-----END CERTIFICATE-----",
    "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcD\n-----END PUBLIC KEY-----",
    "request 550e8400-e29b-41d4-a716-446655440000",
])
def test_references_placeholders_and_public_material_are_not_secrets(text: str) -> None:
    assert "secret" not in entities(text)


def test_a_password_after_a_letter_whose_lower_case_is_longer_is_found_where_it_is() -> None:
    # "İ".lower() is two characters: the keyword search must not shift the offsets.
    assert found("İstanbul office: password=Hunter2Hunter2!") == [("secret", "Hunter2Hunter2!")]


B64 = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj"  # one 64-char line
HEADER = "-----BEGIN PRIVATE KEY-----"


OPENSSH = "-----BEGIN OPENSSH PRIVATE KEY-----"


@pytest.mark.parametrize(("prose", "header"), [
    (f"My key.pem starts with {HEADER} but nginx says no start line, what should I check?",
     HEADER),
    (f"The file begins with {OPENSSH} and you should never share it. Step 2: ssh-copy-id.",
     OPENSSH),
    (f"It should start with {HEADER} and end with -----END PRIVATE KEY-----, nothing else.",
     HEADER),
    (f"Make sure the header line {HEADER}\nis on its own line. Then run openssl pkey -check.",
     HEADER),
    (f"Save it after {HEADER} /etc/ssl/private/server.key is the usual place", HEADER),
])
def test_a_pem_header_mentioned_in_prose_hides_the_header_and_nothing_after_it(
        prose: str, header: str) -> None:
    assert found(prose) == [("secret", header)]


def test_a_question_about_a_key_reaches_the_model_with_only_the_header_redacted() -> None:
    session = PiiFilter(PiiPolicy()).session()
    question = "My key.pem starts with {} but nginx says no start line, what should I check?"
    out, _ = session.filter_text(question.format(HEADER))
    assert out == question.format("<SECRET>")


def test_an_answer_explaining_key_files_keeps_its_instructions() -> None:
    session = PiiFilter(PiiPolicy()).session()
    answer = (f"A key file looks like this:\n\n{HEADER}\n...base64 data...\n-----END PRIVATE KEY"
              f"-----\n\nMake sure the header line {HEADER} is on its own line. Then run openssl"
              " pkey -in key.pem -check, set chmod 600 key.pem and restart nginx.")
    out, _ = session.filter_answer(answer)
    assert out.endswith("<SECRET> is on its own line. Then run openssl pkey -in key.pem -check,"
                        " set chmod 600 key.pem and restart nginx.")


@pytest.mark.parametrize(("block", "after"), [
    (f"-----BEGIN RSA PRIVATE KEY-----\n{B64}\n{B64}\nQkL0mN+/abc=", "\n\nWhy does this fail?"),
    (f"-----BEGIN RSA PRIVATE KEY-----\n{B64}\n{B64[:40]}", " [truncated] what is wrong?"),
    (f"-----BEGIN RSA PRIVATE KEY-----\r\n{B64}\r\n{B64}\r\nQkL0mN+/abc=", "\r\nIs it valid?"),
    (f"-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,"
     f"8C5F1A2B3C4D5E6F8C5F1A2B3C4D5E6F\n\n{B64}\n{B64}", "\nIt asks for a passphrase."),
    (f"{HEADER} {B64} {B64}", " is what I pasted, help"),
    (f"{HEADER}\n{B64}\n...\n{B64[:20]}==", "\nthat is the gist"),
    (f"{HEADER}\\n{B64[:9]}\\/{B64}\\n{B64[:30]}", '", "client_email": "x"'),
])
def test_a_key_block_cut_short_is_hidden_up_to_where_its_material_ends(block: str,
                                                                       after: str) -> None:
    assert found(f"key:\n{block}{after}") == [("secret", block)]


@pytest.mark.parametrize("block", [
    f"-----BEGIN RSA PRIVATE KEY-----\r\n{B64}\r\n{B64}\r\nQkL0mN+/abc=\r\n"
    "-----END RSA PRIVATE KEY-----",
    f"-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,"
    f"8C5F1A2B3C4D5E6F8C5F1A2B3C4D5E6F\n\n{B64}\nQkL0mN+/abc=\n-----END RSA PRIVATE KEY-----",
    f"-----BEGIN OPENSSH PRIVATE KEY----- {B64} {B64} b3Bl= -----END OPENSSH PRIVATE KEY-----",
    f"-----BEGIN PGP PRIVATE KEY BLOCK-----\nVersion: GnuPG v2\n\n{B64}\n{B64}\n=nUQs\n"
    "-----END PGP PRIVATE KEY BLOCK-----",
    f"{HEADER}\n{B64}\n...\n{B64[:20]}==\n-----END PRIVATE KEY-----",
    f"  {HEADER}\n  {B64}\n  QkL0mN+/abc=\n  -----END PRIVATE KEY-----",
])
def test_a_key_block_in_any_layout_is_found_whole(block: str) -> None:
    assert found(f"key:\n{block}\nthanks") == [("secret", block.strip())]


@pytest.mark.parametrize(("text", "secret"), [
    ("secret: Xk9pL2qZr7wT", "Xk9pL2qZr7wT"),
    ("password: summer-time-42", "summer-time-42"),
    ("token: prod-api-tok3n-8f7a6s5d4f3g2h1", "prod-api-tok3n-8f7a6s5d4f3g2h1"),
])
def test_a_secret_with_hyphens_is_still_a_secret(text: str, secret: str) -> None:
    assert found(text) == [("secret", secret)]


@pytest.mark.parametrize("text", [
    "secret: my-app-secret-v2",
    "secretRef:\n  secret: db-credentials-prod-2",
    "api_key: billing-service-key-v10",
])
def test_the_name_of_a_kubernetes_secret_is_not_a_secret(text: str) -> None:
    assert "secret" not in entities(text)


CODE = [
    "def refresh(token: OAuth2Token) -> None:",
    "async def handler(secret: SecretBytes):",
    "def set_password(password: HashedPassword):",
    "client = Client(api_key=settings.API_KEY)",
    "def connect(token: OAuth2Token = None, api_key: HTTPBearerCredentials | None = None):",
    "session = Session(auth=Auth(token=config.github.TOKEN))",
]


@pytest.mark.parametrize("line", CODE)
def test_code_that_names_or_types_a_credential_is_sent_unchanged(line: str) -> None:
    assert PiiFilter(PiiPolicy()).session().filter_text(line)[0] == line


def test_code_the_model_writes_comes_back_unchanged() -> None:
    answer = "```python\n" + "\n".join(CODE) + "\n```"
    assert PiiFilter(PiiPolicy()).session().filter_answer(answer)[0] == answer


@pytest.mark.parametrize(("line", "out"), [
    ("curl 'https://api.example.com/v1/items?token=Abc123XyZ789&page=2&sort=desc'",
     "curl 'https://api.example.com/v1/items?token=<SECRET>&page=2&sort=desc'"),
    ("https://app.example.com/cb#access_token=Abc123XyZ789&state=af0ifjsldkj",
     "https://app.example.com/cb#access_token=<SECRET>&state=af0ifjsldkj"),
    ("git clone https://x-access-token:ghs_abcdefghijklmnopqrstuvwxyz0123456789@github.com/"
     "org/repo.git", "git clone https://<SECRET>@github.com/org/repo.git"),
    ("client = Client(api_key='sk-proj-abc123DEF456ghi789JKL012mno345')",
     "client = Client(api_key='<SECRET>')"),
    ("login(user, password=Hunter2Hunter2)", "login(user, password=<SECRET>)"),
    ("connect(password=Tr0ub4dor3).run()", "connect(password=<SECRET>).run()"),
    ("headers = {token: Abc123XyZ789}", "headers = {token: <SECRET>}"),
])
def test_only_the_credential_in_code_or_a_url_is_replaced(line: str, out: str) -> None:
    assert PiiFilter(PiiPolicy()).session().filter_text(line)[0] == out


@pytest.mark.parametrize(("text", "secret"), [
    ("Log in as admin (password: Hunter2024) and retry", "Hunter2024"),
    ("password: Tr0ub4dor&3", "Tr0ub4dor&3"),  # `&` and `)` are part of a bare password
    ("DB_PASSWORD=Pa55)word!", "Pa55)word!"),
    ("token: OAuth2Token", "OAuth2Token"),  # a value, not a parameter's type
    ("my account(password: Welcome2Home)", "Welcome2Home"),  # a password types no parameter
])
def test_a_password_keeps_the_characters_that_only_end_code_or_urls(text: str,
                                                                    secret: str) -> None:
    assert ("secret", secret) in found(text)
