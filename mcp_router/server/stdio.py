"""Serve MCP over this process's stdin and stdout through the event loop's own pipe transports.

The SDK's stdio transport reads each line and writes (then flushes) each message on a
worker thread: three thread hand-offs for every call, which cost a plain call about as much
as the routing core does. Here the event loop watches the pipes itself: a message is read
when epoll says it is there, and written by the task that sends it, straight into the pipe.

As with the SDK's transport, fd 0 and fd 1 point elsewhere while serving (the null device and
stderr), so a stray `print` or a child process cannot write into the protocol; both are put
back, blocking mode included, when serving ends. Hosts start servers with pipes or sockets on
both; anything else (a file, Windows, an event loop that is not asyncio's) is served by the
SDK's own transport. A terminal on stdin is read on a daemon thread of ours instead of the
SDK's: its reads cannot be cancelled, and the SDK's would hold Ctrl-C until the next line.

Hosts stop a server by closing stdin, or with SIGTERM (some send it at once). Either way the
calls in flight are cancelled the same way: their attempts are written to the ledger as
cancelled, and answers staged for the cache reach the disk before the process exits.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import stat
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, ExitStack, asynccontextmanager, contextmanager, suppress
from types import TracebackType
from typing import IO, Any, BinaryIO, Self, cast

import anyio
import anyio.lowlevel
from mcp.server.mcpserver import MCPServer
from mcp.server.stdio import stdio_server
from mcp.shared.message import SessionMessage
from mcp.types import JSONRPCError, JSONRPCMessage, JSONRPCNotification, jsonrpc_message_adapter
from pydantic_core import PydanticSerializationError

from mcp_router.messages import well_formed
from mcp_router.server.oversized import ID_SCAN_BYTES, malformed, refusal, stray_id
from mcp_router.server.terminal import TerminalLines

if sys.platform != "win32":
    import fcntl

__all__ = ["MAX_LINE_BYTES", "PipeReader", "PipeWriter", "serve_stdio"]

log = logging.getLogger("mcp_router")

MAX_LINE_BYTES = 64 * 1024 * 1024
"""A message longer than this is dropped (and said on stderr), not buffered without end; a
request's sender gets an error for it."""


async def serve_stdio(server: MCPServer[Any]) -> None:
    """Run `server` over stdin and stdout until the host closes stdin or sends SIGTERM or
    SIGHUP, or (from a terminal) Ctrl-C is typed. On the SDK's transport, whose reading
    thread cannot be cancelled, those signals still end the process at once."""
    lowlevel = server._lowlevel_server  # run_stdio_async's own way in; no public one takes streams
    if _pipes_usable():
        async with anyio.create_task_group() as tasks, stdio_pipes() as (reader, writer):
            tasks.start_soon(_cancel_on_signal, tasks.cancel_scope)
            await lowlevel.run(reader, writer, lowlevel.create_initialization_options())
            tasks.cancel_scope.cancel()
    elif sys.platform != "win32" and os.isatty(0):
        async with anyio.create_task_group() as tasks, terminal_lines() as lines, \
                stdio_server(stdin=lines) as (reader, writer):  # type: ignore[arg-type]
            tasks.start_soon(_cancel_on_signal, tasks.cancel_scope)
            await lowlevel.run(reader, writer, lowlevel.create_initialization_options())
            tasks.cancel_scope.cancel()
    else:
        await server.run_stdio_async()


async def _cancel_on_signal(scope: anyio.CancelScope) -> None:
    """Cancel `scope` on SIGTERM or SIGHUP, as closing stdin would end it (SIGINT already
    cancels the run). Off the main thread signals cannot be caught; they keep their
    default there."""
    with ExitStack() as stack:
        try:
            signals = stack.enter_context(
                anyio.open_signal_receiver(signal.SIGTERM, signal.SIGHUP))
        except RuntimeError:
            return
        async for signum in signals:
            log.info("%s: stopping", signal.Signals(signum).name)
            scope.cancel()
            return


def _pipes_usable() -> bool:
    """Pipes and sockets on both descriptors (what hosts spawn servers with), on asyncio."""
    if sys.platform == "win32":
        return False
    try:
        asyncio.get_running_loop()
        return all(stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)
                   for mode in (os.fstat(0).st_mode, os.fstat(1).st_mode))
    except (RuntimeError, OSError):  # not asyncio (trio), or a descriptor that is closed
        return False


