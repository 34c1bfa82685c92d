"""Where to connect and as whom: host forms, proxies, the token, the streaming URL, and redaction.

Pure apart from reading a token file. Every string mkstream prints that could carry the token
goes through ``Redactor`` first: URLs show ``i=***``, headers ``Bearer ***``, and the token itself
never appears.
"""

from __future__ import annotations

import importlib.util
import os
import re
import stat
import sys
from dataclasses import dataclass
from urllib.parse import quote, unquote, urlsplit

from misskey_cli.errors import UsageError


@dataclass(frozen=True)
class Endpoint:
    """A streaming endpoint without credentials: ``ws(s)://host[:port]/path``."""

    scheme: str
    netloc: str
    path: str

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.netloc}{self.path}"

    @property
    def http_base(self) -> str:
        """The HTTP API's base URL on the same server: ``https://host[:port]`` (``http`` for ws)."""
        return f"{'https' if self.scheme == 'wss' else 'http'}://{self.netloc}"

    @property
    def is_loopback(self) -> bool:
        host = self.netloc.rsplit(":", 1)[0] if not self.netloc.startswith("[") else self.netloc[1:].split("]")[0]
        return host in ("localhost", "::1") or host.startswith("127.")


def parse_host(text: str) -> Endpoint:
    """Accept ``misskey.example``, ``host:3000``, and http(s)/ws(s) URLs.

    A bare host means TLS (wss); ``http``/``ws`` mean plain. A URL with no path (or ``/``) gets
    ``/streaming``; any other path is kept, for servers behind a prefixing reverse proxy.
    """
    raw = text.strip()
    if not raw:
        raise UsageError("no host given: use --host misskey.example (or set MISSKEY_HOST), or --demo")
    shown = without_password(text)  # a password in the host is never echoed
    if "://" not in raw:
        raw = "wss://" + raw
    try:
        parts = urlsplit(raw)
    except ValueError:  # an unclosed "[": urlsplit's "Invalid IPv6 URL"
        raise UsageError(f"bad host {shown!r}: an IPv6 address goes in brackets, "
                         "like http://[::1]:3000") from None
    scheme = {"https": "wss", "wss": "wss", "http": "ws", "ws": "ws"}.get(parts.scheme.lower())
    if scheme is None:
        raise UsageError(f"bad host {shown!r}: the scheme must be https, wss, http or ws")
    try:
        port = parts.port
    except ValueError:
        raise UsageError(f"bad host {shown!r}: the port is not a number from 0 to 65535") from None
    hostname = parts.hostname
    if not hostname or re.search(r"[\s/@]", parts.netloc) or parts.username or parts.password:
        raise UsageError(f"bad host {shown!r}: expected a host name like misskey.example or localhost:3000")
    netloc = f"[{hostname}]" if ":" in hostname else hostname
    if port is not None:
        netloc += f":{port}"
    path = parts.path if parts.path not in ("", "/") else "/streaming"
    if parts.query and "i=" in parts.query:
        raise UsageError("put the token in --token, --token-file or MISSKEY_TOKEN, not in the host URL")
    return Endpoint(scheme, netloc, path)


@dataclass(frozen=True)
class Target:
    """Everything needed to open the socket."""

    endpoint: Endpoint
    token: str | None = None
    auth: str = "query"
    insecure: bool = False
    ca_file: str | None = None
    proxy: Proxy | None = None
    connect_timeout: float = 10.0

    def url(self) -> str:
        """The URL to dial; with ``--auth query`` it carries the token (never print it: see display_url)."""
        if self.token and self.auth == "query":
            return f"{self.endpoint.url}?i={quote(self.token, safe='')}"
        return self.endpoint.url

    def display_url(self) -> str:
        if self.token and self.auth == "query":
            return f"{self.endpoint.url}?i=***"
        return self.endpoint.url

    def headers(self) -> list[str]:
        if self.token and self.auth == "header":
            return [f"Authorization: Bearer {self.token}"]
        return []


# The URL carries the token percent-quoted, so punctuation that quoting escapes ends the value.
_QUERY_TOKEN = re.compile(r"([?&]i=)[^&#\s'\",:;()\[\]<>]+")
_BEARER = re.compile(r"(Bearer\s+)[^\s'\",]+")


