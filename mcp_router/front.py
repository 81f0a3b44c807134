"""What surrounds a routed call for one client: size limits, access, rate, audit, scrubbing."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from decimal import Decimal
from functools import partial

import anyio

from mcp_router.access import Access
from mcp_router.audit import AuditEntry, AuditLog
from mcp_router.config import Config
from mcp_router.errors import (
    AccessDenied,
    BudgetExceeded,
    Charge,
    InternalError,
    InvalidRequest,
    PolicyBlocked,
    RateLimited,
    RouterError,
)
from mcp_router.late import Keeper
from mcp_router.limits import MAX_MODEL_CHARS, check_limits, check_model_names
from mcp_router.messages import ChatCall, ChatResult, LastResort, ProgressFn
from mcp_router.money import format_usd
from mcp_router.pii import PiiBlocked, PiiSession
from mcp_router.provider_keys import Scrubber
from mcp_router.router import Router
from mcp_router.routing.build import qualified

log = logging.getLogger("mcp_router")

_OUTCOMES = ((AccessDenied, "denied"), (RateLimited, "rate_limited"),
             (InvalidRequest, "invalid"), (BudgetExceeded, "over_budget"),
             (PolicyBlocked, "blocked"))


class Front:
    """Admits a client's call, routes it, and writes one audit line whatever happens.

    Built once per server (not per session): rate limits and the audit file are shared by
    every connection.
    """

    def __init__(self, config: Config, access: Access, audit: AuditLog,
                 scrubber: Scrubber) -> None:
        self._config, self.access, self.audit, self.scrubber = config, access, audit, scrubber

    async def chat(self, router: Router, client: str, call: ChatCall,
                   progress: ProgressFn, keeper: Keeper | None = None,
                   pii: PiiSession | None = None,
                   last_resort: LastResort | None = None, *,
                   sees_team: bool = True) -> ChatResult:
        """The routed answer, or the RouterError (scrub its message before showing it).

        `sees_team`: the caller may see the team's spend (not a client kept to its own calls),
        also in the team budget's refusals; the audit line keeps what the caller was told.
        """
        default = self.access.default_route(client, self._config.default_route)
        if call.model is None and call.route is None and default != self._config.default_route:
            call = call.model_copy(update={"route": default})  # the client's own default
        route = None if call.model else (call.route or default)
        pii = pii or router.pii.session()
        trace_id = uuid.uuid4().hex  # the audit line's and the ledger rows', whatever happens
        entry = partial(AuditEntry, client=client, tool="chat_completion", trace_id=trace_id,
                        prompt=self._prompt(call, pii))
        given_up: list[Charge] = []  # what the attempts cost, should the host give up
        try:
            check_model_names(call)
            call = self._qualified(call)
            # A model no provider has is told so, not as one the client may not use; nothing
            # is built for it until the call is admitted, so refused calls leave no state.
            for spec, field in self._models(call):
                router.builder.check(spec, field)
            check_limits(call, self._config.server)
            self.access.check_call(client, route=route, model=call.model,
                                   fallbacks=call.fallbacks)
            # Whatever else the router would refuse for the call's arguments (an unknown
            # route, route and model together) is refused before the call is counted: only
            # a call that could be sent uses up one of the client's rate.
            router.check(call)
            self.access.admit(client)
            result = await router.complete(
                call, client=client, sees_team=sees_team, progress=progress, keeper=keeper,
                pii=pii, last_resort=last_resort, trace_id=trace_id,
                # The host gave up while the answer was being paid for; it was finished and
                # kept: a second line under the same trace id says what it cost.
                on_kept=lambda response, cost: self.audit.write(entry(
                    outcome="kept", route=route, provider=response.provider,
                    model=response.model, cost_usd=cost)),
                # ... or it ended without one: a `lost` line says what it cost, and why.
                on_lost=lambda charged, error: self.audit.write(entry(
                    outcome="lost", route=route, model=_model(call),
                    cost_usd=_cost(charged), error=self._lost(error, trace_id))),
                on_cancelled=given_up.append)
        except RouterError as exc:
            found = exc.counts if isinstance(exc, PiiBlocked) else {}
            outcome = _outcome(exc)
            self._log_failure(outcome, trace_id, exc)
            self.audit.write(entry(outcome=outcome, route=route, model=_model(call),
                                   cost_usd=_cost(exc.charged), pii=found,
                                   error=self._audited(exc)))
            raise
        except anyio.get_cancelled_exc_class():
            # The host gave up: the line says what the attempts cost, as the ledger does.
            self.audit.write(entry(outcome="cancelled", route=route, model=_model(call),
                                   cost_usd=_cost(next(iter(given_up), None))))
            raise
        except Exception as exc:  # a bug: said as one, with an audit line, never bare
            log.exception("chat_completion failed (trace %s)", trace_id)
            self.audit.write(entry(outcome="error", route=route, model=_model(call),
                                   error=f"internal error: {type(exc).__name__}"))
            raise InternalError(f"mcp-router failed on this call ({type(exc).__name__}); this "
                                f"is a bug: the server's log (stderr) has the details under "
                                f"trace {trace_id}") from exc
        self.audit.write(entry(outcome="ok", route=result.route,
                               provider=result.provider, model=result.model,
                               cost_usd=result.cost_usd, cached=result.cached,
                               late=result.late, dry_run=result.dry_run is not None,
                               pii=result.pii.counts,
                               answer=self._answer(result, pii)))
        return result

    def told(self, exc: RouterError) -> str:
        """The error as its caller is told it: scrubbed, and with what the call's attempts
        were charged when that is a known amount above 0 (on a line of its own after a list
        of attempts, else as a clause). Hosts read the error's own words: they are kept."""
        message = self.scrubber.scrub(str(exc))
        charged = exc.charged
        if charged is None or charged.cost_usd is None or charged.cost_usd <= 0:
            return message
        said = (f"charged {format_usd(charged.cost_usd)} for attempts that reached a provider"
                + (" (estimated)" if charged.estimated else ""))
        return f"{message}\n{said}" if "\n" in message else f"{message}; {said}"

    def _lost(self, error: Exception | None, trace_id: str) -> str:
        """Why an answer run on for a host that gave up ended without one."""
        if error is None:
            return "the server stopped before the answer the host gave up on was finished"
        if isinstance(error, RouterError):
            return self._audited(error)
        log.error("finishing the answer a host gave up on failed (trace %s)", trace_id,
                  exc_info=error)
        return f"internal error: {type(error).__name__}"

    def _audited(self, exc: RouterError) -> str:
        """The error as the audit line keeps it: without an upstream's words unless the log
        holds content, since an upstream's error body can quote the prompt it refused."""
        words = str(exc) if self._config.audit.include_content else exc.own_words()
        return self.scrubber.scrub(words)

    def _log_failure(self, outcome: str, trace_id: str, exc: RouterError) -> None:
        """The server log's one line for a failed call, in our words only: the SDK's own line
        has the error text cut (`server.app.ToolFailureFilter`), for stderr is the host's log.
        A failure of the targets is the operator's concern; a refusal is the caller's."""
        level = logging.WARNING if outcome == "error" else logging.INFO
        log.log(level, "chat_completion %s (trace %s): %r", outcome, trace_id,
                self.scrubber.scrub(exc.own_words()))

    def _qualified(self, call: ChatCall) -> ChatCall:
        """The call with its models named as `provider/model`, before any access check."""
        providers = self._config.providers
        model = None if call.model is None else qualified(providers, call.model)
        fallbacks = tuple(qualified(providers, spec, f"fallbacks[{i}]")
                          for i, spec in enumerate(call.fallbacks))
        if model == call.model and fallbacks == call.fallbacks:
            return call
        return call.model_copy(update={"model": model, "fallbacks": fallbacks})

    @staticmethod
    def _models(call: ChatCall) -> list[tuple[str, str]]:
        """Each model the call names, with the argument that names it."""
        named = [(call.model, "model")] if call.model is not None else []
        return named + [(spec, f"fallbacks[{i}]") for i, spec in enumerate(call.fallbacks)]

    def note(self, client: str, tool: str, *, admit: bool = False,
             check: Callable[[], None] | None = None) -> None:
        """One audit line for a read-only tool call. `check` raises InvalidRequest for its
        arguments (audited as `invalid`); with `admit` the call is then counted against the
        client's rate (a probe sends requests upstream with the team's keys): RateLimited is
        raised, and audited as such. A refused argument uses none of the rate."""
        outcome, error = "ok", None
        try:
            if check is not None:
                check()
            if admit:
                self.access.admit(client)
        except InvalidRequest as exc:
            outcome, error = "invalid", self.scrubber.scrub(str(exc))
            raise
        except RateLimited:
            outcome = "rate_limited"
            raise
        finally:
            self.audit.write(AuditEntry(client=client, tool=tool, outcome=outcome, error=error))

    def _prompt(self, call: ChatCall, pii: PiiSession) -> str | None:
        return self._content(_text(call), pii)

    def _answer(self, result: ChatResult, pii: PiiSession) -> str | None:
        return self._content(result.content, pii)

    def _content(self, text: str, pii: PiiSession) -> str | None:
        """Text for an audit log with content: filtered as requests are, never in clear."""
        if not self._config.audit.include_content:
            return None
        try:
            return pii.filter_text(text)[0]
        except PolicyBlocked:
            return "[withheld by the PII policy]"


def _cost(charged: Charge | None) -> Decimal | None:
    """A failed call's cost as its audit line says it: as a result's `cost_usd` is (0 when
    nothing was charged, None when a price is unknown); None for a call no target was asked."""
    return None if charged is None else charged.cost_usd


def _outcome(exc: RouterError) -> str:
    return next((name for kind, name in _OUTCOMES if isinstance(exc, kind)), "error")


def _model(call: ChatCall) -> str | None:
    """The call's model as an audit line keeps it: a name refused as too long is cut."""
    model = call.model
    return model if model is None or len(model) <= MAX_MODEL_CHARS else \
        f"{model[:MAX_MODEL_CHARS]}..."


def _text(call: ChatCall) -> str:
    if call.prompt is not None:
        return call.prompt
    return "\n".join(f"{m.role}: {m.content}" for m in call.messages or ())
