"""The MCP server: a lifespan that builds the router and its resources, and four thin tools."""

from __future__ import annotations

import inspect
import logging
import os
import re
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager, AsyncExitStack, nullcontext
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import anyio
import httpx
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import (
    ResourceNotFoundError,
    ToolError,
    UnexpectedToolError,
)
from mcp.types import CallToolResult, ToolAnnotations
from pydantic import Field, ValidationError

from mcp_router import __version__
from mcp_router.access import Access
from mcp_router.audit import AuditEntry, AuditLog
from mcp_router.catalog import (
    HealthReport,
    ProvidersReport,
    check_provider,
    describe_health,
    describe_providers,
)
from mcp_router.clock import Clock, LoopClock
from mcp_router.config import BudgetsConfig, Config
from mcp_router.errors import RouterError
from mcp_router.front import Front
from mcp_router.ledger import CostReport, GroupBy, Period
from mcp_router.messages import CacheMode, ChatCall, ChatResult, Message
from mcp_router.outputs import ANSWER_URI, AnswerPages
from mcp_router.provider_keys import Scrubber, config_secrets, provider_keys
from mcp_router.reports import Budgets
from mcp_router.router import Router
from mcp_router.server.alerts import AlertDesk
from mcp_router.server.arguments import (
    Label,
    LeftOut,
    NotBool,
    Verbatim,
    argument_errors,
    listed,
    unknown_arguments,
)
from mcp_router.server.host import accept_log_levels, host_model, notify, sized_result
from mcp_router.server.http_auth import (
    SHUTDOWN_GRACE_S,
    ClientTokenVerifier,
    auth_settings,
    authenticated_client,
)
from mcp_router.server.lifecycle import AppState, SharedState
from mcp_router.server.sessions import PiiSessions, client_name, page_owner
from mcp_router.wiring import open_router

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

INSTRUCTIONS = """Calls LLMs through the team's routing policy (fallbacks, retries, balancing).
Use chat_completion with a prompt or messages; pick a task route (see list_providers) or an
explicit provider/model. Results say who answered, every attempt made, and what it cost."""


def create_server(config: Config, *, home: Path, env: Mapping[str, str] | None = None,
                  clock: Clock | None = None, transport: httpx.AsyncBaseTransport | None = None,
                  keys: Mapping[str, str] | None = None) -> MCPServer[AppState]:
    """An MCP server for `config`; data (ledger, cache, audit log) lives under `home`.

    `keys` are the providers' API keys; by default they are read from `env` (or key files
    relative to the working directory).
    """
    env = dict(os.environ if env is None else env)
    clock = clock or LoopClock()
    keys = dict(provider_keys(config.providers, env, base=Path.cwd()) if keys is None else keys)
    scrubber = Scrubber(config_secrets(config.providers, keys))
    front = Front(config, Access(config.clients, clock),
                  AuditLog(home, config.audit, clock, scrub=scrubber.scrub), scrubber)

    async def open_state(stack: AsyncExitStack) -> AppState:
        timeout = httpx.Timeout(config.timeouts.request_s, connect=config.timeouts.connect_s)
        http = await stack.enter_async_context(httpx.AsyncClient(timeout=timeout,
                                                                 transport=transport))
        router = stack.enter_context(open_router(config, http=http, keys=keys, home=home,
                                                 clock=clock))
        stack.callback(front.audit.close)  # a later session's first write opens it again
        return AppState(router=router, pages=AnswerPages(config.output.page_chars), front=front,
                        pii_sessions=PiiSessions(router.pii.session),
                        alerts=AlertDesk(router.spend.budgets))

    shared = SharedState(open_state, config.health.probe_interval_s, SHUTDOWN_GRACE_S)

    def lifespan(_: MCPServer[AppState]) -> AbstractAsyncContextManager[AppState]:
        return shared.connection()

    verifier = ClientTokenVerifier(config.clients) if config.clients else None
    server = RouterServer(
        "mcp-router", version=__version__, instructions=INSTRUCTIONS, lifespan=lifespan,
        token_verifier=verifier, auth=auth_settings() if verifier else None, shared=shared)
    _add_tools(server, config)
    _add_resources(server)
    accept_log_levels(server)
    ToolFailureFilter.install()
    return server