class Redactor:
    """Removes the token from text meant for humans, and changes nothing else.

    Where a token stands *as a token* (an ``i=`` query value, a ``Bearer`` header value) it is
    always replaced, whatever it is. Elsewhere the exact token (or its URL-quoted form) is replaced
    only when it is long enough to be told apart from ordinary words: a one-letter test token
    must not garble every message.
    """

    MIN_FREE_TEXT = 6

    def __init__(self, token: str | None) -> None:
        self.secrets = ([s for s in dict.fromkeys((token, quote(token, safe=""))) if len(s) >= self.MIN_FREE_TEXT]
                        if token else [])

    def __call__(self, text: str) -> str:
        text = _BEARER.sub(r"\1***", _QUERY_TOKEN.sub(r"\1***", text))
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text


# A token is a few dozen characters; a file (or stdin) far larger is no token file (/dev/zero, a log)
# and is not read to its end.
MAX_TOKEN_FILE = 64 * 1024


def read_token_file(path: str, stdin_text: str | None = None) -> str:
    """Read a token from a file (``-`` = stdin), trailing newline stripped."""
    if path == "-":
        text = stdin_text if stdin_text is not None else sys.stdin.read(MAX_TOKEN_FILE + 1)
    else:
        try:
            with open(os.path.expanduser(path), encoding="utf-8") as handle:
                text = handle.read(MAX_TOKEN_FILE + 1)
        except OSError as exc:
            raise UsageError(f"cannot read token file {path}: {exc.strerror or exc}") from None
        except UnicodeDecodeError:
            raise UsageError(f"token file {path} is not UTF-8 text") from None
    if len(text) > MAX_TOKEN_FILE:
        raise UsageError(f"token file {path} is larger than {MAX_TOKEN_FILE // 1024} KB: it should hold only the token")
    token = text.strip()
    if not token:
        raise UsageError(f"token file {path} is empty")
    if any(ch.isspace() for ch in token):
        raise UsageError(f"token file {path} holds more than one word: it should hold only the token")
    return token


def loose_permissions(path: str) -> bool:
    """True when a secrets file is readable by group or others."""
    try:
        mode = os.stat(os.path.expanduser(path)).st_mode
    except OSError:
        return False
    return bool(mode & (stat.S_IRGRP | stat.S_IROTH))


@dataclass(frozen=True)
class Proxy:
    """A parsed ``--proxy`` (or ``http(s)_proxy``): where ``transport`` goes through, and a safe display form."""

    host: str
    port: int
    kind: str  # http, socks4, socks4a, socks5, socks5h
    auth: tuple[str, str] | None = None

    @property
    def display(self) -> str:
        """The proxy URL without its password."""
        user = f"{self.auth[0]}:***@" if self.auth else ""
        return f"{self.kind}://{user}{self.host}:{self.port}"


def without_password(url: str) -> str:
    """``url`` with the password of its user info shown as ``***`` (``user:pw@host``, with or without a scheme)."""
    return re.sub(r"^(\s*(?:[A-Za-z][A-Za-z0-9+.-]*://)?[^:/@\s]*):[^@/]*@", r"\1:***@", url)


def parse_proxy(url: str) -> Proxy:
    """``http://[user:pw@]host:port`` (or socks5://...); errors never echo the password."""
    shown = without_password(url)
    try:
        parts = urlsplit(url if "://" in url else "http://" + url)
    except ValueError:  # an unclosed "["
        raise UsageError(f"bad proxy {shown!r}: an IPv6 address goes in brackets, like http://[::1]:8080") from None
    kinds = {"http": "http", "https": "http", "socks4": "socks4", "socks4a": "socks4a",
             "socks5": "socks5", "socks5h": "socks5h"}
    kind = kinds.get(parts.scheme.lower())
    try:
        hostname = parts.hostname
        port = parts.port
    except ValueError:
        raise UsageError(f"bad proxy {shown!r}: the port is not a number from 0 to 65535") from None
    if kind is None or not hostname:
        raise UsageError(f"bad proxy {shown!r}: expected http://host:port or socks5://host:port")
    if kind.startswith("socks") and importlib.util.find_spec("python_socks") is None:
        raise UsageError(f"bad proxy {shown!r}: SOCKS proxies need the python-socks package (pip install python-socks)")
    auth = (unquote(parts.username), unquote(parts.password or "")) if parts.username else None
    return Proxy(hostname, port or (1080 if kind.startswith("socks") else 8080), kind, auth)


def hostname_of(endpoint: Endpoint) -> str:
    netloc = endpoint.netloc
    if netloc.startswith("["):
        return netloc[1:netloc.index("]")]
    return netloc.rsplit(":", 1)[0] if ":" in netloc else netloc
