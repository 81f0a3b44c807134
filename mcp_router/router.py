"""The order of steps of one `chat_completion`, and nothing else: each step is its own object."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from decimal import Decimal

import anyio

from mcp_router.cache import CacheStep, Fetched, Served, cache_key
from mcp_router.clock import Clock
from mcp_router.config import Config
from mcp_router.errors import (
    AllTargetsFailed,
    BudgetExceeded,
    Charge,
    DeadlineExceeded,
    InvalidRequest,
    ProviderError,
    ProviderStatusError,
    RouterError,
)
from mcp_router.health import HealthBook
from mcp_router.last_resort import ask_host, host_reserve_s
from mcp_router.late import Keeper, LateAnswers, finish_or_abort
from mcp_router.messages import (
    Adapter,
    Attempt,
    Call,
    ChatCall,
    ChatProvider,
    ChatRequest,
    ChatResponse,
    ChatResult,
    HostUnreachable,
    LastResort,
    Message,
    PiiSummary,
    ProgressFn,
    Usage,
    no_progress,
)
from mcp_router.money import format_usd
from mcp_router.outputs import content_budget_tokens
from mcp_router.pii import PiiFilter, PiiSession, combine_summaries
from mcp_router.plan import Planner
from mcp_router.probes import Prober
from mcp_router.routing.breaker import CircuitGroup
from mcp_router.routing.build import TreeBuilder, did_you_mean
from mcp_router.routing.decisions import ends_route
from mcp_router.routing.target import NOT_CONFIGURED
from mcp_router.spend import BudgetRefusal, CallGate, Spend

# A waiter on another call's flight gets this long past its deadline before it gives up.
GRACE_S = 1.0
# A caller that gives up waits this long at most for its aborted attempts to be charged.
ABORT_WAIT_S = 1.0

KeptFn = Callable[[ChatResponse, Decimal | None], None]
"""Told of an answer finished after its caller gave up: the response and what it cost."""
ChargedFn = Callable[[Charge], None]
"""Told what a call's attempts were charged when its caller gave up."""
LostFn = Callable[[Charge, Exception | None], None]
"""Told of an answer run on after its caller gave up that ended without one: what the call's
attempts were charged, and the upstream's error (None: cancelled, as the server stopped)."""


