"""``mkstream proxy``: the run. Settings in, an exit status out.

The relay (``wire.py``) runs on an asyncio loop in the main thread; everything it sees comes to a
``Tap``, which makes each frame and API call a record (``{"conn": N, "from": "client"|"server",
"frame": ...}``) for the usual output pipeline (``Renderer``, ``Writer``, ``--record``), and asks each
socket's ``SocketWatch`` what the server will make of it (warnings on stderr, per connection).
The proxy outlives its clients; it ends on Ctrl-C or SIGTERM, ``-n`` or ``--duration``, or when the
reader of its records goes away. Tokens seen in the traffic are learnt by the run's ``Redactor``,
so no notice shows one; recorded and written records never hold one (``Tap._body`` says what
``--bodies`` removes).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import re
import select
import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote_plus

from misskey_cli.core import jsoncodec
from misskey_cli.core.notes import notes_in
from misskey_cli.errors import ConnectFailed, ExitCode, MkstreamError, UsageError
from misskey_cli.net.endpoint import Endpoint, Proxy, Redactor
from misskey_cli.net.transport import effective_proxy
from misskey_cli.net.wsframes import OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, close_status
from misskey_cli.output.notecontext import NoteContext
from misskey_cli.output.notices import Notices
from misskey_cli.recording.format import RecordedChannel, Subscriptions
from misskey_cli.recording.writer import Recorder
from misskey_cli.relay.watch import SocketWatch
from misskey_cli.relay.wire import ApiCall, Relay, Upstream
from misskey_cli.run.app import Environment, drain_and_report, guarded, make_notices, make_renderer, open_writer
from misskey_cli.run.settings import NoticeSettings, OutputSettings

if TYPE_CHECKING:
    from misskey_cli.output.render import Renderer
    from misskey_cli.output.writer import Writer


@dataclass(frozen=True)
class ProxySettings:
    endpoint: Endpoint
    listen_host: str
    listen_port: int
    output: OutputSettings
    notices: NoticeSettings
    insecure: bool = False
    ca_file: str | None = None
    proxy: Proxy | None = None  # --proxy; else the environment's, as for every connection mkstream makes
    ack_timeout: float = 5.0
    connect_timeout: float = 10.0
    bodies: bool = False
    count: int | None = None
    duration: float | None = None


# The fields of a request or answer that hold an access token: ``i`` (any API call), ``token``
# (MiAuth's check) and ``accessToken`` (auth/session/userkey).
_SECRET_KEYS = frozenset({"i", "token", "accessToken"})
_FORM_SECRET = re.compile(r"((?:^|[?&])(?:i|token|accessToken)=)([^&\s]*)")
_MULTIPART_SECRET = re.compile(r'(name="(?:i|token|accessToken)"[^\r\n]*\r?\n(?:[^\r\n]+\r?\n)*\r?\n)([^\r\n]*)')


class Tokens(Redactor):
    """A ``Redactor`` that also hides every token the proxy has seen pass."""

    def learn(self, token: str | None) -> None:
        if token and len(token) >= self.MIN_FREE_TEXT:
            for secret in (token, quote(token, safe="")):
                if secret not in self.secrets:
                    self.secrets.append(secret)


def frame_value(opcode: int, payload: bytes) -> tuple[str, Any, bytes]:
    """A relayed message as a record's key and value, and that value's JSON text for the recording."""
    if opcode == OP_TEXT:
        try:
            value, strict = jsoncodec.loads(payload)
        except ValueError:
            strict = False
        if strict:
            return "frame", value, payload if b"\n" not in payload else jsoncodec.dumps(value)
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError:
            encoded = base64.b64encode(payload).decode("ascii")
            return "bytes", encoded, jsoncodec.dumps(encoded)
        return "text", text, jsoncodec.dumps(text)
    if opcode == OP_CLOSE:
        code, reason = close_status(payload)
        close = {"code": code, "reason": reason}
        return "close", close, jsoncodec.dumps(close)
    if opcode in (OP_PING, OP_PONG):
        text = payload.decode("utf-8", "replace")
        return "ping" if opcode == OP_PING else "pong", text, jsoncodec.dumps(text)
    encoded = base64.b64encode(payload).decode("ascii")
    return "binary", encoded, jsoncodec.dumps(encoded)


class _Interrupted(Exception):
    """The run ends now: the records thread leaves the frame it renders (jq stops with it)."""


# A frame jq makes many records of is written in batches of this many, each waiting for room.
RECORDS_PER_WRITE = 4096
# At a normal end (--duration), the frames already queued get this long to be rendered.
DRAIN_GRACE = 2.0


class RecordThread:
    """Frames to records on a thread of their own, so the relay never waits for them.

    The relay hands each frame over with ``put`` (never blocking): past --max-backlog bytes queued
    here and in the writer, frames are dropped and counted, never the traffic. The thread takes a
    frame's records lazily from the renderer, so jq computing (or making records without end)
    holds up only the records, stops at ``-n``, and is interrupted when the run ends: while jq
    computes, the thread watches a stop pipe and the writer's failure fd. Notices it has to give
    are passed to the relay's thread (``say``), which owns stderr.
    """

    def __init__(self, settings: ProxySettings, renderer: Renderer, writer: Writer, notices: Notices,
                 context: NoteContext | None) -> None:
        self.count = settings.count
        self.max_backlog = settings.output.max_backlog
        self.renderer = renderer
        self.writer = writer
        self.notices = notices
        self.context = context  # the line view's memory of notes, fed in the order frames are shown
        self._stop: Callable[[ExitCode | MkstreamError], None] = lambda why: None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.records = 0
        self.dropped = 0
        self._queue: deque[tuple[dict[str, Any], float, bytes]] = deque()
        self._queued = 0  # bytes of the frames queued
        self._changed = threading.Condition()
        self._closing = False
        self._done = False  # -n reached, or the writer failed: frames are no longer taken
        self._said: list[str] = []
        self._pending: list[bytes] = []
        self._stop_read, self._stop_write = os.pipe()
        self._stop_fds: tuple[int, ...] = (self._stop_read, self._stop_write)
        renderer.watch_while_computing([self._stop_read, writer.failed_fd], self._woken, self._write_pending)
        self._thread = threading.Thread(target=self._run, name="mkstream-records", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop_with(self, loop: asyncio.AbstractEventLoop, stop: Callable[[ExitCode | MkstreamError], None]) -> None:
        """How the thread ends the run (``-n`` reached, the writer failed): ``stop`` on the relay's loop."""
        self._loop, self._stop = loop, stop

    def put(self, record: dict[str, Any], at: float, verbatim: bytes) -> None:
        """A frame or API call to show (the relay's thread; never waits)."""
        size = len(verbatim)
        with self._changed:
            if self._done or self._closing:
                return
            if self._queued + self.writer.backlog > self.max_backlog:
                # The relay never waits for the reader of the records: past the limit they are dropped.
                if not self.dropped:
                    self._said.append(f"{self.writer.label} is not reading: records are dropped (--max-backlog) "
                                      "until it catches up; the traffic is still relayed")
                self.dropped += 1
                return
            self._queue.append((record, at, verbatim))
            self._queued += size
            self._changed.notify()

    def say(self) -> None:
        """Give the notices the thread has for stderr, and move the status line (the relay's thread)."""
        with self._changed:
            said, self._said = self._said, []
        for message in said:
            self.notices.warn(message)
        if self.notices.status is not None:
            self.notices.status.progress.records = self.records
            self.notices.status.tick()

    def finish(self, drain: bool) -> None:
        """End the thread: with ``drain``, the frames queued get DRAIN_GRACE seconds to be shown;
        else (a signal, a failed writer) the frame being rendered is left at once."""
        with self._changed:
            self._closing = True
            self._changed.notify()
        if drain:
            self._thread.join(DRAIN_GRACE)
        os.write(self._stop_write, b"x")
        self._thread.join()
        with self._changed:
            if self._queue:
                self.dropped += len(self._queue)
                self._said.append(f"{len(self._queue)} frame(s) were not shown: the proxy stopped before their records")
                self._queue.clear()
        self.say()
        self.close()

    def close(self) -> None:
        """Close the stop pipe (once): at the end of ``finish``, or when the run fails before the thread starts."""
        fds, self._stop_fds = self._stop_fds, ()
        for fd in fds:
            os.close(fd)

    # ----- the thread -------------------------------------------------------------------------

    def _run(self) -> None:
        from misskey_cli.output.writer import ReaderGone

        while True:
            with self._changed:
                while not self._queue and not self._closing:
                    self._changed.wait()
                if not self._queue:
                    return
                record, at, verbatim = self._queue.popleft()
                self._queued -= len(verbatim)
            try:
                self._show(record, at, verbatim)
            except _Interrupted:
                return
            except ReaderGone:
                self._end(ExitCode.OK)
                return
            except MkstreamError as exc:
                self._end(exc)
                return
            if self.count is not None and self.records >= self.count:
                self._end(ExitCode.OK)
                return

    def _end(self, why: ExitCode | MkstreamError) -> None:
        with self._changed:
            self._done = True
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):  # (the loop has closed: the run is ending anyway)
                self._loop.call_soon_threadsafe(self._stop, why)

    def _show(self, record: dict[str, Any], at: float, verbatim: bytes) -> None:
        from misskey_cli.output.render import JqRuntimeError

        renderer = self.renderer
        if self.context is not None and record.get("from") == "server" and "frame" in record:
            for note in notes_in(record["frame"]):
                self.context.saw(note)
        records = renderer.verbatim(verbatim) if renderer.format.verbatim else renderer.records(record, at)
        out = self._pending
        try:
            for one in records:
                out.append(one)
                if self.count is not None and self.records + len(out) >= self.count:
                    break
                if len(out) >= RECORDS_PER_WRITE:
                    self._write_pending()
                    self._wait_for_room()
        except JqRuntimeError as exc:
            with self._changed:
                self._said.append(f"jq: {exc}; record skipped")
        finally:
            close = getattr(records, "close", None)
            if close is not None:
                close()  # stops jq mid-frame (-n reached, or the run ends)
            self._write_pending()

    def _write_pending(self) -> None:
        """Write the records made so far (also before jq computes for a while)."""
        out = self._pending
        if out:
            data = out[0] if len(out) == 1 else b"".join(out)
            self.records += len(out)
            count = len(out)
            out.clear()
            self.writer.write(data, count)

    def _wait_for_room(self) -> None:
        while not self.writer.wait_for_room(self.max_backlog, 0.1):
            ready, _, _ = select.select([self._stop_read, self.writer.failed_fd], [], [], 0)
            for fd in ready:
                self._woken(fd)

    def _woken(self, fd: int) -> None:
        if fd == self._stop_read:
            raise _Interrupted
        self.writer.raise_error()


