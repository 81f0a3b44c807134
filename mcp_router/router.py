"""The order of steps of one `chat_completion`, and nothing else: each step is its own object."""

from __future__ import annotations

import uuid
from collections.abc import Mapping

from mcp_router.clock import Clock
from mcp_router.config import Config
from mcp_router.errors import AllTargetsFailed, BudgetExceeded, InvalidRequest, RouterError
from mcp_router.health import HealthBook
from mcp_router.messages import (
    Adapter,
    Call,
    ChatCall,
    ChatProvider,
    ChatRequest,
    ChatResult,
    Message,
    ProgressFn,
    _no_progress,
)
from mcp_router.routing.build import TreeBuilder
from mcp_router.spend import Spend


class Router:
    """Routes one request through the team policy: resolve, run the target tree, settle."""

    def __init__(self, config: Config, adapters: Mapping[str, Adapter], *, clock: Clock,
                 builder: TreeBuilder, health: HealthBook, spend: Spend) -> None:
        self.config, self.adapters, self.clock = config, adapters, clock
        self.builder, self.health, self.spend = builder, health, spend

    async def complete(self, call: ChatCall, *, client: str = "local",
                       progress: ProgressFn = _no_progress) -> ChatResult:
        """Answer `call` or raise a RouterError that says what went wrong and what was tried."""
        request = to_request(call)
        tree, route = self._resolve(call)
        trace_id = uuid.uuid4().hex
        started = self.clock.now()
        gate = self.spend.gate(trace_id=trace_id, client=client, route=route,
                               metadata=call.metadata)
        state = Call(deadline=started + (call.timeout_s or self.config.timeouts.deadline_s),
                     progress=progress, gate=gate)
        try:
            response = await tree.complete(request, state)
        except AllTargetsFailed as exc:
            raise _refusal(exc, gate.refusals) from exc
        finally:
            self.health.record(state.attempts)
        cost, note = gate.total
        completion = response.completion
        return ChatResult(
            content=completion.content, provider=response.provider, model=response.model,
            route=route, finish_reason=completion.finish_reason, usage=completion.usage,
            cost_usd=cost, cost_note=note, latency_ms=_ms(self.clock.now() - started),
            attempts=list(state.attempts), trace_id=trace_id,
        )

    def _resolve(self, call: ChatCall) -> tuple[ChatProvider, str | None]:
        if call.route is not None and call.model is not None:
            raise InvalidRequest("route", "give either 'route' or 'model', not both")
        if call.model is not None:
            primary, route = self.builder.model(call.model), None
        else:
            route = call.route or self.config.default_route
            primary = self.builder.route(route)
        return self.builder.with_fallbacks(primary, call.fallbacks), route


def to_request(call: ChatCall) -> ChatRequest:
    """The neutral request of a call; exactly one of `messages` and `prompt` is allowed."""
    if (call.messages is None) == (call.prompt is None):
        raise InvalidRequest("messages", "give either 'messages' (a list of {role, content}) "
                             "or 'prompt' (a string), exactly one of them")
    if call.prompt is not None:
        if not call.prompt.strip():
            raise InvalidRequest("prompt", "must not be empty")
        messages: tuple[Message, ...] = (Message(role="user", content=call.prompt),)
    else:
        messages = call.messages or ()
        if not messages:
            raise InvalidRequest("messages", "must hold at least one message")
        if all(m.role == "system" for m in messages):
            raise InvalidRequest("messages", "needs at least one user or assistant message")
    return ChatRequest(messages=messages, max_tokens=call.max_tokens,
                       temperature=call.temperature, top_p=call.top_p, stop=call.stop)


def _refusal(error: AllTargetsFailed, budget_refusals: list[str]) -> RouterError:
    """When the budget alone stopped every target, say so: budget, spent and the quote."""
    tried = any(a.outcome != "skipped" for a in error.attempts)
    if budget_refusals and not tried:
        return BudgetExceeded(budget_refusals[0])
    return error


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)
