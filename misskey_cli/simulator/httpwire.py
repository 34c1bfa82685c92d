"""HTTP/1.1 framing for the simulator's API: which requests are ours, reading one, writing an answer.

Pure: bytes in, bytes out. websockets' own HTTP parser only takes a GET without a body, so the
engine reads each connection's request head first and hands the HTTP API's requests (any
``POST``; a ``GET`` of nodeinfo or a MiAuth page) to this reader instead. One request per
connection: every answer says ``Connection: close``. Bodies need ``Content-Length`` (what
``http.client`` and curl send for a JSON body); chunked uploads get 411.
"""

from __future__ import annotations

import http
import json
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

MAX_HEAD = 64 * 1024
MAX_BODY = 1024 * 1024

_API_GETS = ("/.well-known/nodeinfo", "/nodeinfo/2.1", "/nodeinfo/2.0")


def is_api_request(method: str, path: str) -> bool:
    """Requests the HTTP API answers; everything else is the WebSocket server's."""
    if method == "POST":
        return True
    return method == "GET" and (path in _API_GETS or path.startswith("/miauth/"))


@dataclass
class HttpRequest:
    method: str
    target: str
    headers: dict[str, str]  # lower-case names; repeated headers joined with ", "
    body: bytes = b""

    @property
    def path(self) -> str:
        return unquote(urlsplit(self.target).path)

    @property
    def query(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for key, value in parse_qsl(urlsplit(self.target).query, keep_blank_values=True):
            out.setdefault(key, value)
        return out


@dataclass
class HttpResponse:
    status: int
    body: bytes = b""
    content_type: str | None = "application/json; charset=utf-8"
    headers: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def json(cls, status: int, value: Any, headers: list[tuple[str, str]] | None = None) -> HttpResponse:
        body = json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
        return cls(status, body, headers=list(headers or []))

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)


def parse_head(head: bytes) -> HttpRequest | None:
    """The request line and headers (without the blank line), or None when they are not HTTP/1.x."""
    try:
        text = head.decode("latin-1")
    except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes every byte
        return None
    lines = text.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        return None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            return None
        key, value = name.lower(), value.strip()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return HttpRequest(parts[0], parts[1], headers)


def request_line(buffer: bytes) -> tuple[str, str] | None:
    """(method, path) of a complete head at the start of ``buffer``, or None if not complete yet."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return None
    parts = buffer[:buffer.find(b"\r\n")].decode("latin-1").split(" ")
    if len(parts) != 3:
        return ("", "")
    return parts[0], urlsplit(parts[1]).path


class RequestReader:
    """Collects one request from the bytes a connection receives."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self.request: HttpRequest | None = None
        self.error: HttpResponse | None = None
        self._length: int | None = None

    @property
    def done(self) -> bool:
        return self.error is not None or (self.request is not None and len(self.request.body) == self._length)

    def feed(self, data: bytes) -> None:
        if self.done:
            return
        self._buffer += data
        if self.request is None:
            self._read_head()
        if self.request is not None and self._length is not None and self.error is None:
            self.request.body = bytes(self._buffer[:self._length])

    def _read_head(self) -> None:
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buffer) > MAX_HEAD:
                self.error = plain(431, "Request Header Fields Too Large")
            return
        request = parse_head(bytes(self._buffer[:end]))
        del self._buffer[:end + 4]
        if request is None:
            self.error = plain(400, "Bad Request")
            return
        if "chunked" in request.headers.get("transfer-encoding", "").lower():
            self.error = plain(411, "Length Required")
            return
        try:
            length = int(request.headers.get("content-length", "0"))
        except ValueError:
            length = -1
        if length < 0:
            self.error = plain(400, "Bad Request")
        elif length > MAX_BODY:
            self.error = plain(413, "Payload Too Large")
        self.request, self._length = request, length


def plain(status: int, text: str) -> HttpResponse:
    return HttpResponse(status, (text + "\n").encode(), "text/plain; charset=utf-8")


def render(response: HttpResponse, now: float) -> bytes:
    """The response's bytes, with ``Date`` from ``now`` (epoch seconds) and ``Connection: close``."""
    try:
        phrase = http.HTTPStatus(response.status).phrase
    except ValueError:
        phrase = "Error"
    lines = [f"HTTP/1.1 {response.status} {phrase}", f"Date: {formatdate(now, usegmt=True)}"]
    if response.content_type is not None:
        lines.append(f"Content-Type: {response.content_type}")
    lines += [f"{name}: {value}" for name, value in response.headers]
    lines += [f"Content-Length: {len(response.body)}", "Connection: close"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + response.body
