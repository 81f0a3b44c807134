"""A terminal on stdin, read on a thread of its own so that Ctrl-C is never held up."""

from __future__ import annotations

import math
import os
import threading
from typing import Self

import anyio
import anyio.from_thread
import anyio.lowlevel

__all__ = ["TerminalLines"]


class TerminalLines:
    """Lines read from a terminal descriptor on a daemon thread, as the SDK's transport takes
    its stdin (`async for line in ...`).

    Waiting for a line is cancelled at once; the thread is left blocked in its read, and as a
    daemon it does not hold the process's exit. It reads with `os.read`, not through a
    buffered file, whose lock it would hold while blocked when the interpreter shuts down.
    """

    def __init__(self, fd: int) -> None:
        self._send, self._chunks = anyio.create_memory_object_stream[bytes](math.inf)
        self._pending = b""
        self._ended = False
        token = anyio.lowlevel.current_token()
        threading.Thread(target=self._read, args=(fd, token), daemon=True,
                         name="mcp-router terminal").start()

    def _read(self, fd: int, token: anyio.lowlevel.EventLoopToken) -> None:
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                chunk = b""
            try:
                anyio.from_thread.run_sync(self._send.send_nowait, chunk, token=token)
            except (RuntimeError, anyio.BrokenResourceError, anyio.ClosedResourceError):
                return  # serving has ended (or its event loop with it)
            if not chunk:
                return

    def close(self) -> None:
        self._send.close()
        self._chunks.close()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> str:
        """The next non-blank line; a last one cut by Ctrl-D counts."""
        while True:
            while b"\n" not in self._pending and not self._ended:
                chunk = await self._chunks.receive()
                self._ended = not chunk
                self._pending += chunk
            line, newline, self._pending = self._pending.partition(b"\n")
            if line.strip():
                return line.decode("utf-8", errors="replace")
            if not newline:
                raise StopAsyncIteration
