"""Templates of agent text for the PII benchmark; each fills its slots through `Slots`."""

from __future__ import annotations

from collections.abc import Callable

from pii_corpus import Slots
from pii_values import Doc

Template = Callable[[Doc, Slots], None]


def python_snippet(doc: Doc, s: Slots) -> None:
    r = s.r
    host = r.choice(["acme", "globex"])
    doc.add(f'```python\nimport os\nimport requests\n\nBASE_URL = "https://api.{host}'
            f'.com/v{r.randint(1, 3)}"\nAPI_KEY = "')
    s.secret(doc, assigned=True)
    doc.add('"\n\n\ndef fetch_user(user_id: int) -> dict:\n    """Fetch a user; ping ')
    s.contact(doc)
    doc.add(f' if this breaks."""\n    resp = requests.get(f"{{BASE_URL}}/users/{{user_id}}", '
            f"timeout={r.randint(5, 60)})\n    resp.raise_for_status()\n"
            "    return resp.json()\n\n\n"
            f'def test_fetch_user():\n    user = {{"id": "{s.d.uuid()}", "phone": "')
    s.contact(doc)
    doc.add('", "payment": "')
    s.number(doc)
    doc.add(f'"}}\n    assert fetch_user({r.randint(1, 9999)})["id"] == user["id"]\n```\n')


def log_block(doc: Doc, s: Slots) -> None:
    r = s.r
    for _ in range(r.randint(3, 10)):
        level = r.choice(["INFO", "WARN", "ERROR", "DEBUG"])
        doc.add(f"{s.d.ts()} {level} [{s.d.uuid()}] {s.words(r.randint(2, 6))} user=")
        s.contact(doc)
        doc.add(" client_ip=")
        s.host(doc)
        doc.add(f" path=/api/v{r.randint(1, 3)}/orders/{r.randint(1, 99999)} "
                f"status={r.choice([200, 201, 404, 500, 502])} latency={r.randint(1, 4000)}ms ref=")
        s.number(doc)
        doc.add("\n")


def access_log(doc: Doc, s: Slots) -> None:
    r = s.r
    for _ in range(r.randint(2, 6)):
        s.host(doc)
        clock = f"{r.randint(0, 23):02d}:{r.randint(10, 59)}:{r.randint(10, 59)}"
        doc.add(f' - - [05/Mar/2024:{clock} +0000] '
                f'"GET /api/v1/items?page={r.randint(1, 40)} HTTP/1.1" {r.choice([200, 304, 404])} '
                f'{r.randint(100, 99999)} "-" "Mozilla/5.0" X-Forwarded-For: ')
        s.host(doc)
        doc.add("\n")


def traceback_block(doc: Doc, s: Slots) -> None:
    r = s.r
    doc.add("Traceback (most recent call last):\n"
            f'  File "/app/service/handlers.py", line {r.randint(10, 900)}, in handle\n'
            f"    result = client.charge(amount={r.randint(1, 999)}.{r.randint(10, 99)})\n"
            '  File "/usr/lib/python3.11/site-packages/httpx/_client.py", '
            f"line {r.randint(100, 2000)}, "
            "in send\nhttpx.ConnectError: [Errno 111] Connection refused (host=")
    s.host(doc)
    doc.add(f", port={r.choice([443, 5432, 6379, 8080])})\nrequest_id={s.d.uuid()} payload card=")
    s.number(doc)
    doc.add("\n")


def ticket_block(doc: Doc, s: Slots) -> None:
    r = s.r
    first, last = s.v.name()
    doc.add(f"Ticket {r.choice(['SUP', 'OPS', 'BILL'])}-{r.randint(100, 99999)}: {s.words(5)}\n"
            f"Reporter: {first.title()} {last.title()} <")
    s.contact(doc)
    doc.add(f">\nPriority: P{r.randint(1, 4)}   Created: {s.d.ts()}\nDescription:\nCustomer says "
            f"{s.words(8)}. Their account reference is ")
    s.number(doc)
    doc.add(", call back on ")
    s.contact(doc)
    doc.add(". ")
    s.rant(doc)
    doc.add(f"Steps to reproduce: {s.words(10)}.\nEnvironment: app v{r.randint(1, 5)}."
            f"{r.randint(0, 20)}.{r.randint(0, 9)}, server ")
    s.host(doc)
    doc.add("\n")


def email_block(doc: Doc, s: Slots) -> None:
    r = s.r
    first, last = s.v.name()
    doc.add(f"From: {first.title()} {last.title()} <")
    s.contact(doc)
    doc.add(">\nTo: ")
    s.contact(doc)
    doc.add(f"\nDate: Tue, {r.randint(1, 28)} Mar 2024 {r.randint(0, 23):02d}:"
            f"{r.randint(0, 59):02d}:00 "
            f"+0000\nSubject: Re: {s.words(4)}\n\nHi team,\n\n{s.words(12)}. You can reach me on ")
    s.contact(doc)
    doc.add(". Payment details for the refund: ")
    s.number(doc)
    doc.add(f".\n\n{s.words(9)}.\n\nBest,\n{first.title()}\nSenior Engineer | Acme Corp\nMobile: ")
    s.contact(doc)
    doc.add("\n")


