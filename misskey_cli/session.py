"""The socket: connect, subscribe, receive, keep alive, reconnect. The only user of websocket-client.

A ``Session`` holds the *desired* state (channel connections and note captures, in order) and at
most one live socket. Every (re)connect replays that state with the same ids and params, so a
reconnect restores what the user asked for, including changes made live through ``--stdin``.
``Session.next`` is the whole event loop: it waits on the socket and on any extra file
descriptors (stdin), sends keepalive pings, spots dead paths and missing acks, and reconnects
with backoff. It returns received data frames, readable fds, or None at the caller's deadline.
"""

from __future__ import annotations

import random
import select
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import websocket

from misskey_cli import protocol, wsframes
from misskey_cli.channels import CATALOGUE
from misskey_cli.config import Redactor, Target, parse_proxy
from misskey_cli.errors import (
    ConnectFailed,
    ConnectionLost,
    Forbidden,
    MkstreamError,
    NotAcknowledged,
    TokenRejected,
    UsageError,
)

RECV_SIZE = 1 << 18  # 256 KB: ~170 typical frames per system call, without big buffers to keep


@dataclass
class SessionOptions:
    ping_interval: float = 30.0
    ping_timeout: float = 60.0
    ack_timeout: float = 5.0
    require_ack: bool = False
    reconnect: bool = True
    max_retries: int | None = None  # None = unlimited
    retries_given: bool = False  # the user asked for retries explicitly: apply them to the first connect too
    reconnect_delay: float = 0.5
    reconnect_cap: float = 30.0
    # A connection that lived this long resets the backoff (reconnecting-websocket, which the
    # official client builds on, uses 5 s too): a server that keeps dropping sockets after a few
    # seconds gets quick reconnects, one that refuses them gets ever slower ones.
    stable_after: float = 5.0
    open_timeout: float = 10.0


@dataclass
class Connection:
    """One channel connection on the socket, identified by its connection id."""

    channel: str
    id: str
    params: dict[str, Any] = field(default_factory=dict)


class Received(NamedTuple):
    """A data frame as it came off the wire (text is not yet decoded: that is validation)."""

    data: bytes
    binary: bool
    at: float


Notice = Callable[[str], None]


@dataclass
class Counters:
    reconnects: int = 0
    connected_seconds: float = 0.0


