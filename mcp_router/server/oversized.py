"""The JSON-RPC error that answers a message the server cannot take: found from the bytes it
starts and ends with when it is too large to read (over stdio a line past its limit, over
HTTP a body past `server.max_body_bytes`), or from the whole line when it is no message."""

from __future__ import annotations

import json

from mcp.types import INVALID_REQUEST, PARSE_ERROR, ErrorData, JSONRPCError, JSONRPCRequest
from pydantic import ValidationError

__all__ = ["ID_SCAN_BYTES", "leading_members", "malformed", "refusal", "stray_id",
           "trailing_members"]

ID_SCAN_BYTES = 4096
"""How much of each end of a dropped message is read for its id. Most clients write the id
before the params; the TypeScript SDK (Claude Desktop, Claude Code, Cursor, VS Code, the
Inspector) writes it last: `{...request, jsonrpc: "2.0", id}`."""

_DECODER = json.JSONDecoder()
_TRIES = 8  # nested "id" keys ending the tail that are passed over before giving up
_ID_PROBLEM = "id: must be a string or an integer"
_PATH_LEVELS = 3  # how far down a member nested past reading is named: params.arguments.<name>


def refusal(head: bytes, message: str, tail: bytes = b"") -> JSONRPCError | None:
    """The error `message` for the message that begins with `head` and ends with `tail`, with
    its id (null when neither end shows a top-level id); None when that message is a
    response, which gets no answer."""
    members = leading_members(head)
    if "result" in members or "error" in members:
        return None
    request_id = _plain(members.get("id"))
    if request_id is None and "id" not in members:
        last = trailing_members(tail)
        if "result" in last or "error" in last:
            return None
        request_id = _plain(last.get("id"))
    return JSONRPCError(jsonrpc="2.0", id=request_id,
                        error=ErrorData(code=INVALID_REQUEST, message=message))


def malformed(line: bytes) -> JSONRPCError | None:
    """The error that answers `line`, which is no JSON-RPC message: a parse error (id null)
    when it is not JSON, else an invalid request with its id; None when it is a response or a
    notification (no id), which get no answer. The error names what is wrong, never the
    values sent."""
    try:
        message = json.loads(line)
    except RecursionError:
        return _too_deep(line)
    except ValueError as exc:  # not JSON, or not UTF-8
        where = f": {exc.msg} at character {exc.pos}" if isinstance(
            exc, json.JSONDecodeError) else ""
        return JSONRPCError(jsonrpc="2.0", id=None, error=ErrorData(
            code=PARSE_ERROR, message=f"Parse error: the line is not JSON{where}"))
    if isinstance(message, list):
        problem = ("a batch (a JSON array of messages) is not taken: send each message on its "
                   "own (protocol 2025-06-18 and later have no batches)")
        request_id = None
    elif not isinstance(message, dict):
        problem = "a message must be one JSON object"
        request_id = None
    elif "result" in message or "error" in message or "id" not in message:
        return None
    else:
        problem = _request_problems(message)
        request_id = _plain(message["id"])
    return JSONRPCError(jsonrpc="2.0", id=request_id, error=ErrorData(
        code=INVALID_REQUEST, message=f"Invalid request: {problem}"))


def stray_id(line: bytes) -> JSONRPCError | None:
    """The error that answers `line`, which the SDK's parser took for a notification, when
    it has an `id` after all: a request whose id is no string or integer (`1.5`, `null`,
    `true`), which the parser's union lets fall through to a notification, its `id` ignored.
    MCP requests take a string or an integer id, and notifications none. None for a true
    notification, and for a `notifications/…` one written with `"id": null` (as JSON-RPC 1.0
    clients write them): dropping a `notifications/cancelled` would leave a call running.

    For lines read as notifications, which are few; and only one showing `"id"` or a `\\u`
    escape (`"\\u0069d"`) is read again, so a plain notification costs two substring
    searches."""
    if b'"id"' not in line and b"\\u" not in line:
        return None
    try:
        message = json.loads(line)
    except (ValueError, RecursionError):
        return malformed(line)
    if isinstance(message, dict) and message.get("id", 0) is None and \
            str(message.get("method")).startswith("notifications/"):
        return None  # a notification with `"id": null`, as JSON-RPC 1.0 wrote them: taken
    return malformed(line)


