"""Email and IP addresses: plain, obfuscated and bracketed forms are found; look-alikes are not."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mcp_router.pii import PiiFilter, PiiPolicy
from tests.pii.support import entities, found


@pytest.mark.parametrize(("text", "address"), [
    ("write to jane.doe@example.com today", "jane.doe@example.com"),
    ("From: John <John.Smith+billing@Mail.Example.CO.UK>", "John.Smith+billing@Mail.Example.CO.UK"),
    ("owner: ops-team_2@acme-corp.io.", "ops-team_2@acme-corp.io"),
    ("reach jane [at] example [dot] com", "jane [at] example [dot] com"),
    ("reach jane(at)example(dot)org", "jane(at)example(dot)org"),
    ("reach jane { at } mail { dot } example { dot } org",
     "jane { at } mail { dot } example { dot } org"),
    ("reach jane AT example DOT com", "jane AT example DOT com"),
    ("reach jane [at] example.com", "jane [at] example.com"),
    ("<a href='mailto:jane@example.org'>", "jane@example.org"),
    ("GET /unsubscribe?email=jane.doe%40example.com&t=1", "jane.doe%40example.com"),
    ("see https://example.com/users/jane@example.com/profile", "jane@example.com"),
])
def test_an_email_address_plain_or_obfuscated_is_found(text: str, address: str) -> None:
    assert found(text) == [("email", address)]


@pytest.mark.parametrize("text", [
    "git@github.com:acme/infra.git",
    "git clone ssh://git@gitlab.com/acme/infra.git",
    "https://deploy@github.com/acme/infra.git",
    "background: url(icon@2x.png)",
    "npm i lodash@4.17.21 @types/node@20.11.5",
    "ping user@localhost",
    "@app.route('/users')",
    "image: nginx@sha256:0d17b565c37bcbd895e9d92315a05c1c3c9a29f762b011a10c54a66cd53c9b31",
    "y = x@self.W",
    "look at the example dot com bubble",
    "cc @alice and @bob",
])
def test_address_look_alikes_are_not_emails(text: str) -> None:
    assert "email" not in entities(text)


@pytest.mark.parametrize(("text", "address"), [
    ("client 192.168.1.10 connected", "192.168.1.10"),
    ("upstream=10.0.0.5:8080", "10.0.0.5"),
    ("GET http://203.0.113.7/health", "203.0.113.7"),
    ("X-Forwarded-For: 198.51.100.23, 10.1.2.3", "198.51.100.23"),
    ("ssh deploy@172.16.4.20", "172.16.4.20"),
    ("host 2001:db8::1 is up", "2001:db8::1"),
    ("addr 2001:0db8:85a3:0000:0000:8a2e:0370:7334", "2001:0db8:85a3:0000:0000:8a2e:0370:7334"),
    ("link fe80::1ff:fe23:4567:890a%eth0 up", "fe80::1ff:fe23:4567:890a%eth0"),
    ("mapped ::ffff:192.0.2.128 seen", "::ffff:192.0.2.128"),
    ("connect [2001:db8:85a3::8a2e:370:7334]:443", "2001:db8:85a3::8a2e:370:7334"),
    ("nat64 64:ff9b::192.0.2.33.", "64:ff9b::192.0.2.33"),
])
def test_an_ip_address_in_any_form_is_found(text: str, address: str) -> None:
    assert ("ip_address", address) in found(text)


@pytest.mark.parametrize("text", [
    "listen on 127.0.0.1 and 0.0.0.0",
    "netmask 255.255.255.0",
    "version 1.2.3.4",
    "upgraded to v4.2.1.12",
    "pip install pkg==1.2.3.4",
    "oid 1.3.6.1.4.1.311.21.7",
    "Mozilla/5.0 Chrome/120.0.6099.109",
    "999.1.1.1 and 01.02.03.04",
    "loopback ::1 and ::",
    "std::vector<int> v; a[::2]",
    "mac 00:1a:2b:3c:4d:5e",
    "at 10:23:45 and 2024-01-15T10:23:45.123Z",
    "dead::beef",
    "id 550e8400-e29b-41d4-a716-446655440000",
])
def test_address_look_alikes_are_not_ip_addresses(text: str) -> None:
    assert "ip_address" not in entities(text)


def test_a_superscript_digit_before_a_dotted_quad_is_no_filter_failure() -> None:
    # "²".isdigit() holds but int("²") fails: the address check must not raise on it.
    assert found("²10.0.0.1") == []


@pytest.mark.parametrize("address", [
    "info@пример.рф", "user@münchen.de", "josé@empresa.es", "jürgen.müller@example.de",
    "jаne@example.com",  # a Cyrillic "а" in an otherwise ASCII address
    "王伟@例子.中国", "用户@例子.广告", "王伟@example.com", "info@日本語.jp",
])
def test_an_address_with_letters_of_any_script_is_redacted_whole(address: str) -> None:
    session = PiiFilter(PiiPolicy()).session()
    out, summary = session.filter_text(f"Write to {address} and to jane.doe@example.com.")
    assert out == "Write to <EMAIL> and to <EMAIL>."
    assert summary.counts == {"email": 2}


@pytest.mark.parametrize("text", [
    "Größe@2x.png", "see данные@2x.svg", "café@home", "x@данные.json", "a@b.c1",
    "git@gitlab.例え.jp:acme/infra.git", "ssh://git@сервер.рф/acme/infra.git",
    "画像はicon@2x.pngです",  # the extension ends where the Japanese starts
])
def test_non_ascii_address_look_alikes_are_not_emails(text: str) -> None:
    assert "email" not in entities(text)


@pytest.mark.parametrize(("text", "expected"), [
    ("我的邮箱是zhang.wei@example.com，谢谢", "我的邮箱是<EMAIL>，谢谢"),
    ("メールはtanaka@example.co.jpです", "メールは<EMAIL>です"),
    ("연락처는kim@example.com입니다", "연락처는<EMAIL>입니다"),
    ("ติดต่อsomchai@example.comครับ", "ติดต่อ<EMAIL>ครับ"),
    ("我的QQ邮箱是123456789@qq.com，谢谢", "我的QQ邮箱是<EMAIL>，谢谢"),
    ("邮箱zhang@qq.com或者wang@163.com都行", "邮箱<EMAIL>或者<EMAIL>都行"),
    ("メールはtanaka [at] example [dot] comです", "メールは<EMAIL>です"),
    ("回调地址?email=zhang%40example.com吧", "回调地址?email=<EMAIL>吧"),
    # Text running on longer than any address: the address was once cut short or missed.
    ("連絡先はtanaka@example.co.jpですのでよろしくお願いいたします",
     "連絡先は<EMAIL>ですのでよろしくお願いいたします"),
    ("如果您在使用过程中遇到任何问题或者对我们的产品和服务有任何意见和建议欢迎随时通过电子邮件"
     "与我们的客户服务团队联系我们的邮箱是support@example.com",
     "如果您在使用过程中遇到任何问题或者对我们的产品和服务有任何意见和建议欢迎随时通过电子邮件"
     "与我们的客户服务团队联系我们的邮箱是<EMAIL>"),
])
def test_an_address_written_into_text_without_spaces_is_redacted_alone(
        text: str, expected: str) -> None:
    session = PiiFilter(PiiPolicy(enabled=True, action="redact")).session()
    assert session.filter_text(text)[0] == expected


# Letters of scripts written without spaces, and the punctuation written between them.
SPACELESS_TEXT = st.text("我的邮箱是谢请联系人々メールはですよろしくーッ"
                         "연락처는입니다ติดต่อครับ，。、「」：", max_size=80)


@settings(deadline=None, max_examples=200)
@given(SPACELESS_TEXT,
       st.from_regex(r"[a-z0-9][a-z0-9._+-]{0,20}[a-z0-9]", fullmatch=True)
       .filter(lambda s: ".." not in s),
       st.from_regex(r"[a-z][a-z0-9-]{0,15}[a-z0-9]", fullmatch=True),
       st.sampled_from(["com", "org", "io", "co.jp", "cn", "co.kr", "co.th"]),
       SPACELESS_TEXT)
def test_an_ascii_address_ends_where_text_in_another_script_begins(
        before: str, local: str, host: str, tld: str, after: str) -> None:
    address = f"{local}@{host}.{tld}"
    assert found(f"{before}{address}{after}") == [("email", address)]


@pytest.mark.timeout(10)
@pytest.mark.parametrize("unit", [":", "ab::", "1::", "a:b:c:d:e:f:", "12:34:56:"])
def test_a_long_run_of_colons_and_hex_is_read_in_linear_time(unit: str) -> None:
    # 396,000 characters, under the default server.max_chars. Read from every `::` to the
    # end of the run, as the scan once did, "ab::" took 49 s; in one pass it takes ms.
    text = unit * (396_000 // len(unit)) + " host 2001:db8::1 is up"
    out, summary = PiiFilter(PiiPolicy()).session().filter_text(text)
    assert out.endswith(" host <IP_ADDRESS> is up") and summary.counts == {"ip_address": 1}


@pytest.mark.parametrize("text", [
    "addr 2001:0db8:85a3:0000:0000:8a2e:0370:7334:1 too long",  # nine groups
    "run 1:2:3:4:5:6:7:8:9:a:b:c::1 too long",
    "hex ::" + "ab" * 30 + " too long",
])
def test_a_colon_run_longer_than_any_address_is_not_one(text: str) -> None:
    assert "ip_address" not in entities(text)
