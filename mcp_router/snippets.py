"""The snippets that add this server to Claude Desktop, Claude Code, Cursor and VS Code."""

from __future__ import annotations

import json
import shlex
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlsplit, urlunsplit

from mcp_router.config import Config, ProviderConfig, data_home, load_config
from mcp_router.config_yaml import ENV_REF
from mcp_router.provider_keys import provider_secrets
from mcp_router.server.http_bind import ENDPOINT_PATHS, is_loopback

WHERE = {
    "claude-desktop": "Add to claude_desktop_config.json (Settings > Developer > Edit Config), "
                      "put your keys in place of the <...> values (one left in place counts "
                      "as no key), then restart Claude Desktop.",
    "cursor": "Add to ~/.cursor/mcp.json (or .cursor/mcp.json in a project), put your keys in "
              "place of the <...> values (one left in place counts as no key).",
    "vscode": "Save as .vscode/mcp.json in your workspace; VS Code asks for each key once and "
              "stores it securely.",
    "claude-code": "Run in a shell where your provider keys and the variables the config "
                   "refers to are exported:",
}

UNSET_HINT = {  # for a variable the config refers to that this shell does not have
    "claude-desktop": "put its value in place of <your ...>",
    "cursor": "put its value in place of <your ...>",
    "vscode": "VS Code asks for it, or export it and print the snippet again",
    "claude-code": "export it before you run the command",
}


MCP_REMOTE = "mcp-remote@0.15"
"""The stdio-to-HTTP bridge Claude Desktop needs, at the release line tested with."""

TOKEN_VAR = "MCP_ROUTER_TOKEN"
"""Where the remote snippets expect the client's token (from `mcp-router token new`)."""

HOME_VAR = "MCP_ROUTER_HOME"
"""The data directory (ledger, budgets, cache, audit log) a server uses, when it is set."""

_DESKTOP = ("Add to claude_desktop_config.json (Settings > Developer > Edit Config); Claude "
            "Desktop reaches HTTP servers through the mcp-remote bridge (needs Node.js 18+). ")
_CURSOR = "Add to ~/.cursor/mcp.json (or .cursor/mcp.json in a project)."
REMOTE_WHERE = {  # (without a token, with one)
    "claude-desktop": (_DESKTOP + "Restart Claude Desktop.",
                       _DESKTOP + "Put your token (from `mcp-router token new`) in place of "
                                  "<...>, then restart Claude Desktop."),
    "cursor": (_CURSOR, _CURSOR + f" Cursor reads the token from ${TOKEN_VAR} in its "
                                  "environment; or put the token itself in place of ${env:...}."),
    "vscode": ("Save as .vscode/mcp.json in your workspace.",
               "Save as .vscode/mcp.json in your workspace; VS Code asks for your token once "
               "and stores it securely."),
    "claude-code": ("Run:", f"Run in a shell where ${TOKEN_VAR} holds your token (from "
                            "`mcp-router token new`):"),
}


def _command(config_path: Path) -> list[str]:
    """An absolute command line that starts this very install, without the venv being
    activated: the `mcp-router` script beside the running interpreter, else the interpreter
    itself; never whichever `mcp-router` comes first on PATH, which may be another install."""
    script = Path(sys.executable).parent / ("mcp-router.exe" if sys.platform == "win32"
                                            else "mcp-router")
    prefix = [str(script)] if script.is_file() else [sys.executable, "-m", "mcp_router"]
    return [*prefix, "serve", "--config", str(config_path)]


class _Unexpanded(Mapping[str, str]):
    """An environment where every variable holds its own reference: a config loaded with it
    keeps each `${VAR}` as written."""

    def __getitem__(self, var: str) -> str:
        return f"${{{var}}}"

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def snippet_config(path: Path) -> Config:
    """The config at `path` as the snippets need it: its structure, with `${VAR}` left as
    written. A variable unset in this shell does not stop the snippet; the server it starts
    expands them and refuses to start without one."""
    return load_config(path, env=_Unexpanded())


class EnvVars(NamedTuple):
    """What the server a host starts needs from its environment, which is bare otherwise."""

    secret: list[str]  # API keys, variables in headers (often a token), base_url credentials
    plain: list[str]  # the other variables of base_url: addresses, not secrets


