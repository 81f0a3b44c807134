"""Typed, frozen config models and `load_config`: YAML in, errors naming file, line and key."""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Mapping
from contextlib import suppress
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal, NoReturn

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from mcp_router.config_checks import (
    check_base_urls,
    check_numbers,
    check_pii,
    check_references,
    config_error,
    near_a_secret,
)
from mcp_router.config_yaml import ENV_NAME, expand_env, header_values, nearest_line, read_yaml
from mcp_router.errors import ConfigError, DataError
from mcp_router.shared_config import AuditConfig, ClientConfig, ServerConfig

log = logging.getLogger("mcp_router")

Kind = Literal["openai", "anthropic", "gemini"]
Strategy = Literal["fallback", "loadbalance", "single"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProviderConfig(_Model):
    """One upstream endpoint; vendors are rows of one of three wire kinds."""

    kind: Kind
    base_url: str
    api_key_env: str | None = None
    api_key_file: str | None = None  # relative to the config file; must be mode 0600
    headers: dict[str, str] = Field(default_factory=dict)
    models: list[str] = Field(default_factory=list)
    timeout_s: float = Field(default=60, gt=0)
    # Ask for an SSE stream (first-byte timing, progress while the answer comes, a cut
    # stream told apart from a short answer). None: each kind's default, which is to stream,
    # except Gemini, whose stream has an endpoint of its own (see `GeminiAdapter`).
    stream: bool | None = None
    # Where the config file gives api_key_file, for the errors of reading it later.
    _key_file_at: tuple[str | None, int | None] = PrivateAttr(default=(None, None))
    # What the `${VAR}`s in `headers` held: credentials to scrub, wherever they sit in a value.
    _header_values: tuple[tuple[str, str, str], ...] = PrivateAttr(default=())

    @field_validator("api_key_env")
    @classmethod
    def _a_variable_name(cls, value: str | None) -> str | None:
        if value is not None and (problem := key_variable_problem(value)):
            raise ValueError(problem)
        return value

    @field_validator("api_key_file")
    @classmethod
    def _a_file_name(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must name a file (relative to this config), not be empty; leave "
                             "api_key_file out for a provider that needs no key")
        return value

    @model_validator(mode="after")
    def _one_key_source(self) -> ProviderConfig:
        if self.api_key_env and self.api_key_file:
            raise ValueError("give 'api_key_env' or 'api_key_file', not both")
        return self

    @property
    def api_key_file_at(self) -> tuple[str | None, int | None]:
        """The config file and line that give `api_key_file` (None, None when not read from a
        file): an unreadable key file is told where it was named."""
        return self._key_file_at

    @property
    def header_values(self) -> tuple[tuple[str, str, str], ...]:
        """`(header, variable, value)` of the `${VAR}`s `headers` refer to (`provider_secrets`
        scrubs those named like credentials)."""
        return self._header_values


_VENDOR_KEY = re.compile(r"(sk|pk|rk|xai|pplx|gsk|ghp|hf|r8)[-_]|AIza|github_pat_")


def key_variable_problem(value: str) -> str | None:
    """Why `value` cannot be `api_key_env` (the NAME of a variable), or None. The value is
    never repeated: the usual mistake is pasting the key itself here."""
    digits = sum(c.isdigit() for c in value)
    if ENV_NAME.fullmatch(value):
        # A name can still be a key: a long mix of lower-case letters and digits, as
        # hexadecimal keys and `hf_...` tokens are, where variables are named in capitals.
        if not (len(value) >= 24 and digits >= 4 and value.count("_") <= 1
                and any(c.islower() for c in value)):
            return None
    elif not value.strip():
        return ("must be the NAME of an environment variable, not empty; leave api_key_env "
                "out for a provider that needs no key")
    elif written := re.fullmatch(rf"\$\{{?({ENV_NAME.pattern})\}}?", value.strip()):
        return f"write the variable's name alone, without $ or braces: {written.group(1)}"
    elif not (_VENDOR_KEY.match(value) or (len(value) >= 20 and digits >= 2)):
        return ("must be the NAME of an environment variable (letters, digits and _, not "
                "starting with a digit)")
    return ("looks like a key itself, not the name of a variable: export the key as a "
            "variable (say MY_PROVIDER_API_KEY) and write that name here, or put it in a "
            "private file and name that in api_key_file")


class TargetConfig(_Model):
    """A route entry: a provider and model, or another route by name."""

    provider: str | None = None
    model: str | None = None
    route: str | None = None
    weight: float = Field(default=1, gt=0)

    @model_validator(mode="after")
    def _one_kind_of_target(self) -> TargetConfig:
        if self.route is not None and (self.provider or self.model):
            raise ValueError("a target names either a route or a provider and model, not both")
        if self.route is None and not (self.provider and self.model):
            raise ValueError("a target needs both 'provider' and 'model' (or 'route')")
        return self

    def label(self) -> str:
        return f"route:{self.route}" if self.route else f"{self.provider}/{self.model}"


class RouteConfig(_Model):
    strategy: Strategy = "fallback"
    targets: list[TargetConfig] = Field(min_length=1)

    @model_validator(mode="after")
    def _single_has_one(self) -> RouteConfig:
        if self.strategy == "single" and len(self.targets) != 1:
            raise ValueError("strategy 'single' takes exactly one target")
        return self


class RetryConfig(_Model):
    attempts: int = Field(default=3, ge=1, le=10)
    on_status: list[Annotated[int, Field(ge=400, le=599)]] = Field(
        default_factory=lambda: [429, 500, 502, 503, 504, 529])
    backoff_initial_s: float = Field(default=0.5, ge=0)
    backoff_max_s: float = Field(default=8, ge=0)
    respect_retry_after: bool = True
    # Answers that finished this way move on to the next target, as a failure would: a
    # provider's filter withheld the answer, or the model declined. Off by default: the
    # answer was paid for, and a team may not want one provider's filter worked around.
    fallback_on_finish: list[Literal["content_filter", "refusal"]] = Field(default_factory=list)

    @model_validator(mode="after")
    def _backoff_in_order(self) -> RetryConfig:
        if self.backoff_initial_s > self.backoff_max_s:
            raise ValueError(f"backoff_initial_s ({self.backoff_initial_s:g}) is over "
                             f"backoff_max_s ({self.backoff_max_s:g}), which caps every wait")
        return self


class TimeoutsConfig(_Model):
    request_s: float = Field(default=60, gt=0)
    connect_s: float = Field(default=5, gt=0)
    deadline_s: float = Field(default=50, gt=0)


class CacheConfig(_Model):
    enabled: bool = True
    ttl_s: float = Field(default=3600, ge=0)
    max_size_mb: int = Field(default=512, gt=0)
    sampled: bool = False  # also cache answers to temperature > 0 requests


class HealthConfig(_Model):
    probe_interval_s: float = Field(default=0, ge=0)  # 0: probe only on demand


class OutputConfig(_Model):
    # Claude Code refuses tool results above ~25,000 tokens; stay under it.
    max_result_tokens: int = Field(default=24_000, ge=2_000)
    # Sent when the caller gives no max_tokens: fits every current model's output limit.
    default_max_tokens: int = Field(default=4096, gt=0)
    page_chars: int = Field(default=40_000, ge=1_000)


class SamplingConfig(_Model):
    # When every target has failed or is over budget, ask the host's own model (MCP sampling)
    # if the client offers it. Off by default: it spends the user's own quota.
    fallback: bool = False


class CustomPattern(_Model):
    name: str
    pattern: str

    @model_validator(mode="after")
    def _compiles(self) -> CustomPattern:
        try:
            re.compile(self.pattern)
        except re.error as exc:
            raise ValueError(f"pattern does not compile: {exc}") from exc
        return self


PII_ENTITIES: tuple[str, ...] = (
    "email", "phone", "ssn", "credit_card", "iban", "ip_address", "secret", "profanity")
"""The entity types the PII filter knows by itself; each custom pattern's name adds one."""

PiiAction = Literal["redact", "mask", "pseudonymize", "block"]
AnswerAction = Literal["redact", "mask", "block"]


def _secrets_redacted() -> dict[str, AnswerAction]:
    return {"secret": "redact"}


class PiiConfig(_Model):
    enabled: bool = True
    action: PiiAction = "redact"
    actions: dict[str, PiiAction] = Field(default_factory=dict)  # per entity type
    entities: list[str] | None = None  # only these types; None: every type
    profanity: bool = True
    answer_actions: dict[str, AnswerAction] = Field(default_factory=_secrets_redacted)
    custom: list[CustomPattern] = Field(default_factory=list)


Money = Annotated[Decimal, Field(ge=0)]


class BudgetsConfig(_Model):
    daily_usd: Money | None = None
    monthly_usd: Money | None = None
    alert_daily_usd: Money | None = None


class PriceConfig(_Model):
    input_per_mtok: Money
    output_per_mtok: Money
    cached_input_per_mtok: Money | None = None


class Config(_Model):
    """The whole policy: providers, routes and the knobs of each step."""

    providers: dict[str, ProviderConfig] = Field(min_length=1)
    routes: dict[str, RouteConfig] = Field(min_length=1)
    default_route: str = "default"
    retry: RetryConfig = Field(default_factory=RetryConfig)
    timeouts: TimeoutsConfig = Field(default_factory=TimeoutsConfig)
    cache: CacheConfig = Field(default_factory=CacheConfig)
    pii: PiiConfig = Field(default_factory=PiiConfig)
    budgets: BudgetsConfig = Field(default_factory=BudgetsConfig)
    health: HealthConfig = Field(default_factory=HealthConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)
    sampling: SamplingConfig = Field(default_factory=SamplingConfig)
    clients: dict[str, ClientConfig] = Field(default_factory=dict)
    server: ServerConfig = Field(default_factory=ServerConfig)
    audit: AuditConfig = Field(default_factory=AuditConfig)
    prices: dict[str, PriceConfig] = Field(default_factory=dict)


def load_config(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Config:
    """Read and validate a YAML config; every error names the file, the line and the key."""
    file = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        message = f"cannot read config: {exc.strerror}"
        shipped = shipped_config(Path(path).name)
        # Said, not loaded: serving another policy than the one named would be a surprise.
        if isinstance(exc, FileNotFoundError) and shipped.is_file():
            message += f"; a copy ships with mcp-router: {shipped.absolute()}"
        raise ConfigError(message, file=file) from exc
    return parse_config(_decoded(raw, file), file=file,
                        env=os.environ if env is None else env)


def _decoded(raw: bytes, file: str) -> str:
    """The file's text; one saved in another encoding is told by its first foreign byte."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - raw.rfind(b"\n", 0, exc.start)
        utf16 = "; it looks like UTF-16" if raw[:2] in (b"\xff\xfe", b"\xfe\xff") else ""
        raise ConfigError(f"not UTF-8: byte 0x{raw[exc.start]:02x} at column {column}{utf16}; "
                          "save the file as UTF-8", file=file, line=line) from None


def parse_config(text: str, *, file: str = "<config>", env: Any = None) -> Config:
    """Validate YAML text as a `Config`; see `load_config`."""
    env = os.environ if env is None else env
    data, lines = read_yaml(text, file)

    def fail(message: str, path: tuple[str | int, ...]) -> NoReturn:
        raise ConfigError(message, file=file, line=nearest_line(path, lines),
                          key=".".join(map(str, path)))

    check_numbers(data, Config, fail)
    try:
        config = Config.model_validate(expand_env(data, env, file, lines))
    except ValidationError as exc:
        raise config_error(exc, Config, file, lines) from (
            None if near_a_secret(exc) else exc)
    check_references(config, fail, default_route_given=("default_route",) in lines)
    check_pii(config.pii, PII_ENTITIES, fail)
    check_base_urls(config, data, env, fail)
    for name, provider in config.providers.items():
        provider._header_values = header_values(data["providers"][name], env)
        if provider.api_key_file:  # read later, by `provider_keys`: its errors say where
            provider._key_file_at = (file, lines.get(("providers", name, "api_key_file")))
    return config


def shipped_config(name: str) -> Path:
    """A config shipped inside the package (`orchestra.yaml`, `demo.yaml`)."""
    return Path(__file__).parent / "configs" / name


def make_data_dir(path: Path) -> None:
    """Create `path` (and missing parents) for the ledger, the cached answers and the audit
    log, readable by this user only (0700). A directory that exists keeps its mode: a team
    may share one on purpose."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)


def make_private_file(path: Path) -> None:
    """Make `path` a file readable by this user only (0600): the ledger and the cache's
    database are created so whatever the process's umask, and one an older release made with
    the umask (0644) is tightened (to 0600: group and others lose access, a read-only file
    stays read-only), with the `-wal` and `-shm` files SQLite left beside it
    (SQLite gives new ones the database's mode)."""
    with suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        return
    for file in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        with suppress(FileNotFoundError):
            if (mode := file.stat().st_mode) & 0o077:
                file.chmod(mode & 0o700)  # others lose access; the owner gains none


def data_home(env: Any) -> Path:
    """Where the cache, ledger and audit log live, as an absolute path: $MCP_ROUTER_HOME, else
    the user data dir. A host's JSON `env` block passes the value on as written, so `~` and
    `$NAME`/`${NAME}` (read from `env`) are expanded here, once, for every user of the path:
    a literal `./~` would keep a ledger apart from the cache and from other servers'."""
    if value := env.get("MCP_ROUTER_HOME"):
        path = Path(_expand_home(value, env))
        if not path.is_absolute():  # hosts start servers in a directory of their choosing
            log.warning("MCP_ROUTER_HOME=%s is relative, taken as %s: a server started in "
                        "another directory would keep another ledger; give an absolute path",
                        value, path.absolute())
        return Path(os.path.abspath(path))
    if sys.platform == "win32":
        base = Path(env.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(env.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "mcp-router"


_HOME_REF = re.compile(rf"\$(?:\{{({ENV_NAME.pattern})\}}|({ENV_NAME.pattern}))")


def _expand_home(value: str, env: Any) -> str:
    """`value` with a leading `~` and its `$NAME`/`${NAME}`s expanded, as a shell would."""
    absolute = "give the data directory as an absolute path"

    def fail(problem: str) -> NoReturn:
        raise DataError(f"MCP_ROUTER_HOME={value}: {problem}")

    def variable(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if not env.get(name):
            fail(f"{name} is {'empty' if name in env else 'not set'} in the server's "
                 f"environment (a host's env block expands nothing): set {name} there, or "
                 f"{absolute}")
        return str(env[name])

    if "${" in _HOME_REF.sub("", value):
        fail(f"only $NAME and ${{NAME}} are expanded (no defaults or other shell forms): "
             f"{absolute}")
    user = re.split(r"[/\\]", value, maxsplit=1)[0]
    if not user.startswith("~"):
        return _HOME_REF.sub(variable, value)
    if user == "~":
        home = env.get("HOME") or env.get("USERPROFILE") or str(Path.home())
    elif (home := os.path.expanduser(user)) == user:
        fail(f"there is no user {user[1:]!r} whose home {user} could name: {absolute}")
    return home + _HOME_REF.sub(variable, value[len(user):])