class ToolFailureFilter(logging.Filter):
    """Cuts the SDK's `Tool 'chat_completion' failed: '<error>'` record to the tool name and
    our trace id: the error quotes an upstream's words, which can echo the prompt, and the
    log is the host's. The router logs its own line per failed call (`Front`). Other tools'
    errors are our own words and stay."""

    SDK_LOGGER = MCPServer.__module__  # where `_handle_call_tool` logs a tool's failure
    TOOLS = frozenset({"chat_completion"})
    _TRACE = re.compile(r"\btrace ([0-9a-f]{32})\b")

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if (isinstance(record.msg, str) and record.msg.startswith("Tool %r failed")
                and isinstance(args, tuple) and args and args[0] in self.TOOLS):
            trace = self._TRACE.search(str(args[1:]))
            record.args = (args[0], trace[1]) if trace else (args[0],)
            record.msg = "Tool %r failed (trace %s)" if trace else \
                "Tool %r failed (mcp_router's line for the call says why)"
        return True

    @classmethod
    def install(cls) -> None:
        """Add the filter to the SDK's logger, once (a logger's filter sees what it logs)."""
        logger = logging.getLogger(cls.SDK_LOGGER)
        if not any(isinstance(f, cls) for f in logger.filters):
            logger.addFilter(cls())


