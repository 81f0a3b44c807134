"""The JSON-RPC error that answers a message too large to read, found from the bytes it starts
with: over stdio a line past its limit, over HTTP a body past `server.max_body_bytes`."""

from __future__ import annotations

import json

from mcp.types import INVALID_REQUEST, ErrorData, JSONRPCError

__all__ = ["ID_SCAN_BYTES", "leading_members", "refusal"]

ID_SCAN_BYTES = 4096
"""How much of a dropped message is read for its id (clients write the id before the params)."""

_DECODER = json.JSONDecoder()


def refusal(head: bytes, message: str) -> JSONRPCError | None:
    """The error `message` for the message `head` begins, with its id (null when the id cannot
    be read from `head`); None when that message is a response, which gets no answer."""
    members = leading_members(head)
    if "result" in members or "error" in members:
        return None
    request_id = members.get("id")
    if not isinstance(request_id, int | str) or isinstance(request_id, bool):
        request_id = None
    return JSONRPCError(jsonrpc="2.0", id=request_id,
                        error=ErrorData(code=INVALID_REQUEST, message=message))


def leading_members(head: bytes) -> dict[str, object]:
    """The top-level members of the JSON object that `head` begins, up to the first one cut
    off where `head` ends (kept with the value None); never a nested "id"."""
    text = head.decode("utf-8", errors="ignore")
    members: dict[str, object] = {}
    pos = _skip_blank(text, 0)
    if not text.startswith("{", pos):
        return members
    pos += 1
    try:
        while True:
            key, pos = _DECODER.raw_decode(text, _skip_blank(text, pos))
            pos = _skip_blank(text, pos)
            if not isinstance(key, str) or not text.startswith(":", pos):
                return members
            members[key] = None
            value, pos = _DECODER.raw_decode(text, _skip_blank(text, pos + 1))
            pos = _skip_blank(text, pos)
            if not text.startswith((",", "}"), pos):  # a number cut off where `head` ends
                return members
            members[key] = value
            pos += 1
    except ValueError:  # JSONDecodeError: cut off, or not JSON
        return members


def _skip_blank(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos
