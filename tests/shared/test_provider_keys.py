"""Provider keys: private key files, and scrubbing key values from text and logs."""

from __future__ import annotations

import base64
import io
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import pytest

from mcp_router.config import parse_config
from mcp_router.errors import ConfigError
from mcp_router.provider_keys import (
    Scrubber,
    ScrubFilter,
    install_log_scrubber,
    load_key_file,
    provider_keys,
    provider_secrets,
)

KEY = "sk-live/abc+def=ghi 123"


def key_file(tmp_path: Path, mode: int, text: str = KEY + "\n") -> Path:
    path = tmp_path / "key.txt"
    path.write_text(text)
    os.chmod(path, mode)
    return path


def test_a_private_key_file_is_read_and_stripped(tmp_path: Path):
    assert load_key_file(key_file(tmp_path, 0o600)) == KEY
    assert load_key_file(key_file(tmp_path, 0o400)) == KEY


@pytest.mark.skipif(os.name == "nt", reason="no POSIX permission bits")
@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o602, 0o644])
def test_a_key_file_others_can_read_is_refused_with_the_fix(tmp_path: Path, mode: int):
    path = key_file(tmp_path, mode)
    with pytest.raises(ConfigError) as caught:
        load_key_file(path)
    assert caught.value.file == str(path)
    assert f"mode {mode:04o}" in str(caught.value)
    assert f"chmod 600 {path}" in str(caught.value)
    assert KEY not in str(caught.value)


def test_missing_empty_and_directory_key_files_are_config_errors(tmp_path: Path):
    with pytest.raises(ConfigError, match="cannot read key file"):
        load_key_file(tmp_path / "nope")
    with pytest.raises(ConfigError, match="empty"):
        load_key_file(key_file(tmp_path, 0o600, text="\n"))
    with pytest.raises(ConfigError, match="not a regular file"):
        load_key_file(tmp_path)


@dataclass
class Source:
    api_key_env: str | None = None
    api_key_file: str | None = None


def test_provider_keys_come_from_files_relative_to_the_config_or_from_the_env(tmp_path: Path):
    key_file(tmp_path, 0o600)
    keys = provider_keys({"a": Source(api_key_file="key.txt"), "b": Source(api_key_env="B_KEY"),
                          "c": Source(api_key_env="UNSET"), "d": Source()},
                         {"B_KEY": "bbbbbbbb", "UNSET": ""}, base=tmp_path)
    assert keys == {"a": KEY, "b": "bbbbbbbb"}


def test_a_placeholder_left_from_a_snippet_is_no_key_and_the_log_says_so(
        caplog: pytest.LogCaptureFixture):
    env = {"A_KEY": "<your A_KEY>", "B_KEY": " bbbbbbbb\n", "C_KEY": "<paste here>"}
    with caplog.at_level(logging.WARNING, logger="mcp_router"):
        keys = provider_keys({"a": Source(api_key_env="A_KEY"), "b": Source(api_key_env="B_KEY"),
                              "c": Source(api_key_env="C_KEY")}, env, base=Path())
    assert keys == {"b": "bbbbbbbb"}
    warned = [r.getMessage() for r in caplog.records]
    assert any("A_KEY holds a placeholder" in m and "provider a " in m for m in warned)
    assert any("provider c " in m for m in warned)
    assert not any("<" in m for m in warned)  # a real key pasted in brackets is never logged


def test_scrubber_masks_raw_and_encoded_forms():
    scrub = Scrubber([KEY, "other-secret-value"]).scrub
    text = (f"bad key {KEY}; url ?key={quote(KEY, safe='')}; form key=sk-live%2Fabc%2Bdef%3Dghi+123"
            f' json {{"k": "{KEY}"}} and other-secret-value')
    cleaned = scrub(text)
    assert cleaned == ('bad key ***; url ?key=***; form key=***'
                       ' json {"k": "***"} and ***')


def test_scrubber_masks_the_longest_key_whole():
    assert Scrubber(["secret", "secret-longer"]).scrub("x secret-longer y") == "x *** y"


def test_scrubber_ignores_empty_and_tiny_values():
    scrubber = Scrubber(["", "abc"])
    assert not scrubber
    assert scrubber.scrub("abc abc") == "abc abc"


def logged(logger: logging.Logger, scrubber: Scrubber) -> tuple[logging.Handler, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(ScrubFilter(scrubber))
    logger.addHandler(handler)
    return handler, stream


def test_log_filter_scrubs_messages_arguments_and_tracebacks():
    logger = logging.getLogger("tests.shared.scrub")
    logger.propagate = False
    handler, stream = logged(logger, Scrubber([KEY]))
    try:
        logger.warning("key %s in args, %d calls, %r repr", KEY, 3, KEY)
        logger.warning(f"key {KEY} in message")
        logger.warning("mapping %(k)s", {"k": KEY})
        try:
            raise ValueError(f"upstream echoed {KEY}")
        except ValueError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    out = stream.getvalue()
    assert KEY not in out
    assert "key *** in args, 3 calls, '***' repr" in out
    assert "ValueError: upstream echoed ***" in out


def test_log_filter_keeps_argument_tuples_for_formatters_that_unpack_them():
    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1,
                               '%s - "%s %s HTTP/%s" %d', ("1.2.3.4", "GET", f"/?k={KEY}", "1.1",
                                                            200), None)
    ScrubFilter(Scrubber([KEY])).filter(record)
    assert record.args == ("1.2.3.4", "GET", "/?k=***", "1.1", 200)