class Router:
    """Routes one request through the team policy: resolve, cache, run the target tree, settle."""

    def __init__(self, config: Config, adapters: Mapping[str, Adapter], *, clock: Clock,
                 builder: TreeBuilder, health: HealthBook, spend: Spend,
                 cache: CacheStep, prober: Prober, planner: Planner, pii: PiiFilter) -> None:
        self.config, self.adapters, self.clock = config, adapters, clock
        self.builder, self.health, self.spend, self.cache = builder, health, spend, cache
        self.prober, self.planner = prober, planner
        self.late = LateAnswers(clock)
        self.pii = pii
        self._policy = _fingerprint(config)
        # Without a max_tokens of the caller's, ask for no more than a host can take back.
        output = config.output
        self._max_tokens = min(output.default_max_tokens,
                               content_budget_tokens(output.max_result_tokens))

    async def complete(self, call: ChatCall, *, client: str = "local", sees_team: bool = True,
                       progress: ProgressFn = no_progress,
                       keeper: Keeper | None = None,
                       pii: PiiSession | None = None,
                       last_resort: LastResort | None = None,
                       trace_id: str | None = None,
                       on_kept: KeptFn | None = None,
                       on_cancelled: ChargedFn | None = None,
                       on_lost: LostFn | None = None) -> ChatResult:
        """Answer `call` or raise a RouterError that says what went wrong and what was tried.

        With a `keeper` task group, an answer already streaming when the caller gives up is
        finished there and kept, so the same call made again gets it at once. `pii` is the
        MCP session's filter session (pseudonyms live as long as it does). `last_resort`
        is asked when every target failed or is over budget (the host's model, by sampling).
        `trace_id` names the call in the ledger (a new one by default). `on_kept` hears of an
        answer finished after its caller gave up (its cost is in the ledger by then).
        Without `sees_team` (a client kept to its own calls) a refusal by the team's budget,
        in the error, the attempts or a dry run's plan, does not give the team's figures.

        A RouterError raised once targets were asked carries what their attempts were
        charged (`charged`); `on_cancelled` hears it when the caller gives up. An answer that
        runs on to be kept is charged whole when `on_kept` hears of it, so the given-up
        call is told 0 and the call's cost is counted once; should it end without an answer
        (the upstream failed, or the server stopped), `on_lost` hears what it was charged.
        """
        session = pii or self.pii.session()
        # Everything after this line, the cache key included, sees only the filtered request.
        request, found = session.filter_request(to_request(call, self._max_tokens))
        tree, route = self._resolve(call)
        labels = self._labels(call.metadata)
        trace_id = trace_id or uuid.uuid4().hex
        started = self.clock.now()
        timeout_s = call.timeout_s or self.config.timeouts.deadline_s
        gate = self.spend.gate(trace_id=trace_id, client=client, route=route,
                               metadata=labels, sees_team=sees_team)
        state = Call(deadline=started + timeout_s, progress=progress, gate=gate)

        async def upstream(report: ProgressFn) -> Fetched:
            # The cache step says where progress goes: to calls waiting on this one too.
            asking = replace(state, progress=report)
            # The targets' time ends early enough for the host's model to be asked; an answer
            # already streaming may still run on to the call's deadline (`Call.end`).
            targets = asking if last_resort is None or isinstance(last_resort, HostUnreachable) \
                else asking.within(state.deadline - host_reserve_s(timeout_s))
            try:
                try:
                    return Fetched(_redacted(await _every_target(tree, request, targets),
                                             session), gate.total[0])
                except AllTargetsFailed as exc:
                    refusal = _refusal(exc, gate.refusals, self.config, self._readings(call))
                    if last_resort is None:
                        raise refusal from exc
                    host = await ask_host(last_resort, request, asking, refusal, self.clock)
                    return Fetched(_redacted(host, session), gate.total[0], last_resort=True)
            finally:
                self.health.record(state.attempts)

        def kept(late: Served) -> None:
            """The answer finished after this call's caller gave up: keep it for them."""
            self.late.put(key, late.response, late.cost_usd)
            if on_kept is not None:
                on_kept(late.response, late.cost_usd)

        def lost(error: Exception | None) -> None:
            """The answer run on for this call's caller ended without one: say its cost."""
            if on_lost is not None:
                on_lost(_charge(gate), error)

        outlive = _Outlive(keeper, state, kept, lost)
        key = cache_key(request, self._scope(call), client)
        if call.dry_run:
            return self._dry_run(call, request, tree, route, key, trace_id, found, gate)
        # A kept answer is for the same call made again; `refresh` asked for a new answer
        # (so the kept one goes), `skip` for one that is neither read nor written.
        late = None if call.cache == "skip" else self.late.pop(key)
        if late is not None and call.cache == "use":
            self.spend.record_hit(late.response, late.cost_usd, trace_id=trace_id,
                                  client=client, route=route, metadata=labels)
            return self._result(Served(late.response, cached=False, cost_usd=Decimal(0)),
                                route, state, gate, trace_id, started, session, found,
                                call.max_tokens, late=True)
        try:
            # Waiting on another caller's identical in-flight call is bounded by our deadline.
            with anyio.move_on_after(timeout_s + GRACE_S) as scope:
                served = await self.cache.answer(key, request, call.cache, upstream,
                                                 call_opt_in=call.cache_sampled,
                                                 ttl_s=call.cache_ttl_s,
                                                 later=None if keeper is None else keeper.tasks,
                                                 outlive=outlive, progress=progress)
            if scope.cancelled_caught:
                raise DeadlineExceeded(f"no answer within the {timeout_s:g} s deadline")
        except RouterError as exc:
            exc.charged = outlive.charged(gate)
            raise
        except anyio.get_cancelled_exc_class():
            if on_cancelled is not None:
                on_cancelled(outlive.charged(gate))
            raise
        if served.cached:
            self.spend.record_hit(served.response, served.saved_usd, trace_id=trace_id,
                                  client=client, route=route, metadata=labels)
        return self._result(served, route, state, gate, trace_id, started, session, found,
                            call.max_tokens)

    def _dry_run(self, call: ChatCall, request: ChatRequest, tree: CircuitGroup,
                 route: str | None, key: str, trace_id: str, found: PiiSummary,
                 gate: CallGate) -> ChatResult:
        """Everything the call would do, with no upstream call and nothing held or stored."""
        # As `complete`: a kept answer first (whatever the cache may hold), then the cache.
        kept = call.cache == "use" and self.late.peek(key) is not None
        hit = kept or (call.cache == "use"
                       and self.cache.store.may_cache(request, call_opt_in=call.cache_sampled)
                       and self.cache.store.get(key) is not None)
        plan = self.planner.plan(tree.keys, request, cache_hit=hit, client=gate.client,
                                 sees_team=gate.sees_team)
        first = next((t for t in plan.targets if t.would == "ask"), None)
        note = "dry run: nothing was sent"
        if kept:
            note += ("; the call would get the answer kept after its caller gave up "
                     "(late: true, cost 0), asking no target")
        elif first is None and not hit:
            note += "; the call would fail: every target would be skipped (see dry_run.targets)"
        first = first or plan.targets[0]
        return ChatResult(
            content="", provider=first.provider, model=first.model, route=route,
            finish_reason=None, usage=Usage(), cost_usd=Decimal(0),
            cost_note=note, latency_ms=0.0, attempts=[],
            trace_id=trace_id, dry_run=plan, pii=found)

    def _result(self, served: Served, route: str | None, state: Call, gate: CallGate,
                trace_id: str, started: float, session: PiiSession, found: PiiSummary,
                call_max_tokens: int | None, late: bool = False) -> ChatResult:
        completion = served.response.completion
        cost, note = (served.cost_usd, None) if served.cached or late else gate.total
        capped = completion.finish_reason == "length" and call_max_tokens is None
        # The stored answer keeps placeholders; only this caller's session can fill them in.
        content = session.restore(completion.content)
        return ChatResult(
            content=content, provider=served.response.provider,
            model=served.response.model, route=route, finish_reason=completion.finish_reason,
            usage=completion.usage, cost_usd=cost, cost_note=note, cached=served.cached,
            cache_age_s=None if served.age_s is None else round(served.age_s, 3),
            latency_ms=_ms(self.clock.now() - started), attempts=list(state.attempts),
            trace_id=trace_id, late=late,
            pii=combine_summaries(found, *_answer_findings(served.response)),
            max_tokens_applied=self._max_tokens if capped else None,
        )

    def _labels(self, metadata: Mapping[str, str]) -> dict[str, str]:
        """The call's metadata as the ledger keeps it: PII the filter finds in a label's name
        or value is redacted, whatever the request's action (labels never leave the machine,
        so there is nothing to pseudonymize, and no reason to refuse the call); a value is
        judged with its name before it (`customer_phone`, `password`: `PiiFilter.redact_label`)."""
        if not metadata or not self.config.pii.enabled:
            return dict(metadata)
        return dict(self.pii.redact_label(name, value) for name, value in metadata.items())

    def check(self, call: ChatCall) -> None:
        """Raise InvalidRequest where `complete` would refuse `call` for its arguments alone
        (its messages, route and model together, an unknown route), so a caller can refuse
        it before counting it against a rate. Models are `builder.check`'s; nothing is built
        but a configured route's tree, which is built once whatever the call's fate."""
        check_messages(call)
        self._route(call)

    def _resolve(self, call: ChatCall) -> tuple[CircuitGroup, str | None]:
        route, primary = self._route(call)
        if primary is None:
            assert call.model is not None  # `_route` gives no tree only for a model
            primary = self.builder.model(call.model)
        return self.builder.with_fallbacks(primary, call.fallbacks), route

    def _route(self, call: ChatCall) -> tuple[str | None, ChatProvider | None]:
        """The route `call` takes and its tree; (None, None) for a call naming a model."""
        if call.route is not None and call.model is not None:
            raise InvalidRequest("route", "give either 'route' or 'model', not both")
        if call.model is not None:
            return None, None
        route = call.route or self.config.default_route
        return route, self.builder.route(route)

    def _readings(self, call: ChatCall) -> list[str]:
        """Keyed providers' models that the call's `model` and `fallbacks`, read whole, are."""
        named = [spec for spec in (call.model, *call.fallbacks) if spec is not None]
        return list(dict.fromkeys(r for spec in named for r in self.builder.keyed_readings(spec)))

    def _scope(self, call: ChatCall) -> str:
        """What the answer depends on besides the request: targets asked and the policy.

        JSON, so no model name can run into a fallback (`a|b` is not `a` then `b`)."""
        target = f"model:{call.model}" if call.model else \
            f"route:{call.route or self.config.default_route}"
        return json.dumps([target, list(call.fallbacks), self._policy])


