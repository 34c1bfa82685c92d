"""Connecting without blocking: DNS, TCP, TLS and reading an HTTP head, as generator steps.

Each step reads like blocking code and yields a ``Wait`` (a file descriptor, and whether for
writing) whenever a socket is not ready, so one ``select`` can drive a whole attempt beside stdin
and the caller's deadline. A blocking call that has no non-blocking form (a DNS lookup, a SOCKS
handshake) runs in a daemon thread whose end wakes the ``select``. Pure socket code: no
websocket-client here, no knowledge of Misskey; which proxy and how to pass it is ``transport``'s.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import ssl
import threading
from collections.abc import Callable, Generator
from typing import Any, Generic, TypeVar

from misskey_cli.net import wsframes

MAX_HEAD = 64 * 1024  # of an HTTP answer (the upgrade's, a proxy's): real ones are well under 2 KB
SOCKET_OPTIONS = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1), (socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)]

Wait = tuple[int, bool]  # a file descriptor to wait for, and whether for writing (else for reading)
T = TypeVar("T")


class Failed(Exception):
    """An attempt failed for a reason already put in words."""

    def __init__(self, reason: str, permanent: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent


class Refused(Exception):
    """The server answered the upgrade with an HTTP status (401, 403, 503...)."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class Ended(Exception):
    """The peer closed the connection in the middle of an HTTP exchange."""


class InThread(Generic[T]):
    """A blocking call (a DNS lookup, a SOCKS handshake) in a daemon thread; a pipe says when it ended.

    Abandoned (its attempt ran out of time), the thread is left to finish; a socket it returns
    then is closed.
    """

    def __init__(self, call: Callable[[], T]) -> None:
        self.fd, self._write_fd = os.pipe()
        self._lock = threading.Lock()
        self._outcome: tuple[T | None, BaseException | None] | None = None
        self._abandoned = False
        threading.Thread(target=self._run, args=(call,), daemon=True, name="mkstream-connect").start()

    def _run(self, call: Callable[[], T]) -> None:
        try:
            outcome: tuple[T | None, BaseException | None] = (call(), None)
        except BaseException as exc:  # noqa: BLE001 - handed to the loop, which explains it
            outcome = (None, exc)
        with self._lock:
            self._outcome = outcome
            abandoned = self._abandoned
        if abandoned:
            discard(outcome[0])
        with contextlib.suppress(OSError):
            os.write(self._write_fd, b"!")
        os.close(self._write_fd)

    @property
    def done(self) -> bool:
        with self._lock:
            return self._outcome is not None

    def result(self) -> T:
        with self._lock:
            assert self._outcome is not None
            value, error = self._outcome
            self._outcome = (None, None)  # taken: close() must not discard it
        if error is not None:
            raise error
        return value  # type: ignore[return-value]

    def close(self) -> None:
        with self._lock:
            self._abandoned = True
            outcome = self._outcome
        if outcome is not None:
            discard(outcome[0])
        os.close(self.fd)


def discard(value: object) -> None:
    if isinstance(value, socket.socket):
        value.close()


class Attempt(Generic[T]):
    """One connection attempt in progress: its steps, its deadline, and where it has got to."""

    def __init__(self, dial: Callable[[Attempt[T]], Generator[Wait, None, T]], deadline: float) -> None:
        self.deadline = deadline
        self.phase = "resolving"  # resolving, connecting, tunnelling, tls, upgrading
        self.proxy: str | None = None  # host:port of the proxy on the way, if there is one
        self.wait: Wait | None = None  # what the steps wait for; None: run them now
        self._steps = dial(self)

    def advance(self) -> T | None:
        """Run the steps until they wait again (None) or the socket is open; raises when they fail."""
        try:
            self.wait = next(self._steps)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        return None

    def cancel(self) -> None:
        self._steps.close()  # the steps' ``finally`` blocks close their sockets


def resolve(host: str, port: int) -> Generator[Wait, None, list[Any]]:
    try:  # an address needs no lookup
        return socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM, socket.IPPROTO_TCP, socket.AI_NUMERICHOST)
    except socket.gaierror:
        pass
    lookup = InThread(lambda: socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM, socket.IPPROTO_TCP))
    try:
        while not lookup.done:
            yield lookup.fd, False
        return lookup.result()
    finally:
        lookup.close()


def tcp_connect(addresses: list[Any]) -> Generator[Wait, None, socket.socket]:
    error: OSError = OSError(errno.EADDRNOTAVAIL, "no address to connect to")
    for family, kind, proto, _, address in addresses:
        sock = socket.socket(family, kind, proto)
        connected = False
        try:
            sock.setblocking(False)
            for option in SOCKET_OPTIONS:
                sock.setsockopt(*option)
            code = sock.connect_ex(address)
            if code in (errno.EINPROGRESS, errno.EWOULDBLOCK):
                yield sock.fileno(), True
                code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if code == 0:
                connected = True
                return sock
            error = OSError(code, os.strerror(code))  # OSError picks the subclass: ConnectionRefusedError...
        finally:
            if not connected:
                sock.close()
    raise error


def send_all(sock: socket.socket, data: bytes) -> Generator[Wait, None, None]:
    view = memoryview(data)
    done = 0
    while done < len(data):
        try:
            done += sock.send(view[done:])
        except (BlockingIOError, ssl.SSLWantWriteError):
            yield sock.fileno(), True
        except ssl.SSLWantReadError:
            yield sock.fileno(), False


def receive(sock: socket.socket, size: int, flags: int = 0) -> Generator[Wait, None, bytes]:
    while True:
        try:
            return sock.recv(size, flags)
        except (BlockingIOError, ssl.SSLWantReadError):
            yield sock.fileno(), False
        except ssl.SSLWantWriteError:
            yield sock.fileno(), True


def read_head(sock: socket.socket, what: str,
               exact: bool) -> Generator[Wait, None, tuple[wsframes.ResponseHead, bytes]]:
    """An HTTP answer's head, read in chunks up to ``MAX_HEAD``; returns it and the bytes after it.

    ``exact`` reads nothing past the head (peeking first), for a proxy's answer: what follows it
    belongs to TLS, which must read it itself.
    """
    buffer = bytearray()
    searched = 0
    while (end := wsframes.head_end(buffer, searched)) < 0:
        if len(buffer) >= MAX_HEAD:
            raise Failed(f"{what} is larger than {MAX_HEAD // 1024} KB", permanent=True)
        searched = len(buffer)
        room = MAX_HEAD - len(buffer)
        if exact:
            peeked = yield from receive(sock, room, socket.MSG_PEEK)
            found = wsframes.head_end(buffer + peeked, searched)
            chunk = sock.recv(len(peeked) if found < 0 else found - len(buffer)) if peeked else b""
        else:
            chunk = yield from receive(sock, room)
        if not chunk:
            raise Ended()
        buffer += chunk
    try:
        head = wsframes.ResponseHead.parse(bytes(buffer[:end]))
    except wsframes.HandshakeError as exc:
        raise Failed(f"{what} is not HTTP: {exc}", permanent=True) from None
    return head, bytes(buffer[end:])


def tls_handshake(sock: ssl.SSLSocket) -> Generator[Wait, None, None]:
    while True:
        try:
            sock.do_handshake()
            return
        except ssl.SSLWantReadError:
            yield sock.fileno(), False
        except ssl.SSLWantWriteError:
            yield sock.fileno(), True


def host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