def yaml_block(doc: Doc, s: Slots) -> None:
    r = s.r
    doc.add(f"apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: api\nspec:\n  replicas: "
            f"{r.randint(1, 9)}\n  template:\n    spec:\n      containers:\n        - name: api\n"
            f"          image: ghcr.io/acme/api@sha256:{s.d.sha(64)}\n          env:\n"
            '            - name: DATABASE_URL\n              value: "')
    s.secret(doc, assigned=True)
    doc.add('"\n            - name: UPSTREAM_HOST\n              value: "')
    s.host(doc)
    limits = f"{{cpu: {r.randint(1, 9)}00m, memory: {r.randint(1, 16)}Gi}}"
    doc.add(f'"\n          resources: {{limits: {limits}}}\n')


def env_block(doc: Doc, s: Slots) -> None:
    r = s.r
    doc.add(f"# .env (copied from prod, {s.d.ts()})\nAPP_ENV=production\n"
            f"PORT={r.choice([3000, 8080])}\n")
    s.secret(doc)
    doc.add("\nREDIS_URL=redis://cache:6379/0\nADMIN_EMAIL=")
    s.contact(doc)
    doc.add(f"\nRELEASE=v{r.randint(1, 9)}.{r.randint(0, 20)}.{r.randint(0, 9)}\n")
    s.secret(doc)
    doc.add("\n")


def sql_block(doc: Doc, s: Slots) -> None:
    doc.add("```sql\nSELECT id, email, phone, created_at FROM customers "
            f"WHERE id = '{s.d.uuid()}';\n"
            "```\n| id | email | phone | created_at |\n|----|-------|-------|------------|\n")
    for i in range(s.r.randint(1, 5)):
        doc.add(f"| {i + 1} | ")
        s.contact(doc)
        doc.add(" | ")
        s.number(doc)
        doc.add(f" | {s.d.ts()} |\n")


def shell_block(doc: Doc, s: Slots) -> None:
    r = s.r
    doc.add("$ git remote -v\norigin  git@github.com:acme/api.git (fetch)\n"
            "$ git log --oneline -2\n"
            f"{s.d.sha(7)} {s.words(4)}\n{s.d.sha(7)} {s.words(3)}\n$ pip install requests=="
            f"{r.randint(1, 2)}.{r.randint(0, 32)}.0\n"
            "Successfully installed requests-2.31.0 urllib3-2.2.1\n"
            '$ curl -s -H "Authorization: Bearer ')
    s.secret(doc, assigned=True)
    doc.add('" https://')
    s.host(doc)
    doc.add(f'/health\n{{"status": "ok", "uptime_s": {r.randint(1, 10**7)}}}\n$ ping -c 1 ')
    s.host(doc)
    doc.add("\n")


def json_block(doc: Doc, s: Slots) -> None:
    r = s.r
    doc.add(f'{{"customer": {{"id": "{s.d.uuid()}", "email": "')
    s.contact(doc)
    doc.add('", "bank_account": "')
    s.number(doc)
    doc.add(f'", "created": "{s.d.ts()}"}}, "amount": {r.randint(1, 9999)}.{r.randint(10, 99)}, '
            f'"currency": "EUR", "idempotency_key": "{s.d.uuid()}"}}\n')


def prose_block(doc: Doc, s: Slots) -> None:
    r = s.r
    doc.add(f"Hey, can you help me figure out why {s.words(7)}? The user (")
    s.contact(doc)
    version = f"v{r.randint(1, 4)}.{r.randint(0, 12)}.{r.randint(0, 9)}"
    doc.add(f") said it started after {version} went out on "
            f"{r.randint(1, 12)}/{r.randint(1, 28)}. ")
    s.rant(doc)
    doc.add("Their reference is ")
    s.number(doc)
    doc.add(f" and it happens around {r.randint(1, 12)}:{r.randint(10, 59)} pm. {s.words(10)}.\n")


def diff_block(doc: Doc, s: Slots) -> None:
    r = s.r
    doc.add("diff --git a/config/settings.py b/config/settings.py\n"
            f"index {s.d.sha(7)}..{s.d.sha(7)} 100644\n"
            f"@@ -{r.randint(1, 90)},7 +{r.randint(1, 90)},7 @@\n-DEBUG = True\n+DEBUG = False\n"
            '-ALLOWED_HOSTS = ["')
    s.host(doc)
    doc.add('"]\n+SECRET_KEY = "')
    s.secret(doc, assigned=True)
    doc.add('"\n')


def csv_block(doc: Doc, s: Slots) -> None:
    doc.add("name,contact,reference,signup\n")
    for _ in range(s.r.randint(2, 6)):
        first, last = s.v.name()
        doc.add(f"{first.title()} {last.title()},")
        s.contact(doc)
        doc.add(",")
        s.number(doc)
        doc.add(f",{s.d.ts()[:10]}\n")


TEMPLATES: tuple[Template, ...] = (
    python_snippet, log_block, access_log, traceback_block, ticket_block, email_block, yaml_block,
    env_block, sql_block, shell_block, json_block, prose_block, diff_block, csv_block,
)