class _Outlive:
    """Runs the work of a cache miss (`CacheStep.answer`'s `outlive`): past its caller giving
    up once the answer is being paid for, or while identical calls wait on it (its flight's
    waiters and the cache get it); otherwise aborted, and waited for, briefly, so that what
    its attempts were charged is known before the caller's error or audit line is written.
    """

    def __init__(self, keeper: Keeper | None, state: Call, kept: Callable[[Served], None],
                 lost: Callable[[Exception | None], None]) -> None:
        self._keeper, self._state, self._kept, self._lost = keeper, state, kept, lost
        self.ran_on = False

    async def __call__(self, work: Callable[[], Awaitable[Served]],
                       awaited: Callable[[], bool]) -> Served:
        running = True
        ended: anyio.Event | None = None  # made only when a caller gives up: most never do

        async def run() -> Served:
            nonlocal running
            try:
                return await work()
            finally:
                running = False
                if ended is not None:
                    ended.set()

        def paying() -> bool:  # asked once, as the caller gives up
            self.ran_on = self._state.stream.started or awaited()
            return self.ran_on

        try:
            return await finish_or_abort(run, keeper=self._keeper, paying=paying,
                                         on_late=self._kept, on_lost=self._lost)
        except anyio.get_cancelled_exc_class():
            if not self.ran_on and running:  # aborted in the keeper's task: charged as it
                ended = anyio.Event()  # unwinds
                with anyio.move_on_after(ABORT_WAIT_S, shield=True):
                    await ended.wait()
            raise

    def charged(self, gate: CallGate) -> Charge:
        """What the call's attempts were charged, for its error or its given-up caller; 0 for
        an answer that runs on, whose kept line (`on_kept`, or `on_lost` should it end without
        an answer) says what the whole call cost."""
        return Charge(Decimal(0)) if self.ran_on else _charge(gate)


