"""The public ``Simulator``: the engine, its activity and its HTTP API, with the knobs and observations tests use.

Knobs (any thread; each runs on the server's loop and returns once its frames are written to the
sockets' transports): post notes, send channel/main/noteUpdated/broadcast events, make one
drive/chat/reversi/admin event now (``channel_activity``), inject raw, invalid or huge frames,
close every socket with a code, drop them without a close frame, freeze them (the peer vanishes),
refuse the next handshakes, change the ping settings and the rate. HTTP knobs: answer the next
calls of an endpoint with an error status, skew the ``Date`` clock, approve a MiAuth session (with
the permissions its app token gets). ``history`` sets how much of the past a fresh start holds.
Given ``replay``, it serves a recording instead of generated traffic (``replay.py``; ``playback``
observes it). Observations: every handshake, client frame and HTTP request (never its token), the
live connections and captures, closes and pongs, MiAuth pages opened, and
``wait_for_*`` helpers that wait for an event rather than for time.
"""

from __future__ import annotations

import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import Any

from misskey_cli.core.protocol import encode
from misskey_cli.simulator.activity import Activity
from misskey_cli.simulator.api_server import ApiServer, Fault
from misskey_cli.simulator.bot_api import Effects
from misskey_cli.simulator.corpus import NOTE_KINDS, extract_tags, order_note
from misskey_cli.simulator.engine import Connection, channel_frame, encode_any
from misskey_cli.simulator.httpwire import HttpRequest, HttpResponse
from misskey_cli.simulator.replay import Playback, ReplayOptions, read_frames
from misskey_cli.simulator.rules import DEFAULT_MODERATORS, DEFAULT_SUSPENDED_TOKENS, Targets
from misskey_cli.simulator.traffic import NoteRequest, Traffic

DEFAULT_HISTORY = 300  # notes a fresh simulator holds from the past six hours


