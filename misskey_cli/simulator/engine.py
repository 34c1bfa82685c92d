"""The simulator's server: one asyncio loop in a thread running a ``websockets`` server.

Owns everything that touches the ``websockets`` library, which is imported here and nowhere else
in the package, lazily, when a server starts (internals included: the sans-I/O protocol for
writing frames without waiting, ``process_event`` for seeing pongs and close frames, and a
``ServerConnection`` subclass that reads each request head before websockets does, so that the
HTTP API's requests go to ``answer_http`` instead). It keeps the sockets and their channel
connections, applies the pure rules of ``rules.py`` to handshakes, connects and notes, sends
frames, pings and terminates silent sockets, and records what clients sent for the observers.

Thread model: state lives on the loop; ``_call`` runs a function there from any thread and
returns its result; observers read under ``_cond``, which every change notifies.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import logging
import ssl
import threading
import time
import weakref
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Self, TypeVar

from misskey_cli.core.protocol import BadFrame, encode, parse_client_frame
from misskey_cli.simulator import httpwire, rules
from misskey_cli.simulator.corpus import User
from misskey_cli.simulator.history import NoteHistory, NotificationHistory
from misskey_cli.simulator.rules import (
    DEFAULT_MODERATORS,
    DEFAULT_SUSPENDED_TOKENS,
    DEFAULT_TOKENS,
    NOTE_CHANNELS,
    Targets,
    Viewer,
)
from misskey_cli.simulator.traffic import Traffic

if TYPE_CHECKING:
    from websockets.asyncio.server import Server, ServerConnection
    from websockets.http11 import Request, Response

CLOSE_TIMEOUT = 5.0
STATS_LOG_MAX = 150

T = TypeVar("T")


@dataclass
class Connection:
    channel: str
    id: str
    params: dict[str, Any]
    seq: int
    inert: bool  # acknowledged, delivers nothing (like the real server in those cases)


@dataclass
class Socket:
    index: int
    conn: ServerConnection
    user: User | None
    moderator: bool
    last_pong: float
    connections: dict[str, Connection] = field(default_factory=dict)
    captures: dict[str, int] = field(default_factory=dict)
    frozen: bool = False
    open: bool = True  # until the socket has ended and every frame the client sent before is recorded
    server_closed: bool = False  # the server sent a close frame
    closing: bool = False  # the client's close frame arrived (frames queued before it may be unrecorded)
    permissions: frozenset[str] | None = None  # the app token's grant; None: a native token, or anonymous
    close_info: tuple[int, str] | None = None
    handler_started: bool = False
    drained: bool = False  # the handler has recorded every message and ended

    @property
    def live(self) -> bool:
        """Can still receive traffic: what the wait_for_* helpers and observations count."""
        return self.open and not self.closing and not self.server_closed and not self.frozen


@dataclass
class _Pending:
    record: dict[str, Any]
    user: User | None
    permissions: frozenset[str] | None = None  # an app token's grant; None: a native token (or none)


def _quiet_logger() -> logging.Logger:
    logger = logging.getLogger("misskey_cli.simulator.websockets")
    logger.propagate = False
    logger.setLevel(logging.CRITICAL + 1)
    if not logger.handlers:
        logger.addHandler(logging.NullHandler())
    return logger


def encode_any(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def channel_frame(connection_id: str, event: str, body_json: str) -> str:
    """``{"type":"channel","body":{"id":..,"type":..,"body":..}}`` around an already encoded body."""
    return ('{"type":"channel","body":{"id":' + encode_any(connection_id) + ',"type":' + encode_any(event)
            + ',"body":' + body_json + "}}")


class Engine:
    """The server, its sockets and the sending primitives the activity and the knobs build on."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        rate: float = 0.0,
        ticks: bool = False,
        tokens: dict[str, str] | None = None,
        suspended_tokens: Iterable[str] = DEFAULT_SUSPENDED_TOKENS,
        ping_interval: float | None = 60.0,
        ping_timeout: float = 120.0,
        seed: int | None = None,
        moderators: Iterable[str] = DEFAULT_MODERATORS,
        ssl_context: ssl.SSLContext | None = None,
        history_size: int = 10_000,
    ) -> None:
        self.host = host
        self.ssl_context = ssl_context
        self._port = port
        self.rate = rate
        self.ticks = ticks
        self.tokens = dict(DEFAULT_TOKENS if tokens is None else tokens)
        self.app_permissions: dict[str, frozenset[str]] = {}  # app (MiAuth) tokens -> what they were granted
        self.suspended_tokens = frozenset(suspended_tokens)
        self.moderators = frozenset(moderators)
        self._ping_interval = ping_interval
        self._ping_timeout = ping_timeout
        self.seed = seed
        self.traffic = Traffic(seed)
        self.history = NoteHistory(history_size)
        self.notifications = NotificationHistory(history_size)
        self.initial_history = 0  # notes of the past a first start puts in the history (the activity layer's job)

        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None
        self._wake_generator: asyncio.Event | None = None
        self._wake_pinger: asyncio.Event | None = None
        self._start_error: BaseException | None = None

        self._sockets: list[Socket] = []  # every socket since construction, in handshake order
        self._by_conn: dict[Any, Socket] = {}
        self._pending: weakref.WeakKeyDictionary[Any, _Pending] = weakref.WeakKeyDictionary()
        self._frames: list[tuple[int, dict[str, Any]]] = []
        self._handshakes: list[dict[str, Any]] = []
        self._closed: list[tuple[int, str] | None] = []
        self._refuse_remaining = 0
        self._refuse_status = 503
        self._refused = 0  # handshakes refused through refuse_next, for tests to wait on
        self._seq = 0
        self._pongs = 0
        self.errors: list[str] = []  # exceptions inside the server (should stay empty)
        self._stats_log: dict[str, list[dict[str, Any]]] = {
            "serverStats": [self.traffic.server_stats() for _ in range(10)],
            "queueStats": [self.traffic.queue_stats() for _ in range(10)],
        }

    # -- lifecycle ----------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._port

    @property
    def host_port(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self._port}"

    @property
    def url(self) -> str:
        return f"{'wss' if self.ssl_context else 'ws'}://{self.host_port}/streaming"

    @property
    def http_url(self) -> str:
        """The HTTP API's base URL (same host and port as the socket)."""
        return f"{'https' if self.ssl_context else 'http'}://{self.host_port}"

    def start(self) -> Self:
        """Listen (on the same port as before after a stop) and return once ready."""
        if self._thread is not None:
            raise RuntimeError("simulator already running")
        ready = threading.Event()
        self._start_error = None
        self._thread = threading.Thread(target=self._run, args=(ready,), name="mkstream-simulator", daemon=True)
        self._thread.start()
        ready.wait()
        if self._start_error is not None:
            self._thread.join()
            self._thread = None
            raise self._start_error
        return self

    def stop(self) -> None:
        """Drop every socket (no close frame, like a server shutdown), stop listening, join the thread."""
        thread, loop, stop_event = self._thread, self._loop, self._stop_event
        if thread is None:
            return
        if loop is not None and stop_event is not None:
            with contextlib.suppress(RuntimeError):  # the loop already ended
                loop.call_soon_threadsafe(stop_event.set)
        thread.join()
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        loop.set_exception_handler(self._on_loop_exception)
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._main(ready))
        except BaseException as exc:  # noqa: BLE001 - reported to start() or recorded
            if not ready.is_set():
                self._start_error = exc
            else:
                self._record_error(exc)
        finally:
            pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            with self._cond:
                self._loop = None
                for sock in self._sockets:
                    if sock.open:
                        self._mark_closed(sock, None)
                self._cond.notify_all()
            loop.close()
            ready.set()

    async def _main(self, ready: threading.Event) -> None:
        from websockets.asyncio.server import serve

        self._stop_event = asyncio.Event()
        self._wake_generator = asyncio.Event()
        self._wake_pinger = asyncio.Event()
        server: Server = await serve(
            self._handler,
            self.host,
            self._port,
            create_connection=_dispatching_connection(self._answer_http_request),
            process_request=self._process_request,
            process_response=self._process_response,
            server_header=None,
            compression=None,  # Misskey's ws server does not negotiate permessage-deflate
            ping_interval=None,  # our own keepalive, like Misskey's (see _keepalive)
            max_size=None,
            max_queue=None,
            write_limit=2 ** 20,
            open_timeout=10,
            logger=_quiet_logger(),
            ssl=self.ssl_context,
        )
        self._port = server.sockets[0].getsockname()[1]
        self.traffic.base_url = f"http://{self.host_port}"
        self._loop = asyncio.get_running_loop()
        self._listening()
        background = [asyncio.create_task(coro) for coro in self._background()]
        ready.set()
        try:
            await self._stop_event.wait()
        finally:
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            for sock in list(self._sockets):
                if sock.open or not sock.conn.transport.is_closing():
                    self._abort(sock)
            server.close(close_connections=False)
            with contextlib.suppress(Exception):  # shutting down anyway
                await asyncio.wait_for(server.wait_closed(), 3.0)

    def _listening(self) -> None:
        """Called on the loop once the port (and so the base URL) is known, before ``start`` returns."""

    def _background(self) -> list[Coroutine[Any, Any, None]]:
        """The loop's background tasks; the activity layer adds its own."""
        return [self._keepalive()]

    def _on_loop_exception(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if isinstance(exc, (ConnectionError, asyncio.CancelledError)):
            return
        self._record_error(exc or context.get("message"))

    def _record_error(self, exc: object) -> None:
        with self._cond:
            self.errors.append(repr(exc))

    def _call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the server's loop and return its result."""
        loop = self._loop
        if loop is None:
            raise RuntimeError("simulator is not running (call start())")
        if threading.current_thread() is self._thread:
            return fn()
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            try:
                future.set_result(fn())
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                future.set_exception(exc)

        loop.call_soon_threadsafe(run)
        return future.result(timeout=60)

    # -- HTTP ---------------------------------------------------------------------------------

    def _answer_http_request(self, request: httpwire.HttpRequest) -> bytes:
        try:
            response = self.answer_http(request)
        except Exception as exc:  # noqa: BLE001 - a bug here answers 500 rather than hanging the client
            self._record_error(exc)
            response = httpwire.plain(500, "Internal Server Error")
        return httpwire.render(response, self.http_now())

    def answer_http(self, request: httpwire.HttpRequest) -> httpwire.HttpResponse:
        """The HTTP API (the API layer overrides this); runs on the loop."""
        return httpwire.plain(404, "Not Found")

    def http_now(self) -> float:
        """The time the HTTP ``Date`` header shows (the API layer adds a clock offset)."""
        return time.time()

    # -- handshake ----------------------------------------------------------------------------

    def _process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        from urllib.parse import parse_qsl, urlsplit

        headers: dict[str, str] = {}
        for name, value in request.headers.raw_items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        split = urlsplit(request.path)
        query: dict[str, str] = {}
        for key, value in parse_qsl(split.query, keep_blank_values=True):
            query.setdefault(key, value)  # URLSearchParams.get returns the first
        record: dict[str, Any] = {"path": split.path, "query": query, "headers": headers, "status": 0}
        pending = _Pending(record, None)
        self._pending[conn] = pending
        if self._refuse_remaining > 0:
            self._refuse_remaining -= 1
            with self._cond:
                self._refused += 1
                self._cond.notify_all()
            refused = rules.HandshakeDecision(self._refuse_status)
            return _bare_response(self._refuse_status, refused.headers)
        decision = rules.admit_handshake(headers, query, self.tokens, self.suspended_tokens, self.app_permissions)
        if decision.status is not None:
            return _bare_response(decision.status, decision.headers)
        if decision.username is not None:
            pending.user = self.traffic.account(decision.username)
            pending.permissions = decision.permissions
        return None

    def _process_response(self, conn: ServerConnection, request: Request, response: Response) -> None:
        pending = self._pending.pop(conn, None) or _Pending({"path": request.path, "query": {}, "headers": {}}, None)
        pending.record["status"] = response.status_code
        if response.status_code == 101:
            # Misskey's 101 carries only Upgrade, Connection and Sec-WebSocket-Accept.
            if "Date" in response.headers:
                del response.headers["Date"]
            self._register(conn, pending.user, pending.permissions)
        with self._cond:
            self._handshakes.append(pending.record)
            self._cond.notify_all()

    def _register(self, conn: ServerConnection, user: User | None, permissions: frozenset[str] | None) -> None:
        """Record a socket before its 101 goes out, so a client that saw the 101 finds it here."""
        from websockets.frames import Opcode

        loop = asyncio.get_running_loop()
        with self._cond:
            sock = Socket(len(self._sockets), conn, user, user is not None and user.username in self.moderators,
                          loop.time(), permissions=permissions)
            self._sockets.append(sock)
            self._by_conn[conn] = sock
            self._cond.notify_all()
        original = conn.process_event

        def process_event(event: Any) -> None:
            if getattr(event, "opcode", None) is Opcode.CLOSE:
                self._on_close_frame(sock, event.data)
            elif getattr(event, "opcode", None) is Opcode.PONG:
                sock.last_pong = loop.time()  # any pong counts, as in Misskey (ws 'pong' event)
                with self._cond:
                    self._pongs += 1
                    self._cond.notify_all()
            original(event)

        conn.process_event = process_event  # type: ignore[method-assign]
        conn.connection_lost_waiter.add_done_callback(lambda _: self._on_lost(sock))

    def _on_close_frame(self, sock: Socket, data: bytes) -> None:
        """The client's close frame (or its answer to ours) ends the socket for observers at once."""
        from websockets.frames import Close

        try:
            received = Close.parse(data)
        except Exception:  # noqa: BLE001 - a malformed close frame: websockets fails the connection
            return
        sent = sock.conn.protocol.close_sent
        frame = sent if sock.server_closed and sent is not None else received
        with self._cond:
            sock.closing = True
            sock.close_info = (int(frame.code), frame.reason)
            # Observers see the socket closed once the messages sent before the close are recorded.
            if sock.drained or not sock.handler_started:
                self._mark_closed(sock, sock.close_info)
            self._cond.notify_all()

    def _abort(self, sock: Socket) -> None:
        """Drop the TCP connection, no close frame; observers see the socket closed at once."""
        sock.conn.transport.abort()
        with self._cond:
            self._mark_closed(sock, None)
            self._cond.notify_all()

    def _on_lost(self, sock: Socket) -> None:
        protocol = sock.conn.protocol
        received, sent = protocol.close_rcvd, protocol.close_sent
        info: tuple[int, str] | None = None
        if received is not None:
            frame = sent if sock.server_closed and sent is not None else received
            info = (int(frame.code), frame.reason)
        with self._cond:
            if sock.close_info is None:
                sock.close_info = info
            if sock.drained or not sock.handler_started:
                self._mark_closed(sock, sock.close_info)
            self._cond.notify_all()
        self._by_conn.pop(sock.conn, None)

    def _mark_closed(self, sock: Socket, info: tuple[int, str] | None) -> None:
        if sock.open:
            sock.open = False
            self._closed.append(info)

    # -- receiving ----------------------------------------------------------------------------

    async def _handler(self, conn: ServerConnection) -> None:
        from websockets.exceptions import ConnectionClosed

        sock = self._by_conn.get(conn)
        if sock is None:
            return
        sock.handler_started = True
        try:
            while True:
                message = await conn.recv()
                try:
                    self._on_message(sock, message)
                except Exception as exc:  # noqa: BLE001 - a bug here must not kill the socket
                    self._record_error(exc)
        except ConnectionClosed:
            pass
        finally:
            with self._cond:
                sock.drained = True
                if sock.closing or not conn.transport or conn.transport.is_closing():
                    self._mark_closed(sock, sock.close_info)
                self._cond.notify_all()

    def _record_frame(self, sock: Socket, message: str | bytes) -> None:
        if isinstance(message, bytes):
            recorded: dict[str, Any] = {"_binary": message}
        else:
            try:
                parsed = json.loads(message)
            except ValueError:
                parsed = None
            recorded = parsed if isinstance(parsed, dict) else {"_raw": message}
        with self._cond:
            self._frames.append((sock.index, recorded))
            self._cond.notify_all()

    def _on_message(self, sock: Socket, message: str | bytes) -> None:
        self._record_frame(sock, message)
        if isinstance(message, bytes):
            return
        try:
            frame = parse_client_frame(message)
        except BadFrame:
            return  # the server never answers bad input
        if frame.type == "readNotification":
            self._read_notification(sock)
        handler = self._FRAME_HANDLERS.get(frame.type)
        if handler is not None and isinstance(frame.body, dict):
            handler(self, sock, frame.body)

    def _connect(self, sock: Socket, body: dict[str, Any]) -> None:
        existing = [(c.channel, c.id) for c in sock.connections.values()]
        admission = rules.admit_connect(body, existing, sock.user is not None, sock.moderator, sock.permissions)
        if admission is None:
            return
        with self._cond:
            self._seq += 1
            sock.connections.pop(admission.id, None)
            sock.connections[admission.id] = Connection(admission.channel, admission.id, admission.params,
                                                        self._seq, admission.inert)
            self._cond.notify_all()
        if admission.ack:
            self._send(sock, encode({"type": "connected", "body": {"id": admission.id}}))
        if admission.channel in NOTE_CHANNELS and not admission.inert and self._wake_generator is not None:
            self._wake_generator.set()

    def _disconnect(self, sock: Socket, body: dict[str, Any]) -> None:
        connection_id = body.get("id")
        if isinstance(connection_id, str) and connection_id in sock.connections:
            with self._cond:
                del sock.connections[connection_id]
                self._cond.notify_all()

    def _sub_note(self, sock: Socket, body: dict[str, Any]) -> None:
        note_id = body.get("id")
        if isinstance(note_id, str):
            with self._cond:
                sock.captures[note_id] = sock.captures.get(note_id, 0) + 1
                self._cond.notify_all()

    def _unsub_note(self, sock: Socket, body: dict[str, Any]) -> None:
        note_id = body.get("id")
        if isinstance(note_id, str) and note_id in sock.captures:
            with self._cond:
                sock.captures[note_id] -= 1
                if sock.captures[note_id] <= 0:
                    del sock.captures[note_id]
                self._cond.notify_all()

    def _channel_message(self, sock: Socket, body: dict[str, Any]) -> None:
        connection_id, kind = body.get("id"), body.get("type")
        if not isinstance(connection_id, str) or not isinstance(kind, str) or "body" not in body:
            return
        connection = sock.connections.get(connection_id)
        if connection is None or connection.inert:
            return
        if connection.channel in ("serverStats", "queueStats") and kind == "requestLog":
            entries = rules.stats_log_slice(self._stats_log[connection.channel], body["body"])
            if entries is not None:
                self._send(sock, channel_frame(connection_id, "statsLog", encode_any(entries)))

    _FRAME_HANDLERS: ClassVar[dict[str, Callable[[Engine, Socket, dict[str, Any]], None]]] = {
        "connect": _connect,
        "disconnect": _disconnect,
        "channel": _channel_message,
        "subNote": _sub_note,
        "unsubNote": _unsub_note,
    }

    def _read_notification(self, sock: Socket) -> None:
        # The side effect docs/protocol.md §3.1 warns about: the user's main channels hear readAllNotifications.
        if sock.user is None:
            return
        self._main_event(sock.user.id, "readAllNotifications", None)

    # -- sending ------------------------------------------------------------------------------

    def _open_sockets(self) -> list[Socket]:
        return [s for s in self._sockets if s.open]

    def _writable(self, sock: Socket) -> bool:
        from websockets.protocol import State

        conn = sock.conn
        return sock.open and not sock.frozen and conn.protocol.state is State.OPEN and not conn.transport.is_closing()

    def _send(self, sock: Socket, data: str | bytes, binary: bool = False) -> bool:
        """Write one frame to the socket's transport now (no waiting for the peer)."""
        if not self._writable(sock):
            return False
        conn = sock.conn
        payload = data.encode() if isinstance(data, str) else data
        if binary:
            conn.protocol.send_binary(payload)
        else:
            conn.protocol.send_text(payload)
        conn.send_data()
        return True

    def _targets(self, socket: int | None) -> list[Socket]:
        if socket is None:
            return self._open_sockets()
        if not 0 <= socket < len(self._sockets):
            raise IndexError(f"no socket {socket}: {len(self._sockets)} sockets so far")
        return [self._sockets[socket]]

    def viewer(self, user: User | None) -> Viewer:
        """The plain-data viewer the rules take: the user and whom they follow."""
        if user is None:
            return rules.ANONYMOUS
        following = frozenset(u.id for u in self.traffic.authors() if self.traffic.follows(user, u.id))
        return Viewer(user.id, following)

    def _route_note(self, note: dict[str, Any], targets: Targets) -> int:
        """Deliver a note like the server: every accepting connection, plus main mention/reply/renote.

        Every routed note joins the history the HTTP timelines read, whoever is connected.
        """
        self.history.add(note, targets)
        encoded: dict[str, str] = {}
        delivered = 0
        for sock in self._open_sockets():
            if sock.frozen:
                continue
            viewer = self.viewer(sock.user)
            for connection in list(sock.connections.values()):
                if connection.inert or connection.channel not in NOTE_CHANNELS:
                    continue
                if not rules.accepts(connection.channel, connection.params, note, viewer, targets):
                    continue
                key = "antenna" if connection.channel == "antenna" else ""
                if key not in encoded:
                    encoded[key] = encode(rules.stream_body(connection.channel, note))
                if self._send(sock, channel_frame(connection.id, "note", encoded[key])):
                    delivered += 1
            for event, payload in rules.main_events_for(note, viewer):
                self._send_main(sock, event, payload)
        return delivered

    def _send_main(self, sock: Socket, event: str, payload: Any) -> int:
        sent = 0
        body_json = encode_any(payload)
        for connection in list(sock.connections.values()):
            if connection.channel == "main" and not connection.inert:
                sent += self._send(sock, channel_frame(connection.id, event, body_json))
        return sent

    def _main_event(self, user_id: str, event: str, payload: Any) -> int:
        """An event on the user's main connections; a ``notification`` also joins their history."""
        if event == "notification" and isinstance(payload, dict):
            self.notifications.add(user_id, payload)
        return sum(self._send_main(s, event, payload) for s in self._open_sockets()
                   if s.user is not None and s.user.id == user_id)

    def _channel_event(self, channel: str, event: str, body: Any) -> int:
        body_json = encode_any(body)
        sent = 0
        for sock in self._open_sockets():
            for connection in list(sock.connections.values()):
                if connection.channel == channel and not connection.inert:
                    sent += self._send(sock, channel_frame(connection.id, event, body_json))
        return sent

    def _note_updated(self, note_id: str, event: str, body: Any) -> int:
        frame = encode({"type": "noteUpdated", "body": {"id": note_id, "type": event, "body": body}})
        return sum(self._send(s, frame) for s in self._open_sockets() if note_id in s.captures)

    def _broadcast(self, kind: str, body: Any) -> int:
        frame = encode({"type": kind, "body": body})
        return sum(self._send(s, frame) for s in self._open_sockets())

    # -- keepalive and the ways a socket ends --------------------------------------------------

    async def _keepalive(self) -> None:
        """Ping every interval; abort (no close frame) sockets whose last pong is too old (docs/protocol.md §2)."""
        assert self._wake_pinger is not None
        loop = asyncio.get_running_loop()
        while True:
            self._wake_pinger.clear()
            try:
                await asyncio.wait_for(self._wake_pinger.wait(), self._ping_interval)
                continue  # settings changed: start a new interval
            except TimeoutError:
                pass
            now = loop.time()
            for sock in self._open_sockets():
                if sock.frozen:
                    continue
                if now - sock.last_pong > self._ping_timeout:
                    self._abort(sock)
                    continue
                if sock.conn.transport.is_closing():
                    continue
                try:
                    sock.conn.protocol.send_ping(b"")
                    sock.conn.send_data()
                except Exception as exc:  # noqa: BLE001 - a dying socket
                    self._record_error(exc)

    def _server_close(self, sock: Socket, code: int, reason: str) -> bool:
        """Send a close frame; drop the socket if the peer has not answered within CLOSE_TIMEOUT."""
        if not self._writable(sock):
            return False
        with self._cond:
            sock.server_closed = True
        sock.conn.protocol.send_close(code, reason)
        sock.conn.send_data()
        asyncio.get_running_loop().create_task(self._close_watchdog(sock))
        return True

    async def _close_watchdog(self, sock: Socket) -> None:
        try:
            await asyncio.wait_for(asyncio.shield(sock.conn.connection_lost_waiter), CLOSE_TIMEOUT)
        except TimeoutError:
            self._abort(sock)

    def _droppable(self) -> list[Socket]:
        return [s for s in self._sockets if s.open or not s.conn.transport.is_closing()]

    def _freeze(self, sock: Socket) -> None:
        """The peer vanishes: nothing read, no pongs, nothing sent."""
        with self._cond:
            sock.frozen = True
        # Incoming bytes are dropped before websockets sees them (so no automatic pong);
        # EOF still closes the transport, so a client giving up is noticed.
        sock.conn.data_received = _discard  # type: ignore[method-assign]
        sock.conn.eof_received = _no_half_open  # type: ignore[method-assign,assignment]


class _HttpFirst:
    """Connection behaviour that reads the request head before websockets sees a byte.

    Mixed into a ``ServerConnection`` subclass (see ``_dispatching_connection``): HTTP API
    requests are read and answered here and the connection closed; any other request's bytes
    go to websockets unchanged, and so does everything after them.
    """

    transport: asyncio.Transport
    _answer: Callable[[httpwire.HttpRequest], bytes]

    def _start_sniffing(self) -> None:
        self._head = bytearray()
        self._mode = "sniff"  # then "ws" (websockets reads everything) or "http" (we do), then "done"
        self._reader = httpwire.RequestReader()

    def _ws_data(self, data: bytes) -> None:
        raise NotImplementedError

    def _ws_eof(self) -> None:
        raise NotImplementedError

    def data_received(self, data: bytes) -> None:
        if self._mode == "ws":
            self._ws_data(data)
        elif self._mode == "http":
            self._http_data(data)
        elif self._mode == "sniff":
            self._sniff(data)

    def _sniff(self, data: bytes) -> None:
        self._head += data
        line = httpwire.request_line(bytes(self._head))
        if line is None and len(self._head) <= httpwire.MAX_HEAD:
            return
        buffered = bytes(self._head)
        self._head.clear()
        if line is not None and httpwire.is_api_request(*line):
            self._mode = "http"
            self._http_data(buffered)
        else:
            self._mode = "ws"
            self._ws_data(buffered)

    def _http_data(self, data: bytes) -> None:
        self._reader.feed(data)
        if not self._reader.done:
            return
        self._mode = "done"
        if self._reader.error is not None:
            reply = httpwire.render(self._reader.error, time.time())
        else:
            assert self._reader.request is not None
            reply = self._answer(self._reader.request)
        self.transport.write(reply)
        self.transport.close()

    def eof_received(self) -> None:
        if self._mode == "sniff" and self._head:
            self._mode = "ws"
            buffered = bytes(self._head)
            self._head.clear()
            self._ws_data(buffered)
        if self._mode in ("http", "done"):
            self.transport.close()
            return
        self._ws_eof()


def _dispatching_connection(answer: Callable[[httpwire.HttpRequest], bytes]) -> type[ServerConnection]:
    """The ServerConnection class the server makes: HTTP API requests are answered by ``answer``."""
    from websockets.asyncio.server import ServerConnection

    class DispatchingConnection(_HttpFirst, ServerConnection):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            ServerConnection.__init__(self, *args, **kwargs)
            self._answer = answer
            self._start_sniffing()

        def _ws_data(self, data: bytes) -> None:
            ServerConnection.data_received(self, data)

        def _ws_eof(self) -> None:
            ServerConnection.eof_received(self)

    return DispatchingConnection


def _bare_response(status: int, headers: list[tuple[str, str]] | None = None) -> Response:
    """An HTTP refusal as Misskey writes it: status line, the given headers, no body."""
    import http

    from websockets.datastructures import Headers
    from websockets.http11 import Response

    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    return Response(status, phrase, Headers(headers or []), b"")


def _discard(data: bytes) -> None:
    return None


def _no_half_open() -> bool:
    return False
