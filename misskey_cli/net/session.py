"""The socket: connect, subscribe, receive, keep alive, reconnect. The only user of websocket-client.

A ``Session`` holds the *desired* state (channel connections and note captures, in order) and at
most one live socket. Every (re)connect replays that state with the same ids and params, so a
reconnect restores what the user asked for, including changes made live through ``--stdin``.
``Session.next`` is the whole event loop: it waits on the socket and on any extra file
descriptors (stdin), sends keepalive pings, spots dead paths and missing acks, and connects and
reconnects with the ``backoff`` policy. It returns one typed event: ``Frames`` received, a
``Readable`` fd, ``Reconnected`` after a loss, ``AckMissing`` for a channel the server did not
acknowledge, or ``DEADLINE``. The ``connected`` acks of its own connects are consumed here (``-v``
shows them).

Nothing here blocks the loop. A connection attempt (DNS, TCP, the proxy's ``CONNECT``, TLS, the
HTTP upgrade) is one generator, ``_dial``, that reads like blocking code and yields whenever it
has to wait for a socket; ``next`` drives it from the same ``select`` that watches stdin and the
caller's deadline. So ``--connect-timeout`` bounds a whole attempt, ``--duration`` holds while
connecting or waiting to retry, and ``open`` only has to say that a connection is wanted. The
DNS lookup (and a SOCKS handshake, which python-socks only does blocking) runs in a daemon thread
whose end wakes the ``select``; an attempt past its deadline abandons it.

Why the handshake is done here and not by websocket-client's ``WebSocket.connect``: the library
reads the server's answer one byte per ``recv`` with no size cap (100 MB of headers cost 93 s of
CPU, repeated ``Set-Cookie`` lines are joined quadratically), reads an error body of whatever
length the server announces, follows redirects with the token to wherever they point, applies
its timeout to each read rather than to the attempt, and blocks. Here the answer is read in
chunks and capped at 64 KB of head, a refusal's body is never read, a redirect is an error naming
its target, and every phase knows what to blame (the proxy, TLS against a plain server). What
websocket-client still does: build the outgoing frames (``ABNF``). The proxy (decided once per run,
in ``Target.proxy``), its tunnel and the TLS context are ``transport``'s, shared with the HTTP API
and the doctor.

Sending never blocks either. Frames wait in a bounded queue (``Wire``) written whenever the
socket is writable; a pong answers only the latest ping (a peer flooding pings gets one pong per
read, not one per ping); a queue that does not drain for ``--ping-timeout`` means the server has
stopped reading, and the socket is replaced. The goodbye on exit is bounded the same way.
"""

from __future__ import annotations

import base64
import contextlib
import os
import select
import socket
import ssl
import time
from collections import deque
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import websocket

from misskey_cli.core import jsoncodec, protocol
from misskey_cli.core.events import (
    DEADLINE,
    AckMissing,
    Connected,
    Connection,
    Counters,
    Event,
    Frames,
    Readable,
    Received,
    Reconnected,
)
from misskey_cli.core.safetext import escape_controls
from misskey_cli.errors import (
    ConnectFailed,
    ConnectionLost,
    Forbidden,
    MkstreamError,
    TokenRejected,
    UsageError,
)
from misskey_cli.net import wsframes
from misskey_cli.net.dial import (
    Attempt,
    Ended,
    Failed,
    InThread,
    Refused,
    Wait,
    host_port,
    read_head,
    resolve,
    send_all,
    tcp_connect,
    tls_handshake,
)
from misskey_cli.net.endpoint import Redactor, Target
from misskey_cli.net.policy import Backoff, Liveness, Reconnect
from misskey_cli.net.transport import describe_network_error, proxy_unreachable, socks_connect, tls_context, tunnel

RECV_SIZE = 1 << 18  # 256 KB: ~170 typical frames per system call, without big buffers to keep
# Bytes waiting to be sent: more means the server is not reading. Also the most held for a first connection.
MAX_QUEUED = 16 * 1024 * 1024
GOODBYE_TIMEOUT = 2.0  # for the disconnects, the close frame and the server's answer to it, on exit

_ABNF = websocket.ABNF


Notice = Callable[[str], None]


