"""The socket: connect, subscribe, receive, keep alive, reconnect. The only user of websocket-client.

A ``Session`` holds the *desired* state (channel connections and note captures, in order) and at
most one live socket. Every (re)connect replays that state with the same ids and params, so a
reconnect restores what the user asked for, including changes made live through ``--stdin``.
``Session.next`` is the whole event loop: it waits on the socket and on any extra file
descriptors (stdin), sends keepalive pings, spots dead paths and missing acks, and reconnects
with the ``backoff`` policy. It returns one typed event: ``Frames`` received, a ``Readable`` fd,
``Reconnected`` after a loss, ``AckMissing`` for a channel the server did not acknowledge, or
``DEADLINE``. The ``connected`` acks of its own connects are consumed here (``-v`` shows them).
"""

from __future__ import annotations

import select
import socket
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import websocket

from misskey_cli import protocol, wsframes
from misskey_cli.backoff import Backoff
from misskey_cli.config import Redactor, Target
from misskey_cli.errors import (
    ConnectFailed,
    ConnectionLost,
    Forbidden,
    MkstreamError,
    TokenRejected,
    UsageError,
)
from misskey_cli.settings import Liveness, Reconnect

RECV_SIZE = 1 << 18  # 256 KB: ~170 typical frames per system call, without big buffers to keep


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


# ----- events ---------------------------------------------------------------------------------


class Frames(NamedTuple):
    """Data frames that arrived (at least one), in order."""

    items: list[Received]


class Readable(NamedTuple):
    """One of the extra file descriptors the caller asked to watch is readable."""

    fd: int


class Reconnected(NamedTuple):
    """The socket is back after a loss, every channel and capture re-sent."""

    down_since: float  # epoch seconds: when the lost socket was last known alive
    down_for: float  # seconds
    cause: str
    captures: tuple[str, ...]  # captures that were active: their events in the gap are gone


class AckMissing(NamedTuple):
    """A channel connection was not acknowledged within the ack timeout."""

    connection: Connection
    others: tuple[Connection, ...]  # every other connection on the socket, to tell why


class Deadline(NamedTuple):
    """The caller's deadline passed."""


DEADLINE = Deadline()

Event = Frames | Readable | Reconnected | AckMissing | Deadline

Notice = Callable[[str], None]


@dataclass
class Counters:
    reconnects: int = 0
    connected_seconds: float = 0.0


def _ignore(message: str) -> None:
    pass


@dataclass(frozen=True)
class SessionNotices:
    warn: Notice
    info: Notice  # connection events: lost, retrying
    debug: Notice
    state: Notice = _ignore  # "connecting", "connected", "reconnecting in 2.0 s", for a status line


