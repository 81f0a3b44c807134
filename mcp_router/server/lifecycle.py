"""How long the router's state lives: as long as the HTTP server, or over stdio (and in
process) as long as the connections that use it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, replace

import anyio

from mcp_router.front import Front
from mcp_router.late import Keeper
from mcp_router.outputs import AnswerPages
from mcp_router.pii import PiiSession
from mcp_router.router import Router
from mcp_router.server.alerts import AlertDesk
from mcp_router.server.sessions import PiiSessions

__all__ = ["AppState", "SharedState"]


@dataclass
class AppState:
    """What the tools reach through the context."""

    router: Router
    pages: AnswerPages
    front: Front
    pii_sessions: PiiSessions
    alerts: AlertDesk
    keeper: Keeper | None = None  # finishes answers a host gave up on
    pii: PiiSession | None = None  # this connection's, over stdio or in process


class SharedState:
    """The router and its resources, with the task group that finishes the answers hosts gave
    up on and runs the `health.probe_interval_s` probes: one of each per server.

    Over HTTP the server's `lifetime` holds them from start to stop. Both transports' MCP
    lifespans only borrow them: SSE enters its lifespan once per connection, and a host
    leaving must neither close the circuits and health figures nor cancel an answer kept for
    it, nor stop the probes other hosts rely on. Over stdio (or in process) each connection
    holds them and runs its own task group; the last to leave closes them.
    """

    def __init__(self, open_state: Callable[[AsyncExitStack], Awaitable[AppState]],
                 probe_interval_s: float, grace_s: float = 0) -> None:
        self._open_state, self._interval, self._grace_s = open_state, probe_interval_s, grace_s
        self._users = 0
        self._stack: AsyncExitStack | None = None
        self._state: AppState | None = None
        self._probing = False
        self._serving: AppState | None = None  # held by `lifetime`
        self._keepers: set[Keeper] = set()  # one per holder

    @asynccontextmanager
    async def lifetime(self) -> AsyncIterator[None]:
        """Hold everything for as long as an HTTP server runs: kept answers are cancelled,
        and the state closed, only when it stops (after its grace for calls in flight, which
        answers still being finished for hosts that gave up get too)."""
        if self._serving is not None:  # another app of the same server holds it already
            yield
            return
        async with self._held() as state:
            self._serving = state
            try:
                yield
            finally:
                self._serving = None
                # The server's connections are closed by now, but not the keeper's work:
                # its drain ends what still runs when the grace runs out.
                with anyio.move_on_after(self._grace_s):
                    while self.keeping:
                        await anyio.sleep(0.02)

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[AppState]:
        """What one MCP lifespan gives its tools: the server's, or this connection's own."""
        held = self._serving
        if held is not None:
            yield replace(held, pii=held.router.pii.session())
            return
        async with self._held() as state:
            yield replace(state, pii=state.router.pii.session())

    @property
    def keeping(self) -> bool:
        """Whether an upstream call runs in a keeper: an answer a host gave up on may be
        being finished (a stopping server gives it the grace its calls get)."""
        return any(keeper.busy for keeper in self._keepers)

    def stop_keeping(self) -> None:
        """End what the keepers run, at the end of a stopping server's grace: each answer
        given up on and still unfinished has a `lost` audit line with its cost."""
        for keeper in self._keepers:
            keeper.stop()

    @asynccontextmanager
    async def _held(self) -> AsyncIterator[AppState]:
        state = await self._acquire()
        # One probe loop per server: the holder that starts it is the one that clears it.
        probing = self._interval > 0 and not self._probing
        try:
            async with anyio.create_task_group() as tasks:
                if probing:
                    self._probing = True
                    tasks.start_soon(state.router.prober.run_every, self._interval)
                keeper = Keeper(tasks)
                self._keepers.add(keeper)
                try:
                    yield replace(state, keeper=keeper)
                finally:
                    self._keepers.discard(keeper)
                tasks.cancel_scope.cancel()
        finally:
            if probing:
                self._probing = False
            await self._release()

    async def _acquire(self) -> AppState:
        if self._state is None:
            stack = AsyncExitStack()
            try:
                self._state = await self._open_state(stack)
            except BaseException:
                await stack.aclose()
                raise
            self._stack = stack
        self._users += 1
        return self._state

    async def _release(self) -> None:
        self._users -= 1
        if self._users == 0 and self._stack is not None:
            stack, self._stack, self._state = self._stack, None, None
            await stack.aclose()
