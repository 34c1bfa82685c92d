"""The built-in Misskey-compatible streaming server (SPEC.md section 5, PROTOCOL.md).

Owns the server side: a real WebSocket server (the ``websockets`` library, asyncio) running in a
background thread, with Misskey's handshake rules (401/403 before the upgrade, anonymous
sessions), channel connections with the real refusal rules (32-connection cap, credentials,
shareable channels, silent ignores), note routing with the timelines' filters, note captures,
keepalive pings with termination of silent sockets, generated traffic (from ``traffic.py``),
and the knobs and observations tests need. Only ``protocol.py`` and ``channels.py`` are shared
with the client; ``websockets`` is imported here and nowhere else, lazily, when a server starts.

Every public method is thread-safe. State lives on the server's event loop; the knobs run there
and return once their frames are written to the sockets' transports.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import logging
import ssl
import threading
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Self, TypeVar

from misskey_cli.channels import CATALOGUE, STRING
from misskey_cli.protocol import (
    MAX_CHANNELS_PER_SOCKET,
    BadFrame,
    encode,
    parse_client_frame,
)
from misskey_cli.traffic import (
    NOTE_KINDS,
    NoteRequest,
    Traffic,
    User,
    extract_tags,
    is_pure_renote,
    normalize_tag,
    order_note,
    strip_pair_cache,
)

if TYPE_CHECKING:
    from websockets.asyncio.server import Server, ServerConnection
    from websockets.http11 import Request, Response

DEMO_TOKEN = "demo-token"
DEFAULT_TOKENS: dict[str, str] = {"tok-alice": "alice", "tok-bob": "bob", "tok-admin": "admin", DEMO_TOKEN: "demo"}
DEFAULT_SUSPENDED_TOKENS = ("tok-suspended",)
DEFAULT_MODERATORS = ("admin",)

# The exact header a real server sends with its 401 (tests/fixtures/frames.jsonl, result:handshake_*).
WWW_AUTHENTICATE = 'Bearer realm="Misskey", error="invalid_token", error_description="Failed to authenticate"'

SERVER_STATS_INTERVAL = 2.0
QUEUE_STATS_INTERVAL = 10.0
STATS_LOG_MAX = 150
CLOSE_TIMEOUT = 5.0

_NOTE_CHANNELS = frozenset(name for name, spec in CATALOGUE.items() if "note" in spec.events)

T = TypeVar("T")


# ---------------------------------------------------------------------------------------------
# Pure rules (also used by the tests)

def js_truthy(value: Any) -> bool:
    """JavaScript truthiness, which is how the server reads ``pong`` and boolean params."""
    if value is None or value is False:
        return False
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value != 0
    if isinstance(value, str):
        return value != ""
    return True


def bool_param(params: dict[str, Any], name: str, default: bool) -> bool:
    value = params.get(name)
    return default if value is None else js_truthy(value)


def hashtag_q_valid(q: Any) -> bool:
    """A hashtag ``q`` the server can evaluate: a list of lists of strings."""
    return isinstance(q, list) and all(isinstance(g, list) and all(isinstance(t, str) for t in g) for g in q)


def hashtag_matches(q: list[list[str]], tags: Iterable[str]) -> bool:
    """OR of ANDs, tags compared the way the server normalises them."""
    note_tags = {t.lower() for t in tags}
    return any(all(normalize_tag(tag) in note_tags for tag in group) for group in q)


def _user_id(obj: Any) -> Any:
    return obj.get("userId") if isinstance(obj, dict) else None


def is_local(note: dict[str, Any]) -> bool:
    user = note.get("user")
    return not isinstance(user, dict) or user.get("host") is None


def reply_shown(note: dict[str, Any], viewer_id: str | None, with_replies: bool) -> bool:
    """The timelines' reply filter: a logged-in viewer sees only replies that concern them."""
    reply = note.get("reply")
    if not isinstance(reply, dict) or with_replies or viewer_id is None:
        return True
    author = note.get("userId")
    return reply.get("userId") in (viewer_id, author) or author == viewer_id


def passes_note_filters(note: dict[str, Any], params: dict[str, Any]) -> bool:
    if not bool_param(params, "withRenotes", True) and is_pure_renote(note):
        return False
    return not (bool_param(params, "withFiles", False) and not note.get("files"))


# ---------------------------------------------------------------------------------------------
# State

@dataclass
class _Connection:
    channel: str
    id: str
    params: dict[str, Any]
    seq: int
    inert: bool  # acknowledged, delivers nothing (like the real server in those cases)


@dataclass
class _Socket:
    index: int
    conn: ServerConnection
    user: User | None
    moderator: bool
    last_pong: float
    connections: dict[str, _Connection] = field(default_factory=dict)
    captures: dict[str, int] = field(default_factory=dict)
    frozen: bool = False
    open: bool = True  # until the socket has ended and every frame the client sent before is recorded
    server_closed: bool = False  # the server sent a close frame
    closing: bool = False  # the client's close frame arrived (frames queued before it may be unrecorded)
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