class Tap:
    """The relay's observer: records, warnings, the recording; see the module docstring."""

    def __init__(self, settings: ProxySettings, output: RecordThread, writer: Writer, recorder: Recorder | None,
                 notices: Notices, tokens: Tokens, stop: Callable[[ExitCode | MkstreamError], None]) -> None:
        self.settings = settings
        self.output = output
        self.writer = writer
        self.recorder = recorder
        self.notices = notices
        self.tokens = tokens
        self.stop = stop
        self.sockets: dict[int, SocketWatch] = {}
        self.frames = 0
        self.calls = 0
        self.connections: set[int] = set()
        self._subscriptions: Subscriptions | None = None

    # ----- the observer -----------------------------------------------------------------------

    def opened(self, conn: int, token: str | None) -> None:
        self.tokens.learn(token)
        self.connections.add(conn)
        self.sockets[conn] = SocketWatch(logged_in=token is not None, ack_timeout=self.settings.ack_timeout)
        self.notices.debug(f"#{conn}: stream opened ({'with a token' if token else 'anonymous'})")

    def message(self, conn: int, side: str, opcode: int, payload: bytes, at: float) -> None:
        self.frames += 1
        key, value, text = frame_value(opcode, payload)
        watch = self.sockets.get(conn)
        warnings: list[str] = []
        if watch is not None:
            if side == "client" and key == "frame":
                warnings = watch.client_frame(value, at)
            elif side == "client" and opcode == OP_PONG:
                watch.client_pong()
            elif side == "server" and key == "frame":
                watch.server_frame(value)
            elif side == "server" and opcode == OP_PING:
                warnings = watch.server_ping(at)
        if self.recorder is not None:
            self._record(lambda recorder: recorder.relayed(at, conn, side, key, text))
            if key == "frame" and side == "client":
                self._note_subscriptions(at)
        self._emit({"conn": conn, "from": side, key: value}, at, payload if opcode in (OP_TEXT, OP_BINARY) else text)
        for warning in warnings:
            self.notices.warn(f"#{conn}: {warning}")

    def api(self, conn: int, call: ApiCall, at: float) -> None:
        self.calls += 1
        self.connections.add(conn)
        endpoint = call.path.removeprefix("/api/") if call.path.startswith("/api/") else call.path
        api: dict[str, Any] = {"method": call.method, "endpoint": endpoint, "status": call.status, "ms": call.ms}
        self.tokens.learn(call.token)
        if self.settings.bodies:
            api["request"] = self._body(call.request_body)
            api["response"] = self._body(call.response_body)
        if call.status >= 400:
            self.notices.warn(f"#{conn}: {call.method} {endpoint} answered {call.status}")
        self._record(lambda recorder: recorder.relayed(at, conn, "client", "api", jsoncodec.dumps(api)))
        self._emit({"conn": conn, "from": "client", "api": api}, at, jsoncodec.dumps(api))

    def closed(self, conn: int) -> None:
        watch = self.sockets.pop(conn, None)
        if watch is not None:
            for warning in watch.closed():
                self.notices.warn(f"#{conn}: {warning}")
        self.notices.debug(f"#{conn}: stream closed")
        if self.recorder is not None:
            self._note_subscriptions(time.time())

    def notice(self, message: str) -> None:
        self.notices.warn(message)

    def tick(self, now: float) -> None:
        for conn, watch in list(self.sockets.items()):
            for warning in watch.tick(now):
                self.notices.warn(f"#{conn}: {warning}")
        self.output.say()
        self.check_writer()

    # ----- records ----------------------------------------------------------------------------

    def _emit(self, record: dict[str, Any], at: float, verbatim: bytes) -> None:
        self.output.put(record, at, verbatim)

    def check_writer(self) -> None:
        from misskey_cli.output.writer import ReaderGone

        try:
            self.writer.raise_error()
        except ReaderGone:
            self.stop(ExitCode.OK)
        except MkstreamError as exc:
            self.stop(exc)

    def _body(self, data: bytes) -> Any:
        """A request or answer body for a record: JSON as its value, else text; never with a token.

        In JSON, ``i`` is dropped and ``token`` and ``accessToken`` (MiAuth's and
        ``auth/session/userkey``'s answers) become ``***``, at any depth; in a form
        (``i=...&...``, multipart fields) those fields' values become ``***``. Every value so
        removed is learnt first, so the run's redaction hides it wherever else it appears.
        """
        if not data:
            return None
        try:
            value, strict = jsoncodec.loads(data)
        except ValueError:
            strict = False
        if not strict:
            text = data.decode("utf-8", "replace")
            for pattern in (_FORM_SECRET, _MULTIPART_SECRET):
                for found in pattern.finditer(text):
                    self.tokens.learn(found.group(2))
                    self.tokens.learn(unquote_plus(found.group(2)))
            text = _MULTIPART_SECRET.sub(r"\1***", _FORM_SECRET.sub(r"\1***", text))
            return self.tokens(text)
        self._learn(value)
        return self._masked(value)

    def _learn(self, value: Any) -> None:
        if type(value) is dict:
            for key, item in value.items():
                if key in _SECRET_KEYS and isinstance(item, str):
                    self.tokens.learn(item)
                else:
                    self._learn(item)
        elif type(value) is list:
            for item in value:
                self._learn(item)

    def _masked(self, value: Any) -> Any:
        if type(value) is dict:
            masked: dict[str, Any] = {}
            for key, item in value.items():
                if key not in _SECRET_KEYS:
                    masked[key] = self._masked(item)
                elif key != "i":
                    masked[key] = "***"
            return masked
        if type(value) is list:
            return [self._masked(item) for item in value]
        if type(value) is str:
            return self.tokens(value)
        return value

    def _record(self, write: Callable[[Recorder], None]) -> None:
        """Write to the recording; a failed write (a full disk) ends the run with its error.

        The observer is called from the relay's tasks, where an exception would end one client's
        stream silently (or reach asyncio's handler): the run stops instead, and the recording is
        not written again.
        """
        if self.recorder is None:
            return
        try:
            write(self.recorder)
        except MkstreamError as exc:
            self.recorder = None
            self.stop(exc)

    def _note_subscriptions(self, at: float) -> None:
        """A ``subscriptions`` line when what the clients have connected changes (for ``serve --replay``)."""
        channels = {cid: channel for watch in self.sockets.values() for cid, channel in watch.connections.items()}
        captures = sorted({note for watch in self.sockets.values() for note in watch.captures})
        now = Subscriptions(tuple(RecordedChannel(cid, channel) for cid, channel in channels.items()), tuple(captures))
        if now != self._subscriptions:
            self._subscriptions = now
            self._record(lambda recorder: recorder.event("subscriptions", at, **now.to_json()))

    # ----- what drain_and_report asks of a run (run.app.Drained) -------------------------------

    def finish_state(self) -> None:
        """Nothing to save: the proxy keeps no --state (the drain calls this of every run)."""

    def finish_notices(self) -> None:
        pass

    def stats_line(self) -> str:
        return (f"{self.frames} frames and {self.calls} API calls relayed on {len(self.connections)} connections, "
                f"{self.writer.records_written} records written, {self.output.dropped} dropped")


