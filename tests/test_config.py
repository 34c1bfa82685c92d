"""Host forms, URLs, token files and redaction (pure, table-driven)."""

from __future__ import annotations

import pytest

from misskey_cli.errors import UsageError
from misskey_cli.net.endpoint import Redactor, Target, parse_host, read_token_file


@pytest.mark.parametrize(("text", "url"), [
    ("misskey.example", "wss://misskey.example/streaming"),
    ("localhost:3000", "wss://localhost:3000/streaming"),
    ("https://misskey.example", "wss://misskey.example/streaming"),
    ("https://misskey.example/", "wss://misskey.example/streaming"),
    ("http://127.0.0.1:3000", "ws://127.0.0.1:3000/streaming"),
    ("ws://127.0.0.1:3000/streaming", "ws://127.0.0.1:3000/streaming"),
    ("wss://misskey.example/prefix/streaming", "wss://misskey.example/prefix/streaming"),
    ("HTTPS://Misskey.Example", "wss://misskey.example/streaming"),
    ("http://[::1]:3000", "ws://[::1]:3000/streaming"),
])
def test_host_forms(text, url):
    assert parse_host(text).url == url


@pytest.mark.parametrize(("text", "message"), [
    ("", "no host"),
    ("ftp://misskey.example", "scheme"),
    ("misskey.example:99999", "port"),
    ("misskey.example:abc", "port"),
    ("https://user:pw@misskey.example", "host name"),
    ("https://misskey.example/streaming?i=secret", "not in the host URL"),
])
def test_bad_hosts(text, message):
    with pytest.raises(UsageError, match=message):
        parse_host(text)


def test_query_auth_url_carries_token_but_display_url_does_not():
    target = Target(parse_host("misskey.example"), "s3cr3t/+=", "query")
    assert target.url() == "wss://misskey.example/streaming?i=s3cr3t%2F%2B%3D"
    assert target.display_url() == "wss://misskey.example/streaming?i=***"
    assert target.headers() == []


def test_header_auth_keeps_token_out_of_url():
    target = Target(parse_host("misskey.example"), "s3cr3t", "header")
    assert "s3cr3t" not in target.url()
    assert target.headers() == ["Authorization: Bearer s3cr3t"]


def test_redactor_removes_token_and_query_values():
    redact = Redactor("s3cr3t/+=")
    assert redact("token s3cr3t/+= and s3cr3t%2F%2B%3D") == "token *** and ***"
    assert redact("wss://h/streaming?i=other&x=1") == "wss://h/streaming?i=***&x=1"
    assert Redactor(None)("nothing to hide") == "nothing to hide"


@pytest.mark.parametrize(("token", "text", "expected"), [
    # The character after the redacted value survives.
    ("abcdef123", "wss://h/streaming?i=abcdef123 connection refused", "wss://h/streaming?i=*** connection refused"),
    ("abcdef123", "GET /streaming?i=abcdef123&_t=1", "GET /streaming?i=***&_t=1"),
    # A short token is redacted where it stands as a token, and nowhere else.
    ("e", "mkstream: error: wss://h/streaming?i=e: refused", "mkstream: error: wss://h/streaming?i=***: refused"),
    ("e", "Authorization: Bearer e", "Authorization: Bearer ***"),
    ("longtoken99", "Authorization: Bearer longtoken99, and longtoken99 again", "Authorization: Bearer ***, and *** again"),
])
def test_redactor_changes_nothing_but_the_token(token, text, expected):
    assert Redactor(token)(text) == expected


def test_proxies():
    from misskey_cli.net.endpoint import Proxy, parse_proxy

    assert parse_proxy("http://127.0.0.1:3128") == Proxy("127.0.0.1", 3128, "http", None)
    assert parse_proxy("proxy.example") == Proxy("proxy.example", 8080, "http", None)
    assert parse_proxy("http://u%40x:p%3As@h:1") == Proxy("h", 1, "http", ("u@x", "p:s"))
    assert parse_proxy("http://u:secret@h:1").display == "http://u:***@h:1"
    with pytest.raises(UsageError, match="bad proxy") as bad:
        parse_proxy("ftp://user:hunter22@h:1")
    assert "hunter22" not in str(bad.value)


def test_token_file(tmp_path):
    path = tmp_path / "token"
    path.write_text("abc123\n")
    assert read_token_file(str(path)) == "abc123"
    assert read_token_file("-", stdin_text="fromstdin\n") == "fromstdin"
    path.write_text("\n")
    with pytest.raises(UsageError, match="empty"):
        read_token_file(str(path))
    with pytest.raises(UsageError, match="cannot read token file"):
        read_token_file(str(tmp_path / "missing"))
