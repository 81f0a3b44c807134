"""The neutral request and response types every layer speaks, and the ChatProvider protocol."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Annotated, Any, ClassVar, Literal, Protocol

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
    field_validator,
)

from mcp_router.errors import ProviderNotConfigured


def well_formed(text: str) -> str:
    """`text` as valid Unicode. An emoji's two UTF-16 halves that came apart are joined (a
    gateway that cuts its stream by UTF-16 index sends them in two events, and a host may send
    them so); a lone half becomes U+FFFD. Such a string cannot be encoded: it would fail the
    upstream request, the tool result and the cache write alike."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return text


def plain_nullables(schema: dict[str, Any]) -> None:
    """Write `X | None` fields as `type: [X, "null"]` instead of `anyOf`.

    Hosts validate every tool result against the output schema; the flat form is the same
    contract and validates several times faster than `anyOf` branches.
    """
    for prop in schema.get("properties", {}).values():
        branches = prop.get("anyOf")
        if not branches or len(branches) != 2 or {"type": "null"} not in branches:
            continue
        (other,) = [b for b in branches if b != {"type": "null"}]
        if set(other) == {"type"} and isinstance(other["type"], str):
            del prop["anyOf"]
            prop["type"] = [other["type"], "null"]


class ResultModel(BaseModel):
    """Base of every tool result model: a flat output schema (see `plain_nullables`)."""

    model_config = ConfigDict(json_schema_extra=plain_nullables)


def inline_schema(model: type[BaseModel]) -> WithJsonSchema:
    """A field annotation that writes `model`'s schema in place instead of a `$ref`.

    Hosts validate every result against the output schema, and with the Python SDK's
    validator resolving references costs more than checking the values they lead to.
    """
    schema = model.model_json_schema()
    if "$defs" in schema:
        raise TypeError(f"{model.__name__} nests models: inline them first")
    return WithJsonSchema(schema)


Usd = Annotated[Decimal, PlainSerializer(float, return_type=float, when_used="json"),
                WithJsonSchema({"type": "number"})]
"""Money is Decimal inside; hosts read it as a JSON number, and the schema says so.

Without the explicit schema, an output schema made in validation mode (as the SDK makes it)
reads `number or string`, which every host then checks branch by branch on every result.
"""

NUMBER_ZERO: dict[str, Any] = {"default": 0}
"""The schema default of a `Usd` field that defaults to Decimal(0): pydantic writes a Decimal
default as the string "0", which a number field's schema must not say."""


Role = Literal["system", "user", "assistant"]
Outcome = Literal["ok", "error", "skipped"]


class Message(BaseModel):
    """One chat message."""

    # Also taken as OpenAI-style clients send it (the docstring above is what hosts show):
    # `content` as a list of text parts, joined as OpenAI-compatible gateways join them,
    # and `developer` as the system role.

    model_config = ConfigDict(frozen=True, extra="forbid")
    # The input schema says so too, for clients that check arguments against it.
    role: Annotated[Role, WithJsonSchema({"enum": ["system", "user", "assistant",
                                                   "developer"], "type": "string"})]
    content: Annotated[str, WithJsonSchema({"anyOf": [
        {"type": "string"},
        {"type": "array", "items": {"type": "object", "required": ["type", "text"],
                                    "properties": {"type": {"const": "text"},
                                                   "text": {"type": "string"}}}}]})]

    @field_validator("role", mode="before")
    @classmethod
    def _developer_is_system(cls, value: object) -> object:
        if value == "developer":
            return "system"
        if value not in ("system", "user", "assistant"):  # the Literal's error omits developer
            raise ValueError("must be 'system', 'user', 'assistant' or 'developer'")
        return value

    @field_validator("content", mode="before")
    @classmethod
    def _text_parts(cls, value: object) -> object:
        if not isinstance(value, list):
            return value
        texts: list[str] = []
        for part in value:
            text = part.get("text") if isinstance(part, dict) and part.get("type") == "text" \
                else None
            if not isinstance(text, str):
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise ValueError(f"only text parts ({{type: text, text}}) can be sent, "
                                 f"not {kind!r}")
            texts.append(text)
        return "".join(texts)

    @field_validator("content")
    @classmethod
    def _well_formed(cls, value: str) -> str:
        return well_formed(value)