def env_vars(config: Config, env: Mapping[str, str] | None = None) -> EnvVars:
    """The variables `config` (loaded by `snippet_config`) reads from the environment.

    A base_url variable is a secret where the URL takes it as a credential (the password
    of `user:${PASS}@`, a `?code=${FN_CODE}`), or where its value in `env` (this shell)
    carries one (a whole `${AZ_URL}` with `?sig=...`): the rule `provider_secrets` gives
    check-config and list_providers, which show those masked."""
    env = {} if env is None else env
    secret = {p.api_key_env for p in config.providers.values() if p.api_key_env}
    plain: set[str] = set()
    for p in config.providers.values():
        in_url = set(ENV_REF.findall(p.base_url))
        plain |= in_url
        secret |= {var for value in provider_secrets(p) for var in ENV_REF.findall(value)}
        secret |= _carrying_a_credential(p, in_url, env)
        for value in p.headers.values():
            secret.update(ENV_REF.findall(value))
    return EnvVars(sorted(secret), sorted(plain - secret))


def _carrying_a_credential(provider: ProviderConfig, names: set[str],
                           env: Mapping[str, str]) -> set[str]:
    """Those of `names` whose value in `env`, put in the base URL alone, makes it carry a
    credential it did not carry as written."""
    written = set(provider_secrets(_Url(provider.base_url)))

    def credentials(var: str) -> set[str]:
        url = ENV_REF.sub(lambda m: env[var] if m.group(1) == var else m.group(0),
                          provider.base_url)
        return set(provider_secrets(_Url(url))) - written

    return {var for var in names if env.get(var) and credentials(var)}


class _Url(NamedTuple):
    """A base URL alone, as `provider_secrets` reads a provider."""

    base_url: str
    headers: Mapping[str, str] = {}


def _checked_variables(config: Config, secret: list[str]) -> list[str]:
    """The secret variables of providers' headers and base URLs that are not the provider's
    own key variable: a placeholder left in one is refused at start-up
    (`config_yaml.expand_env`), not skipped."""
    return sorted({var for p in config.providers.values()
                   for value in [p.base_url, *p.headers.values()]
                   for var in ENV_REF.findall(value) if var != p.api_key_env and var in secret})


def client_snippet(client: str, config: Config, config_path: Path,
                   env: Mapping[str, str]) -> tuple[str, str]:
    """The text to paste (or run) for `client`, and a hint saying where it goes; `env` is this
    shell's environment, whose values the snippet may carry for variables that are no secret,
    and whose data directory ($MCP_ROUTER_HOME, made absolute) it carries when set."""
    command, *args = _command(config_path)
    needed = env_vars(config, env)
    home = _home(env)
    hint = WHERE[client]
    if home:
        hint = (f"The server it starts keeps its ledger, budgets and cache in {home}, "
                f"this shell's {HOME_VAR}.\n{hint}")
    unset = [v for v in needed.plain if not env.get(v)]
    if unset:
        hint = (f"The config refers to {', '.join(unset)}, not set in this shell: "
                f"{UNSET_HINT[client]}.\n{hint}")
    if client in ("claude-desktop", "cursor") and (
            checked := _checked_variables(config, needed.secret)):
        hint += (f"\nA placeholder left in place for {', '.join(checked)} (used in a "
                 "provider's headers or base_url, not a key) stops the server with an error "
                 "naming it.")
    if client == "claude-code":
        words = {k: f"{k}=\"${k}\"" for k in [*needed.secret, *needed.plain]}
        if home:
            words[HOME_VAR] = shlex.quote(f"{HOME_VAR}={home}")
        flags = " ".join(f"-e {words[k]}" for k in sorted(words))
        return hint, (f"claude mcp add mcp-router --scope user {flags} -- "
                      f"{shlex.join([command, *args])}")
    if client == "vscode":
        return hint, json.dumps(_vscode(command, args, needed, env, home), indent=2)
    # Secrets (keys, header variables, base_url credentials) stay placeholders even when set
    # here: a printed snippet never carries one.
    values = {k: f"<your {k}>" for k in needed.secret}
    values |= {k: env.get(k) or f"<your {k}>" for k in needed.plain}
    if home:
        values[HOME_VAR] = home
    return hint, json.dumps({"mcpServers": {"mcp-router": {
        "command": command, "args": args, "env": dict(sorted(values.items()))}}}, indent=2)


def _home(env: Mapping[str, str]) -> str | None:
    """This shell's data directory as an absolute path (`~` and `$NAME` expanded, as the
    server expands them), when $MCP_ROUTER_HOME names one.

    Hosts start stdio servers with a bare environment, in a directory of their choosing: a
    server they start without it would keep a ledger of its own, and its spend would escape
    the budgets the servers started from this shell count."""
    return str(data_home(env)) if env.get(HOME_VAR) else None


