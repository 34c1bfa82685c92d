"""The WebSocket wire format seen from the client (RFC 6455): the opening handshake and the framing. Pure.

Receiving goes through ``FrameParser`` instead of websocket-client's frame reader, which costs
three ``recv`` calls and a pure-Python UTF-8 check per frame. Here one ``recv`` brings as many
frames as have arrived and each is cut out of the buffer with a few slice operations. Text is not
validated here: the JSON decoder does it.

The opening handshake (section 4) is built and checked here too, so that ``session.py`` can read
the server's answer in large chunks with a size cap and a deadline (websocket-client reads it one
byte per ``recv``, without a cap, and follows redirects with the token). ``ResponseHead`` parses
the head of any HTTP response, a proxy's answer to ``CONNECT`` included.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

_DATA = (OP_TEXT, OP_BINARY)
_CONTROL = (OP_CLOSE, OP_PING, OP_PONG)


class FramingError(ValueError):
    """The byte stream is not valid WebSocket framing: the connection cannot be trusted.

    ``messages`` are the whole messages parsed from the same ``feed`` before the error: they
    arrived intact and are the caller's to deliver.
    """

    def __init__(self, message: str, messages: list[tuple[int, bytes]] | None = None) -> None:
        super().__init__(message)
        self.messages = messages or []


class FrameParser:
    """Feed it bytes as they arrive; it returns whole messages as ``(opcode, payload)``.

    Fragmented data messages are reassembled; control frames (close, ping, pong) are returned as
    they come, even between the fragments of a data message.
    """

    def __init__(self, max_message: int = 256 * 1024 * 1024) -> None:
        self.buffer = bytearray()
        self.max_message = max_message
        self._fragments: list[bytes] = []
        self._fragment_opcode = 0
        self._fragment_size = 0

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        """The whole messages ``data`` completes; raises ``FramingError`` carrying those before an error."""
        messages: list[tuple[int, bytes]] = []
        try:
            self._parse(data, messages)
        except FramingError as exc:
            exc.messages = messages
            raise
        return messages

    def _parse(self, data: bytes, messages: list[tuple[int, bytes]]) -> None:
        buffer = self.buffer
        buffer += data
        pos = 0
        size = len(buffer)
        while size - pos >= 2:
            first = buffer[pos]
            second = buffer[pos + 1]
            length = second & 0x7F
            header = 2
            if length == 126:
                if size - pos < 4:
                    break
                length = int.from_bytes(buffer[pos + 2:pos + 4], "big")
                header = 4
            elif length == 127:
                if size - pos < 10:
                    break
                length = int.from_bytes(buffer[pos + 2:pos + 10], "big")
                header = 10
            if length > self.max_message:
                raise FramingError(f"a frame of {length} bytes is larger than the {self.max_message} byte limit")
            masked = second & 0x80
            if masked:
                header += 4
            end = pos + header + length
            if end > size:
                break
            payload = bytes(buffer[pos + header:end])
            if masked:
                payload = _unmask(payload, bytes(buffer[pos + header - 4:pos + header]))
            pos = end
            opcode = first & 0x0F
            if first & 0xF0 == 0x80 and opcode in _DATA and not self._fragments:
                messages.append((opcode, payload))  # the common case: one whole text frame
            else:
                self._fragment(first, opcode, payload, messages)
        if pos:
            del buffer[:pos]

    def _fragment(self, first: int, opcode: int, payload: bytes, messages: list[tuple[int, bytes]]) -> None:
        if first & 0x70:
            # No extension was negotiated, so a reserved bit means a stream that cannot be read (5.2).
            raise FramingError(f"reserved bits {(first >> 4) & 0x7:#05b} set with no extension negotiated")
        fin = first & 0x80
        if opcode in _CONTROL:
            if not fin or len(payload) > 125:
                raise FramingError("a control frame was fragmented or longer than 125 bytes")
            messages.append((opcode, payload))
        elif opcode in _DATA:
            if self._fragments:
                raise FramingError("a new message started before the last one was finished")
            self._fragments = [payload]
            self._fragment_opcode = opcode
            self._fragment_size = len(payload)
        elif opcode == OP_CONTINUATION:
            if not self._fragments:
                raise FramingError("a continuation frame arrived with no message to continue")
            self._fragments.append(payload)
            self._fragment_size += len(payload)
            if self._fragment_size > self.max_message:
                raise FramingError(f"a message is larger than the {self.max_message} byte limit")
            if fin:
                messages.append((self._fragment_opcode, b"".join(self._fragments)))
                self._fragments = []
        else:
            raise FramingError(f"unknown opcode {opcode:#x}")


def _unmask(payload: bytes, mask: bytes) -> bytes:
    # Servers must not mask (RFC 6455 5.1), but undoing it costs nothing when one does.
    repeated = (mask * (len(payload) // 4 + 1))[:len(payload)]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(len(payload), "big")


def close_status(payload: bytes) -> tuple[int, str]:
    """The code and reason of a close frame's payload (1005 = none given)."""
    if len(payload) < 2:
        return 1005, ""
    return int.from_bytes(payload[:2], "big"), payload[2:].decode("utf-8", "replace")