@asynccontextmanager
async def stdio_pipes() -> AsyncIterator[tuple[PipeReader, PipeWriter]]:
    """A reader and a writer on private copies of fd 0 and 1, which point elsewhere meanwhile.

    The pipe transports make the file descriptions non-blocking; their flags are put back
    on the way out, as are fd 0 and 1.
    """
    loop = asyncio.get_running_loop()
    async with AsyncExitStack() as stack:
        stack.push_async_callback(asyncio.sleep, 0)  # the transports close their copies
        stack.enter_context(_flags_kept(0))
        stack.enter_context(_flags_kept(1))
        reader = asyncio.StreamReader(limit=MAX_LINE_BYTES, loop=loop)
        wire_in, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader, loop=loop), _private_copy(0, "rb"))
        stack.callback(wire_in.close)
        wire_out, flow = await loop.connect_write_pipe(_WriteFlow, _private_copy(1, "wb"))
        stack.callback(wire_out.close)
        stack.enter_context(_pointed_at(0, os.open(os.devnull, os.O_RDONLY)))
        stack.enter_context(_pointed_at(1, os.dup(2)))
        stack.callback(_flush, sys.stdout)  # stray prints still buffered go to stderr too
        writer = PipeWriter(wire_out, flow)
        yield PipeReader(reader, writer.send), writer


def _private_copy(fd: int, mode: str) -> BinaryIO:
    """A duplicate of `fd` above the standard range, not inherited by child processes."""
    return cast(BinaryIO, os.fdopen(fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3), mode,
                                    buffering=0))


def _flush(stream: IO[str] | None) -> None:
    with suppress(OSError, ValueError):  # closed, or its descriptor gone
        if stream is not None:
            stream.flush()


@contextmanager
def _flags_kept(fd: int) -> Iterator[None]:
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    try:
        yield
    finally:
        fcntl.fcntl(fd, fcntl.F_SETFL, flags)


@contextmanager
def _pointed_at(fd: int, elsewhere: int) -> Iterator[None]:
    """`fd` names `elsewhere` (which it takes over) until the block ends, then itself again."""
    saved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)
    try:
        os.dup2(elsewhere, fd)
    finally:
        os.close(elsewhere)
    try:
        yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)


@asynccontextmanager
async def terminal_lines() -> AsyncIterator[TerminalLines]:
    """The lines typed into the terminal on fd 0, which points at the null device meanwhile."""
    # Never closed: the reading thread may still be blocked on it when serving ends, and a
    # closed descriptor's number could be reused under it.
    private = fcntl.fcntl(0, fcntl.F_DUPFD_CLOEXEC, 3)
    with _pointed_at(0, os.open(os.devnull, os.O_RDONLY)):
        lines = TerminalLines(private)
        try:
            yield lines
        finally:
            lines.close()


