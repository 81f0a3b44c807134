"""Seeded labelled agent text for the PII benchmark: code, logs, tickets, mail, configs, shells.

Every slot in a template is filled either with a PII value (labelled) or with a decoy that
real agent text is full of and that is *not* PII (order numbers, timestamps, UUIDs, versions,
git remotes, hashes, Luhn-invalid numbers, unissuable SSNs, template references…).
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable

from pii_values import HEX, WORDS, Doc, Values, b64url

Sample = tuple[str, list[tuple[str, int, int]]]


class Decoys:
    """Look-alikes that must not be flagged."""

    def __init__(self, rng: random.Random, values: Values) -> None:
        self.r, self.v = rng, values

    def uuid(self) -> str:
        return str(uuid.UUID(int=self.r.getrandbits(128), version=4))

    def ts(self) -> str:
        r = self.r
        return (f"2024-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}T{r.randint(0, 23):02d}:"
                f"{r.randint(0, 59):02d}:{r.randint(0, 59):02d}.{r.randint(0, 999):03d}Z")

    def sha(self, n: int = 40) -> str:
        return self.v.chars(HEX, n)

    def number(self) -> str:
        r, d = self.r, self.v.digits
        card = "".join(c for c in self.v.card() if c.isdigit())
        bad_card = card[:-1] + str((int(card[-1]) + r.randint(1, 9)) % 10)
        ean = "400" + d(9)
        ean += str(-sum(int(c) * (3 if i % 2 else 1) for i, c in enumerate(ean)) % 10)
        return r.choice([
            self.uuid(), self.ts(), str(r.randint(1_600_000_000, 1_800_000_000)),
            str(r.randint(1_600_000_000_000, 1_800_000_000_000)), f"ORD-2024-{d(6)}",
            f"#{r.randint(10**8, 10**9)}", f"order {d(16)}", bad_card,
            " ".join(bad_card[i:i + 4] for i in range(0, len(bad_card), 4)),
            f"{r.choice(['000', '666', '9' + d(2)])}-{d(2)}-{d(4)}", f"{d(3)}-00-{d(4)}",
            f"123-456-{d(4)}", f"(0{d(2)}) {d(3)}-{d(4)}", f"555-01{d(2)}", f"INV-{d(9)}",
            f"${r.randint(1, 99)},{d(3)}.{d(2)}", f"{d(5)}-{d(4)}", f"1Z{d(3)}AA1{d(10)}",
            f"978-{r.randint(0, 1)}-{d(3)}-{d(5)}-{r.randint(0, 9)}", f"EAN {ean}",
            f"IMEI 35{d(12)}", f"{r.randint(1, 99999)}ms", f"{r.randint(1, 2**31)} bytes",
            f"0x7ff{self.sha(9)}", f"build {r.randint(2020, 2024)}{d(4)}.{r.randint(1, 9)}",
            f"{r.randint(1, 12):02d}/{r.randint(1, 28):02d}/2024", f"line {r.randint(1, 4000)}",
            f"pid {r.randint(100, 99999)}", f"{r.randint(1, 64)}Gi", f"ticket {d(7)}",
            f"DE{d(2)} {d(4)} {d(4)} {d(4)} {d(4)} {d(2)}", f"{d(4)} {d(4)} {d(4)}",
            f"tracking {d(12)}", f"{d(2)}:{d(2)}:{d(2)}",
            f"v{r.randint(1, 9)}.{r.randint(0, 30)}.{d(4)}",
            f"v0.0.0-2024{d(10)}-{self.sha(12)}", f"container {self.sha(12)}",
        ])

    def contact(self) -> str:
        r = self.r
        org, repo = r.choice(["acme", "platform-team", "data"]), r.choice(["api", "infra", "web"])
        return r.choice([
            f"git@github.com:{org}/{repo}.git", f"ssh://git@gitlab.com/{org}/{repo}.git",
            f"https://github.com/{org}/{repo}.git", f"icon@{r.randint(2, 3)}x.png",
            "@types/node@20.11.5", f"lodash@4.17.{r.randint(1, 21)}", "user@localhost",
            f"@{r.choice(['alice', 'bob', 'oncall'])}", f"nginx@sha256:{self.sha(64)}",
            "<your-email>",
            "support form", f"{r.randint(1, 9)}@{r.randint(1, 9)}x", "@app.get('/users/{user_id}')",
            "x@self.W", "deploy@ci-runner-7", f"^{r.randint(1, 9)}.{r.randint(0, 9)}.0",
        ])

    def host(self) -> str:
        r = self.r
        n = r.randint
        return r.choice([
            "127.0.0.1", "0.0.0.0", "localhost:8080", "api.internal.svc.cluster.local", "::1",
            "255.255.255.0", f"version {n(1, 9)}.{n(0, 20)}.{n(0, 9)}.{n(0, 200)}", "std::string",
            f"v{n(1, 9)}.{n(0, 20)}.{n(0, 30)}", "1.3.6.1.4.1.311.21.7", "arr[::2]",
            f"Chrome/120.0.{n(1000, 9999)}.{n(10, 200)}", f"00:1a:{n(10, 99)}:3c:4d:5e",
            f"{n(0, 23):02d}:{n(0, 59):02d}:{n(0, 59):02d}",
            f"requests=={n(1, 2)}.{n(0, 32)}.{n(0, 9)}",
            f"node:{n(14, 22)}-alpine", f"release {n(1, 5)}.{n(0, 9)}.{n(0, 9)}.{n(0, 99)}",
        ])

    def reference(self) -> str:
        """What sits in a key's place in code and config when the secret itself is elsewhere."""
        return self.r.choice([
            "${OPENAI_API_KEY}", "<your-api-key>", "sk-...", "********", "None",
            "{{ .Values.apiKey }}",
            "$(cat /run/secrets/db_password)", "changeme", "REPLACE_ME", "%(api_key)s", "xxxxxxxx",
        ])

    def secret(self) -> str:
        r = self.r
        return r.choice([
            "${OPENAI_API_KEY}", "os.environ['ANTHROPIC_API_KEY']", "process.env.GITHUB_TOKEN",
            "<your-api-key>", "sk-...", "password: ********", f"token_count={r.randint(10, 99999)}",
            f"commit {self.sha()}", f"sha256:{self.sha(64)}", self.uuid(), "api_key=None",
            f"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI{self.v.chars(HEX + 'XYZ', 43)} deploy@ci",
            "-----BEGIN CERTIFICATE-----\nMIIDdzCCAl+gAwIBAgIEAgAAuTANBgkqhkiG9w0BAQUFADBa\n"
            "-----END CERTIFICATE-----",
            "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n"
            "-----END PUBLIC KEY-----",
            "Authorization: Bearer $TOKEN", "secretName: tls-cert-prod",
            "postgres://app@db:5432/app", "sk-learn-compatible-estimator",
            "https://${GH_USER}:${GH_TOKEN}@github.com/acme/infra.git",
            f"max_tokens={r.choice([256, 1024, 4096])}",
            f"data:image/png;base64,{b64url(r.randbytes(30))}",
            "password_reset_url = 'https://app.example.com/reset'",
            "OPENAI_API_KEY=sk-your-key-here",
            # code that names or types a credential without holding one
            "def refresh(token: OAuth2Token) -> None:", "client = Client(api_key=settings.API_KEY)",
            "async def handler(secret: SecretBytes):",
        ])