class Simulator(Activity):
    """A Misskey server (streaming and HTTP API) on a loopback port, with test knobs. See the module docstring.

    ``software_name``/``software_version`` are what nodeinfo and ``meta`` report (simulate a fork
    such as ``sharkey``); ``miauth=False`` is a server without MiAuth; ``clock_offset`` skews the
    HTTP ``Date`` header by that many seconds. ``history`` is how many notes of the past six hours a
    fresh start holds, with some notifications for each account (0: an empty history, for tests that
    count every note); ``DEFAULT_HISTORY`` makes the timelines answer at once, as a running server's do.
    """

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
        *,
        software_name: str = "misskey",
        software_version: str = "2026.5.1",
        miauth: bool = True,
        history: int | None = None,
        clock_offset: float = 0.0,
        replay: ReplayOptions | None = None,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        if replay is not None:  # the recording instead of generated traffic
            rate, ticks = 0.0, False
        super().__init__(host, port, rate, ticks, tokens, suspended_tokens, ping_interval, ping_timeout, seed,
                         moderators, ssl_context, history_size)
        self.playback = Playback(replay, warn) if replay is not None else None
        self.initial_history = (0 if replay is not None else DEFAULT_HISTORY) if history is None else history
        self.clock_offset = clock_offset
        self._http_requests: list[dict[str, Any]] = []
        effects = Effects(self._route_note, self._note_updated, self._main_event)
        self.api = ApiServer(tokens=self.tokens, permissions=self.app_permissions, suspended=self.suspended_tokens,
                             traffic=self.traffic, history=self.history, notifications=self.notifications,
                             viewer=self.viewer,
                             moderators=self.moderators, effects=effects, software_name=software_name,
                             software_version=software_version, miauth=miauth, record=self._record_http)

    def _background(self) -> list[Coroutine[Any, Any, None]]:
        tasks = super()._background()
        if self.playback is not None:
            tasks.append(self.playback.run(self))
        return tasks

    # -- the HTTP API (on the loop) -----------------------------------------------------------

    def answer_http(self, request: HttpRequest) -> HttpResponse:
        return self.api.handle(request)

    def http_now(self) -> float:
        return time.time() + self.clock_offset

    def _record_http(self, record: dict[str, Any]) -> None:
        with self._cond:
            self._http_requests.append(record)
            self._cond.notify_all()

    @property
    def api_url(self) -> str:
        """``http(s)://host:port``: the HTTP API answers on the socket's host and port."""
        return self.http_url

    def http_requests(self) -> list[dict[str, Any]]:
        """Every HTTP request answered: method, path, endpoint, body and query without ``i``, auth, status.

        ``auth`` says how a token came (``"body"``, ``"bearer"``) or None; the token is never kept.
        """
        with self._cond:
            return [dict(r) for r in self._http_requests]

    def wait_for_http_requests(self, n: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Wait until ``n`` HTTP requests have been answered since this Simulator was made."""
        self._wait(lambda: len(self._http_requests) >= n, timeout,
                   lambda: f"{n} HTTP request(s); {len(self._http_requests)} so far")
        return self.http_requests()

    def fail_next(self, endpoint: str, status: int, count: int = 1, retry_after: float | None = None) -> None:
        """Answer the next ``count`` calls of ``endpoint`` (``"i"``, ``"notes/timeline"``; ``"*"``: any)
        with ``status``: 429 is Misskey's RATE_LIMIT_EXCEEDED with ``Retry-After`` (default 1 s),
        500 its INTERNAL_ERROR, 502-504 a reverse proxy's HTML page. ``count=0``: the next calls of
        ``endpoint`` are answered normally again (the faults still queued for it are dropped)."""
        def run() -> None:
            queue = self.api.faults.setdefault(endpoint, deque())
            if count == 0:
                queue.clear()
            queue.extend(Fault(status, retry_after) for _ in range(count))

        self._call(run)

    def set_clock_offset(self, seconds: float) -> None:
        """Skew the HTTP ``Date`` header by ``seconds`` (for clock-skew checks)."""
        self.clock_offset = seconds

    def approve_miauth(self, session: str, username: str = "admin", permissions: list[str] | None = None) -> str:
        """The user approves MiAuth ``session`` as ``username``: returns the new token, which the
        next ``miauth/{session}/check`` hands out once and which both the socket and the API accept."""
        return self._call(lambda: self.api.approve_miauth(session, username, permissions))

    def miauth_requests(self) -> list[dict[str, Any]]:
        """The MiAuth pages clients sent users to: ``{"session", "name", "permission", ...}`` each."""
        return [{"session": r["path"][len("/miauth/"):], **r.get("query", {})} for r in self.http_requests()
                if r["method"] == "GET" and r["path"].startswith("/miauth/")]

    def notify(self, username: str, kind: str = "app", **fields: Any) -> dict[str, Any]:
        """Send ``username`` a ``notification`` on main (and keep it for ``i/notifications``); returns it."""
        def run() -> dict[str, Any]:
            user = self.traffic.account(username)
            notification = self.traffic.notification(kind, **fields)
            self._main_event(user.id, "notification", notification)
            return notification

        return self._call(run)

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
        newest: list[Connection] = []

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
        listId/antennaId/roleId is among ``list_ids``/``antenna_ids``/``role_ids``. The note
        joins the history the HTTP timelines answer from, even when no socket is connected.
        """
        targets = Targets(tuple(list_ids), tuple(antenna_ids), tuple(role_ids))

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
        """Send an event on the ``main`` connections of that user's sockets; how many got it.

        A ``notification`` also joins the user's history that ``i/notifications`` answers from.
        """
        user = self.traffic.account(username)
        return self._call(lambda: self._main_event(user.id, type, body))

    def channel_activity(self, channel: str | None = None) -> int:
        """One generated event now on a drive, chatUser, chatRoom, reversi or admin connection (of
        ``channel`` if given), as the ticks send them; how many connections got it (0: none open)."""
        return self._call(lambda: self._side_channel_tick(channel))

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

    def send_raw(self, data: bytes, binary: bool = False, socket: int | None = None) -> int:
        """These exact bytes as one text frame (UTF-8 or not) or binary frame; how many sockets got it."""
        return self._call(lambda: sum(self._send(s, data, binary) for s in self._targets(socket)))

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
                sent += self._send(sock, channel_frame(connection_id, "note", note_json))
            return sent

        return self._call(run)

    # -- connection knobs (any thread) --------------------------------------------------------

    def close_all(self, code: int = 1000, reason: str = "") -> int:
        """Send a close frame on every open socket (the peer answers; stragglers dropped after 5 s)."""
        return self._call(lambda: sum(self._server_close(s, code, reason) for s in self._open_sockets()))

    def drop_all(self) -> int:
        """Abort every open socket's TCP connection: no close frame (what a server shutdown does)."""
        def run() -> int:
            sockets = self._droppable()
            for sock in sockets:
                self._abort(sock)
            return len(sockets)

        return self._call(run)

    def freeze_all(self) -> int:
        """The peer vanishes on the open sockets: nothing read, no pongs, nothing sent. New sockets are normal."""
        def run() -> int:
            sockets = [s for s in self._open_sockets() if not s.frozen]
            for sock in sockets:
                self._freeze(sock)
            return len(sockets)

        return self._call(run)

    def freeze_socket(self, socket: int) -> bool:
        """Freeze one socket (see freeze_all); False when it is no longer open or already frozen."""
        def run() -> bool:
            sock = self._targets(socket)[0]
            if not sock.open or sock.frozen:
                return False
            self._freeze(sock)
            return True

        return self._call(run)

    def wait_for_refused(self, n: int, timeout: float = 10.0) -> None:
        """Wait until ``refuse_next`` has refused ``n`` handshakes in all."""
        self._wait(lambda: self._refused >= n, timeout, lambda: f"{n} refused handshake(s); {self._refused} so far")

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
            assert self._loop is not None
            loop_time = self._loop.time()
            for sock in self._open_sockets():
                sock.last_pong = max(sock.last_pong, loop_time)
            if self._wake_pinger is not None:
                self._wake_pinger.set()

        self._call(run)


def _short(frame: dict[str, Any]) -> str:
    text = repr(frame)
    return text if len(text) <= 120 else text[:117] + "..."


def _apply_overrides(traffic: Traffic, note: dict[str, Any], overrides: dict[str, Any]) -> None:
    note.update(overrides)
    user = overrides.get("user")
    if isinstance(user, dict) and "userId" not in overrides and "id" in user:
        note["userId"] = user["id"]
    if "text" in overrides:
        found_in_text = (("tags", extract_tags(note.get("text"))), ("mentions", traffic.mentions_in(note.get("text"))))
        for key, found in found_in_text:
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


@dataclass(frozen=True)
class Faults:
    """``mkstream serve``'s fault flags: what goes wrong, and how often (seconds)."""

    drop_every: float | None = None  # drop every socket's TCP connection, no close frame
    close_every: float | None = None  # send every socket a close frame with close_code
    close_code: int = 1001
    freeze_after: float | None = None  # each socket stops answering (pings included) this long after it opened
    refuse: int = 0  # the next N handshakes are answered 503
    inject: str | None = None  # a file of frames sent to every socket once it is open

    @property
    def active(self) -> bool:
        return any((self.drop_every, self.close_every, self.freeze_after, self.refuse, self.inject))

    def describe(self) -> str:
        parts = []
        if self.drop_every is not None:
            parts.append(f"drop every connection every {self.drop_every:g}s")
        if self.close_every is not None:
            parts.append(f"close every connection with {self.close_code} every {self.close_every:g}s")
        if self.freeze_after is not None:
            parts.append(f"freeze each connection {self.freeze_after:g}s after it opens")
        if self.refuse:
            parts.append(f"refuse the next {self.refuse} handshake(s) with 503")
        if self.inject is not None:
            parts.append(f"inject {self.inject} into each connection")
        return "; ".join(parts)


def serve(host: str, port: int, rate: float, tokens: dict[str, str], suspended_tokens: tuple[str, ...],
          on_ready: Callable[[Simulator], None], *, replay: ReplayOptions | None = None,
          faults: Faults = Faults(), warn: Callable[[str], None] | None = None) -> None:
    """Run a simulator with ticks (or a recording) until KeyboardInterrupt (re-raised after a clean stop).

    ``tokens`` maps token -> username; an empty mapping means DEFAULT_TOKENS.
    """
    inject = read_frames(faults.inject, warn) if faults.inject is not None else ()
    simulator = Simulator(host=host, port=port, rate=rate, ticks=True, tokens=tokens or None,
                          suspended_tokens=suspended_tokens, replay=replay, warn=warn)
    simulator.start()
    stop = threading.Event()
    try:
        if faults.refuse:
            simulator.refuse_next(faults.refuse)
        for fault in _fault_loops(simulator, faults, inject, stop):
            threading.Thread(target=fault, name="mkstream-fault", daemon=True).start()
        on_ready(simulator)
        while not stop.wait(1.0):
            pass
    finally:
        stop.set()
        simulator.stop()


def _fault_loops(sim: Simulator, faults: Faults, inject: tuple[tuple[bytes, bool], ...],
                 stop: threading.Event) -> list[Callable[[], None]]:
    """One function per fault flag, each run in its own thread until ``stop`` (public knobs only)."""
    loops: list[Callable[[], None]] = []

    def every(seconds: float, action: Callable[[], object]) -> Callable[[], None]:
        def run() -> None:
            while not stop.wait(seconds):
                _quietly(action)

        return run

    if faults.drop_every is not None:
        loops.append(every(faults.drop_every, sim.drop_all))
    if faults.close_every is not None:
        loops.append(every(faults.close_every, lambda: sim.close_all(faults.close_code)))
    if faults.freeze_after is not None or inject:
        loops.append(lambda: _per_socket(sim, faults.freeze_after, inject, stop))
    return loops


def _per_socket(sim: Simulator, freeze_after: float | None, inject: tuple[tuple[bytes, bool], ...],
                stop: threading.Event) -> None:
    """Inject into each new socket once it is open; freeze each one ``freeze_after`` after it opened."""
    opened: dict[int, float] = {}
    pending_inject: dict[int, float] = {}
    frozen: set[int] = set()
    while not stop.wait(0.01):
        now = time.monotonic()
        for index in range(len(opened), sim.sockets_opened):
            opened[index] = now
            if inject:
                pending_inject[index] = now + 5.0  # give up on a socket that never opens
        for index, give_up in list(pending_inject.items()):
            # A socket is counted just before its 101 goes out: until it is open, nothing is sent.
            if _quietly(_inject, sim, index, inject) or now > give_up:
                del pending_inject[index]
        if freeze_after is not None:
            for index, at in opened.items():
                if index not in frozen and index not in pending_inject and now - at >= freeze_after:
                    frozen.add(index)
                    _quietly(sim.freeze_socket, index)


def _inject(sim: Simulator, index: int, frames: tuple[tuple[bytes, bool], ...]) -> bool:
    return all(sim.send_raw(data, binary, socket=index) for data, binary in frames)


def _quietly(action: Callable[..., object], *args: Any) -> object:
    try:
        return action(*args)
    except (RuntimeError, IndexError, TimeoutError):  # the server is stopping, or the socket is gone
        return None