def _ignore(message: str) -> None:
    pass


StateNotice = Callable[[str, float | None], None]  # (what the session does, seconds until it acts or None)


def _ignore_state(state: str, wait: float | None) -> None:
    pass


@dataclass(frozen=True)
class SessionNotices:
    """Where the session's messages go; each left out is not wanted (the doctor wants none)."""

    warn: Notice = _ignore
    info: Notice = _ignore  # connection events: lost, retrying
    debug: Notice = _ignore
    state: StateNotice = _ignore_state  # ("connecting", None), ("reconnecting", 2.0): for a status line


# ----- the open socket ------------------------------------------------------------------------


class Wire:
    """An open WebSocket: the non-blocking socket, the parser of what arrives, the queue of what leaves.

    Whole frames are queued and written as the socket takes them; the head frame may be partly
    written (a TLS write that could not finish is retried with the same bytes, as OpenSSL wants).
    At most one pong is queued: pings that arrive meanwhile only update the payload it answers.
    """

    def __init__(self, sock: socket.socket, early: bytes) -> None:
        sock.setblocking(False)
        self.sock = sock
        self.fd = sock.fileno()
        self.tls = isinstance(sock, ssl.SSLSocket)
        self.parser = wsframes.FrameParser()
        self.early = early  # what came in the same reads as the handshake's answer
        self.queue: deque[bytes] = deque()
        self.queued = 0  # bytes not yet written
        self.offset = 0  # bytes of the head frame written
        self.stalled_since: float | None = None  # the queue has not been empty, nor moved, since
        self.ping: bytes | None = None  # the payload of the latest ping not answered yet
        self.blocked_on_read = False  # TLS must read before it can write again
        self._pong: bytes | None = None  # the pong frame in the queue, if there is one

    def put(self, frame: bytes, now: float) -> None:
        if not self.queue:
            self.stalled_since = now
        self.queue.append(frame)
        self.queued += len(frame)

    @property
    def wants_write(self) -> bool:
        return (bool(self.queue) or self.ping is not None) and not self.blocked_on_read

    def flush(self, now: float) -> None:
        """Write what the socket takes without waiting; raises ``OSError`` when the socket is broken."""
        if self.ping is not None and self._pong is None:
            self._queue_pong(now)
        queue = self.queue
        moved = False
        while queue:
            head = queue[0]
            try:
                sent = self.sock.send(memoryview(head)[self.offset:] if self.offset else head)
            except (BlockingIOError, ssl.SSLWantWriteError):
                break
            except ssl.SSLWantReadError:
                self.blocked_on_read = True
                break
            moved = True
            self.offset += sent
            self.queued -= sent
            if self.offset < len(head):
                continue
            queue.popleft()
            self.offset = 0
            if head is self._pong:
                self._pong = None
                if self.ping is not None:
                    self._queue_pong(now)
        if not queue:
            self.stalled_since = None
        elif moved:
            self.stalled_since = now

    def _queue_pong(self, now: float) -> None:
        assert self.ping is not None
        self._pong = _ABNF.create_frame(self.ping, _ABNF.OPCODE_PONG).format()
        self.ping = None
        self.put(self._pong, now)

    @property
    def readable_now(self) -> bool:
        """Bytes are there to read without asking the kernel (handshake leftovers, decrypted TLS data)."""
        return bool(self.early) or (self.tls and self.sock.pending() > 0)  # type: ignore[attr-defined]

    def receive(self) -> bytes | None:
        """What has arrived (``b""`` when the server closed its side), or None if nothing has yet."""
        if self.early:
            data, self.early = self.early, b""
            return data
        try:
            return self.sock.recv(RECV_SIZE)
        except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return None

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