def test_install_adds_one_filter_to_each_handler_of_the_named_loggers():
    logger = logging.getLogger("tests.shared.install")
    handler = logging.StreamHandler(io.StringIO())
    logger.addHandler(handler)
    try:
        install_log_scrubber(Scrubber([KEY]), loggers=["tests.shared.install"])
        install_log_scrubber(Scrubber([KEY]), loggers=["tests.shared.install"])
        assert sum(isinstance(f, ScrubFilter) for f in handler.filters) == 1
    finally:
        logger.removeHandler(handler)


def test_scrubber_masks_percent_escapes_in_either_case():
    scrub = Scrubber([KEY]).scrub
    for written in ("sk-live%2fabc%2bdef%3dghi%20123", "sk-live%2Fabc%2bdef%3Dghi+123"):
        assert scrub(f"?key={written}&v=1") == "?key=***&v=1"


@dataclass
class UrlSource:
    base_url: str
    headers: dict[str, str] = field(default_factory=dict)


def test_a_base_url_credential_counts_decoded_and_as_written():
    secrets = provider_secrets(UrlSource("https://u:p%40ssword@h.test/v1?a=1&Sig=Zm9v%2fYmFy%3d"))
    assert secrets == ["p@ssword", "p%40ssword", b64("u:p@ssword"), b64("u:p%40ssword"),
                       "Zm9v/YmFy=", "Zm9v%2fYmFy%3d"]
    assert provider_secrets(UrlSource("https://h.test/v1?key=%2f%2f%2f%2f")) == ["////"]


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_a_base_url_password_is_scrubbed_in_the_basic_form_httpx_sends_it_in():
    scrub = Scrubber(provider_secrets(UrlSource("http://gwuser:GWPASS-123456@gw.test/v1"))).scrub
    echoed = f"bad request with {{'authorization': 'Basic {b64('gwuser:GWPASS-123456')}'}}"
    assert scrub(echoed) == "bad request with {'authorization': 'Basic ***'}"


def test_the_credential_after_an_auth_scheme_word_is_scrubbed_alone():
    headers = {"Authorization": "Bearer pk-GATEWAY-123456",
               "Proxy-Authorization": f"Basic {b64('proxyuser:PROXYPASS-123')}"}
    scrub = Scrubber(provider_secrets(UrlSource("http://gw.test/v1", headers))).scrub
    assert scrub("invalid token pk-GATEWAY-123456") == "invalid token ***"
    assert scrub("user proxyuser:PROXYPASS-123 or PROXYPASS-123 refused") == (
        "user *** or *** refused")


def test_a_header_variable_named_like_a_credential_is_scrubbed_wherever_it_sits():
    config = parse_config(
        "providers:\n  gw: {kind: openai, base_url: 'http://gw.test/v1',\n"
        "       headers: {X-Org: 'org ${ORG_TOKEN}', X-Version: '${API_VERSION}',\n"
        "                 X-Title: '${APP_NAME}', X-Gw-Key: 'k ${GW_TENANT}'}}\n"
        "routes:\n  default:\n    targets: [{provider: gw, model: m}]\n",
        env={"ORG_TOKEN": "orgtok-0123456789", "API_VERSION": "2023-06-01",
             "APP_NAME": "mcp-router", "GW_TENANT": "tenant-0123456789"})
    scrub = Scrubber(provider_secrets(config.providers["gw"])).scrub
    assert scrub("org orgtok-0123456789, tenant tenant-0123456789") == "org ***, tenant ***"
    # plain header values are no credentials: masking them would cut paths and dates
    assert scrub("~/.local/share/mcp-router/cache, day 2023-06-01") == \
        "~/.local/share/mcp-router/cache, day 2023-06-01"


def test_a_key_no_http_header_can_carry_is_no_key_and_the_log_names_the_variable(
        caplog: pytest.LogCaptureFixture):
    env = {"A_KEY": "sk-or-v1-0123456789\u2019abcdef", "B_KEY": "sk-bbbb\r\nX-Evil: 1",
           "C_KEY": "sk-cccccccc"}
    with caplog.at_level(logging.WARNING, logger="mcp_router"):
        keys = provider_keys({"a": Source(api_key_env="A_KEY"), "b": Source(api_key_env="B_KEY"),
                              "c": Source(api_key_env="C_KEY")}, env, base=Path())
    assert keys == {"c": "sk-cccccccc"}
    warned = [r.getMessage() for r in caplog.records]
    assert warned == [
        "A_KEY holds U+2019 at character 20, which an HTTP header cannot carry (a pasted "
        "typographic quote or dash?): provider a counts as unconfigured until it is set again",
        "B_KEY holds a line break at character 8, which an HTTP header cannot carry (a pasted "
        "typographic quote or dash?): provider b counts as unconfigured until it is set again"]


def test_a_key_file_holding_a_character_no_header_can_carry_is_refused(tmp_path: Path):
    with pytest.raises(ConfigError, match="U\\+2013 at character 8") as caught:
        load_key_file(key_file(tmp_path, 0o600, text="sk-live\u2013abcdef\n"))
    assert "abcdef" not in str(caught.value)