# ----- the command ----------------------------------------------------------------------------


def run_proxy(settings: ProxySettings, env: Environment) -> int:
    """Run ``mkstream proxy``; returns the exit status."""
    notices = make_notices(settings.notices, env)
    return guarded(notices, lambda stack: _proxy(settings, env, notices, stack))


def _upstream(settings: ProxySettings, env: Environment, notices: Notices) -> Upstream:
    """The server, with TLS built where the API client builds its own and the proxy chosen as for every
    connection mkstream makes."""
    tls = None
    if settings.endpoint.scheme == "wss":
        from misskey_cli.net.transport import tls_context

        tls = tls_context(settings.ca_file, settings.insecure)
    if settings.insecure:
        notices.warn("TLS certificates are not verified (--insecure): anyone on the path can read the traffic")
    proxy, source = effective_proxy(settings.endpoint, settings.proxy, env.environ)
    if proxy is not None:
        notices.debug(f"to the server through the proxy {proxy.display} (from {source})")
    return Upstream(settings.endpoint, tls, settings.connect_timeout, proxy)


def check_origin(endpoint: Endpoint) -> None:
    """Refuse a path in --host: the proxy relays the paths its client asks for.

    Elsewhere in mkstream a path in --host names the streaming endpoint only (API calls go to the
    origin's /api/), so it cannot also be a prefix for everything relayed; and rewriting only the
    client's /streaming would relay something other than what the client sent. Misskey serves
    from the root of its origin, and that is what the proxy stands in for.
    """
    if endpoint.path != "/streaming":
        raise UsageError(f"--host for proxy is a server's origin ({endpoint.http_base}), not a URL with a path "
                         f"({endpoint.path}): the proxy relays the paths the client asks for")