class Session:
    def __init__(self, target: Target, liveness: Liveness, reconnect: Reconnect, notices: SessionNotices,
                 redact: Redactor, backoff: Backoff | None = None) -> None:
        self.target = target
        self.liveness = liveness
        self.reconnect = reconnect
        self.redact = redact
        self._warn, self._info, self._debug, self._state = notices.warn, notices.info, notices.debug, notices.state
        self.backoff = backoff or Backoff(reconnect)
        self.connections: dict[str, Connection] = {}
        self.captures: dict[str, None] = {}
        self.counters = Counters()
        self.ws: websocket.WebSocket | None = None
        self.ever_connected = False
        self.pending_acks: dict[str, float] = {}
        self.warned_acks: set[str] = set()
        self._retry_at: float | None = None
        self._up_since = 0.0
        self._last_heard = 0.0
        self._next_ping = 0.0
        self.parser = wsframes.FrameParser()
        self._pending_loss: tuple[str, bool] | None = None
        self._down: tuple[float, float, str] | None = None  # (monotonic, epoch, cause) of the last loss

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

    def next(self, deadline: float | None, watch: Sequence[int]) -> Event:
        """Wait for the next event; ``deadline`` is monotonic, ``watch`` extra fds (stdin, wake-ups)."""
        while True:
            if self._pending_loss is not None:
                reason, clean = self._pending_loss
                self._pending_loss = None
                self._lost(reason, clean)
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                return DEADLINE
            if self.ws is None:
                event = self._wait_to_retry(now, deadline, watch)
                if event is not None:
                    return event
                continue
            missing = self._missing_ack(now)
            if missing is not None:
                return missing
            if now >= self._last_heard + self.liveness.ping_timeout:
                self._lost(f"no frame and no pong for {self.liveness.ping_timeout:g}s")
                continue
            if now >= self._next_ping:
                self._ping(now)
            event = self._wait_on_socket(deadline, watch)
            if event is not None:
                return event

    def _wait_to_retry(self, now: float, deadline: float | None, watch: Sequence[int]) -> Event | None:
        assert self._retry_at is not None
        wake = self._retry_at if deadline is None else min(self._retry_at, deadline)
        if now < wake:
            waiting, _, _ = select.select(watch, [], [], wake - now)
            return Readable(waiting[0]) if waiting else None
        self._attempt()
        if self.ws is not None and self._down is not None:
            lost_at, epoch, cause = self._down
            self._down = None
            return Reconnected(epoch, time.monotonic() - lost_at, cause, tuple(self.captures))
        return None

    def _wait_on_socket(self, deadline: float | None, watch: Sequence[int]) -> Event | None:
        assert self.ws is not None
        wake = min(self._next_ping, self._last_heard + self.liveness.ping_timeout)
        if self.pending_acks:
            wake = min(wake, min(self.pending_acks.values()))
        if deadline is not None:
            wake = min(wake, deadline)
        sock = self.ws.sock
        if sock is None:
            self._lost("socket closed")
            return None
        sock_fd = sock.fileno()
        if isinstance(sock, ssl.SSLSocket) and sock.pending():
            ready = [sock_fd]
        else:
            ready, _, _ = select.select([sock_fd, *watch], [], [], max(0.0, wake - time.monotonic()))
        if sock_fd in ready:
            frames = self._read(sock)
            return Frames(frames) if frames else None
        return Readable(ready[0]) if ready else None

    def _read(self, sock: socket.socket) -> list[Received]:
        """One ``recv``: every whole message it completes. Control frames and own acks are handled here."""
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
                if not (len(payload) < 512 and b'"connected"' in payload and self._own_ack(payload)):
                    frames.append(Received(payload, False, at))
            elif opcode == wsframes.OP_BINARY:
                frames.append(Received(payload, True, at))
            elif opcode == wsframes.OP_PING:
                self._pong(payload)
            elif opcode == wsframes.OP_CLOSE:
                code, reason = wsframes.close_status(payload)
                self._answer_close(code)
                # The frames that came before the close are returned first; the loss is handled next.
                said = f", {reason}" if reason else ""
                self._pending_loss = (f"the server closed the connection (code {code}{said})", True)
                break
        return frames

    def _own_ack(self, payload: bytes) -> bool:
        """A ``connected`` frame answering a connect this session sent: bookkeeping, not the user's data.

        Acks for connects sent as raw ``--stdin`` frames pass through to the output.
        """
        try:
            cid = protocol.ack_id(protocol.loads(payload)[0])
        except ValueError:
            return False
        if cid is None or (cid not in self.pending_acks and cid not in self.connections):
            return False
        if self.pending_acks.pop(cid, None) is not None:
            self._debug(f"channel {self.connections[cid].channel} acknowledged as {cid}")
        return True

    def _missing_ack(self, now: float) -> AckMissing | None:
        for cid, due in list(self.pending_acks.items()):
            if now < due:
                continue
            del self.pending_acks[cid]
            conn = self.connections.get(cid)
            if conn is None or cid in self.warned_acks:
                continue
            self.warned_acks.add(cid)
            return AckMissing(conn, tuple(c for c in self.connections.values() if c.id != cid))
        return None

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
        self._state("connecting")
        kwargs: dict[str, Any] = {
            "timeout": self.liveness.connect_timeout,
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
            proxy = target.proxy
            kwargs.update(http_proxy_host=proxy.host, http_proxy_port=proxy.port, proxy_type=proxy.kind,
                          http_proxy_auth=proxy.auth)
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
        self._next_ping = now + self.liveness.ping_interval
        self._retry_at = None
        if ws.sock is not None:
            ws.sock.settimeout(self.liveness.ping_timeout)
        self._debug(f"{'reconnected' if self.ever_connected else 'connected'} to {target.display_url()}")
        self._state("connected")
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
        first = not self.ever_connected
        error = ConnectFailed if first else ConnectionLost
        where = self.target.display_url()
        if first and (fatal_first or not self.reconnect.retry_first_connect):
            raise error(f"could not connect to {where}: {reason}")
        delay = self.backoff.failed()
        if delay is None:
            spent = f" after {self.reconnect.max_retries} retries" if self.reconnect.enabled else ""
            raise error(f"could not connect to {where}{spent}: {reason}")
        self._retry_at = time.monotonic() + delay
        self._state(f"retrying in {delay:.1f}s")
        self._info(f"could not connect to {where}: {reason}; retrying in {delay:.1f}s")

    def _lost(self, reason: str, clean: bool = False) -> None:
        """The live socket died: drop it and schedule the reconnect (or give up)."""
        ws = self.ws
        self.ws = None
        self.pending_acks.clear()
        now = time.monotonic()
        lived = now - self._up_since
        self.counters.connected_seconds += lived
        if ws is not None:
            ws.shutdown()
        self.backoff.lived(lived)
        if not self.reconnect.enabled:
            if clean:
                raise ServerClosed(reason)
            raise ConnectionLost(f"connection lost: {reason}")
        delay = self.backoff.failed()
        if delay is None:
            raise ConnectionLost(f"connection lost: {reason}; gave up after {self.reconnect.max_retries} retries")
        self._retry_at = now + delay
        if self._down is None:
            heard = time.time() - (now - self._last_heard)
            self._down = (now, heard, reason)
        self.counters.reconnects += 1
        self._state(f"reconnecting in {delay:.1f}s")
        self._info(f"connection lost: {reason}; reconnecting in {delay:.1f}s")

    # ----- sending ----------------------------------------------------------------------------

    def _send_connect(self, conn: Connection) -> None:
        self.pending_acks[conn.id] = time.monotonic() + self.liveness.ack_timeout
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
        self._next_ping = now + self.liveness.ping_interval
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