# ----- the opening handshake (section 4) ------------------------------------------------------

_ACCEPT_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
REDIRECTS = (301, 302, 303, 307, 308)


class HandshakeError(ValueError):
    """The server's answer to the upgrade (or a proxy's to CONNECT) cannot be used."""


def upgrade_request(resource: str, host: str, origin: str, key: str, headers: list[str]) -> bytes:
    """The upgrade request websocket-client sends, byte for byte, with ``headers`` (``Name: value``) appended."""
    lines = [f"GET {resource} HTTP/1.1", "Upgrade: websocket", f"Host: {host}", f"Origin: {origin}",
             f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13", "Connection: Upgrade", *headers, "", ""]
    return "\r\n".join(lines).encode("utf-8")


def accept_value(key: str) -> str:
    """The ``Sec-WebSocket-Accept`` a server must answer ``key`` with (4.2.2)."""
    return base64.b64encode(hashlib.sha1(key.encode("ascii") + _ACCEPT_GUID).digest()).decode("ascii")


def head_end(buffer: bytes | bytearray, start: int = 0) -> int:
    """Where the body starts (just past the blank line) in an HTTP message, or -1 while the head is incomplete.

    ``start`` is how much was searched before: the search backs up 3 bytes to find a blank line
    split across reads.
    """
    found = buffer.find(b"\r\n\r\n", max(0, start - 3))
    return -1 if found < 0 else found + 4


@dataclass(frozen=True)
class ResponseHead:
    status: int
    reason: str
    headers: dict[str, str]  # names lower-cased; a repeated header's values joined with ", "

    @classmethod
    def parse(cls, head: bytes) -> ResponseHead:
        """The status line and headers of an HTTP/1.x response head (with or without its blank line)."""
        lines = head.decode("latin-1").rstrip("\r\n").split("\r\n")
        version, _, rest = lines[0].partition(" ")
        code, _, reason = rest.partition(" ")
        if not version.startswith("HTTP/") or len(code) != 3 or not code.isdigit():
            raise HandshakeError(f"the answer is not HTTP (it starts {lines[0][:40]!r})")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, colon, value = line.partition(":")
            name = name.strip().lower()
            if not colon or not name:
                raise HandshakeError(f"a malformed header line in the answer: {line[:40]!r}")
            value = value.strip()
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        return cls(int(code), reason.strip(), headers)

    def has_token(self, name: str, token: str) -> bool:
        """Whether a comma-separated header (``Connection: keep-alive, Upgrade``) lists ``token``."""
        return token in (part.strip().lower() for part in self.headers.get(name, "").split(","))


def check_upgrade(head: ResponseHead, key: str) -> None:
    """Raise ``HandshakeError`` unless ``head`` accepts the upgrade asked with ``key`` (4.1, the client's checks)."""
    if head.status != 101:
        raise HandshakeError(f"the server answered HTTP {head.status} instead of upgrading to WebSocket")
    if not head.has_token("upgrade", "websocket"):
        raise HandshakeError("the server's 101 answer does not upgrade to websocket")
    if not head.has_token("connection", "upgrade"):
        raise HandshakeError("the server's 101 answer lacks Connection: Upgrade")
    if head.headers.get("sec-websocket-accept") != accept_value(key):
        raise HandshakeError("the server's 101 answer has a wrong Sec-WebSocket-Accept")


def redirect_target(location: str, request_url: str) -> str:
    """Where a redirect points, as a ``--host`` value: ``scheme://host[:port][/path]``.

    Relative locations are resolved against the request. The query, the fragment and any user
    info are dropped (a server may echo the token there), and so is a path of ``/streaming``,
    which ``--host`` adds by itself. Raises ValueError for a location that is no URL, or holds
    characters no ``--host`` does (control characters among them: it is shown on a terminal).
    """
    parts = urlsplit(urljoin(request_url, location.strip()))
    netloc = parts.netloc.rpartition("@")[2]
    path = "" if parts.path in ("", "/", "/streaming") else parts.path
    where = f"{parts.scheme}://{netloc}{path}"
    if not where.isprintable() or " " in where:
        raise ValueError(where)
    return where