def _vscode(command: str, args: list[str], needed: EnvVars, env: Mapping[str, str],
            home: str | None) -> dict[str, object]:
    # .vscode/mcp.json sits in a workspace that is often committed: secrets (keys, header
    # variables, which usually carry a token, base_url credentials) are asked for once and
    # kept in VS Code's secret storage; any other base_url variable is an address, so its
    # value here is written as it is, and asked for in plain text only when this shell does
    # not have it.
    asked = [(k, True) for k in needed.secret] + [(k, False) for k in needed.plain
                                                   if not env.get(k)]
    values = {k: f"${{input:{k.lower()}}}" for k, _ in asked}
    values |= {k: env[k] for k in needed.plain if env.get(k)}
    if home:  # an address, not a secret: written as it is
        values[HOME_VAR] = home
    return {
        "inputs": [{"type": "promptString", "id": k.lower(), "description": k,
                    "password": secret} for k, secret in sorted(asked)],
        "servers": {"mcp-router": {"type": "stdio", "command": command, "args": args,
                                   "env": dict(sorted(values.items()))}},
    }


def remote_snippet(client: str, url: str, token: bool) -> tuple[str, str]:
    """The text that connects `client` to a server already serving over HTTP at `url`, and
    where it goes; with `token`, each request carries the client's bearer token."""
    transport = "sse" if urlsplit(url).path.rstrip("/").endswith("/sse") else "http"
    hint = REMOTE_WHERE[client][token]
    if client == "claude-code":
        header = f' --header "Authorization: Bearer ${TOKEN_VAR}"' if token else ""
        return hint, (f"claude mcp add --transport {transport} --scope user mcp-router "
                      f"{shlex.quote(url)}{header}")
    if client == "claude-desktop":
        args = ["-y", MCP_REMOTE, url]
        if urlsplit(url).scheme == "http" and not serves_here(url):
            args.append("--allow-http")
        entry: dict[str, object] = {"command": "npx", "args": args}
        if token:  # no spaces in args: some hosts split them (mcp-remote's README)
            args += ["--header", "Authorization:${AUTH_HEADER}"]
            entry["env"] = {"AUTH_HEADER": "Bearer <your mcp-router token>"}
        return hint, json.dumps({"mcpServers": {"mcp-router": entry}}, indent=2)
    if client == "cursor":
        entry = {"url": url}
        if token:
            entry["headers"] = {"Authorization": f"Bearer ${{env:{TOKEN_VAR}}}"}
        return hint, json.dumps({"mcpServers": {"mcp-router": entry}}, indent=2)
    server: dict[str, object] = {"type": transport, "url": url}
    snippet: dict[str, object] = {"servers": {"mcp-router": server}}
    if token:
        server["headers"] = {"Authorization": "Bearer ${input:mcp_router_token}"}
        snippet = {"inputs": [{"type": "promptString", "id": "mcp_router_token",
                               "description": "mcp-router token", "password": True}],
                   **snippet}
    return hint, json.dumps(snippet, indent=2)


_EXPECTED = "expected http://HOST:PORT/mcp, or http://HOST:PORT/sse for an SSE server"


def endpoint_url(url: str) -> tuple[str, str | None]:
    """`url` as the remote snippets name it, and a note when it was completed: one without a
    path gets the streamable HTTP endpoint's. ValueError, saying the form expected, for a URL
    without an http(s) scheme or a host (`127.0.0.1:8000`), or with a port that is no number."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{url!r} is not an http:// or https:// URL with a host; {_EXPECTED}")
    try:
        port_ok = parts.port is None or parts.port > 0
    except ValueError:  # .port raises on a port that is no number
        port_ok = False
    if not port_ok:
        raise ValueError(f"{url!r} has a port that is not a number from 1 to 65535; {_EXPECTED}")
    if parts.path not in ("", "/"):
        return url, None
    mcp, sse = ENDPOINT_PATHS["streamable-http"], ENDPOINT_PATHS["sse"]
    completed = urlunsplit(parts._replace(path=mcp))
    return completed, (f"--url has no path: using {completed}, the server's streamable HTTP "
                       f"endpoint (an SSE server's is {sse})")


def serves_here(url: str) -> bool:
    """Whether `url` names this machine (localhost or a loopback address)."""
    return is_loopback(urlsplit(url).hostname or "")