def _charge(gate: CallGate) -> Charge:
    """What a call's attempts were charged so far, as the ledger has it for its trace."""
    cost, note = gate.total
    return Charge(cost, note, estimated=bool(gate.estimates))


async def _every_target(tree: CircuitGroup, request: ChatRequest,
                        state: Call) -> ChatResponse:
    """The tree's answer. A lone target (a `single` route, a model without fallbacks) that
    fails ends the call as a route does: AllTargetsFailed with every attempt and why, so the
    refusal says what was tried and the host's model may still answer. A 400 or 422 is
    raised as the provider's error, saying why no further target was asked: the request itself
    must change; when targets were tried before it, it lists every attempt, as
    AllTargetsFailed does, so it does not hide a failing primary."""
    try:
        return await tree.complete(request, state)
    except ProviderStatusError as exc:
        if ends_route(exc):
            raise ProviderStatusError(exc.provider, exc.model, exc.status,
                                      _must_change(exc, state.attempts),
                                      attempts=state.attempts) from exc
        raise AllTargetsFailed(state.attempts) from exc
    except ProviderError as exc:
        raise AllTargetsFailed(state.attempts) from exc


def _must_change(exc: ProviderStatusError, attempts: list[Attempt]) -> str:
    """The reason a 400/422 ends the call with, and the call's attempts when it had others."""
    if len(attempts) <= 1:
        return (f"{exc.reason} (the provider refused the request itself, so no other target "
                f"was asked: change the request)")
    return (f"{exc.reason} (the provider refused the request itself, so no further target was "
            f"asked: change the request); {AllTargetsFailed(attempts, 'attempts of this call')}")


def _redacted(response: ChatResponse, session: PiiSession) -> ChatResponse:
    """The answer with the answer policy applied and placeholders kept: safe to cache.

    What was found in it rides along in the completion so the caller's result can count it.
    """
    text, found = session.redact_answer(response.completion.content)
    if text == response.completion.content and not found.counts:
        return response  # nothing found: the answer as it came, with no findings to count
    completion = response.completion.model_copy(update={"content": text, "pii": found})
    return response.model_copy(update={"completion": completion})