@dataclass
class _Targets:
    lists: tuple[str, ...] = ()
    antennas: tuple[str, ...] = ()
    roles: tuple[str, ...] = ()


def _quiet_logger() -> logging.Logger:
    logger = logging.getLogger("misskey_cli.simulator.websockets")
    logger.propagate = False
    logger.setLevel(logging.CRITICAL + 1)
    if not logger.handlers:
        logger.addHandler(logging.NullHandler())
    return logger


class Simulator:
    """A Misskey streaming server on a loopback port, with test knobs. See the module docstring."""

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
    ) -> None:
        self.host = host
        self.ssl_context = ssl_context
        self._port = port
        self.rate = rate
        self.ticks = ticks
        self.tokens = dict(DEFAULT_TOKENS if tokens is None else tokens)
        self.suspended_tokens = frozenset(suspended_tokens)
        self.moderators = frozenset(moderators)
        self._ping_interval = ping_interval
        self._ping_timeout = ping_timeout
        self.traffic = Traffic(seed)

        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None
        self._wake_generator: asyncio.Event | None = None
        self._wake_pinger: asyncio.Event | None = None
        self._start_error: BaseException | None = None

        self._sockets: list[_Socket] = []  # every socket since construction, in handshake order
        self._by_conn: dict[Any, _Socket] = {}
        self._pending: weakref.WeakKeyDictionary[Any, _Pending] = weakref.WeakKeyDictionary()
        self._frames: list[tuple[int, dict[str, Any]]] = []
        self._handshakes: list[dict[str, Any]] = []
        self._closed: list[tuple[int, str] | None] = []
        self._refuse_remaining = 0
        self._refuse_status = 503
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
            try:
                loop.call_soon_threadsafe(stop_event.set)
            except RuntimeError:
                pass
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
        background = [
            asyncio.create_task(self._keepalive()),
            asyncio.create_task(self._generate_notes()),
        ]
        if self.ticks:
            background += [
                asyncio.create_task(self._every(SERVER_STATS_INTERVAL, lambda: self._stats_tick("serverStats"))),
                asyncio.create_task(self._every(QUEUE_STATS_INTERVAL, lambda: self._stats_tick("queueStats"))),
                asyncio.create_task(self._random_ticks(self._main_tick, 5.0, 8.0)),
                asyncio.create_task(self._random_ticks(self._capture_tick, 1.5, 3.0)),
                asyncio.create_task(self._occasional_broadcasts()),
            ]
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
            status = self._refuse_status
            return _bare_response(status, [("WWW-Authenticate", WWW_AUTHENTICATE)] if status == 401 else None)
        if headers.get("upgrade", "").lower() != "websocket":
            return _bare_response(503)  # what Misskey answers a plain GET on /streaming
        authorization = headers.get("authorization")
        token = authorization[7:] if authorization and authorization.startswith("Bearer ") else query.get("i")
        if token is None:
            return None
        if token in self.suspended_tokens:
            return _bare_response(403)
        username = self.tokens.get(token)
        if username is None:
            return _bare_response(401, [("WWW-Authenticate", WWW_AUTHENTICATE)])
        pending.user = self.traffic.account(username)
        return None

    def _process_response(self, conn: ServerConnection, request: Request, response: Response) -> None:
        pending = self._pending.pop(conn, None) or _Pending({"path": request.path, "query": {}, "headers": {}}, None)
        pending.record["status"] = response.status_code
        if response.status_code == 101:
            # Misskey's 101 carries only Upgrade, Connection and Sec-WebSocket-Accept.
            if "Date" in response.headers:
                del response.headers["Date"]
            self._register(conn, pending.user)
        with self._cond:
            self._handshakes.append(pending.record)
            self._cond.notify_all()

    def _register(self, conn: ServerConnection, user: User | None) -> None:
        """Record a socket before its 101 goes out, so a client that saw the 101 finds it here."""
        from websockets.frames import Opcode

        loop = asyncio.get_running_loop()
        with self._cond:
            sock = _Socket(len(self._sockets), conn, user, user is not None and user.username in self.moderators,
                           loop.time())
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

    def _on_close_frame(self, sock: _Socket, data: bytes) -> None:
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

    def _abort(self, sock: _Socket) -> None:
        """Drop the TCP connection, no close frame; observers see the socket closed at once."""
        sock.conn.transport.abort()
        with self._cond:
            self._mark_closed(sock, None)
            self._cond.notify_all()

    def _on_lost(self, sock: _Socket) -> None:
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

    def _mark_closed(self, sock: _Socket, info: tuple[int, str] | None) -> None:
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

    def _on_message(self, sock: _Socket, message: str | bytes) -> None:
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
        if isinstance(message, bytes):
            return
        try:
            frame = parse_client_frame(message)
        except BadFrame:
            return  # the server never answers bad input
        body = frame.body
        if frame.type == "readNotification":
            self._read_notification(sock)
        if not isinstance(body, dict):
            return
        if frame.type == "connect":
            self._connect(sock, body)
        elif frame.type == "disconnect":
            connection_id = body.get("id")
            if isinstance(connection_id, str) and connection_id in sock.connections:
                with self._cond:
                    del sock.connections[connection_id]
                    self._cond.notify_all()
        elif frame.type == "channel":
            self._channel_message(sock, body)
        elif frame.type == "subNote":
            note_id = body.get("id")
            if isinstance(note_id, str):
                with self._cond:
                    sock.captures[note_id] = sock.captures.get(note_id, 0) + 1
                    self._cond.notify_all()
        elif frame.type == "unsubNote":
            note_id = body.get("id")
            if isinstance(note_id, str) and note_id in sock.captures:
                with self._cond:
                    sock.captures[note_id] -= 1
                    if sock.captures[note_id] <= 0:
                        del sock.captures[note_id]
                    self._cond.notify_all()

    def _connect(self, sock: _Socket, body: dict[str, Any]) -> None:
        channel, connection_id, params = body.get("channel"), body.get("id"), body.get("params")
        if not isinstance(channel, str) or not isinstance(connection_id, str):
            return
        if params is None:
            params = {}
        if not isinstance(params, dict):
            return
        spec = CATALOGUE.get(channel)
        if spec is None:
            return
        # A reused id replaces its connection (2026 servers), so it does not count against the rules.
        others = [c for c in sock.connections.values() if c.id != connection_id]
        if len(others) >= MAX_CHANNELS_PER_SOCKET:
            return
        inert = False
        if spec.needs_login and sock.user is None:
            if channel != "userList":  # userList does not require credentials server-side: acked, silent
                return
            inert = True
        if spec.shareable and any(c.channel == channel for c in others):
            return
        if spec.moderator_only and not sock.moderator:
            inert = True
        if not inert:
            for param in spec.params:
                if param.required and param.type == STRING and not isinstance(params.get(param.name), str):
                    return  # no such list/antenna/channel/game: the channel's own check fails
        if channel == "hashtag" and not hashtag_q_valid(params.get("q")):
            inert = True
        with self._cond:
            self._seq += 1
            sock.connections.pop(connection_id, None)
            sock.connections[connection_id] = _Connection(channel, connection_id, params, self._seq, inert)
            self._cond.notify_all()
        if js_truthy(body.get("pong")):
            self._send(sock, encode({"type": "connected", "body": {"id": connection_id}}))
        if channel in _NOTE_CHANNELS and not inert and self._wake_generator is not None:
            self._wake_generator.set()

    def _channel_message(self, sock: _Socket, body: dict[str, Any]) -> None:
        connection_id, kind = body.get("id"), body.get("type")
        if not isinstance(connection_id, str) or not isinstance(kind, str) or "body" not in body:
            return
        connection = sock.connections.get(connection_id)
        if connection is None or connection.inert:
            return
        if connection.channel in ("serverStats", "queueStats") and kind == "requestLog":
            request = body["body"]
            if not isinstance(request, dict):
                return
            log = self._stats_log[connection.channel]
            length = request.get("length")
            if length is None:
                entries = list(log)
            elif isinstance(length, (int, float)) and not isinstance(length, bool):
                entries = log[:int(length)]  # Array.prototype.slice(0, length)
            else:
                entries = []
            self._send(sock, _channel_frame(connection_id, "statsLog", encode_any(entries)))

    def _read_notification(self, sock: _Socket) -> None:
        # The side effect PROTOCOL.md 3.1 warns about: the user's main channels hear readAllNotifications.
        if sock.user is None:
            return
        self._main_event(sock.user.id, "readAllNotifications", None)

    # -- sending ------------------------------------------------------------------------------

    def _open_sockets(self) -> list[_Socket]:
        return [s for s in self._sockets if s.open]

    def _send(self, sock: _Socket, data: str | bytes, binary: bool = False) -> bool:
        """Write one frame to the socket's transport now (no waiting for the peer)."""
        from websockets.protocol import State

        conn = sock.conn
        if not sock.open or sock.frozen or conn.protocol.state is not State.OPEN or conn.transport.is_closing():
            return False
        payload = data.encode() if isinstance(data, str) else data
        if binary:
            conn.protocol.send_binary(payload)
        else:
            conn.protocol.send_text(payload)
        conn.send_data()
        return True

    def _targets(self, socket: int | None) -> list[_Socket]:
        if socket is None:
            return self._open_sockets()
        if not 0 <= socket < len(self._sockets):
            raise IndexError(f"no socket {socket}: {len(self._sockets)} sockets so far")
        return [self._sockets[socket]]

    def _accepts(self, sock: _Socket, connection: _Connection, note: dict[str, Any], targets: _Targets) -> bool:
        viewer = sock.user
        viewer_id = viewer.id if viewer else None
        params = connection.params
        channel = connection.channel
        visibility = note.get("visibility", "public")
        author = note.get("userId")
        in_channel = note.get("channelId") is not None
        if not self._visible(note, viewer):
            return False
        if channel == "localTimeline":
            return (not in_channel and visibility == "public" and is_local(note)
                    and passes_note_filters(note, params)
                    and reply_shown(note, viewer_id, bool_param(params, "withReplies", False)))
        if channel == "globalTimeline":
            return (not in_channel and visibility == "public" and passes_note_filters(note, params)
                    and reply_shown(note, viewer_id, False))
        if channel == "homeTimeline":
            return (viewer is not None and not in_channel and isinstance(author, str)
                    and self.traffic.follows(viewer, author) and passes_note_filters(note, params)
                    and reply_shown(note, viewer_id, False))
        if channel == "hybridTimeline":
            followed = viewer is not None and isinstance(author, str) and self.traffic.follows(viewer, author)
            local_public = visibility == "public" and is_local(note)
            # Direct (specified) notes reach homeTimeline only (fixtures: visibility_specified).
            return (not in_channel and visibility != "specified" and (followed or local_public) and passes_note_filters(note, params)
                    and reply_shown(note, viewer_id, bool_param(params, "withReplies", False)))
        if channel == "hashtag":
            q = params.get("q")
            return isinstance(q, list) and hashtag_q_valid(q) and hashtag_matches(q, note.get("tags") or [])
        if channel == "channel":
            return in_channel and note.get("channelId") == params.get("channelId")
        if channel == "userList":
            return params.get("listId") in targets.lists and passes_note_filters(note, params)
        if channel == "antenna":
            return params.get("antennaId") in targets.antennas
        if channel == "roleTimeline":
            return params.get("roleId") in targets.roles and visibility == "public"
        return False

    def _visible(self, note: dict[str, Any], viewer: User | None) -> bool:
        visibility = note.get("visibility", "public")
        author = note.get("userId")
        if visibility in ("public", "home"):
            return True
        if viewer is None:
            return False
        if author == viewer.id:
            return True
        if visibility == "followers":
            return isinstance(author, str) and self.traffic.follows(viewer, author)
        if visibility == "specified":
            return viewer.id in (note.get("visibleUserIds") or [])
        return False

    def _route_note(self, note: dict[str, Any], targets: _Targets) -> int:
        """Deliver a note like the server: every accepting connection, plus main mention/reply/renote."""
        note_json = encode(note)
        bare_json: str | None = None
        delivered = 0
        for sock in self._open_sockets():
            if sock.frozen:
                continue
            for connection in list(sock.connections.values()):
                if connection.inert or connection.channel not in _NOTE_CHANNELS:
                    continue
                if not self._accepts(sock, connection, note, targets):
                    continue
                body = note_json
                if connection.channel == "antenna":  # antenna notes lack reactionAndUserPairCache
                    bare_json = bare_json or encode(strip_pair_cache(note))
                    body = bare_json
                if self._send(sock, _channel_frame(connection.id, "note", body)):
                    delivered += 1
            if sock.user is not None:
                for event, payload in self._main_events_for(note, sock.user):
                    self._send_main(sock, event, payload)
        return delivered

    def _main_events_for(self, note: dict[str, Any], viewer: User) -> list[tuple[str, Any]]:
        if note.get("userId") == viewer.id or not self._visible(note, viewer):
            return []
        events: list[tuple[str, Any]] = []  # in the order the fixtures show them
        if _user_id(note.get("reply")) == viewer.id:
            events.append(("reply", note))
        if _user_id(note.get("renote")) == viewer.id:
            events.append(("renote", note))
        if viewer.id in (note.get("mentions") or []):
            events.append(("mention", strip_pair_cache(note)))
        return events

    def _send_main(self, sock: _Socket, event: str, payload: Any) -> int:
        sent = 0
        body_json = encode_any(payload)
        for connection in list(sock.connections.values()):
            if connection.channel == "main" and not connection.inert:
                sent += self._send(sock, _channel_frame(connection.id, event, body_json))
        return sent

    def _main_event(self, user_id: str, event: str, payload: Any) -> int:
        return sum(self._send_main(s, event, payload) for s in self._open_sockets()
                   if s.user is not None and s.user.id == user_id)

    def _channel_event(self, channel: str, event: str, body: Any) -> int:
        body_json = encode_any(body)
        sent = 0
        for sock in self._open_sockets():
            for connection in list(sock.connections.values()):
                if connection.channel == channel and not connection.inert:
                    sent += self._send(sock, _channel_frame(connection.id, event, body_json))
        return sent

    def _note_updated(self, note_id: str, event: str, body: Any) -> int:
        frame = encode({"type": "noteUpdated", "body": {"id": note_id, "type": event, "body": body}})
        return sum(self._send(s, frame) for s in self._open_sockets() if note_id in s.captures)

    # -- background activity ------------------------------------------------------------------

    async def _keepalive(self) -> None:
        """Ping every interval; abort (no close frame) sockets whose last pong is too old (PROTOCOL.md 2)."""
        assert self._wake_pinger is not None
        loop = asyncio.get_running_loop()
        while True:
            self._wake_pinger.clear()
            interval = self._ping_interval
            try:
                await asyncio.wait_for(self._wake_pinger.wait(), interval)
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

    def _note_targets(self) -> list[tuple[_Socket, _Connection]]:
        return [(s, c) for s in self._open_sockets() if not s.frozen
                for c in s.connections.values() if c.channel in _NOTE_CHANNELS and not c.inert]

    async def _generate_notes(self) -> None:
        """Timeline traffic at ``rate`` notes/s while a note-carrying connection exists."""
        assert self._wake_generator is not None
        rng = self.traffic.rng
        first = True
        while True:
            if self.rate <= 0 or not self._note_targets():
                self._wake_generator.clear()
                if self.rate <= 0 or not self._note_targets():
                    await self._wake_generator.wait()
                first = True
                continue
            if first:
                delay = rng.uniform(0.05, 0.5) / self.rate
            else:
                delay = min(max(rng.expovariate(self.rate), 0.02 / self.rate), 3.0 / self.rate)
            first = False
            await asyncio.sleep(delay)
            candidates = self._note_targets()
            if not candidates or self.rate <= 0:
                continue
            try:
                sock, connection = rng.choice(candidates)
                note = self.traffic.note_for(connection.channel, connection.params, sock.user)
                self._route_note(note, self._random_targets(connection))
            except Exception as exc:  # noqa: BLE001 - keep generating
                self._record_error(exc)

    def _random_targets(self, chosen: _Connection) -> _Targets:
        """Which lists, antennas and roles a generated note belongs to: the chosen one, others at random."""
        rng = self.traffic.rng
        found: dict[str, set[str]] = {"listId": set(), "antennaId": set(), "roleId": set()}
        for _, connection in self._note_targets():
            for key, ids in found.items():
                value = connection.params.get(key)
                if isinstance(value, str) and (connection is chosen or rng.random() < 0.3):
                    ids.add(value)
        return _Targets(tuple(found["listId"]), tuple(found["antennaId"]), tuple(found["roleId"]))

    async def _every(self, interval: float, action: Callable[[], None]) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                action()
            except Exception as exc:  # noqa: BLE001
                self._record_error(exc)

    async def _random_ticks(self, action: Callable[[], None], mean_at_rate_1: float, mean_idle: float) -> None:
        rng = self.traffic.rng
        while True:
            mean = mean_at_rate_1 / self.rate if self.rate > 0 else mean_idle
            await asyncio.sleep(min(max(rng.expovariate(1.0 / mean), mean / 10), mean * 4))
            try:
                action()
            except Exception as exc:  # noqa: BLE001
                self._record_error(exc)

    async def _occasional_broadcasts(self) -> None:
        # Rare and never early, whatever the rate: a demo's first records are the timeline's notes.
        rng = self.traffic.rng
        await asyncio.sleep(rng.uniform(30.0, 90.0))
        while True:
            try:
                self._broadcast_tick()
            except Exception as exc:  # noqa: BLE001
                self._record_error(exc)
            await asyncio.sleep(30.0 + rng.expovariate(1 / 60.0))

    def _stats_tick(self, channel: str) -> None:
        sample = self.traffic.server_stats() if channel == "serverStats" else self.traffic.queue_stats()
        log = self._stats_log[channel]
        log.insert(0, sample)
        del log[STATS_LOG_MAX:]
        self._channel_event(channel, "stats", sample)

    def _main_tick(self) -> None:
        viewers = {s.user.id: s.user for s in self._open_sockets() if s.user is not None and not s.frozen
                   and any(c.channel == "main" for c in s.connections.values())}
        if viewers:
            viewer = viewers[self.traffic.rng.choice(sorted(viewers))]
            for event, payload in self.traffic.main_events(viewer):
                self._main_event(viewer.id, event, payload)

    def _capture_tick(self) -> None:
        captured = sorted({note_id for s in self._open_sockets() if not s.frozen for note_id in s.captures})
        if captured:
            note_id = self.traffic.rng.choice(captured)
            event = self.traffic.note_event(note_id)
            if event is not None:
                self._note_updated(note_id, *event)

    def _broadcast_tick(self) -> None:
        if self._open_sockets():
            kind, body = self.traffic.broadcast()
            self._broadcast(kind, body)

    def _broadcast(self, kind: str, body: Any) -> int:
        frame = encode({"type": kind, "body": body})
        return sum(self._send(s, frame) for s in self._open_sockets())

    # -- observing (any thread) ---------------------------------------------------------------

    @property
    def sockets_opened(self) -> int:
        with self._cond:
            return len(self._sockets)

    @property
    def open_sockets(self) -> int:
        with self._cond:
            return sum(1 for s in self._sockets if s.open)

    @property
    def handshakes(self) -> list[dict[str, Any]]:
        with self._cond:
            return list(self._handshakes)

    def client_frames(self, socket: int | None = None) -> list[dict[str, Any]]:
        """Every frame clients sent, in order (only socket ``socket``'s if given)."""
        with self._cond:
            return [frame for index, frame in self._frames if socket is None or index == socket]

    def client_frames_of(self, socket: int) -> list[dict[str, Any]]:
        """The frames the client of socket ``socket`` (0-based, handshake order) sent."""
        return self.client_frames(socket)

    @property
    def pongs(self) -> int:
        """Pong frames received from clients since this Simulator was made."""
        with self._cond:
            return self._pongs

    def closed(self) -> list[tuple[int, str] | None]:
        """Close info of the sockets closed so far, in closing order: (code, reason), or None for a drop."""
        with self._cond:
            return list(self._closed)

    def connections(self, socket: int | None = None) -> list[tuple[int, str, str, dict[str, Any]]]:
        """Accepted channel connections on live sockets: (socket index, channel, id, params).

        Live: open, not frozen, and not being closed by the server (close_all).
        """
        with self._cond:
            return [(s.index, c.channel, c.id, dict(c.params)) for s in self._sockets if s.live
                    and (socket is None or s.index == socket) for c in s.connections.values()]

    def captures(self, socket: int | None = None) -> dict[str, int]:
        """Captured note ids with their reference counts, summed over live sockets (or one socket)."""
        with self._cond:
            out: dict[str, int] = {}
            for s in self._sockets:
                if s.live and (socket is None or s.index == socket):
                    for note_id, count in s.captures.items():
                        out[note_id] = out.get(note_id, 0) + count
            return out

    def _wait(self, ready: Callable[[], bool], timeout: float, what: Callable[[], str]) -> None:
        with self._cond:
            if not self._cond.wait_for(ready, timeout):
                raise TimeoutError(f"simulator: timed out after {timeout:g} s waiting for {what()}")

    def wait_for_client_frame(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 10.0,
                              after: int = 0) -> dict[str, Any]:
        """The first client frame (already received or future) for which ``predicate`` is true.

        ``after`` skips frames of sockets before that index: ``after=1`` looks only at what was
        sent after the first socket (a reconnect's resubscriptions).
        """
        found: list[dict[str, Any]] = []
        checked = 0

        def ready() -> bool:
            nonlocal checked
            while checked < len(self._frames):
                index, frame = self._frames[checked]
                checked += 1
                if index < after:
                    continue
                try:
                    matched = predicate(frame)
                except Exception:  # noqa: BLE001 - a predicate that does not apply
                    matched = False
                if matched:
                    found.append(frame)
                    return True
            return False

        def what() -> str:
            frames = [frame for _, frame in self._frames]
            shown = ", ".join(_short(f) for f in frames[-15:])
            return f"a matching client frame; {len(frames)} received: [{shown}]"

        self._wait(ready, timeout, what)
        return found[0]

    def wait_for_subscription(self, channel: str, timeout: float = 10.0, count: int = 1) -> str:
        """Wait for ``count`` accepted connections of ``channel`` on live sockets; the newest one's id.

        Frozen sockets and sockets the server is closing do not count: nothing reaches them.
        """
        newest: list[_Connection] = []

        def ready() -> bool:
            matches = [c for s in self._sockets if s.live for c in s.connections.values() if c.channel == channel]
            if len(matches) >= count:
                newest[:] = [max(matches, key=lambda c: c.seq)]
                return True
            return False

        def what() -> str:
            have = [(c.channel, c.id) for s in self._sockets if s.live for c in s.connections.values()]
            return f"{count} {channel} connection(s); connections now: {have}"

        self._wait(ready, timeout, what)
        return newest[0].id

    def wait_for_sockets(self, n: int, timeout: float = 10.0) -> None:
        """Wait until ``n`` sockets have completed the handshake since this Simulator was made."""
        self._wait(lambda: len(self._sockets) >= n, timeout,
                   lambda: f"{n} socket(s) to open; {len(self._sockets)} so far")

    def wait_for_closed(self, timeout: float = 10.0, count: int | None = None) -> list[tuple[int, str] | None]:
        """Wait until no socket is open (or ``count`` sockets have closed in all); the close info so far."""
        if count is None:
            self._wait(lambda: not any(s.open for s in self._sockets), timeout,
                       lambda: f"every socket to close; {sum(s.open for s in self._sockets)} still open")
        else:
            self._wait(lambda: len(self._closed) >= count, timeout,
                       lambda: f"{count} socket(s) to close; {len(self._closed)} closed so far")
        return self.closed()

    def wait_for_pongs(self, n: int, timeout: float = 10.0) -> None:
        """Wait until clients have sent ``n`` pong frames in all since this Simulator was made."""
        self._wait(lambda: self._pongs >= n, timeout, lambda: f"{n} pong(s); {self._pongs} so far")

    def wait_for_captures(self, note_id: str, count: int = 1, timeout: float = 10.0) -> None:
        """Wait until live sockets hold exactly ``count`` capture references of ``note_id`` in all."""
        def ready() -> bool:
            return sum(s.captures.get(note_id, 0) for s in self._sockets if s.live) == count

        self._wait(ready, timeout, lambda: f"{count} capture(s) of {note_id}")

    # -- traffic knobs (any thread) -----------------------------------------------------------

    def post_note(self, note: dict[str, Any] | None = None, *, author: str | None = None, kind: str | None = None,
                  list_ids: Iterable[str] = (), antenna_ids: Iterable[str] = (), role_ids: Iterable[str] = (),
                  **overrides: Any) -> dict[str, Any]:
        """Make (or take) a note and deliver it to every connection that accepts it; returns the note.

        A made note is a plain public note by a local, followed user unless ``kind`` (a
        ``traffic.NOTE_KINDS`` name) or ``author`` (a username) say otherwise. ``overrides`` set
        note keys (``text`` also recomputes ``tags``; ``channelId`` adds the ``channel`` object).
        userList, antenna and roleTimeline connections receive the note only when their
        listId/antennaId/roleId is among ``list_ids``/``antenna_ids``/``role_ids``.
        """
        targets = _Targets(tuple(list_ids), tuple(antenna_ids), tuple(role_ids))

        def build() -> dict[str, Any]:
            made = note is None
            result = dict(note) if note is not None else self._make_note(author, kind)
            if overrides:
                _apply_overrides(self.traffic, result, overrides)
            if made or overrides:
                result = order_note(result)
            self.traffic.remember(result)
            self._route_note(result, targets)
            return result

        return self._call(build)

    def _make_note(self, author: str | None, kind: str | None) -> dict[str, Any]:
        traffic = self.traffic
        if kind is not None and kind not in NOTE_KINDS:
            raise ValueError(f"unknown note kind {kind!r}: one of {', '.join(NOTE_KINDS)}")
        if author is not None:
            user = next((u for u in traffic.cast if u.username == author), None) or traffic.account(author)
        else:
            locals_followed = [u for u in traffic.cast if u.host is None and u.followed]
            user = traffic.rng.choice(locals_followed)
        return traffic.note(NoteRequest(kind=kind or "plain", author=user))

    def channel_event(self, channel: str, type: str, body: Any) -> int:
        """Send an event to every (delivering) connection of ``channel``; how many got it."""
        return self._call(lambda: self._channel_event(channel, type, body))

    def note_updated(self, note_id: str, type: str, body: Any) -> int:
        """Send noteUpdated to every socket capturing ``note_id``; how many got it."""
        return self._call(lambda: self._note_updated(note_id, type, body))

    def main_event(self, username: str, type: str, body: Any) -> int:
        """Send an event on the ``main`` connections of that user's sockets; how many got it."""
        user = self.traffic.account(username)
        return self._call(lambda: self._main_event(user.id, type, body))

    def broadcast(self, type: str, body: Any) -> int:
        """A top-level broadcast (emojiAdded, announcementCreated, ...) to every open socket."""
        return self._call(lambda: self._broadcast(type, body))

    def inject(self, frame: str | bytes | dict[str, Any] | list[Any], socket: int | None = None) -> int:
        """Raw send: str as a text frame, bytes as a binary frame, dict/list as JSON text."""
        binary = isinstance(frame, (bytes, bytearray))
        data: str | bytes = bytes(frame) if isinstance(frame, (bytes, bytearray)) else (
            frame if isinstance(frame, str) else encode_any(frame))
        return self._call(lambda: sum(self._send(s, data, binary) for s in self._targets(socket)))

    def inject_many(self, frames: list[dict[str, Any]], socket: int | None = None) -> int:
        """Send JSON frames back to back in one go (for load: one hop to the server thread, not one each).

        Returns how many sockets got them."""
        texts = [encode_any(frame) for frame in frames]

        def run() -> int:
            sent = 0
            for sock in self._targets(socket):
                results = [self._send(sock, text, False) for text in texts]
                sent += all(results)
            return sent

        return self._call(run)

    def inject_invalid_utf8(self, socket: int | None = None) -> int:
        """A text frame whose payload is not UTF-8."""
        data = b'{"type":"channel","body":"\xff\xfe\xc3\x28"}'
        return self._call(lambda: sum(self._send(s, data) for s in self._targets(socket)))

    def inject_huge(self, size_bytes: int, socket: int | None = None) -> int:
        """A valid channel note frame of about ``size_bytes``."""
        def run() -> int:
            note_json = encode(self.traffic.huge_note(size_bytes))
            sent = 0
            for sock in self._targets(socket):
                connection_id = next(iter(sock.connections), "localTimeline")
                sent += self._send(sock, _channel_frame(connection_id, "note", note_json))
            return sent

        return self._call(run)

    def close_all(self, code: int = 1000, reason: str = "") -> int:
        """Send a close frame on every open socket (the peer answers; stragglers dropped after 5 s)."""
        def run() -> int:
            from websockets.protocol import State

            closed = 0
            for sock in self._open_sockets():
                conn = sock.conn
                if sock.frozen or conn.protocol.state is not State.OPEN or conn.transport.is_closing():
                    continue
                with self._cond:
                    sock.server_closed = True
                conn.protocol.send_close(code, reason)
                conn.send_data()
                asyncio.get_running_loop().create_task(self._close_watchdog(sock))
                closed += 1
            return closed

        return self._call(run)

    async def _close_watchdog(self, sock: _Socket) -> None:
        try:
            await asyncio.wait_for(asyncio.shield(sock.conn.connection_lost_waiter), CLOSE_TIMEOUT)
        except TimeoutError:
            self._abort(sock)

    def drop_all(self) -> int:
        """Abort every open socket's TCP connection: no close frame (what a server shutdown does)."""
        def run() -> int:
            sockets = [s for s in self._sockets if s.open or not s.conn.transport.is_closing()]
            for sock in sockets:
                self._abort(sock)
            return len(sockets)

        return self._call(run)

    def freeze_all(self) -> int:
        """The peer vanishes on the open sockets: nothing read, no pongs, nothing sent. New sockets are normal."""
        def run() -> int:
            sockets = [s for s in self._open_sockets() if not s.frozen]
            for sock in sockets:
                with self._cond:
                    sock.frozen = True
                # Incoming bytes are dropped before websockets sees them (so no automatic pong);
                # EOF still closes the transport, so a client giving up is noticed.
                sock.conn.data_received = _discard  # type: ignore[method-assign]
                sock.conn.eof_received = _no_half_open  # type: ignore[method-assign,assignment]
            return len(sockets)

        return self._call(run)

    def refuse_next(self, n: int, status: int = 503) -> None:
        """Answer the next ``n`` handshakes with HTTP ``status`` instead of the upgrade."""
        def run() -> None:
            self._refuse_remaining = n
            self._refuse_status = status

        self._call(run)

    def set_ping_interval(self, seconds: float | None, timeout: float | None = None) -> None:
        """Change the server ping interval (None: no pings) and optionally the pong timeout."""
        def run() -> None:
            self._ping_interval = seconds
            if timeout is not None:
                self._ping_timeout = timeout
            # The new timeout counts from now: a socket is not condemned for the old settings.
            loop_time = asyncio.get_running_loop().time()
            for sock in self._open_sockets():
                sock.last_pong = max(sock.last_pong, loop_time)
            if self._wake_pinger is not None:
                self._wake_pinger.set()

        self._call(run)

    def set_rate(self, rate: float) -> None:
        """Change the generated note rate (notes per second, 0 = none)."""
        def run() -> None:
            self.rate = rate
            if self._wake_generator is not None:
                self._wake_generator.set()

        self._call(run)


