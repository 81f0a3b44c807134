"""Valid PII values for the PII benchmark, in the formats people and systems write them."""

from __future__ import annotations

import base64
import json
import random
import string
from dataclasses import dataclass, field

Span = tuple[str, int, int]
Inner = tuple[int, int] | None

FIRST = (
    "james", "mary", "robert", "patricia", "john", "jennifer", "michael", "linda", "david",
    "elizabeth", "william", "barbara", "richard", "susan", "joseph", "jessica", "thomas", "sarah",
    "wei", "priya", "ahmed", "sofia", "lukas", "chloe", "hiroshi", "fatima", "oliver", "amelia",
    "mateo", "ines", "noah", "yuki",
)
LAST = (
    "smith", "johnson", "williams", "brown", "jones", "garcia", "miller", "davis", "rodriguez",
    "martinez", "wilson", "anderson", "taylor", "thomas", "moore", "martin", "lee", "walker",
    "hall", "young", "muller", "dubois", "rossi", "kowalski", "nakamura", "okafor", "silva",
    "jensen", "novak", "fischer", "o-brien",
)
# Internationalised domains and local parts, as written (not in punycode).
IDN_DOMAINS = ("пример.рф", "münchen.de", "例子.中国", "bücher.example", "empresa.es")
IDN_LOCALS = ("josé", "jürgen.müller", "françois", "søren", "иван.петров", "王伟")
DOMAINS = (
    "gmail.com", "outlook.com", "yahoo.com", "acme-corp.com", "example.org", "fastmail.fm",
    "mail.company.co.uk", "uni-heidelberg.de", "proton.me", "contoso.io", "globex.net",
    "initech.com", "hooli.xyz", "bigcorp.com.au", "eng.startup.dev", "shop.example.app",
)
WORDS = (
    "the", "request", "failed", "after", "retry", "because", "upstream", "returned", "an", "error",
    "while", "we", "were", "processing", "the", "batch", "job", "please", "check", "config", "and",
    "deploy", "again", "customer", "reported", "that", "dashboard", "is", "slow", "since", "last",
    "release", "cache", "miss", "rate", "increased", "timeout", "exceeded", "migration", "pending",
    "review", "approved", "merged", "rollback", "queue", "worker", "latency", "spike", "database",
    "connection", "pool", "exhausted", "feature", "flag", "enabled",
)
HEX = "0123456789abcdef"
ZWSP = "\u200b"  # copied from a web page or chat, a value can carry invisible characters
ALNUM = string.ascii_letters + string.digits
URLSAFE = ALNUM + "-_"


@dataclass
class Doc:
    """Text under construction plus the labelled spans inserted into it."""

    parts: list[str] = field(default_factory=list)
    spans: list[Span] = field(default_factory=list)
    size: int = 0

    def add(self, text: str) -> None:
        self.parts.append(text)
        self.size += len(text)

    def pii(self, entity: str, text: str, inner: Inner = None) -> None:
        a, b = inner or (0, len(text))
        self.spans.append((entity, self.size + a, self.size + b))
        self.add(text)

    def text(self) -> str:
        return "".join(self.parts)