class RouterServer(MCPServer[AppState]):
    """The SDK's server, with wrong arguments told as `field: problem`, one per field, and
    an argument the tool does not take refused rather than dropped. It knows its calls in
    flight and the answers its `shared` state finishes for hosts that gave up, so a stopping
    server lets them finish and ends the rest with a reason (`http_auth.Stoppable`), and its
    state outlives connections over HTTP (`lifetime`)."""

    def __init__(self, *args: Any, shared: SharedState | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.parameters: dict[str, frozenset[str]] = {}  # tool name -> its argument names
        self._calls: set[anyio.CancelScope] = set()
        self._shared = shared

    def lifetime(self) -> AbstractAsyncContextManager[None]:
        """The router's state, held for as long as an HTTP server serves this one
        (`http_auth.Lasting`): its connections, however often they come and go, share it."""
        return self._shared.lifetime() if self._shared is not None else nullcontext()

    @property
    def busy(self) -> bool:
        """Whether a tool call is running, or an answer a host gave up on is being finished
        (it is paid for, and kept for the call made again)."""
        return bool(self._calls) or (self._shared is not None and self._shared.keeping)

    def stop_calls(self) -> None:
        """End every call in flight (each answers that the server is stopping) and every
        answer still being finished (its audit line says what it cost)."""
        for scope in self._calls:
            scope.cancel()
        if self._shared is not None:
            self._shared.stop_keeping()

    async def call_tool(self, name: str, arguments: dict[str, Any],
                        context: Context[AppState, Any] | None = None) -> Any:
        # The SDK drops arguments the tool does not declare: `modle` or `temprature` would
        # be answered by the default model at the default temperature, without a word.
        if name in self.parameters and (unknown := arguments.keys() - self.parameters[name]):
            self._refuse(name, unknown_arguments(unknown, self.parameters[name]), context)
        with anyio.CancelScope() as scope:
            self._calls.add(scope)
            try:
                return await super().call_tool(name, arguments, context)
            except ToolError as exc:
                cause = exc.__cause__
                if isinstance(exc, UnexpectedToolError) or not isinstance(cause,
                                                                          ValidationError):
                    raise
                self._refuse(name, argument_errors(cause), context, cause)
            finally:
                self._calls.discard(scope)
        raise ToolError(f"Error executing tool {name}: the server is stopping and ended this "
                        f"call after the {SHUTDOWN_GRACE_S} s it gives calls in flight; what "
                        f"its attempts may have cost is in the ledger")

    @staticmethod
    def _refuse(name: str, problems: str, context: Context[AppState, Any] | None,
                cause: Exception | None = None) -> NoReturn:
        """Refuse a call whose arguments are wrong, with its audit line like any call's, and
        a log line (`problems` names fields and what they must be, never a value)."""
        if cause is None and name in ToolFailureFilter.TOOLS:  # the SDK's line is cut
            logger.info("%s invalid: %r", name, problems)
        if context is not None:
            _state(context).front.audit.write(AuditEntry(
                client=client_name(context), tool=name, outcome="invalid", error=problems))
        raise ToolError(f"Error executing tool {name}: {problems}") from cause


def _state(ctx: Context[Any]) -> AppState:
    state = ctx.request_context.lifespan_context
    assert isinstance(state, AppState)
    return state


def _tool(server: RouterServer, title: str,
          annotations: ToolAnnotations) -> Callable[[F], F]:
    """Register a tool with its docstring dedented, as the model reads it, and the title
    hosts show people."""

    def register(fn: F) -> F:
        server.add_tool(fn, title=title, description=inspect.cleandoc(fn.__doc__ or ""),
                        annotations=annotations)
        server.parameters[fn.__name__] = frozenset(inspect.signature(fn).parameters) - {"ctx"}
        return fn

    return register


async def _probe(router: Router, provider: str | None) -> None:
    if provider is None:
        await router.prober.probe_all()
    elif provider in router.adapters:
        await router.prober.probe(provider)


def _add_resources(server: MCPServer[AppState]) -> None:
    @server.resource(ANSWER_URI, name="answer_page", mime_type="text/plain",
                     description="A page of a chat_completion answer too long for one result")
    async def answer_page(trace_id: str, page: str, ctx: Context) -> str:
        pages, owner = _state(ctx).pages, page_owner()
        text = pages.page(owner, trace_id, int(page)) if page.isdigit() else None
        if text is not None:
            return text
        # Not found (-32602), as hosts read it: an internal error (-32603) reads as a crash.
        if (count := pages.count(owner, trace_id)) is not None:
            raise ResourceNotFoundError(
                f"no page {page} of answer {trace_id}: it has pages 1 to {count}")
        raise ResourceNotFoundError(
            f"no page {page} of answer {trace_id}: answers are kept in memory for the newest "
            "calls of this server only, for the client that made them")


def _add_tools(server: RouterServer, config: Config) -> None:
    read_only = ToolAnnotations(read_only_hint=True, open_world_hint=False)

    @_tool(server, "Ask an LLM (routed)",
           ToolAnnotations(read_only_hint=False, destructive_hint=False,
                           idempotent_hint=False, open_world_hint=True))
    async def chat_completion(
        ctx: Context,
        prompt: Annotated[Verbatim, Field(description="Shorthand for one user message")] = "",
        messages: Annotated[list[Message] | None, LeftOut(None), Field(
            description="The conversation: [{role: system|user|assistant|developer, "
                        "content}]")] = None,
        route: Annotated[str | None, Field(
            description="A route name (see list_providers); default: the default route")] = None,
        model: Annotated[str | None, Field(
            description="An explicit provider/model, e.g. anthropic/claude-3-haiku-20240307, "
                        "or a model name that one provider lists (see list_providers)")
        ] = None,
        fallbacks: Annotated[list[str] | str | None, Field(
            description="provider/model entries tried in order after the route or model")] = None,
        max_tokens: Annotated[Annotated[int, Field(gt=0), NotBool] | None, LeftOut(None)] = None,
        temperature: Annotated[Annotated[float, Field(ge=0, le=2), NotBool] | None,
                               LeftOut(None)] = None,
        top_p: Annotated[Annotated[float, Field(gt=0, le=1), NotBool] | None, LeftOut(None)] = None,
        stop: Annotated[list[str] | str | None, Field(
            description="Stop sequences: a list, or one string")] = None,
        cache: Annotated[CacheMode, LeftOut("use"), Field(
            description="use: read and write the cache; refresh: re-ask and overwrite; "
                        "skip: neither")] = "use",
        cache_ttl_s: Annotated[Annotated[float, Field(ge=0), NotBool] | None, LeftOut(None), Field(
            description="How long this answer may be served from the cache "
                              "(default: the config's cache.ttl_s)")] = None,
        cache_sampled: Annotated[bool, LeftOut(False), Field(
            description="Also cache when temperature > 0 (off by default: sampled answers "
                        "are meant to differ)")] = False,
        dry_run: Annotated[bool, LeftOut(False), Field(
            description="Send nothing: show the targets in order, which would be skipped and "
                        "why, the predicted cache hit, and the worst case of one attempt at "
                        "the dearest target that would be asked (retries and fallbacks after "
                        "a paid failure, such as a cut stream or a timeout, can add to "
                        "it)")] = False,
        timeout_s: Annotated[Annotated[float, Field(gt=0, le=600), NotBool] | None,
                             LeftOut(None), Field(
            description="Overall deadline for every attempt, retry and fallback")] = None,
        metadata: Annotated[dict[str, Label] | None, LeftOut(None), Field(
            description="Free-form labels recorded in the cost ledger")] = None,
    ) -> Annotated[CallToolResult, ChatResult]:
        """Ask an LLM through the team's routing policy.

        Give `prompt` or `messages`, and optionally a `route` or an explicit `model`. The
        result carries the answer, which provider and model gave it, every attempt made
        (with why it failed or was skipped), token usage and cost.
        """
        call = ChatCall(
            messages=tuple(messages) if messages is not None else None, prompt=prompt or None,
            route=route or None, model=model or None, fallbacks=listed(fallbacks),
            max_tokens=max_tokens, temperature=temperature, top_p=top_p,
            stop=listed(stop) or None,
            cache=cache, cache_ttl_s=cache_ttl_s, cache_sampled=cache_sampled, dry_run=dry_run,
            timeout_s=timeout_s, metadata=metadata or {},
        )
        step, live = 0, True

        async def progress(message: str) -> None:
            # Only while the request is live: an answer kept after the host gave up goes on
            # streaming, and a progress token of a request that ended is an error to hosts.
            nonlocal step
            if live:
                step += 1
                await ctx.report_progress(step, None, message)

        state = _state(ctx)
        router = state.router
        sees_team = sees_own_only() is None
        try:
            result = await state.front.chat(router, client_name(ctx), call, progress,
                                            state.keeper, state.pii_sessions.of(ctx, state.pii),
                                            host_model(ctx) if config.sampling.fallback
                                            else None, sees_team=sees_team)
        except RouterError as exc:
            refusal = state.front.told(exc)
            # A failed attempt may have been charged, and crossed the threshold.
            if alert := state.alerts.due(sees_team=sees_team):
                await notify(ctx, alert)
                refusal += f" (budget alert: {alert})"
            raise ToolError(refusal) from exc
        finally:
            live = False
        if alert := state.alerts.due(sees_team=sees_team):
            # Also in the result: a connection on the 2026-07-28 protocol gets no log
            # notification, and the alert is given once a day.
            result = result.model_copy(update={"budget_alert": alert})
            await notify(ctx, alert)
        # The version is read only for an answer that is cut: the SDK's lookup is not free.
        return sized_result(result, state.pages, config, page_owner(),
                            lambda: ctx.protocol_version)

    @_tool(server, "Providers and routes", read_only)
    async def list_providers(ctx: Context) -> ProvidersReport:
        """List the configured providers (and whether their API key is set) and the routes."""
        _state(ctx).front.note(client_name(ctx), "list_providers")
        return describe_providers(_state(ctx).router)

    def sees_own_only() -> str | None:
        """The token client's name, when its config keeps it to its own calls (`cost_report:
        own`, the default): its own spend, and no upstream's words about other clients'."""
        name = authenticated_client()
        own = config.clients.get(name) if name is not None else None
        return name if own is not None and own.cost_report == "own" else None

    @_tool(server, "Cost report", read_only)
    async def cost_report(
        ctx: Context,
        period: Annotated[Period, LeftOut("today")] = "today",
        group_by: Annotated[GroupBy, LeftOut("provider")] = "provider",
    ) -> CostReport:
        """Spend and token usage from the ledger, grouped, with budgets and alerts.

        On a shared server a client sees its own calls and budgets, unless its config says
        `cost_report: all`.
        """
        _state(ctx).front.note(client_name(ctx), "cost_report")
        spend = _state(ctx).router.spend
        try:
            if (own_name := sees_own_only()) is not None:
                own = config.clients[own_name]
                limits = BudgetsConfig(daily_usd=own.budgets.daily_usd,
                                       monthly_usd=own.budgets.monthly_usd)
                report = await spend.ledger.report_in_thread(period, group_by, limits,
                                                             client=own_name)
                guard = spend.client_budgets.get(own_name)
            else:
                report = await spend.ledger.report_in_thread(period, group_by, config.budgets)
                guard = spend.budgets
        except RouterError as exc:
            raise ToolError(str(exc)) from exc
        held = Decimal(0) if guard is None else guard.reserved
        return report.model_copy(update={"budgets": Budgets(
            daily=report.budgets.daily.model_copy(update={"reserved_usd": held}),
            monthly=report.budgets.monthly.model_copy(update={"reserved_usd": held}))})

    @_tool(server, "Provider health", read_only)
    async def provider_health(
        ctx: Context,
        provider: Annotated[str | None, Field(description="One provider; default: all")] = None,
        probe: Annotated[bool, LeftOut(False), Field(
            description="First ask each provider's list-models endpoint (spends no tokens)")
        ] = False,
    ) -> HealthReport:
        """Circuit state, success rate, latency and last error per provider.

        Figures come from the calls made so far; `probe: true` first checks each provider's
        metadata endpoint, which never sends a completion. On a shared server a client kept
        to its own calls sees errors by status, without the upstream's message; a probe
        counts against the client's `rate_per_min` as a call does (it asks the upstreams).
        """
        router = _state(ctx).router
        provider = provider or None  # "" is left out, as for chat_completion's route
        try:
            _state(ctx).front.note(client_name(ctx), "provider_health", admit=probe,
                                   check=partial(check_provider, router, provider))
            if probe:
                await _probe(router, provider)
            return describe_health(router, provider, messages=sees_own_only() is None)
        except RouterError as exc:
            raise ToolError(str(exc)) from exc