# ---------------------------------------------------------------------------------------------
# Helpers

def encode_any(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _channel_frame(connection_id: str, event: str, body_json: str) -> str:
    """``{"type":"channel","body":{"id":..,"type":..,"body":..}}`` around an already encoded body."""
    return ('{"type":"channel","body":{"id":' + encode_any(connection_id) + ',"type":' + encode_any(event)
            + ',"body":' + body_json + "}}")


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


def _short(frame: dict[str, Any]) -> str:
    text = repr(frame)
    return text if len(text) <= 120 else text[:117] + "..."


def _apply_overrides(traffic: Traffic, note: dict[str, Any], overrides: dict[str, Any]) -> None:
    note.update(overrides)
    user = overrides.get("user")
    if isinstance(user, dict) and "userId" not in overrides and "id" in user:
        note["userId"] = user["id"]
    if "text" in overrides:
        for key, found in (("tags", extract_tags(note.get("text"))), ("mentions", traffic.mentions_in(note.get("text")))):
            if key in overrides:
                continue
            if found:
                note[key] = found
            else:
                note.pop(key, None)
    channel_id = overrides.get("channelId")
    if isinstance(channel_id, str) and "channel" not in overrides:
        note["channel"] = traffic.channel_object(channel_id)
    for key, id_key in (("reply", "replyId"), ("renote", "renoteId")):
        nested = overrides.get(key)
        if isinstance(nested, dict) and id_key not in overrides:
            note[id_key] = nested.get("id")
    files = overrides.get("files")
    if isinstance(files, list) and "fileIds" not in overrides:
        note["fileIds"] = [f.get("id") for f in files if isinstance(f, dict)]


def serve(host: str, port: int, rate: float, tokens: dict[str, str], suspended_tokens: tuple[str, ...],
          on_ready: Callable[[str], None]) -> None:
    """Run a simulator with ticks until KeyboardInterrupt (re-raised after a clean stop).

    ``tokens`` maps token -> username; an empty mapping means DEFAULT_TOKENS.
    """
    simulator = Simulator(host=host, port=port, rate=rate, ticks=True, tokens=tokens or None,
                          suspended_tokens=suspended_tokens)
    simulator.start()
    try:
        on_ready(simulator.url)
        forever = threading.Event()
        while not forever.wait(1.0):
            pass
    finally:
        simulator.stop()