class Values:
    """Valid values; each method returns the text and, if only part of it is PII, that part."""

    def __init__(self, rng: random.Random) -> None:
        self.r = rng

    def digits(self, n: int) -> str:
        return "".join(self.r.choice(string.digits) for _ in range(n))

    def chars(self, alphabet: str, n: int) -> str:
        return "".join(self.r.choice(alphabet) for _ in range(n))

    def name(self) -> tuple[str, str]:
        return self.r.choice(FIRST), self.r.choice(LAST)

    def email(self) -> tuple[str, Inner]:
        r = self.r
        first, last = self.name()
        local = r.choice([f"{first}.{last}", f"{first[0]}{last}", f"{last}.{first}",
                          f"{first}_{last}{r.randint(1, 99)}", f"{first}{r.randint(70, 99)}",
                          f"{first}+{r.choice(['billing', 'dev'])}"])
        domain = r.choice(DOMAINS)
        host, _, tld = domain.rpartition(".")
        style = r.random()
        if style < 0.06:
            return f"{local} [at] {host.replace('.', ' [dot] ')} [dot] {tld}", None
        if style < 0.10:
            return f"{local}(at){host.replace('.', '(dot)')}(dot){tld}", None
        if style < 0.12:
            return f"{local} AT {host.replace('.', ' DOT ')} DOT {tld}", None
        if style < 0.17:  # URL-encoded in a query string, as access logs record it
            encoded = f"{local}%40{domain}"
            return f"/unsubscribe?email={encoded}&t=1", (19, 19 + len(encoded))
        if style < 0.22:
            return f"mailto:{local}@{domain}", (7, 8 + len(local) + len(domain))
        if style < 0.30:
            return f"{local.capitalize()}@{host.capitalize()}.{tld.upper()}", None
        if style < 0.34:
            return f"{r.choice((local, *IDN_LOCALS))}@{r.choice(IDN_DOMAINS)}", None
        if style >= 0.98:
            return f"{local[:2]}{ZWSP}{local[2:]}@{domain}", None
        return f"{local}@{domain}", None

    def phone(self) -> tuple[str, Inner]:
        r, d = self.r, self.digits
        area = f"{r.randint(2, 9)}{r.randint(0, 8)}{r.randint(2, 9)}"  # no N11 service codes
        exch, line = f"{r.randint(2, 9)}{r.randint(0, 9)}{r.randint(2, 9)}", d(4)
        text = r.choice([
            f"({area}) {exch}-{line}", f"{area}-{exch}-{line}", f"{area}.{exch}.{line}",
            f"+1 {area} {exch} {line}", f"+1-{area}-{exch}-{line}", f"+1{area}{exch}{line}",
            f"1-{area}-{exch}-{line}", f"+1 ({area}) {exch}-{line}", f"+1.{area}.{exch}.{line}",
            f"{area} {exch} {line}", f"+44 20 7{d(3)} {d(4)}",
            f"+44 7{r.randint(4, 9)}{d(2)} {d(6)}",
            f"020 7{d(3)} {d(4)}", f"07{r.randint(4, 9)}{d(2)} {d(6)}", f"+44 (0)20 7{d(3)} {d(4)}",
            f"(+44) 20 7{d(3)} {d(4)}", f"+33 {r.randint(1, 7)} {d(2)} {d(2)} {d(2)} {d(2)}",
            f"0{r.randint(1, 7)} {d(2)} {d(2)} {d(2)} {d(2)}", f"+49 30 {d(7)}", f"+49 151 {d(8)}",
            f"0049 30 {d(7)}", f"+81 3-{d(4)}-{d(4)}", f"+91 9{d(4)} {d(5)}",
            f"+61 4{d(2)} {d(3)} {d(3)}", f"+55 11 9{d(4)}-{d(4)}",
            f"+86 13{r.randint(0, 9)} {d(4)} {d(4)}", f"+34 6{d(2)} {d(3)} {d(3)}",
            f"+39 3{d(2)} {d(3)} {d(4)}", f"+31 6 {d(8)}", f"+52 55 {d(4)} {d(4)}",
            f"+27 82 {d(3)} {d(4)}", f"+353 87 {d(3)} {d(4)}",
        ])
        if r.random() < 0.08:
            return f"tel:{text.replace(' ', '')}", (4, 4 + len(text.replace(" ", "")))
        return text, None

    def ssn(self) -> tuple[str, str]:
        """The SSN and the context written before it (needed for the bare nine digits)."""
        r = self.r
        area = r.choice([r.randint(1, 665), r.randint(667, 899)])
        group, serial = r.randint(1, 99), r.randint(1, 9999)
        style = r.random()
        if style < 0.55:
            return f"{area:03d}-{group:02d}-{serial:04d}", r.choice(["", "", "SSN#", "SSN: "])
        if style < 0.75:
            return f"{area:03d} {group:02d} {serial:04d}", ""
        if style < 0.82:
            return f"{area:03d}.{group:02d}.{serial:04d}", "SSN "
        context = r.choice(["SSN: ", "ssn=", "Social Security Number: "])
        return f"{area:03d}{group:02d}{serial:04d}", context

    def card(self) -> str:
        r = self.r
        prefix, length = r.choice([
            ("4", 16), ("4", 16), ("4", 13), (str(r.randint(51, 55)), 16),
            (str(r.randint(2221, 2720)), 16),
            ("34", 15), ("37", 15), ("6011", 16), ("65", 16), (str(r.randint(3528, 3589)), 16),
            ("36", 14), (str(r.randint(300, 305)), 14), ("62", 16), ("62", 19), ("2200", 16),
        ])
        body = prefix + self.digits(length - len(prefix) - 1)
        number = body + luhn_digit(body)
        # How issuers print them: 4-6-5 (Amex), 4-6-4 (Diners), 4-3-3-3 (13-digit Visa),
        # 4-4-4-4[-3] otherwise.
        sizes = {15: (4, 6, 5), 14: (4, 6, 4), 13: (4, 3, 3, 3)}.get(length, (4, 4, 4, 4, 3))
        groups, pos = [], 0
        for size in sizes:
            if pos < length:
                groups.append(number[pos:pos + size])
                pos += size
        style = r.random()
        if style >= 0.98:
            return number[:8] + ZWSP + number[8:]
        return " ".join(groups) if style < 0.35 else "-".join(groups) if style < 0.55 else number

    def iban(self) -> str:
        r, d, up = self.r, self.digits, string.ascii_uppercase
        country, bban = r.choice([
            ("DE", d(18)), ("GB", self.chars(up, 4) + d(14)), ("FR", d(23)), ("ES", d(20)),
            ("IT", self.chars(up, 1) + d(22)), ("NL", self.chars(up, 4) + d(10)), ("BE", d(12)),
            ("CH", d(17)), ("AT", d(16)), ("PL", d(24)), ("SE", d(20)), ("NO", d(11)),
            ("IE", self.chars(up, 4) + d(14)), ("PT", d(21)), ("DK", d(14)),
        ])
        iban = country + iban_check(country, bban) + bban
        style = r.random()
        if style < 0.5:
            iban = " ".join(iban[i:i + 4] for i in range(0, len(iban), 4))
        return iban.lower() if style < 0.1 else iban  # as people type them into mail

    def ip(self) -> tuple[str, Inner]:
        r = self.r
        kind = r.random()
        if kind < 0.55:
            first = r.choice([10, 172, 192, 203, r.randint(1, 126), r.randint(128, 223)])
            addr = f"{first}.{r.randint(0, 255)}.{r.randint(0, 255)}.{r.randint(1, 254)}"
            if kind < 0.1:
                return f"http://{addr}:{r.choice([80, 8080, 9200])}/", (7, 7 + len(addr))
            return addr, None
        groups = [f"{r.randint(0, 0xffff):x}" for _ in range(8)]
        if kind < 0.67:
            return ":".join(groups), None
        if kind < 0.82:
            return f"2001:db8:{groups[2]}::{groups[7]}", None
        if kind < 0.88:
            addr = f"2a00:1450:{groups[2]}::{groups[6]}"
            return f"[{addr}]:443", (1, 1 + len(addr))
        if kind < 0.95:
            return f"fe80::{groups[4]}:{groups[5]}%eth0", None
        v4 = f"{r.randint(1, 223)}.{r.randint(0, 255)}.{r.randint(0, 255)}.{r.randint(1, 254)}"
        return f"::ffff:{v4}", None

    def secret(self) -> tuple[str, Inner]:
        r, c = self.r, self.chars
        kind = r.randrange(20)
        tokens = [
            lambda: "sk-proj-" + c(URLSAFE, 48) + "T3BlbkFJ" + c(URLSAFE, 48),
            lambda: "sk-ant-api03-" + c(URLSAFE, 93) + "AA", lambda: "sk-or-v1-" + c(HEX, 64),
            lambda: "sk-" + c(HEX, 32), lambda: "AKIA" + c(string.ascii_uppercase + "234567", 16),
            lambda: "AIza" + c(URLSAFE, 35), lambda: "ghp_" + c(ALNUM, 36),
            lambda: "github_pat_" + c(ALNUM, 22) + "_" + c(ALNUM, 59),
            lambda: "glpat-" + c(URLSAFE, 20), lambda: "hf_" + c(ALNUM, 34),
            lambda: f"xoxb-{self.digits(12)}-{self.digits(13)}-{c(ALNUM, 24)}",
            lambda: "sk_live_" + c(ALNUM, 24), lambda: "gsk_" + c(ALNUM, 52),
            lambda: "xai-" + c(ALNUM, 80),
            lambda: jwt(r),
        ]
        if kind < len(tokens):
            token = tokens[kind]()
            if r.random() < 0.15:  # .npmrc / .git-credentials style
                line = f"//registry.npmjs.org/:_authToken={token}"
                return line, (len(line) - len(token), len(line))
            return token, None
        if kind == 15:
            return private_key(r, escaped=False), None
        if kind == 16:
            block = private_key(r, escaped=True)
            return f'"private_key": "{block}"', (16, 16 + len(block))
        user = r.choice(["admin", "app", "deploy", "svc_etl"])
        pw = c(ALNUM + "!%*", r.randint(10, 20))
        if kind in (17, 18):
            scheme, host = r.choice([
                ("postgres", "db.internal:5432/app"), ("mysql", "mysql.internal:3306/shop"),
                ("https", "github.com/acme/infra.git"), ("redis", "cache:6379/0")])
            start = len(scheme) + 3
            return f"{scheme}://{user}:{pw}@{host}", (start, start + len(user) + 1 + len(pw))
        key = r.choice(["DB_PASSWORD", "password", "SMTP_PASSWORD", "client_secret", "api_key"])
        if kind == 19 and r.random() < 0.5:  # a token in a URL's query, more parameters after
            url = f"https://api.example.com/v1/items?access_token={pw}"
            return f"{url}&page={r.randint(1, 9)}", (len(url) - len(pw), len(url))
        return f"{key}={pw}", (len(key) + 1, len(key) + 1 + len(pw))


def luhn_digit(body: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return str((10 - total % 10) % 10)


def iban_check(country: str, bban: str) -> str:
    number = int("".join(str(int(ch, 36)) for ch in bban + country + "00"))
    return f"{98 - number % 97:02d}"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def jwt(r: random.Random) -> str:
    header = b64url(json.dumps({"alg": r.choice(["HS256", "RS256"]), "typ": "JWT"}).encode())
    claims = {"sub": str(r.randint(1, 10**9)), "exp": r.randint(1_700_000_000, 1_800_000_000)}
    return f"{header}.{b64url(json.dumps(claims).encode())}.{b64url(r.randbytes(32))}"


def private_key(r: random.Random, escaped: bool) -> str:
    kind = r.choice(["RSA PRIVATE KEY", "PRIVATE KEY", "EC PRIVATE KEY", "OPENSSH PRIVATE KEY"])
    body = base64.b64encode(r.randbytes(r.randint(120, 600))).decode()
    newline = "\\n" if escaped else "\n"
    lines = newline.join(body[i:i + 64] for i in range(0, len(body), 64))
    return f"-----BEGIN {kind}-----{newline}{lines}{newline}-----END {kind}-----"