class ChatRequest(BaseModel):
    """What the caller asked for, independent of any provider or model."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    messages: tuple[Message, ...] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, gt=0)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    stop: tuple[str, ...] | None = None


TokenCount = Annotated[int, Field(ge=0, strict=True)]
"""A count of tokens: never negative (it would price as a refund), never a bool."""


class Usage(ResultModel):
    """Token counts as the provider reported them (estimated, as `cost_note` then says, when it
    reported none); cached input tokens are a subset of input."""

    input_tokens: TokenCount = 0
    output_tokens: TokenCount = 0
    cached_input_tokens: TokenCount = 0


class PiiSummary(ResultModel):
    """What the PII filter found: counts per entity type and the action, never the values."""

    action: str = "none"
    counts: dict[str, int] = Field(default_factory=dict)


class Completion(BaseModel):
    """What one adapter got back from one upstream call."""

    content: str
    finish_reason: str | None = None
    usage: Usage = Field(default_factory=Usage)
    # False when the upstream sent no usage (a stream whose include_usage chunk never came,
    # a compatible server that ignores it): `usage` is then zeros, and the cost is estimated.
    usage_reported: bool = True
    upstream_model: str | None = None
    ttfb_ms: float | None = None
    pii: PiiSummary | None = None  # what the answer filter found in `content`
    # The size of all the text the upstream generated (as read), when `content` is less of it:
    # an answer cut at a stop string the router applied. The upstream billed that text too,
    # so an estimated cost counts it. Left out of every dump (cache entries); no text is kept.
    generated_chars: int | None = Field(default=None, exclude=True)
    generated_utf8_bytes: int | None = Field(default=None, exclude=True)

    @field_validator("content")
    @classmethod
    def _well_formed(cls, value: str) -> str:
        return well_formed(value)


class Attempt(ResultModel):
    """One try at one target, as shown to the caller in `attempts`."""

    provider: str
    model: str
    outcome: Outcome
    status: int | None = None
    error: str | None = None
    latency_ms: float = 0.0
    ttfb_ms: float | None = None


class ChatResponse(BaseModel):
    """The answer of a target tree: the completion plus who gave it."""

    completion: Completion
    provider: str
    model: str


class PlannedTarget(ResultModel):
    """One target of the route as the call would meet it."""

    provider: str
    model: str
    would: Literal["ask", "skip"]
    reason: str | None = None
    worst_case_usd: Usd | None = Field(default=None, description="null: price unknown")


class DryRun(ResultModel):
    """The `dry_run` section of a `chat_completion` result: nothing was sent upstream."""

    targets: list[Annotated[PlannedTarget, inline_schema(PlannedTarget)]]
    cache_hit: bool = Field(description="An identical call would be answered by the cache")
    worst_case_usd: Usd | None = Field(
        description="Largest worst case among the targets that would be asked; null if unknown")


class ChatResult(ResultModel):
    """The `chat_completion` tool result: the answer and where it came from.

    The fields in `WHEN_SET` tell of what happens to few calls (a dry run, a late or cut
    answer, an unknown price, a cache hit's age); `wire()` leaves them out while they hold
    their defaults, so a plain answer stays small for the host to read and validate.
    """

    WHEN_SET: ClassVar[tuple[str, ...]] = ("cost_note", "cache_age_s", "dry_run", "late",
                                           "truncated", "full_text", "pages",
                                           "max_tokens_applied", "budget_alert")

    content: str
    provider: str
    model: str
    route: str | None
    finish_reason: str | None
    usage: Annotated[Usage, inline_schema(Usage)]
    cost_usd: Usd | None = Field(description="Cost of this call; null when the price is unknown")
    cost_note: str | None = Field(default=None,
                                  description="Why cost_usd is null, or how it was estimated")
    cached: bool = False
    cache_age_s: float | None = Field(default=None, description="Age of a cached answer")
    latency_ms: float
    attempts: list[Annotated[Attempt, inline_schema(Attempt)]]
    pii: Annotated[PiiSummary, inline_schema(PiiSummary)] = Field(default_factory=PiiSummary)
    trace_id: str
    dry_run: Annotated[DryRun, inline_schema(DryRun)] | None = Field(
        default=None, description="Set on dry runs: the plan")
    late: bool = Field(default=False, description="Answered after an earlier identical call "
                                                  "was given up on; kept and returned now")
    truncated: bool = Field(default=False, description="content is the head of a longer answer")
    full_text: str | None = Field(
        default=None, description="Resource URI of the whole answer's first page when truncated")
    pages: int | None = Field(default=None, description="How many pages the whole answer has")
    max_tokens_applied: int | None = Field(
        default=None, description="Set when the answer stopped at the router's own max_tokens "
                                  "(the call gave none): pass max_tokens for a longer answer")
    budget_alert: str | None = Field(
        default=None, description="Set on the call whose cost crossed today's alert threshold")

    def wire(self) -> tuple[dict[str, Any], str]:
        """The result as hosts get it, as JSON values and as compact JSON text (the same
        content, both made by pydantic's serializer): the `WHEN_SET` fields only when set."""
        fields = type(self).model_fields
        unset = {name for name in self.WHEN_SET if getattr(self, name) == fields[name].default}
        return self.model_dump(mode="json", exclude=unset), self.model_dump_json(exclude=unset)


ProgressFn = Callable[[str], Awaitable[None]]
TextFn = Callable[[str], Awaitable[None]]


async def no_progress(message: str) -> None:
    return None


class Hold(Protocol):
    """Money held for one attempt: settled to the actual cost, or released.

    `seen` is how the attempt's answer was arriving (streamed, or as one JSON body) and how
    much of its text came in before a failure or cancellation: the provider bills that work
    though it reports no usage."""

    def settle(self, completion: Completion, latency_ms: float) -> Usage:
        """Charge the answer; returns the usage charged (an estimate when none was reported)."""
        ...

    def fail(self, error: Exception, latency_ms: float, seen: StreamState) -> None: ...

    def cancelled(self, latency_ms: float, seen: StreamState) -> None: ...

    def release(self) -> None: ...


class SpendGate(Protocol):
    """Admits each upstream attempt against the budgets; raises BudgetExceeded when it may not."""

    def reserve(self, provider: str, model: str, request: ChatRequest) -> Hold: ...


@dataclass
class StreamState:
    """How the current attempt's answer arrives, and how much of it has (shared by a call's
    copies)."""

    chars: int = 0
    utf8_bytes: int = 0  # the same text's size: a token estimate from it holds in any script
    streaming: bool = True  # False: one JSON body, so no text shows before the whole answer
    reported_at: float = float("-inf")
    first_text_at: float | None = None  # on the router's clock

    @property
    def started(self) -> bool:
        """Text is arriving: the provider is generating, and billing, this answer."""
        return self.chars > 0

    def add(self, text: str) -> None:
        """Count `text` in."""
        self.chars += len(text)
        self.utf8_bytes += len(text) if text.isascii() else \
            len(text.encode("utf-8", "surrogatepass"))

    def clear(self) -> None:
        """Nothing of an answer is arriving (the attempt is over, or a new one starts)."""
        self.chars = self.utf8_bytes = 0


@dataclass
class Call:
    """Per-call state shared by every node of a target tree: deadline, attempts, progress.

    `deadline` is an absolute time on the router's clock. Nodes that plan time for their
    children hand them a narrowed copy (`within`), which shares the same attempts list, the
    same record of targets the call is done with, and knows the whole call's deadline (`end`).
    """

    deadline: float
    attempts: list[Attempt] = field(default_factory=list)
    progress: ProgressFn = no_progress
    on_text: TextFn | None = None
    gate: SpendGate | None = None
    stream: StreamState = field(default_factory=StreamState)
    outer: float | None = None
    """The whole call's deadline when `deadline` is one hop's share of it (set by `within`)."""
    done: dict[str, str] = field(default_factory=dict)
    """Targets ("provider/model") this call will not ask again, each with the reason a later
    mention of it is skipped with."""
    answers: dict[str, ChatResponse] = field(default_factory=dict)
    """Answers a target gave that the call moved on from (`retry.fallback_on_finish`)."""

    @property
    def end(self) -> float:
        """The whole call's deadline: an attempt that is already answering may run on to it."""
        return self.deadline if self.outer is None else self.outer

    def within(self, deadline: float) -> Call:
        """A copy whose deadline is no later than `deadline`; the rest stays shared."""
        return replace(self, deadline=min(self.deadline, deadline), outer=self.end)


class ChatProvider(Protocol):
    """Anything that answers a request: an adapter bound to a model, or a routing wrapper."""

    async def complete(self, request: ChatRequest, call: Call) -> ChatResponse: ...


@dataclass(frozen=True)
class ModelList:
    """The model ids a provider's list-models endpoint named. `complete` is False when the
    list said it had more pages than the one read: a model not in `ids` may still exist."""

    ids: frozenset[str]
    complete: bool = True


class Adapter(Protocol):
    """One provider's wire protocol bound to its endpoint and key; it never retries.

    `send` raises only `ProviderError` subclasses. `configured` is False when the provider's
    key variable is unset. `timeout_s` is the provider's per-attempt ceiling; the routing
    layer enforces it together with the call's deadline. `stream` is True when it asks for
    the answer as a stream (text arrives as it is generated), False for one JSON body.
    """

    provider: str
    configured: bool
    timeout_s: float
    stream: bool

    async def send(self, request: ChatRequest, model: str,
                   on_text: TextFn | None = None) -> Completion: ...

    async def probe(self) -> ModelList | None:
        """Ask the list-models endpoint, never spending tokens; the models it named, or None
        when its answer is not a list this wire knows."""


LastResort = Callable[[ChatRequest, ProgressFn], Awaitable[ChatResponse]]
"""Asks the host's own model, saying so through the progress function; raises
ProviderNotConfigured at once when this host cannot be asked, ProviderError when it fails."""


@dataclass(frozen=True)
class HostUnreachable:
    """The `LastResort` of a host that cannot be asked (no MCP sampling on its connection):
    it says why at once, and the router keeps no time back from the targets for it."""

    reason: str

    async def __call__(self, request: ChatRequest, progress: ProgressFn) -> ChatResponse:
        raise ProviderNotConfigured("host", "sampling", self.reason)

CacheMode = Literal["use", "refresh", "skip"]


class ChatCall(BaseModel):
    """The `chat_completion` tool's arguments, as one value the router takes."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    messages: tuple[Message, ...] | None = None
    prompt: str | None = None
    route: str | None = None
    model: str | None = None
    fallbacks: tuple[str, ...] = ()
    max_tokens: int | None = Field(default=None, gt=0)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    stop: tuple[str, ...] | None = None
    cache: CacheMode = "use"
    cache_ttl_s: float | None = Field(default=None, ge=0)
    cache_sampled: bool = False
    dry_run: bool = False
    timeout_s: float | None = Field(default=None, gt=0, le=600)
    metadata: dict[str, str] = Field(default_factory=dict)

    @field_validator("prompt", "route", "model", "fallbacks", "stop", "metadata")
    @classmethod
    def _well_formed(cls, value: object) -> object:
        if isinstance(value, str):
            return well_formed(value)
        if isinstance(value, tuple):
            return tuple(well_formed(item) for item in value)
        if isinstance(value, dict):
            return {well_formed(k): well_formed(v) for k, v in value.items()}
        return value