class Session:
    def __init__(self, target: Target, options: SessionOptions, warn: Notice, info: Notice, debug: Notice) -> None:
        self.target = target
        self.options = options
        self.redact = Redactor(target.token)
        self._warn, self._info, self._debug = warn, info, debug
        self.connections: dict[str, Connection] = {}
        self.captures: dict[str, None] = {}
        self.counters = Counters()
        self.ws: websocket.WebSocket | None = None
        self.ever_connected = False
        self.pending_acks: dict[str, float] = {}
        self.warned_acks: set[str] = set()
        self._failures = 0
        self._retry_at: float | None = None
        self._up_since = 0.0
        self._last_heard = 0.0
        self._next_ping = 0.0
        self.parser = wsframes.FrameParser()
        self._pending_loss: tuple[str, bool] | None = None

    # ----- desired state ------------------------------------------------------------------

    def new_connection_id(self, channel: str) -> str:
        if channel not in self.connections:
            return channel
        n = 2
        while f"{channel}-{n}" in self.connections:
            n += 1
        return f"{channel}-{n}"

    def add_connection(self, channel: str, connection_id: str | None, params: dict[str, Any]) -> Connection:
        cid = connection_id or self.new_connection_id(channel)
        if cid in self.connections:
            # Reusing an id makes 2025.x servers deliver everything twice (PROTOCOL.md 3.1).
            raise UsageError(f"connection id {cid} is already in use on this socket: pick another with {channel}:ID")
        conn = Connection(channel, cid, params)
        self.connections[cid] = conn
        if self.ws is not None:
            self._send_connect(conn)
        return conn

    def remove_connection(self, connection_id: str) -> Connection:
        conn = self.connections.pop(connection_id, None)
        if conn is None:
            known = ", ".join(self.connections) or "none"
            raise UsageError(f"no channel connection with id {connection_id} (connected: {known})")
        self.pending_acks.pop(connection_id, None)
        if self.ws is not None:
            self._send(protocol.disconnect_frame(connection_id))
        return conn

    def add_capture(self, note_id: str) -> None:
        if note_id in self.captures:
            raise UsageError(f"note {note_id} is already captured")
        self.captures[note_id] = None
        if self.ws is not None:
            self._send(protocol.sub_note_frame(note_id))

    def remove_capture(self, note_id: str) -> None:
        if note_id not in self.captures:
            raise UsageError(f"note {note_id} is not captured")
        del self.captures[note_id]
        if self.ws is not None:
            self._send(protocol.unsub_note_frame(note_id))

    def send_to_channel(self, connection_id: str, message_type: str, body: Any) -> None:
        if connection_id not in self.connections:
            known = ", ".join(self.connections) or "none"
            raise UsageError(f"no channel connection with id {connection_id} (connected: {known})")
        self.send_text(protocol.channel_message_frame(connection_id, message_type, body))

    def send_text(self, text: str) -> None:
        """Send now; while reconnecting the message is dropped with a warning (it was live-only)."""
        if self.ws is None:
            self._warn("not connected right now: message not sent")
            return
        self._send(text)

    # ----- the event loop -------------------------------------------------------------------

    def next(self, deadline: float | None, watch: list[int]) -> list[Received] | int | None:
        """Wait for data frames, a readable fd from ``watch``, or ``deadline`` (monotonic).

        Returns every data frame that has arrived (at least one), the readable fd, or None.
        """
        while True:
            if self._pending_loss is not None:
                reason, clean = self._pending_loss
                self._pending_loss = None
                self._lost(reason, clean)
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                return None
            if self.ws is None:
                assert self._retry_at is not None
                wake = self._retry_at if deadline is None else min(self._retry_at, deadline)
                if now < wake:
                    waiting, _, _ = select.select(watch, [], [], wake - now)
                    if waiting:
                        return waiting[0]
                    continue
                self._attempt()
                continue
            self._check_acks(now)
            if now >= self._last_heard + self.options.ping_timeout:
                self._lost(f"no frame and no pong for {self.options.ping_timeout:g}s")
                continue
            if now >= self._next_ping:
                self._ping(now)
            wake = min(self._next_ping, self._last_heard + self.options.ping_timeout)
            if self.pending_acks:
                wake = min(wake, min(self.pending_acks.values()))
            if deadline is not None:
                wake = min(wake, deadline)
            sock = self.ws.sock
            if sock is None:
                self._lost("socket closed")
                continue
            sock_fd = sock.fileno()
            if isinstance(sock, ssl.SSLSocket) and sock.pending():
                ready = [sock_fd]
            else:
                ready, _, _ = select.select([sock_fd, *watch], [], [], max(0.0, wake - time.monotonic()))
            if sock_fd in ready:
                frames = self._read(sock)
                if frames:
                    return frames
                continue
            if ready:
                return ready[0]

    def _read(self, sock: socket.socket) -> list[Received]:
        """One ``recv``: every whole message it completes. Control frames are handled here."""
        try:
            chunk = sock.recv(RECV_SIZE)
        except (OSError, ValueError) as exc:
            self._lost(self.redact(describe_socket_error(exc)))
            return []
        if not chunk:
            self._lost("the server closed the connection without a close frame")
            return []
        self._last_heard = time.monotonic()
        try:
            messages = self.parser.feed(chunk)
        except wsframes.FramingError as exc:
            self._lost(f"broken WebSocket framing ({exc})")
            return []
        at = time.time()
        frames = []
        for opcode, payload in messages:
            if opcode == wsframes.OP_TEXT:
                frames.append(Received(payload, False, at))
            elif opcode == wsframes.OP_BINARY:
                frames.append(Received(payload, True, at))
            elif opcode == wsframes.OP_PING:
                self._pong(payload)
            elif opcode == wsframes.OP_CLOSE:
                code, reason = wsframes.close_status(payload)
                self._answer_close(code)
                # The frames that came before the close are returned first; the loss is handled next.
                self._pending_loss = (f"the server closed the connection (code {code}{', ' + reason if reason else ''})",
                                      True)
                break
        return frames

    def note_ack(self, connection_id: str) -> bool:
        """Record a ``connected`` frame; True when it answers a connect this session sent."""
        if connection_id in self.pending_acks:
            del self.pending_acks[connection_id]
            self._debug(f"channel {self.connections[connection_id].channel} acknowledged as {connection_id}")
            return True
        return connection_id in self.connections

    def _check_acks(self, now: float) -> None:
        for cid, due in list(self.pending_acks.items()):
            if now < due:
                continue
            del self.pending_acks[cid]
            conn = self.connections.get(cid)
            if conn is None or cid in self.warned_acks:
                continue
            self.warned_acks.add(cid)
            message = (f"channel {conn.channel} (id {cid}) was not acknowledged within "
                       f"{self.options.ack_timeout:g}s: {self.unacked_reason(conn)}")
            if self.options.require_ack:
                raise NotAcknowledged(message)
            self._warn(message)

    def unacked_reason(self, conn: Connection) -> str:
        channel = CATALOGUE.get(conn.channel)
        if channel is None:
            return "the server does not know this channel"
        if channel.shareable and any(c.channel == conn.channel and c.id != conn.id
                                     for c in self.connections.values()):
            return f"{conn.channel} can be connected once per socket and already is"
        if len(self.connections) > protocol.MAX_CHANNELS_PER_SOCKET:
            return f"a socket holds at most {protocol.MAX_CHANNELS_PER_SOCKET} channel connections"
        if channel.needs_login and not self.target.token:
            return "it needs a token (none was given)"
        if channel.moderator_only:
            return "it needs a moderator's token"
        return "the token may lack the permission, or the list/antenna/room is not yours"

    # ----- connecting -------------------------------------------------------------------------

    def open(self) -> None:
        """Connect for the first time (retrying only if the user asked for retries)."""
        while self.ws is None:
            now = time.monotonic()
            if self._retry_at is not None and now < self._retry_at:
                time.sleep(self._retry_at - now)
            self._attempt()

    def _attempt(self) -> None:
        target = self.target
        self._debug(f"connecting to {target.display_url()}")
        kwargs: dict[str, Any] = {
            "timeout": self.options.open_timeout,
            "header": target.headers(),
            "skip_utf8_validation": True,  # text is validated when decoded, once, in C
            "enable_multithread": False,
        }
        sslopt: dict[str, Any] = {}
        if target.insecure:
            sslopt = {"cert_reqs": ssl.CERT_NONE, "check_hostname": False}
        elif target.ca_file:
            sslopt = {"ca_certs": target.ca_file}
        if target.proxy:
            host, port, kind, auth = parse_proxy(target.proxy)
            kwargs.update(http_proxy_host=host, http_proxy_port=port, proxy_type=kind, http_proxy_auth=auth)
        ws = websocket.WebSocket(sslopt=sslopt, skip_utf8_validation=True, enable_multithread=False)
        try:
            ws.connect(target.url(), **kwargs)
        except websocket.WebSocketBadStatusException as exc:
            ws.shutdown()
            self._refused(exc.status_code)
            return
        except (OSError, websocket.WebSocketException, ValueError) as exc:
            ws.shutdown()
            self._failed(self.redact(describe_socket_error(exc)), fatal_first=is_permanent(exc))
            return
        self.ws = ws
        self.parser = wsframes.FrameParser()
        now = time.monotonic()
        self._up_since = now
        self._last_heard = now
        self._next_ping = now + self.options.ping_interval
        self._retry_at = None
        if ws.sock is not None:
            ws.sock.settimeout(self.options.ping_timeout)
        if self.ever_connected:
            self._debug(f"reconnected to {target.display_url()}")  # the loss was the one notice
        else:
            self._debug(f"connected to {target.display_url()}")
        self.ever_connected = True
        for conn in self.connections.values():
            self._send_connect(conn)
        for note_id in self.captures:
            self._send(protocol.sub_note_frame(note_id))

    def _refused(self, status: int) -> None:
        if status == 401:
            raise TokenRejected(
                "the server rejected the token (HTTP 401): it is unknown, revoked, or lacks read:account"
                if self.target.token else "the server refused an anonymous connection (HTTP 401)")
        if status == 403:
            raise Forbidden("the server refused the connection (HTTP 403): the account may be suspended")
        self._failed(f"the server answered HTTP {status} instead of upgrading to WebSocket",
                     fatal_first=400 <= status < 500 and status != 429)

    def _failed(self, reason: str, fatal_first: bool) -> None:
        """A connection attempt failed: schedule a retry or give up."""
        self._failures += 1
        first = not self.ever_connected
        error = ConnectFailed if first else ConnectionLost
        where = self.target.display_url()
        if first and (fatal_first or not self.options.retries_given):
            raise error(f"could not connect to {where}: {reason}")
        if not self.options.reconnect or (self.options.max_retries is not None
                                          and self._failures > self.options.max_retries):
            spent = "" if not self.options.reconnect else f" after {self.options.max_retries} retries"
            raise error(f"could not connect to {where}{spent}: {reason}")
        delay = self._backoff()
        self._info(f"could not connect to {where}: {reason}; retrying in {delay:.1f}s")

    def _lost(self, reason: str, clean: bool = False) -> None:
        """The live socket died: drop it and schedule the reconnect (or give up)."""
        ws = self.ws
        self.ws = None
        self.pending_acks.clear()
        now = time.monotonic()
        self.counters.connected_seconds += now - self._up_since
        if ws is not None:
            ws.shutdown()
        if now - self._up_since >= self.options.stable_after:
            self._failures = 0
        if not self.options.reconnect:
            if clean:
                raise ServerClosed(reason)
            raise ConnectionLost(f"connection lost: {reason}")
        self._failures += 1
        if self.options.max_retries is not None and self._failures > self.options.max_retries:
            raise ConnectionLost(f"connection lost: {reason}; gave up after {self.options.max_retries} retries")
        delay = self._backoff()
        self.counters.reconnects += 1
        self._info(f"connection lost: {reason}; reconnecting in {delay:.1f}s")

    def _backoff(self) -> float:
        base = min(self.options.reconnect_cap, self.options.reconnect_delay * 2 ** (self._failures - 1))
        delay = base * random.uniform(0.5, 1.0)  # jitter keeps a crowd of clients from retrying in step
        self._retry_at = time.monotonic() + delay
        return delay

    # ----- sending ----------------------------------------------------------------------------

    def _send_connect(self, conn: Connection) -> None:
        self.pending_acks[conn.id] = time.monotonic() + self.options.ack_timeout
        self._send(protocol.connect_frame(conn.channel, conn.id, conn.params or None, pong=True))

    def _send(self, text: str) -> None:
        assert self.ws is not None
        self._quietly("send", self.ws.send, text)

    def _pong(self, payload: bytes) -> None:
        assert self.ws is not None
        self._quietly("pong", self.ws.pong, payload)

    def _answer_close(self, code: int) -> None:
        assert self.ws is not None
        # 1005/1006/1015 describe a close; they may not be sent in one (RFC 6455 7.4.1).
        self._quietly("close", self.ws.send_close, code if code not in (1005, 1006, 1015) else websocket.STATUS_NORMAL)

    def _ping(self, now: float) -> None:
        assert self.ws is not None
        self._next_ping = now + self.options.ping_interval
        self._quietly("ping", self.ws.ping)

    def _quietly(self, what: str, action: Callable[..., object], *args: object) -> None:
        """Send on the socket; a failure is only a diagnostic, because the read side notices the
        dead socket and reconnects, and the reconnect replays the state."""
        try:
            action(*args)
        except (OSError, websocket.WebSocketException) as exc:
            self._debug(f"{what} failed: {self.redact(describe_socket_error(exc))}")

    def close(self) -> None:
        """Leave cleanly: disconnect every channel, release every capture, close with 1000."""
        ws = self.ws
        self.ws = None
        if ws is None:
            return
        self.counters.connected_seconds += time.monotonic() - self._up_since
        try:
            for cid in self.connections:
                ws.send(protocol.disconnect_frame(cid))
            for note_id in self.captures:
                ws.send(protocol.unsub_note_frame(note_id))
            ws.send_close(websocket.STATUS_NORMAL)
            if self._pending_loss is None:  # else the server's close frame is already here
                self._await_close_reply(ws, time.monotonic() + 2.0)
        except (OSError, websocket.WebSocketException, wsframes.FramingError):
            pass
        finally:
            ws.shutdown()

    def _await_close_reply(self, ws: websocket.WebSocket, deadline: float) -> None:
        """Read until the server answers the close (frames still arriving are dropped: we are leaving)."""
        sock = ws.sock
        while sock is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([sock], [], [], remaining)[0]:
                return
            chunk = sock.recv(RECV_SIZE)
            if not chunk or any(op == wsframes.OP_CLOSE for op, _ in self.parser.feed(chunk)):
                return

    def abort(self) -> None:
        ws = self.ws
        self.ws = None
        if ws is not None:
            ws.shutdown()


class ServerClosed(MkstreamError):
    """The server closed the socket with a close frame and reconnecting is off: a normal end."""


def is_permanent(exc: BaseException) -> bool:
    """Errors a retry cannot fix on a first connect: unknown host, TLS rejection, bad URL."""
    return isinstance(exc, (socket.gaierror, ssl.SSLError, ValueError, websocket.WebSocketAddressException))


def describe_socket_error(exc: BaseException) -> str:
    if isinstance(exc, (socket.gaierror, websocket.WebSocketAddressException)):
        return "unknown host (DNS lookup failed)"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (is the server running?)"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate rejected: {exc.verify_message} (use --ca-file or --insecure)"
    if isinstance(exc, ssl.SSLError):
        return f"TLS error: {exc.reason or exc}"
    if isinstance(exc, (socket.timeout, websocket.WebSocketTimeoutException, TimeoutError)):
        return "timed out"
    if isinstance(exc, ConnectionResetError):
        return "connection reset by the server"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