def _proxy(settings: ProxySettings, env: Environment, notices: Notices, stack: ExitStack) -> int:
    check_origin(settings.endpoint)
    tokens = Tokens(None)
    notices.redact = tokens
    out = settings.output
    upstream = _upstream(settings, env, notices)
    context = NoteContext()  # no lookups: the proxy makes no request of its own
    renderer, to_terminal = make_renderer(out, env, context, relayed=True)
    # Whatever fails from here on (the output, the recording), jq's worker and the stop pipe are
    # closed on the way out, not left to finalizers.
    stack.callback(renderer.close)
    writer, status = open_writer(out, settings.notices, env, notices, stack, to_terminal)
    if status is not None:
        status.set_state("relaying")
    output = RecordThread(settings, renderer, writer, notices, context)
    stack.callback(output.close)
    recorder = stack.enter_context(Recorder.open(out.record)) if out.record else None
    outcome: list[ExitCode | MkstreamError] = []

    def stop(why: ExitCode | MkstreamError) -> None:
        if not outcome:
            outcome.append(why)
            done.set()

    tap = Tap(settings, output, writer, recorder, notices, tokens, stop)
    done: asyncio.Event
    if recorder is not None:
        recorder.header(settings.endpoint.netloc, Subscriptions())

    async def main() -> None:
        nonlocal done
        done = asyncio.Event()
        loop = asyncio.get_running_loop()
        output.stop_with(loop, stop)
        relay = Relay(upstream, tap, keep_bodies=settings.bodies)
        try:
            server = await relay.start(settings.listen_host, settings.listen_port)
        except OSError as exc:
            raise ConnectFailed(f"cannot listen on {settings.listen_host}:{settings.listen_port}: "
                               f"{exc.strerror or exc}") from None
        for signum, code in ((signal.SIGINT, ExitCode.SIGINT), (signal.SIGTERM, ExitCode.SIGTERM),
                             (signal.SIGHUP, ExitCode.SIGHUP)):
            loop.add_signal_handler(signum, stop, code)
        if out.path is not None:
            loop.add_signal_handler(signal.SIGHUP, writer.reopen)
        loop.add_reader(writer.failed_fd, tap.check_writer)
        if settings.duration is not None:
            loop.call_later(settings.duration, stop, ExitCode.OK)
        host, port = server.sockets[0].getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        notices.info(f"proxy listening on http://{shown}:{port}, relaying to {settings.endpoint.http_base} "
                     f"(point the client's origin or base URL at http://{shown}:{port})")
        ticking = asyncio.ensure_future(relay.ticking())
        try:
            await done.wait()
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                loop.remove_signal_handler(signum)
            loop.remove_reader(writer.failed_fd)
            ticking.cancel()
            server.close()
            for task in list(relay.tasks):
                task.cancel()
            await asyncio.gather(ticking, *relay.tasks, return_exceptions=True)

    output.start()
    try:
        asyncio.run(main())
    finally:
        code = outcome[0] if outcome else ExitCode.OK
        # Frames already queued are shown at a normal end (--duration); a signal or a failed
        # writer ends the records at once, jq or not.
        output.finish(drain=code is ExitCode.OK)
        renderer.close()
    return drain_and_report(tap, writer, notices, settings.notices.stats, code)