class PipeReader:
    """The read side the SDK's server loop takes: one JSON-RPC message a line.

    A line that is not a message is handed on as its exception, as the SDK's transport
    does, and also said on stderr so whoever wired the host up can see it. A line over
    MAX_LINE_BYTES is dropped, and so is a request whose id is no string or integer, which
    the SDK's parser takes for a notification. Either way `answer` (the writer's `send`)
    tells a request's sender so, as JSON-RPC asks (-32700 for a line that is not JSON,
    -32600 for one that is no message), rather than leave a host waiting out its own timeout.
    """

    def __init__(self, reader: asyncio.StreamReader,
                 answer: Callable[[SessionMessage], Awaitable[None]] | None = None) -> None:
        self._reader, self._answer = reader, answer

    async def receive(self) -> SessionMessage | Exception:
        while True:
            line = await self._line()
            try:
                message = jsonrpc_message_adapter.validate_json(line, by_name=False)
            except ValueError as exc:  # pydantic's ValidationError is a ValueError
                if (reread := _reread(line)) is None:
                    log.warning("stdin: a line that is not a JSON-RPC message was ignored: %s",
                                str(exc).splitlines()[0])
                    await self._tell(malformed(line))
                    return exc
                message = reread
            if isinstance(message, JSONRPCNotification) and (
                    error := stray_id(line)) is not None:
                log.warning("stdin: a request was refused: %s", error.error.message)
                await self._tell(error)
                continue
            return SessionMessage(message)

    async def _line(self) -> bytes:
        """The next non-empty line; EndOfStream when stdin is closed."""
        while True:
            try:
                line = await self._reader.readuntil(b"\n")
            except asyncio.IncompleteReadError as exc:
                line = exc.partial  # the last line may lack its newline
                if not line.strip():
                    raise anyio.EndOfStream from None
            except asyncio.LimitOverrunError as exc:
                await self._refuse(*await self._skip_line(exc.consumed))
                continue
            if line.strip():
                return line

    async def _skip_line(self, consumed: int) -> tuple[bytes, bytes]:
        """Drop a line over MAX_LINE_BYTES, up to and including its newline; returns its
        first and its last ID_SCAN_BYTES, where its id may be."""
        log.warning("stdin: a message over %d MiB was dropped", MAX_LINE_BYTES >> 20)
        head = tail = b""
        while True:
            dropped = await self._reader.readexactly(consumed)
            head = head or dropped[:ID_SCAN_BYTES]
            tail = (tail + dropped[-ID_SCAN_BYTES:])[-ID_SCAN_BYTES:]
            try:
                rest = await self._reader.readuntil(b"\n")
            except asyncio.IncompleteReadError as exc:
                rest = exc.partial
            except asyncio.LimitOverrunError as exc:
                consumed = exc.consumed
                continue
            return head, (tail + rest[-ID_SCAN_BYTES - 2:].rstrip(b"\r\n"))[-ID_SCAN_BYTES:]

    async def _refuse(self, head: bytes, tail: bytes) -> None:
        """Answer a dropped message with an error for its id (null when neither end of it
        shows the id); a dropped response gets none."""
        await self._tell(refusal(head, f"message over the {MAX_LINE_BYTES >> 20} MiB limit "
                                       "of mcp-router's stdin: dropped, not read", tail))

    async def _tell(self, error: JSONRPCError | None) -> None:
        """Send `error` to the host, if there is one to send and a way to send it."""
        if self._answer is None or error is None:
            return
        with suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
            await self._answer(SessionMessage(error))

    async def aclose(self) -> None:
        return None

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> SessionMessage | Exception:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc_val: BaseException | None, exc_tb: TracebackType | None) -> None:
        await self.aclose()


def _reread(line: bytes) -> JSONRPCMessage | None:
    """The message in `line` as the standard library reads it, for the valid JSON that
    pydantic's reader refuses: a lone UTF-16 surrogate escape (`"\\ud83d"`, half an emoji a
    JavaScript host cut) and nesting past 200 levels. The tools take such text as the
    in-memory transport hands it to them, and refuse or mend it naming the argument. None
    when the line is still no message."""
    try:
        return jsonrpc_message_adapter.validate_python(json.loads(line), by_name=False)
    except (ValueError, RecursionError):  # not JSON, no message, or nested past reading
        return None


class _WriteFlow(asyncio.Protocol):
    """Flow control for the stdout pipe: a sender waits while the pipe's buffer is full."""

    def __init__(self) -> None:
        self._resumed: asyncio.Future[None] | None = None
        self.lost = False

    def pause_writing(self) -> None:
        self._resumed = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        self._wake()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._wake()

    def _wake(self) -> None:
        resumed, self._resumed = self._resumed, None
        if resumed is not None and not resumed.done():
            resumed.set_result(None)

    async def drained(self) -> None:
        if self._resumed is not None:
            await asyncio.shield(self._resumed)


class PipeWriter:
    """The write side: each message is one line, written whole by the task that sends it."""

    def __init__(self, transport: asyncio.WriteTransport, flow: _WriteFlow) -> None:
        self._transport, self._flow = transport, flow

    async def send(self, item: SessionMessage, /) -> None:
        if self._flow.lost or self._transport.is_closing():
            raise anyio.BrokenResourceError("stdout is closed: the host has gone")
        try:
            data = item.message.model_dump_json(by_alias=True, exclude_unset=True)
        except PydanticSerializationError:  # a lone surrogate (a host's half emoji, echoed)
            data = well_formed(json.dumps(item.message.model_dump(
                mode="json", by_alias=True, exclude_unset=True),
                ensure_ascii=False, separators=(",", ":")))
        self._transport.write(data.encode() + b"\n")
        await self._flow.drained()

    async def aclose(self) -> None:
        return None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc_val: BaseException | None, exc_tb: TracebackType | None) -> None:
        await self.aclose()
