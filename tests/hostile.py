"""Raw TCP servers on loopback for peers that break the rules: redirects, bad framing, floods, dribbles.

The simulator is a well-behaved server built on a WebSocket library; a hostile peer is easier to
write by hand on a bare socket. Each accepted connection runs ``handler(conn, index)`` in its own
thread (``index`` counts connections from 0). A handler that raises an ``OSError`` met a client that
went away, which is what most of these tests provoke; any other exception is kept in ``errors``
and fails the test.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import select
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from misskey_cli.net.wsframes import FrameParser, FramingError

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_TEXT, OP_CLOSE, OP_PING = 0x1, 0x8, 0x9

Handler = Callable[[socket.socket, int], None]


class RawServer:
    def __init__(self, handler: Handler, host: str = "127.0.0.1", rcvbuf: int | None = None) -> None:
        self.handler = handler
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if rcvbuf is not None:
            # Set before listen() so the accepted sockets inherit it (and a small TCP window).
            self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.listener.bind((host, 0))
        self.listener.listen(16)
        self.host = host
        self.port = self.listener.getsockname()[1]
        self.errors: list[BaseException] = []
        self.requests: list[tuple[str, dict[str, str]]] = []  # what read_head saw, in order
        self.stopping = threading.Event()
        self._accepted = 0
        self._changed = threading.Condition()
        self._conns: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def host_port(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def connections(self) -> int:
        with self._changed:
            return self._accepted

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with self._changed:
                index = self._accepted
                self._accepted += 1
                self._conns.append(conn)
                self._changed.notify_all()
            threading.Thread(target=self._run, args=(conn, index), daemon=True).start()

    def _run(self, conn: socket.socket, index: int) -> None:
        try:
            self.handler(conn, index)
        except OSError:
            pass
        except BaseException as exc:  # noqa: BLE001 - reported by the test through errors
            self.errors.append(exc)
        finally:
            with contextlib.suppress(OSError):
                conn.close()

    def wait_for_connections(self, count: int, timeout: float = 20.0) -> None:
        with self._changed:
            assert self._changed.wait_for(lambda: self._accepted >= count, timeout), \
                f"{self._accepted} connection(s), expected {count}"

    def read_head(self, conn: socket.socket) -> tuple[str, dict[str, str]]:
        """Read an HTTP request head; returns its first line and its headers (names lower-cased)."""
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = conn.recv(4096)
            if not chunk:
                raise ConnectionError("the client closed before sending a request")
            head += chunk
            assert len(head) < 65536, "request head too long"
        lines = head.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        self.requests.append((lines[0], headers))
        return lines[0], headers

    def upgrade(self, conn: socket.socket) -> dict[str, str]:
        """Answer a WebSocket upgrade correctly; returns the request's headers."""
        _, headers = self.read_head(conn)
        conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     b"Sec-WebSocket-Accept: " + accept_value(headers["sec-websocket-key"]) + b"\r\n\r\n")
        return headers

    def hold(self, conn: socket.socket, read: bool = True) -> None:
        """Keep a connection open until the client closes it or the server stops; answer a close frame.

        With ``read=False`` nothing is read: the client's data piles up in the socket buffers.
        """
        parser = FrameParser()
        while not self.stopping.is_set():
            if not read:
                self.stopping.wait(0.05)
                continue
            if not select.select([conn], [], [], 0.05)[0]:
                continue
            data = conn.recv(65536)
            if not data:
                return
            with contextlib.suppress(FramingError):  # after an upgrade the client sends frames
                if any(opcode == OP_CLOSE for opcode, _ in parser.feed(data)):
                    conn.sendall(frame((1000).to_bytes(2, "big"), OP_CLOSE))
                    return

    def close(self) -> None:
        self.stopping.set()
        self.listener.close()
        with self._changed:
            for conn in self._conns:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> RawServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def accept_value(key: str) -> bytes:
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest())


def frame(payload: bytes, opcode: int = OP_TEXT, length: int | None = None) -> bytes:
    """A server frame (unmasked); ``length`` overrides the length the header claims."""
    n = len(payload) if length is None else length
    head = bytes([0x80 | opcode])
    if n < 126:
        head += bytes([n])
    elif n < 1 << 16:
        head += bytes([126]) + n.to_bytes(2, "big")
    else:
        head += bytes([127]) + n.to_bytes(8, "big")
    return head + payload


def text(value: Any) -> bytes:
    return frame(json.dumps(value).encode())


def note_frame(seq: int) -> bytes:
    return text({"type": "channel", "body": {"id": "localTimeline", "type": "note", "body": {"seq": seq}}})


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until_closed(conn: socket.socket, timeout: float = 20.0) -> bool:
    """True once the client has closed its side (reading and dropping what it sends)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if select.select([conn], [], [], 0.05)[0]:
            try:
                if not conn.recv(65536):
                    return True
            except OSError:
                return True
    return False


def read_line(proc: Any, timeout: float = 20.0) -> str:
    """The next line of a child's stdout, waiting at most ``timeout`` for it."""
    deadline = time.monotonic() + timeout
    buffer = b""
    fd = proc.stdout.fileno()
    while b"\n" not in buffer:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
            raise TimeoutError(f"no line from mkstream; got {buffer[-200:]!r}")
        chunk = proc.stdout.read1(65536)
        if not chunk:
            raise EOFError(f"mkstream exited; got {buffer[-200:]!r}")
        buffer += chunk
    return buffer.split(b"\n", 1)[0].decode()