# ----- the session ----------------------------------------------------------------------------


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
        self.captures: dict[str, bool] = {}  # note id -> seen: captured by --capture-seen, not named
        self.counters = Counters()
        self.wire: Wire | None = None
        self.ever_connected = False
        self.pending_acks: dict[str, float] = {}
        self.warned_acks: set[str] = set()
        self._attempt: Attempt[Wire] | None = None
        self._retry_at: float | None = None  # None: the next attempt may start at once
        self._up_since = 0.0
        self._last_heard = 0.0
        self._next_ping = 0.0
        self._pending_loss: tuple[str, bool] | None = None
        self._down: tuple[float, float, str] | None = None  # (monotonic, epoch, cause) of the last loss
        self._asked: tuple[float, float] | None = None  # (monotonic, epoch) the run first asked to connect
        self._first_failures = 0  # attempts that failed before the first connection
        self._held: list[str] = []  # messages sent before the first connection, sent once it is up
        self._held_bytes = 0

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
            # Reusing an id makes 2025.x servers deliver everything twice (docs/protocol.md §3.1).
            raise UsageError(f"connection id {cid} is already in use on this socket: pick another with {channel}:ID")
        conn = Connection(channel, cid, params)
        self.connections[cid] = conn
        if self.wire is not None:
            self._send_connect(conn)
        return conn

    def remove_connection(self, connection_id: str) -> Connection:
        conn = self.connections.pop(connection_id, None)
        if conn is None:
            known = ", ".join(self.connections) or "none"
            raise UsageError(f"no channel connection with id {connection_id} (connected: {known})")
        self.pending_acks.pop(connection_id, None)
        if self.wire is not None:
            self._send(protocol.disconnect_frame(connection_id))
        return conn

    def add_capture(self, note_id: str, seen: bool = False) -> None:
        """Capture a note; ``seen``: by --capture-seen. Naming a seen note keeps it, and sends nothing."""
        if note_id in self.captures:
            if self.captures[note_id] and not seen:
                self.captures[note_id] = False
                return
            raise UsageError(f"note {note_id} is already captured")
        self.captures[note_id] = seen
        if self.wire is not None:
            self._send(protocol.sub_note_frame(note_id))

    def remove_capture(self, note_id: str) -> None:
        if note_id not in self.captures:
            raise UsageError(f"note {note_id} is not captured")
        del self.captures[note_id]
        if self.wire is not None:
            self._send(protocol.unsub_note_frame(note_id))

    def send_to_channel(self, connection_id: str, message_type: str, body: Any) -> None:
        if connection_id not in self.connections:
            known = ", ".join(self.connections) or "none"
            raise UsageError(f"no channel connection with id {connection_id} (connected: {known})")
        self.send_text(protocol.channel_message_frame(connection_id, message_type, body))

    def send_text(self, text: str) -> None:
        """Send now; while reconnecting the message is dropped with a warning (it was live-only).

        Before the first connection it waits for it (``send`` asks before ``next`` has connected).
        """
        if self.wire is not None:
            self._send(text)
        elif self.ever_connected:
            self._warn("not connected right now: message not sent")
        elif self._held_bytes + len(text) > MAX_QUEUED:
            self._warn(f"more than {MAX_QUEUED >> 20} MB waiting for the connection: message not sent")
        else:
            self._held.append(text)
            self._held_bytes += len(text)

    # ----- the event loop -------------------------------------------------------------------

    def open(self) -> None:
        """Ask for the connection. Nothing blocks here: ``next`` makes the attempts, within its caller's deadline."""
        if self._asked is None:
            self._asked = (time.monotonic(), time.time())
        if self.wire is None and self._attempt is None and self._retry_at is None:
            self._state("connecting", None)

    def next(self, deadline: float | None, watch: Sequence[int]) -> Event:
        """Wait for the next event; ``deadline`` is monotonic, ``watch`` extra fds (stdin, wake-ups).

        With no socket it connects (or waits to retry); an attempt that outlives ``deadline`` goes
        on in the next call.
        """
        liveness = self.liveness
        while True:
            if self._pending_loss is not None:
                reason, clean = self._pending_loss
                self._pending_loss = None
                self._lost(reason, clean)
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                return DEADLINE
            wire = self.wire
            if wire is None:
                event = self._connecting(now, deadline, watch)
                if event is not None:
                    return event
                continue
            missing = self._missing_ack(now)
            if missing is not None:
                return missing
            if now >= self._last_heard + liveness.ping_timeout:
                self._lost(f"no frame and no pong for {liveness.ping_timeout:g}s")
                continue
            if wire.stalled_since is not None and now >= wire.stalled_since + liveness.ping_timeout:
                self._lost(f"the server has not read what mkstream sent for {liveness.ping_timeout:g}s "
                           f"({wire.queued} bytes waiting)")
                continue
            if now >= self._next_ping:
                self._ping(wire, now)
            event = self._wait_on_socket(wire, deadline, watch)
            if event is not None:
                return event

    def _connecting(self, now: float, deadline: float | None, watch: Sequence[int]) -> Event | None:
        """Start, wait for or advance a connection attempt; an event when there is one to report."""
        attempt = self._attempt
        if attempt is None:
            if self._retry_at is not None and now < self._retry_at:
                wake = self._retry_at if deadline is None else min(self._retry_at, deadline)
                waiting, _, _ = select.select(watch, [], [], wake - now)
                return Readable(waiting[0]) if waiting else None
            attempt = self._start_attempt(now)
        elif now >= attempt.deadline:
            self._attempt = None
            attempt.cancel()
            self._failed(self._timed_out(attempt), fatal_first=False)
            return None
        ready: list[int] = []
        if attempt.wait is not None:
            fd, for_write = attempt.wait
            wake = attempt.deadline if deadline is None else min(attempt.deadline, deadline)
            readable, writable, _ = select.select([fd, *watch] if not for_write else watch,
                                                  [fd] if for_write else [], [], max(0.0, wake - now))
            ready = [r for r in readable if r != fd]
            if fd not in readable and fd not in writable:
                return Readable(ready[0]) if ready else None
        event = self._advance(attempt)
        if event is None and ready:
            return Readable(ready[0])
        return event

    def _start_attempt(self, now: float) -> Attempt[Wire]:
        self._debug(f"connecting to {self.target.display_url()}")
        self._state("connecting", None)
        self._attempt = Attempt(self._dial, now + self.liveness.connect_timeout)
        return self._attempt

    def _advance(self, attempt: Attempt[Wire]) -> Event | None:
        try:
            wire = attempt.advance()
        except Refused as refused:
            self._attempt = None
            self._refused(refused.status)
            return None
        except (Failed, Ended, OSError, ValueError) as exc:
            self._attempt = None
            self._failed(*self._explain(attempt, exc))
            return None
        if wire is None:
            return None
        self._attempt = None
        first = not self.ever_connected
        self._connected(wire)
        if first:
            # Backfill treats it as a reconnect: what a resume, or the retries, left out is fetched.
            asked_at, asked_epoch = self._asked or (time.monotonic(), time.time())
            return Connected(asked_epoch, time.monotonic() - asked_at, self._first_failures)
        if self._down is not None:
            lost_at, epoch, cause = self._down
            self._down = None
            self.counters.reconnects += 1  # counted once it happened, not when the socket was lost
            return Reconnected(epoch, time.monotonic() - lost_at, cause, tuple(self.captures))
        return None

    def _wait_on_socket(self, wire: Wire, deadline: float | None, watch: Sequence[int]) -> Event | None:
        timeout = self.liveness.ping_timeout
        wake = min(self._next_ping, self._last_heard + timeout)
        if wire.stalled_since is not None:
            wake = min(wake, wire.stalled_since + timeout)
        if self.pending_acks:
            wake = min(wake, min(self.pending_acks.values()))
        if deadline is not None:
            wake = min(wake, deadline)
        if not wire.readable_now:
            readable, writable, _ = select.select([wire.fd, *watch], [wire.fd] if wire.wants_write else [], [],
                                                  max(0.0, wake - time.monotonic()))
            if writable:
                self._flush(wire)
            if wire.fd not in readable:
                return Readable(readable[0]) if readable else None
        frames = self._read(wire)
        return Frames(frames) if frames else None

    def _read(self, wire: Wire) -> list[Received]:
        """One ``recv``: every whole message it completes. Control frames and own acks are handled here."""
        try:
            chunk = wire.receive()
        except (OSError, ValueError) as exc:
            self._lost(self.redact(describe_network_error(exc)))
            return []
        if chunk is None:
            return []
        if not chunk:
            self._lost("the server closed the connection without a close frame")
            return []
        self._last_heard = time.monotonic()
        wire.blocked_on_read = False
        broken = None
        try:
            messages = wire.parser.feed(chunk)
        except wsframes.FramingError as exc:
            # What came intact before the error is delivered; the socket is replaced next.
            messages, broken = exc.messages, f"broken WebSocket framing ({exc})"
        frames = self._deliver(wire, messages)
        if broken is not None and self._pending_loss is None:
            self._pending_loss = (broken, False)
        if wire.wants_write:
            self._flush(wire)
        return frames

    def _deliver(self, wire: Wire, messages: list[tuple[int, bytes]]) -> list[Received]:
        at = time.time()
        frames = []
        for opcode, payload in messages:
            if opcode == wsframes.OP_TEXT:
                if not (len(payload) < 512 and b'"connected"' in payload and self._own_ack(payload)):
                    frames.append(Received(payload, False, at))
            elif opcode == wsframes.OP_BINARY:
                frames.append(Received(payload, True, at))
            elif opcode == wsframes.OP_PING:
                wire.ping = payload  # answered by the next flush: one pong for any number of pings
            elif opcode == wsframes.OP_CLOSE:
                code, reason = wsframes.close_status(payload)
                self._answer_close(wire, code)
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
            cid = protocol.ack_id(jsoncodec.loads(payload)[0])
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

    def _dial(self, attempt: Attempt[Wire]) -> Generator[Wait, None, Wire]:
        """One connection attempt, step by step; each ``yield`` waits for a socket (see ``Attempt``)."""
        target = self.target
        secure = target.endpoint.scheme == "wss"
        url = urlsplit(target.url())
        host = url.hostname or ""
        port = url.port or (443 if secure else 80)
        proxy = target.proxy
        if proxy is not None:
            attempt.proxy = host_port(proxy.host, proxy.port)
            self._debug(f"through the proxy {attempt.proxy}")
        sock: socket.socket | None = None
        try:
            if proxy is not None and proxy.kind != "http":
                attempt.phase = "tunnelling"
                socks = InThread(lambda: socks_connect(proxy, host, port, self.liveness.connect_timeout))
                try:
                    while not socks.done:
                        yield socks.fd, False
                    sock = socks.result()
                finally:
                    socks.close()
                sock.setblocking(False)
            else:
                addresses = yield from resolve(proxy.host if proxy else host, proxy.port if proxy else port)
                attempt.phase = "connecting"
                sock = yield from tcp_connect(addresses)
                if proxy is not None:
                    attempt.phase = "tunnelling"
                    yield from tunnel(sock, host, port, proxy)
            if secure:
                attempt.phase = "tls"
                context = tls_context(target.ca_file, target.insecure)
                sock = context.wrap_socket(sock, server_hostname=host, do_handshake_on_connect=False)
                yield from tls_handshake(sock)
            attempt.phase = "upgrading"
            key = base64.b64encode(os.urandom(16)).decode("ascii")
            origin = f"{'https' if secure else 'http'}://{target.endpoint.netloc}"
            resource = url.path + (f"?{url.query}" if url.query else "")
            yield from send_all(sock, wsframes.upgrade_request(resource, target.endpoint.netloc, origin, key,
                                                                target.headers()))
            head, rest = yield from read_head(sock, "the server's handshake response", exact=False)
            self._check_answer(head, key)
            wire = Wire(sock, rest)
            sock = None
            return wire
        finally:
            if sock is not None:
                sock.close()

    def _check_answer(self, head: wsframes.ResponseHead, key: str) -> None:
        """Accept a 101 that completes the upgrade; name a redirect's target; hand other statuses on."""
        if head.status == 101:
            try:
                wsframes.check_upgrade(head, key)
            except wsframes.HandshakeError as exc:
                raise Failed(f"bad handshake: {exc}", permanent=True) from None
            return
        if head.status in wsframes.REDIRECTS:
            # Never followed: the token would go along to wherever the server says.
            location = head.headers.get("location")
            if not location:
                raise Failed(f"the server answered HTTP {head.status} (a redirect) without a Location", permanent=True)
            try:
                where = wsframes.redirect_target(location, self.target.endpoint.url)
            except ValueError:
                raise Failed(f"the server answered HTTP {head.status} (a redirect) to a Location that is no URL: "
                             f"{escape_controls(location[:200])}", permanent=True) from None
            raise Failed(f"the server redirects to {where}: use --host {where} if you trust it", permanent=True)
        raise Refused(head.status)

    def _plain_hint(self) -> str:
        endpoint = self.target.endpoint
        path = "" if endpoint.path == "/streaming" else endpoint.path
        return f" (is it a plain http server? try --host http://{endpoint.netloc}{path})"

    def _explain(self, attempt: Attempt[Wire], exc: BaseException) -> tuple[str, bool]:
        """What a failed attempt's error means where it happened: the reason, and whether retrying is futile."""
        phase, proxy = attempt.phase, attempt.proxy
        if isinstance(exc, Failed):
            return exc.reason, exc.permanent
        if proxy and phase in ("resolving", "connecting"):
            return proxy_unreachable(proxy, exc), isinstance(exc, socket.gaierror)
        if phase == "resolving" and isinstance(exc, socket.gaierror):
            return "unknown host (DNS lookup failed)", True
        if phase == "tunnelling":
            return f"proxy {proxy}: {describe_network_error(exc)}", False
        if phase == "tls":
            if isinstance(exc, ssl.SSLCertVerificationError):
                return describe_network_error(exc), True
            if isinstance(exc, ssl.SSLError):
                reason = f"TLS error: {exc.reason or exc}"
            elif isinstance(exc, (Ended, ConnectionResetError, BrokenPipeError)):
                reason = "TLS error: the server closed the connection in the TLS handshake"
            else:
                reason = describe_network_error(exc)
            return f"{reason}{self._plain_hint()}", isinstance(exc, ssl.SSLError)
        if isinstance(exc, Ended):
            return "the server closed the connection during the WebSocket handshake", False
        return describe_network_error(exc), isinstance(exc, socket.gaierror)

    def _timed_out(self, attempt: Attempt[Wire]) -> str:
        proxy = attempt.proxy
        doing = {
            "resolving": f"looking up proxy host {proxy}" if proxy else "looking up the host",
            "connecting": f"connecting to proxy {proxy}" if proxy else "connecting",
            "tunnelling": f"waiting for proxy {proxy} to open the tunnel",
            "tls": "in the TLS handshake",
            "upgrading": "waiting for the server to answer the WebSocket handshake",
        }[attempt.phase]
        hint = self._plain_hint() if attempt.phase == "tls" else ""
        return f"timed out {doing} ({self.liveness.connect_timeout:g}s, --connect-timeout){hint}"

    def _connected(self, wire: Wire) -> None:
        self.wire = wire
        now = time.monotonic()
        self._up_since = now
        self._last_heard = now
        self._next_ping = now + self.liveness.ping_interval
        self._retry_at = None
        self._debug(f"{'reconnected' if self.ever_connected else 'connected'} to {self.target.display_url()}")
        self._state("connected", None)
        self.ever_connected = True
        for conn in self.connections.values():
            self._send_connect(conn)
        for note_id in self.captures:
            self._send(protocol.sub_note_frame(note_id))
        held, self._held, self._held_bytes = self._held, [], 0
        for text in held:
            self._send(text)

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
        reason = self.redact(reason)
        first = not self.ever_connected
        self._first_failures += first
        error = ConnectFailed if first else ConnectionLost
        where = self.target.display_url()
        if first and (fatal_first or not self.reconnect.retry_first_connect):
            raise error(f"could not connect to {where}: {reason}")
        delay = self.backoff.failed()
        if delay is None:
            spent = f" after {self.reconnect.max_retries} retries" if self.reconnect.enabled else ""
            raise error(f"could not connect to {where}{spent}: {reason}")
        self._retry_at = time.monotonic() + delay
        self._state("retrying", delay)
        self._info(f"could not connect to {where}: {reason}; retrying in {delay:.1f}s")

    def _lost(self, reason: str, clean: bool = False) -> None:
        """The live socket died: drop it and schedule the reconnect (or give up)."""
        wire = self.wire
        self.wire = None
        self.pending_acks.clear()
        now = time.monotonic()
        lived = now - self._up_since
        self.counters.connected_seconds += lived
        if wire is not None:
            wire.close()
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
        self._state("reconnecting", delay)
        self._info(f"connection lost: {reason}; reconnecting in {delay:.1f}s")

    # ----- sending ----------------------------------------------------------------------------

    def _send_connect(self, conn: Connection) -> None:
        self.pending_acks[conn.id] = time.monotonic() + self.liveness.ack_timeout
        self._send(protocol.connect_frame(conn.channel, conn.id, conn.params or None, pong=True))

    def _send(self, text: str) -> None:
        assert self.wire is not None
        self._queue(self.wire, _ABNF.OPCODE_TEXT, text)

    def _ping(self, wire: Wire, now: float) -> None:
        self._next_ping = now + self.liveness.ping_interval
        self._queue(wire, _ABNF.OPCODE_PING, b"")

    def _answer_close(self, wire: Wire, code: int) -> None:
        # 1005/1006/1015 describe a close; they may not be sent in one (RFC 6455 7.4.1).
        if code in (1005, 1006, 1015):
            code = websocket.STATUS_NORMAL
        self._queue(wire, _ABNF.OPCODE_CLOSE, code.to_bytes(2, "big"))

    def _queue(self, wire: Wire, opcode: int, payload: str | bytes) -> None:
        """Queue a frame and write what the socket takes now; never waits."""
        if wire.queued > MAX_QUEUED:
            if self._pending_loss is None:
                self._pending_loss = (f"more than {MAX_QUEUED >> 20} MB are waiting to be sent: "
                                      "the server is not reading", False)
            return
        wire.put(_ABNF.create_frame(payload, opcode).format(), time.monotonic())
        self._flush(wire)

    def _flush(self, wire: Wire) -> None:
        """Write what the socket takes; a broken socket is handled by the loop, like a close frame."""
        try:
            wire.flush(time.monotonic())
        except OSError as exc:
            if self._pending_loss is None:
                self._pending_loss = (self.redact(describe_network_error(exc)), False)

    # ----- leaving ----------------------------------------------------------------------------

    def close(self) -> None:
        """Leave cleanly: disconnect every channel, release every capture, close with 1000 (bounded)."""
        self._abandon_attempt()
        wire = self.wire
        self.wire = None
        if wire is None:
            return
        self.counters.connected_seconds += time.monotonic() - self._up_since
        try:
            now = time.monotonic()
            for cid in self.connections:
                wire.put(_ABNF.create_frame(protocol.disconnect_frame(cid), _ABNF.OPCODE_TEXT).format(), now)
            for note_id in self.captures:
                wire.put(_ABNF.create_frame(protocol.unsub_note_frame(note_id), _ABNF.OPCODE_TEXT).format(), now)
            close = websocket.STATUS_NORMAL.to_bytes(2, "big")
            wire.put(_ABNF.create_frame(close, _ABNF.OPCODE_CLOSE).format(), now)
            # After a loss seen but not yet handled (the server's close frame, broken framing) there is
            # no answer to wait for.
            self._goodbye(wire, now + GOODBYE_TIMEOUT, await_answer=self._pending_loss is None)
        except (OSError, ValueError):
            pass
        finally:
            wire.close()

    @staticmethod
    def _goodbye(wire: Wire, deadline: float, await_answer: bool) -> None:
        """Write the queue, then read until the server answers the close; frames still arriving are dropped."""
        answered = not await_answer
        while True:
            wire.flush(time.monotonic())
            if answered and not wire.queue:
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            if not wire.readable_now:
                readable, _, _ = select.select([wire.fd], [wire.fd] if wire.wants_write else [], [], remaining)
                if not readable:
                    continue
            chunk = wire.receive()
            if chunk == b"":
                return
            if chunk:
                wire.blocked_on_read = False
                answered = answered or any(op == wsframes.OP_CLOSE for op, _ in wire.parser.feed(chunk))

    def _abandon_attempt(self) -> None:
        attempt, self._attempt = self._attempt, None
        if attempt is not None:
            attempt.cancel()

    def abort(self) -> None:
        self._abandon_attempt()
        wire, self.wire = self.wire, None
        if wire is not None:
            wire.close()


class ServerClosed(MkstreamError):
    """The server closed the socket with a close frame and reconnecting is off: a normal end."""