def _too_deep(line: bytes) -> JSONRPCError | None:
    """The error for `line`, valid JSON nested past what Python reads: an invalid request
    naming the member too deep (`params.arguments.metadata`), with its id when either end
    of the line shows it (as for a message too large); a parse error (id null) when the
    line is no object."""
    text = line.decode("utf-8", errors="replace")
    path = _path_past_reading(text)
    if not path:
        return JSONRPCError(jsonrpc="2.0", id=None, error=ErrorData(
            code=PARSE_ERROR, message="Parse error: the line is not JSON: nested too deeply "
                                      "to read"))
    return refusal(line, f"Invalid request: {path}: nested too deeply to read",
                   line[-ID_SCAN_BYTES:])


def _path_past_reading(text: str) -> str:
    """The dotted path, at most _PATH_LEVELS members down, to the member of the JSON object
    `text` that nests too deeply to read; empty when `text` is no object."""
    path: list[str] = []
    pos = _skip_blank(text, 0)
    while len(path) < _PATH_LEVELS and text.startswith("{", pos):
        found = _member_past_reading(text, pos + 1)
        if found is None:
            break
        key, pos = found
        path.append(key)
    return ".".join(path)


def _member_past_reading(text: str, pos: int) -> tuple[str, int] | None:
    """The name and the start of the value of the first member, in the object whose members
    start at `pos`, that nests too deeply to read; None when none does or a member is no
    JSON."""
    try:
        while True:
            key, pos = _DECODER.raw_decode(text, _skip_blank(text, pos))
            pos = _skip_blank(text, pos)
            if not isinstance(key, str) or not text.startswith(":", pos):
                return None
            start = _skip_blank(text, pos + 1)
            try:
                _, pos = _DECODER.raw_decode(text, start)
            except RecursionError:
                return key, start
            pos = _skip_blank(text, pos)
            if not text.startswith(",", pos):
                return None
            pos += 1
    except ValueError:
        return None


def _request_problems(message: dict[str, object]) -> str:
    try:
        JSONRPCRequest.model_validate(message, by_name=False)
    except RecursionError:
        return "nested too deeply to read"
    except ValidationError as exc:
        # pydantic names each arm of the id's union (id.int, id.str): one line says it all
        problems = dict.fromkeys(
            _ID_PROBLEM if e["loc"][:1] == ("id",)
            else f"{'.'.join(str(part) for part in e['loc'])}: {e['msg']}"
            for e in exc.errors(include_url=False, include_input=False))
        return "; ".join(problems)
    return "not a JSON-RPC 2.0 request"


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
    except (ValueError, RecursionError):  # cut off, not JSON, or nested past reading
        return members


def trailing_members(tail: bytes) -> dict[str, object]:
    """The top-level members that end the JSON object `tail` ends, from its last top-level
    "id" on; empty when `tail` shows none. An "id" counts only when the members after it
    close the object and nothing but blanks follows, so a nested one (`"params": {"id": 5}}`)
    never does."""
    text = tail.decode("utf-8", errors="ignore").rstrip(" \t\r\n")
    end = len(text)
    for _ in range(_TRIES):
        end = text.rfind('"id"', 0, end)
        if end < 0:
            break
        # A key starts after "{" or ","; a quote inside a string is escaped, never after one.
        before = text[:end].rstrip(" \t\r\n")
        if before.endswith(("{", ",")) and (members := _closing(text, end)):
            return members
    return {}


def _closing(text: str, pos: int) -> dict[str, object]:
    """The members from `pos` to the "}" that ends `text`; empty unless they are exactly
    that."""
    members: dict[str, object] = {}
    try:
        while True:
            key, pos = _DECODER.raw_decode(text, pos)
            pos = _skip_blank(text, pos)
            if not isinstance(key, str) or not text.startswith(":", pos):
                return {}
            members[key], pos = _DECODER.raw_decode(text, _skip_blank(text, pos + 1))
            pos = _skip_blank(text, pos)
            if text.startswith("}", pos):
                return members if pos + 1 == len(text) else {}
            if not text.startswith(",", pos):
                return {}
            pos = _skip_blank(text, pos + 1)
    except (ValueError, RecursionError):  # not a member, or nested past reading
        return {}


def _plain(request_id: object) -> int | str | None:
    """A request id as JSON-RPC takes it (a string or a number that is no bool), else None."""
    if isinstance(request_id, int | str) and not isinstance(request_id, bool):
        return request_id
    return None


def _skip_blank(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos
