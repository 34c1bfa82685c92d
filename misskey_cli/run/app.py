"""One run, assembled once: settings and the process's environment in, an exit status out.

``cli/`` parses and builds frozen settings; ``run_stream`` does the rest. This is the one
module with process-wide effects besides the entry point's (``__main__``: SIGTERM before a run
installs its own handler is exit 143), and it restores each of them when the run ends: the SIGTERM
handler, the signal wake-up fd, the ``os._exit`` on a second Ctrl-C while leaving. It reads the
token (file, stdin or a no-echo prompt) and makes the one ``Redactor``, starts the ``--demo``
simulator, picks the output format and colours from the terminal facts it is given, and turns
every way a run can end into an exit status: the writer is drained (for a bounded time) on
every path but a second Ctrl-C, so nothing received is lost, and any crash is one line, exit 1.

The other runs (``run/replay.py``, ``mkstream proxy``) are assembled from the same public pieces:
``make_notices``, ``make_renderer``, ``open_writer``, ``signal_handling``, ``guarded``,
``until_end`` and ``drain_and_report`` (which asks of a run only what ``Drained`` names).
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from types import FrameType
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol, TextIO

from misskey_cli.errors import ExitCode, MkstreamError, SourceEnded, UsageError
from misskey_cli.net.endpoint import MAX_TOKEN_FILE, Redactor, Target, loose_permissions, read_token_file
from misskey_cli.net.transport import effective_proxy
from misskey_cli.output.notices import Notices, StatusLine
from misskey_cli.run.settings import NoticeSettings, OutputSettings, Request, ServerSettings, StreamSettings

if TYPE_CHECKING:
    from misskey_cli.net.api import ApiClient
    from misskey_cli.output.notecontext import NoteContext
    from misskey_cli.output.render import Renderer
    from misskey_cli.output.writer import Writer

# How long the writer may take to write what is queued when mkstream is leaving.
DRAIN_TIMEOUT = 5.0
# Seconds a lookup of the line view (users/show, notes/show) may take in all; it holds the stream loop.
LOOKUP_TIMEOUT = 3.0
# Notes per second of the --demo simulator.
DEMO_RATE = 4.0


@dataclass(frozen=True)
class SuiteKnobs:
    """Environment variables that let the test suite wait for events instead of wall time (docs/cli.md §7).

    Not part of the interface: ``MKSTREAM_DEMO_RATE`` (the --demo simulator's notes per second) and
    ``MKSTREAM_DRAIN_TIMEOUT`` (the bound on the writer's drain when leaving). Read here, when a run
    starts, and nowhere else; a value that is not a number in range is a usage error.
    """

    demo_rate: float = DEMO_RATE
    drain_timeout: float = DRAIN_TIMEOUT

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> SuiteKnobs:
        return cls(_knob(environ, "MKSTREAM_DEMO_RATE", DEMO_RATE, 1000.0),
                   _knob(environ, "MKSTREAM_DRAIN_TIMEOUT", DRAIN_TIMEOUT, 60.0))


def _knob(environ: Mapping[str, str], name: str, default: float, most: float) -> float:
    text = environ.get(name)
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value <= most:  # NaN fails too
        raise UsageError(f"{name}={text!r}: give a number above 0 and at most {most:g}")
    return value


@dataclass(frozen=True)
class Environment:
    """The process's standard streams and terminal facts, decided once at the entry point."""

    stdin: TextIO | None
    stdin_fd: int | None
    stdout_fd: int | None
    stdout_stream: BinaryIO | None
    stderr: TextIO | None
    stdin_isatty: bool
    stdout_isatty: bool
    stderr_isatty: bool
    environ: Mapping[str, str]
    stdout_columns: int | None = None  # the terminal's width, when stdout is one

    @classmethod
    def from_process(cls) -> Environment:
        """The real process: file descriptors where the streams have them (a test harness may not)."""
        return cls(
            stdin=sys.stdin, stdin_fd=_fileno(sys.stdin),
            stdout_fd=_fileno(sys.stdout), stdout_stream=getattr(sys.stdout, "buffer", None),
            stderr=sys.stderr,
            stdin_isatty=_isatty(sys.stdin), stdout_isatty=_isatty(sys.stdout), stderr_isatty=_isatty(sys.stderr),
            environ=os.environ, stdout_columns=_columns(sys.stdout),
        )


def _fileno(stream: Any) -> int | None:
    try:
        return int(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return None


def _columns(stream: Any) -> int | None:
    fd = _fileno(stream)
    if fd is None or not _isatty(stream):
        return None
    try:
        return os.get_terminal_size(fd).columns or None
    except OSError:
        return None


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, OSError, ValueError):
        return False


class Terminated(BaseException):
    """SIGTERM (or SIGHUP without -o FILE) arrived: leave cleanly, exit 143 (129)."""

    def __init__(self, code: ExitCode = ExitCode.SIGTERM) -> None:
        super().__init__(code)
        self.code = code


# ----- the token ------------------------------------------------------------------------------


def resolve_token(server: ServerSettings, env: Environment, notices: Notices) -> str | None:
    """Read the token from where the settings say: a value, a file, stdin, or a no-echo prompt."""
    source = server.token
    if source.file is None:
        return source.value or None
    if source.file != "-":
        if loose_permissions(source.file):
            notices.warn(f"token file {source.file} is readable by others: chmod 600 {source.file}")
        return read_token_file(source.file)
    if env.stdin is None or (env.stdin_fd is None and not hasattr(env.stdin, "read")):
        raise UsageError("--token-file -: standard input is closed")
    if env.stdin_isatty:
        import getpass

        try:
            text = getpass.getpass("mkstream: token (not echoed): ")
        except EOFError:
            text = ""
        return read_token_file("-", text.splitlines()[0] if text else "")
    try:
        text = env.stdin.readline(MAX_TOKEN_FILE + 1)
    except (OSError, ValueError) as exc:
        raise UsageError(f"--token-file -: cannot read standard input: {exc}") from None
    return read_token_file("-", text)


# ----- signals --------------------------------------------------------------------------------


def _exit_now(signum: int, frame: FrameType | None) -> None:
    os._exit(ExitCode.SIGINT if signum == signal.SIGINT else ExitCode.SIGTERM)


def _quit_now(signum: int, frame: FrameType | None) -> None:
    os._exit(ExitCode.SIGQUIT)


class Signals:
    """The signals of a run, noted by their handlers and acted on by the loop at a safe point.

    A handler that raised would land anywhere (between counting a frame and queueing its record,
    say): instead it notes the signal, the wake-up fd makes the loop's ``select`` return, and the
    loop calls ``check``, which raises ``KeyboardInterrupt`` or ``Terminated`` from there.
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.pending: int | None = None
        self.resized = False  # SIGWINCH: the terminal facts that depend on its size are read again
        self.on_resize: Callable[[], None] | None = None

    def note(self, signum: int, frame: FrameType | None) -> None:
        if self.pending is None:
            self.pending = signum

    def note_resize(self, signum: int, frame: FrameType | None) -> None:
        self.resized = True

    def check(self) -> None:
        if self.resized:
            self.resized = False
            if self.on_resize is not None:
                self.on_resize()
        signum, self.pending = self.pending, None
        if signum == signal.SIGINT:
            raise KeyboardInterrupt()
        if signum is not None:
            raise Terminated(ExitCode.SIGHUP if signum == signal.SIGHUP else ExitCode.SIGTERM)


@contextmanager
def signal_handling(reopen: Callable[[], None] | None = None) -> Iterator[Signals]:
    """The run's signals, restored on the way out; yields the ``Signals`` the loop checks.

    Ctrl-C and SIGTERM end the run cleanly. SIGHUP reopens the output file when there is one
    (what logrotate expects after moving it) and ends the run like SIGTERM otherwise (the
    terminal closed). SIGQUIT exits at once. The wake-up fd makes a signal interrupt ``select``.
    """
    wake_read, wake_write = os.pipe()
    for fd in (wake_read, wake_write):
        os.set_blocking(fd, False)
    signals = Signals(wake_read)

    def hangup(signum: int, frame: FrameType | None) -> None:
        assert reopen is not None
        reopen()

    handlers: dict[int, Any] = {signal.SIGINT: signals.note, signal.SIGTERM: signals.note, signal.SIGQUIT: _quit_now,
                                signal.SIGHUP: hangup if reopen is not None else signals.note,
                                signal.SIGWINCH: signals.note_resize}
    previous = {signum: signal.signal(signum, handler) for signum, handler in handlers.items()}
    previous_wake = signal.set_wakeup_fd(wake_write, warn_on_full_buffer=False)
    try:
        yield signals
    finally:
        signal.set_wakeup_fd(previous_wake)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        os.close(wake_read)
        os.close(wake_write)


@contextmanager
def leaving() -> Iterator[None]:
    """While mkstream says goodbye and drains, a second Ctrl-C (or SIGTERM) exits at once."""
    previous = {signum: signal.signal(signum, _exit_now) for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


# ----- the streaming commands -----------------------------------------------------------------


def run_stream(settings: StreamSettings, env: Environment) -> int:
    """Run ``connect``, ``capture`` or ``send``; returns the exit status."""
    notices = make_notices(settings.notices, env)
    return guarded(notices, lambda stack: _stream(settings, env, notices, stack))


def make_notices(settings: NoticeSettings, env: Environment) -> Notices:
    return Notices(env.stderr, quiet=settings.quiet, verbose=settings.verbose, timestamps=not env.stderr_isatty)


def guarded(notices: Notices, run: Callable[[ExitStack], int]) -> int:
    """Run a command's body with an exit stack; its errors become their exit statuses, a crash exit 1."""
    try:
        with ExitStack() as stack:
            return run(stack)
    except MkstreamError as exc:
        notices.error(exc.message)
        return exc.exit_code
    except Exception as exc:  # noqa: BLE001 - the one place that turns any crash into exit 1
        import traceback

        notices.traceback(traceback.format_exc())
        notices.error(f"unexpected {type(exc).__name__}: {exc}")
        return ExitCode.RUNTIME_ERROR


def _target(settings: StreamSettings, env: Environment, notices: Notices, stack: ExitStack,
            knobs: SuiteKnobs = SuiteKnobs()) -> Target:
    server = settings.server
    if server.demo:
        from misskey_cli.net.endpoint import Endpoint
        from misskey_cli.simulator import DEMO_TOKEN, Simulator

        sim = stack.enter_context(Simulator(rate=knobs.demo_rate, ticks=True))
        notices.debug(f"demo simulator listening on {sim.url}")
        return Target(Endpoint("ws", sim.host_port, "/streaming"), DEMO_TOKEN,
                      connect_timeout=settings.liveness.connect_timeout)
    if server.endpoint is None:  # before the token: no prompt, no read of stdin, for a run that cannot start
        raise UsageError("no server given: use --host misskey.example (or set MISSKEY_HOST), or --demo")
    token = resolve_token(server, env, notices)
    notices.redact = Redactor(token)
    if server.insecure:
        notices.warn("TLS certificates are not verified (--insecure): anyone on the path can read the stream")
    if token and server.endpoint.scheme == "ws" and not server.endpoint.is_loopback:
        notices.warn(f"the token is sent in clear text over plain ws:// to {server.endpoint.netloc}")
    # Decided once, so the socket and the HTTP API (backfill) go the same way.
    proxy, source = effective_proxy(server.endpoint, server.proxy, env.environ)
    if proxy is not None:
        notices.debug(f"through the proxy {proxy.display} (from {source})")
    return Target(server.endpoint, token, server.auth, server.insecure, server.ca_file, proxy,
                  settings.liveness.connect_timeout)


def make_renderer(out: OutputSettings, env: Environment, note_context: NoteContext | None = None,
                  relayed: bool = False) -> tuple[Renderer, bool]:
    """The renderer for the output settings, with the terminal facts decided; and whether records go to a terminal.

    ``relayed``: the records may be ``mkstream proxy``'s, which ``--format line`` shows its own way."""
    from misskey_cli.output.render import OutputOptions, Renderer, decide_color, decide_format, decide_truecolor

    to_terminal = out.path is None and env.stdout_isatty
    fmt = decide_format(out.format, to_terminal)
    width = out.width or (env.stdout_columns if to_terminal else None)
    renderer = Renderer(OutputOptions(
        fmt.name, decide_color(out.color, to_terminal, env.environ), decide_truecolor(env.environ), out.style,
        out.filters, dict(out.jq_args), out.raw_output, out.timestamps,
        escape_raw_strings=to_terminal and not out.unsafe_raw, terminal=to_terminal, width=width,
        show_cw=out.show_cw, note_context=note_context, relayed=relayed))
    return renderer, to_terminal


def open_writer(out: OutputSettings, notice_settings: NoticeSettings, env: Environment, notices: Notices,
                stack: ExitStack, to_terminal: bool) -> tuple[Writer, StatusLine | None]:
    """The writer (stdout or ``-o FILE``) and, on a terminal stderr, the status line; both left with ``stack``."""
    from misskey_cli.output.writer import Writer

    writer = stack.enter_context(Writer.open_append(out.path, notices.warn) if out.path
                                 else Writer.to_fd(env.stdout_fd, env.stdout_stream, notices.warn))
    status = None
    if env.stderr_isatty and env.stderr is not None and not to_terminal and notice_settings.status \
            and not notice_settings.quiet:
        status = StatusLine(env.stderr, width=_columns(env.stderr) or 80)
        notices.status = status
        stack.callback(_clear_status, notices)
    return writer, status


def _stream(settings: StreamSettings, env: Environment, notices: Notices, stack: ExitStack) -> int:
    from misskey_cli.net.session import Session, SessionNotices
    from misskey_cli.output.notecontext import NoteContext
    from misskey_cli.run.live_notes import LiveNotes
    from misskey_cli.run.stream import Stream

    out = settings.output
    request = settings.request
    if request.stdin_commands and env.stdin_fd is None:
        raise UsageError("--stdin: standard input is closed (or not a file)")
    if request.stdin_commands and settings.server.token.file == "-":
        raise UsageError("--token-file - and --stdin both want standard input: put the token in a file")
    knobs = SuiteKnobs.from_environ(env.environ)
    context: NoteContext | None = NoteContext()
    renderer, to_terminal = make_renderer(out, env, context)
    target = _target(settings, env, notices, stack, knobs)
    if renderer.line is None:
        context = None  # only the line view names the note and the user of a noteUpdated
    if context is not None or request.show_captured:
        _note_lookups(request, target, notices, context)
    writer, status = open_writer(out, settings.notices, env, notices, stack, to_terminal)
    said = SessionNotices(notices.warn, notices.event, notices.debug)
    session = Session(target, settings.liveness, settings.reconnect,
                      said if status is None else replace(said, state=status.set_state), notices.redact)
    for conn in request.connections:
        session.add_connection(conn.channel, conn.connection_id, conn.params)
    for note_id in request.captures:
        session.add_capture(note_id)
    gaps = _gaps(settings, target, notices, stack)
    if gaps is not None and gaps.state is not None:
        writer.journal = gaps.state  # the state follows what the writer has written, never ahead of it
    source: Any = session
    if out.record is not None:
        from misskey_cli.recording.tee import RecordingSource
        from misskey_cli.recording.writer import Recorder

        recorder = stack.enter_context(Recorder.open(out.record))
        source = RecordingSource(session, recorder, lambda: target.endpoint.netloc, notices.redact,
                                 one_by_one=settings.limits.count is not None)
    signals = stack.enter_context(signal_handling(writer.reopen if out.path else None))
    follow_window(signals, renderer, status, out, env, to_terminal)
    stream = Stream(source, renderer, writer, settings.limits, notices, control=session,
                    require_ack=settings.liveness.require_ack, logged_in=bool(target.token),
                    stdin_fd=env.stdin_fd if request.stdin_commands else None, watch=[signals.fd], status=status,
                    gaps=gaps, max_backlog=out.max_backlog, on_wake=signals.check, context=context,
                    live=LiveNotes(request.capture_seen, request.captures) if request.capture_seen else None)
    notices.debug(f"streaming from {target.display_url()}")
    code = until_end(stream, session, request.sends, notices)
    return drain_and_report(stream, writer, notices, settings.notices.stats, code, knobs.drain_timeout)


def _api_client(target: Target, timeout: float, retries: int = 2) -> ApiClient:
    """The HTTP API of the streaming server, through the same TLS settings and proxy (raises UsageError)."""
    from misskey_cli.net.api import ApiClient

    return ApiClient(target.endpoint.http_base, target.token, ca_file=target.ca_file, insecure=target.insecure,
                     timeout=timeout, retries=retries, proxy=target.proxy)


def _note_lookups(request: Request, target: Target, notices: Notices, context: NoteContext | None) -> None:
    """Let the line view look notes and users up; for ``capture``, show each note before its events."""
    from misskey_cli.output.notecontext import summary

    try:
        client = _api_client(target, LOOKUP_TIMEOUT, retries=0)
    except UsageError as exc:
        notices.debug(f"no note or user lookups: {exc.message}")
        return
    if context is not None:
        context.call = lambda endpoint, body: client.call_within(LOOKUP_TIMEOUT, endpoint, body)
    for note_id in request.captures if request.show_captured else ():
        try:
            note = client.call_within(target.connect_timeout, "notes/show", {"noteId": note_id})
        except MkstreamError as exc:
            notices.warn(f"cannot show note {note_id}: {exc.message}")
            continue
        if isinstance(note, dict):
            notices.info(f"capturing {note_id}: {summary(note)}")
            if context is not None:
                context.saw({**note, "id": note_id})


def _gaps(settings: StreamSettings, target: Target, notices: Notices, stack: ExitStack) -> Any:
    """The backfill, dedupe and state-file machinery the settings ask for, or None."""
    from misskey_cli.run.backfill import Backfill, Gaps, SeenNotes, StateFile

    wanted = settings.gaps
    if not wanted.backfill and not wanted.dedupe:
        return None
    backfill = None
    if wanted.backfill:
        try:
            client = _api_client(target, target.connect_timeout)
        except UsageError as exc:
            if wanted.state:
                raise
            notices.warn(f"no backfill after reconnects: {exc.message}")
        else:
            backfill = Backfill(client.call, wanted.backfill_max, wanted.mark)
    state = StateFile(wanted.state, target.endpoint.netloc, notices.warn) if wanted.state else None
    gaps = Gaps(backfill, SeenNotes() if wanted.dedupe else None, state)
    stack.callback(gaps.close)
    return gaps


def follow_window(signals: Signals, renderer: Renderer, status: StatusLine | None, out: OutputSettings,
                  env: Environment, to_terminal: bool) -> None:
    """After a resize (SIGWINCH, acted on at the loop's safe point) the line format and the status
    line fit the new width; an explicit --width stays."""
    def resized() -> None:
        if to_terminal and out.width is None and renderer.formatter is not None and env.stdout_fd is not None:
            with contextlib.suppress(OSError):
                renderer.formatter.resize(os.get_terminal_size(env.stdout_fd).columns or None)
        if status is not None:
            columns = _columns(env.stderr)
            if columns:
                status.resize(columns)

    signals.on_resize = resized


def _clear_status(notices: Notices) -> None:
    status, notices.status = notices.status, None
    if status is not None:
        status.clear()  # written and flushed, or dropped if stderr is gone


def until_end(stream: Any, session: Any, sends: Any, notices: Notices) -> ExitCode | MkstreamError:
    """Run the stream; every way it can end becomes an exit status, or the error to report."""
    from misskey_cli.net.session import ServerClosed
    from misskey_cli.output.writer import ReaderGone

    outcome: ExitCode | MkstreamError
    try:
        if sends:
            session.open()
            for send in sends:
                session.send_to_channel(send.connection_id, send.message_type, send.body)
        outcome = stream.run()
    except KeyboardInterrupt:
        outcome = ExitCode.SIGINT
    except Terminated as exc:
        outcome = exc.code
    except (ReaderGone, SourceEnded):
        outcome = ExitCode.OK
    except ServerClosed as exc:
        notices.info(f"{exc.message}; not reconnecting (--no-reconnect)")
        outcome = ExitCode.OK
    except MkstreamError as exc:
        outcome = exc
    except BaseException:
        session.abort()
        raise
    with leaving():
        try:
            session.close()
        except Exception:  # noqa: BLE001 - leaving anyway: a failed goodbye is no reason to lose records
            session.abort()
    return outcome


class Drained(Protocol):
    """What ``drain_and_report`` asks of a run (the stream loop, the proxy's records)."""

    def finish_state(self) -> None: ...  # save what the writer wrote (--state), once it has drained

    def finish_notices(self) -> None: ...  # the notices owed at the end (counts of bad frames, gaps)

    def stats_line(self) -> str: ...  # --stats


def drain_and_report(stream: Drained, writer: Any, notices: Notices, stats: bool,
                     outcome: ExitCode | MkstreamError, drain_timeout: float = DRAIN_TIMEOUT) -> int:
    """Write every queued record (bounded), then say how the run went."""
    from misskey_cli.output.writer import ReaderGone

    error: MkstreamError | None = outcome if isinstance(outcome, MkstreamError) else None
    code = outcome.exit_code if isinstance(outcome, MkstreamError) else outcome
    with leaving():
        try:
            unwritten = writer.finish(drain_timeout)
        except ReaderGone:
            unwritten = 0
        except MkstreamError as exc:
            unwritten = 0
            if error is None:
                error, code = exc, exc.exit_code
        except KeyboardInterrupt:
            unwritten = writer.records_queued - writer.records_written
        stream.finish_state()
    _clear_status(notices)
    stream.finish_notices()
    if unwritten:
        notices.warn(f"{unwritten} record(s) could not be written within {drain_timeout:g}s "
                     f"({writer.label} is not reading) and were dropped")
    if stats:
        notices.report(stream.stats_line())
    if error is not None:
        notices.error(error.message)
    return int(code)