class Slots:
    """Fills template slots: PII with probability `p` (0 for PII-free prompts), else a decoy."""

    def __init__(self, rng: random.Random, p: float) -> None:
        self.r, self.p = rng, p
        self.v = Values(rng)
        self.d = Decoys(rng, self.v)

    def words(self, n: int) -> str:
        return " ".join(self.r.choice(WORDS) for _ in range(n))

    def _fill(self, doc: Doc, kinds: tuple[str, ...], decoy: Callable[[], str]) -> None:
        if self.r.random() >= self.p:
            doc.add(decoy())
            return
        kind = self.r.choice(kinds)
        if kind == "ssn":
            value, prefix = self.v.ssn()
            doc.add(prefix)
            doc.pii("ssn", value)
        elif kind in ("credit_card", "iban"):
            doc.pii(kind, self.v.card() if kind == "credit_card" else self.v.iban())
        else:
            value, inner = getattr(self.v, {"ip_address": "ip"}.get(kind, kind))()
            doc.pii(kind, value, inner)

    def contact(self, doc: Doc) -> None:
        self._fill(doc, ("email", "email", "phone"), self.d.contact)

    def number(self, doc: Doc) -> None:
        self._fill(doc, ("credit_card", "ssn", "phone", "iban"), self.d.number)

    def host(self, doc: Doc) -> None:
        self._fill(doc, ("ip_address",), self.d.host)

    def secret(self, doc: Doc, assigned: bool = False) -> None:
        """`assigned`: the slot is the value of a key such as API_KEY, so a decoy must be a
        reference or placeholder (a hash or UUID given to SECRET_KEY *is* a secret)."""
        self._fill(doc, ("secret",), self.d.reference if assigned else self.d.secret)

    def rant(self, doc: Doc) -> None:
        if self.p and self.r.random() < 0.15:
            doc.add("honestly this is ")
            doc.pii("profanity", self.r.choice(["fucking", "shit", "bullshit"]))
            doc.add(" broken. ")


def generate(n: int, seed: int, pii_share: float = 0.5) -> list[tuple[Sample, bool]]:
    """`n` prompts of 2-6 blocks; about `pii_share` of them carry PII, the rest only decoys."""
    from pii_templates import TEMPLATES  # the templates fill their slots through this module

    rng = random.Random(seed)
    out: list[tuple[Sample, bool]] = []
    for _ in range(n):
        has_pii = rng.random() < pii_share
        slots = Slots(rng, 0.2 if has_pii else 0.0)
        doc = Doc()
        for _ in range(rng.randint(2, 6)):
            rng.choice(TEMPLATES)(doc, slots)
            doc.add("\n")
        if has_pii and not doc.spans:
            doc.add("Also, the reference from the call was ")
            Slots(rng, 1.0).number(doc)
            doc.add(".\n")
        out.append(((doc.text(), doc.spans), has_pii))
    return out