def _answer_findings(response: ChatResponse) -> tuple[PiiSummary, ...]:
    found = response.completion.pii
    return () if found is None else (found,)


def _fingerprint(config: Config) -> str:
    """Changes whenever providers, routes or the PII policy change, so old answers are not
    served for them: a stored answer has had the answer policy of its day applied, and a
    tightened policy must not be bypassed by a hit."""
    data = json.dumps([config.model_dump(mode="json", include={"providers", "routes", "pii"})],
                      sort_keys=True)
    return hashlib.sha256(data.encode()).hexdigest()[:16]


def check_messages(call: ChatCall) -> None:
    """Raise InvalidRequest unless `call` gives exactly one of `messages` and `prompt`, with
    something to ask in it."""
    if (call.messages is None) == (call.prompt is None):
        raise InvalidRequest("messages", "give either 'messages' (a list of {role, content}) "
                             "or 'prompt' (a string), exactly one of them")
    if call.prompt is not None:
        if not call.prompt.strip():
            raise InvalidRequest("prompt", "must not be empty")
        return
    messages = call.messages or ()
    if not messages:
        raise InvalidRequest("messages", "must hold at least one message")
    if all(m.role == "system" for m in messages):
        raise InvalidRequest("messages", "needs at least one user or assistant message")
    blank = next((i for i, m in enumerate(messages)
                  if m.role == "user" and not m.content.strip()), None)
    if blank is not None:  # as an empty prompt is: nothing to ask, yet billed
        raise InvalidRequest(f"messages.{blank}.content", "must not be empty")


def to_request(call: ChatCall, default_max_tokens: int | None = None) -> ChatRequest:
    """The neutral request of a call; exactly one of `messages` and `prompt` is allowed.

    `default_max_tokens` stands in when the call sets no `max_tokens`.
    """
    check_messages(call)
    messages = (Message(role="user", content=call.prompt),) if call.prompt is not None \
        else call.messages or ()
    max_tokens = default_max_tokens if call.max_tokens is None else call.max_tokens
    return ChatRequest(messages=messages, max_tokens=max_tokens,
                       temperature=call.temperature, top_p=call.top_p, stop=call.stop)


def _refusal(error: AllTargetsFailed, budget_refusals: list[BudgetRefusal],
             config: Config, readings: list[str]) -> RouterError:
    """When the budget alone stopped every target, say so: budget, spent and the quote (the
    cheapest target's, when there were several). When missing keys alone did (a new
    install's first call), say which variables to set where, and which `readings` (keyed
    providers listing a model the caller named, read whole) need no new key."""
    tried = any(a.outcome != "skipped" for a in error.attempts)
    if budget_refusals and not tried:
        return BudgetExceeded(_over_budget(budget_refusals))
    if error.attempts and all(a.error == NOT_CONFIGURED for a in error.attempts):
        variables = list(dict.fromkeys(config.providers[a.provider].api_key_env or a.provider
                                       for a in error.attempts))
        wanted = variables[0] if len(variables) == 1 else f"one of {', '.join(variables)}"
        return AllTargetsFailed(error.attempts, (
            f"no provider this call may use has an API key: set {wanted} in the server's "
            "environment (the env of its entry in your host's MCP config), then restart it"
            # The attempts follow the headline after a colon, which "…?" must not run into.
            + (f"{did_you_mean(readings)} (listed by a provider that has its key); attempts"
               if readings else "")))
    return error


def _over_budget(refusals: list[BudgetRefusal]) -> str:
    first = f"{refusals[0].target}: {refusals[0].message}"
    priced = [r for r in refusals if r.quote is not None]
    if not priced:
        return first
    if len(refusals) == 1:
        return f"{first}; a smaller max_tokens lowers the quote"
    cheapest = min(priced, key=lambda r: r.quote or 0)
    return (f"{first}; every target was over budget, the cheapest ({cheapest.target}) at up "
            f"to {format_usd(cheapest.quote or Decimal(0))}; a smaller max_tokens lowers "
            f"each quote")


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)
