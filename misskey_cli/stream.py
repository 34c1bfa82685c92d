"""One streaming run: subscribe, receive, validate, render, write, until a limit or a signal.

This is where the pieces meet: the ``Session`` (socket), the ``Renderer``/``Writer`` (output),
the ``--stdin`` command language, the run limits and the signals. It decides how a run ends and
returns the exit status; ``cli.py`` only builds the plan and reports errors.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from misskey_cli import commands, protocol
from misskey_cli.channels import SpecError, check_connection, check_send, did_you_mean
from misskey_cli.errors import ExitCode, UsageError
from misskey_cli.output import JqRuntimeError, ReaderGone, Renderer, Writer, loads
from misskey_cli.session import Received, ServerClosed, Session

BAD_FRAMES_SHOWN = 5


@dataclass
class Plan:
    """What the user asked for on the command line."""

    connections: list[tuple[str, str | None, dict[str, Any]]] = field(default_factory=list)
    captures: list[str] = field(default_factory=list)
    sends: list[tuple[str, str, Any]] = field(default_factory=list)  # (connection id, type, body)
    count: int | None = None
    duration: float | None = None
    idle_timeout: float | None = None
    stdin_commands: bool = False
    stats: bool = False


class Terminated(BaseException):
    """SIGTERM: leave cleanly, exit 143."""


@dataclass
class Stats:
    frames: Counter[str] = field(default_factory=Counter)
    records: int = 0
    bad_frames: int = 0
    jq_errors: int = 0

    def report(self, session: Session) -> str:
        kinds = ", ".join(f"{k} {v}" for k, v in self.frames.most_common()) or "none"
        return (f"stats: frames received {sum(self.frames.values())} ({kinds}); records written {self.records}; "
                f"bad frames {self.bad_frames}; jq errors {self.jq_errors}; "
                f"reconnects {session.counters.reconnects}; connected {session.counters.connected_seconds:.1f}s")


class Stream:
    def __init__(self, plan: Plan, session: Session, renderer: Renderer | None, writer: Writer,
                 warn: Callable[[str], None], info: Callable[[str], None]) -> None:
        self.plan = plan
        self.session = session
        self.renderer = renderer
        self.writer = writer
        self.warn = warn
        self.info = info
        self.stats = Stats()
        self._stdin_buffer = b""
        self._wake_read = -1

    # ----- the run ------------------------------------------------------------------------------

    def run(self) -> ExitCode:
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
        # A signal that lands just before the event loop blocks in select() (or in another
        # thread) would otherwise wait for the next frame to be handled: the wake-up fd makes
        # select() return at once, and the handler then runs.
        self._wake_read, wake_write = os.pipe()
        for fd in (self._wake_read, wake_write):
            os.set_blocking(fd, False)
        previous_wake = signal.set_wakeup_fd(wake_write, warn_on_full_buffer=False)
        try:
            code = self._until_end()
            try:
                self.writer.finish()  # every record received is written before mkstream exits
            except ReaderGone:
                _silence_stdout()
            except KeyboardInterrupt:
                return ExitCode.SIGINT
            except Terminated:
                return ExitCode.SIGTERM
            return code
        except BaseException:
            self.session.abort()
            raise
        finally:
            signal.signal(signal.SIGTERM, previous)
            signal.set_wakeup_fd(previous_wake)
            os.close(self._wake_read)
            os.close(wake_write)
            if self.stats.bad_frames > BAD_FRAMES_SHOWN:
                self.warn(f"{self.stats.bad_frames} bad frames skipped in all (the first {BAD_FRAMES_SHOWN} shown)")
            if self.plan.stats:
                self.info(self.stats.report(self.session))

    def _until_end(self) -> ExitCode:
        try:
            return self._run()
        except KeyboardInterrupt:
            self._leave()
            return ExitCode.SIGINT
        except Terminated:
            self._leave()
            return ExitCode.SIGTERM
        except ReaderGone:
            _silence_stdout()
            self._leave()
            return ExitCode.OK
        except ServerClosed as exc:
            self.info(f"{exc.message}; not reconnecting (--no-reconnect)")
            return ExitCode.OK

    def _leave(self) -> None:
        """Clean disconnect; a second Ctrl-C while leaving exits at once."""
        signal.signal(signal.SIGINT, _exit_now)
        signal.signal(signal.SIGTERM, _exit_now)
        self.session.close()

    def _run(self) -> ExitCode:
        session = self.session
        for channel, cid, params in self.plan.connections:
            session.add_connection(channel, cid, params)
        for note_id in self.plan.captures:
            session.add_capture(note_id)
        session.open()
        for cid, message_type, body in self.plan.sends:
            session.send_to_channel(cid, message_type, body)
        watch = [self.writer.failed_fd, self._wake_read]
        if self.plan.stdin_commands:
            watch.append(0)
        start = time.monotonic()
        end = start + self.plan.duration if self.plan.duration is not None else None
        last_frame = start
        while True:
            deadline = end
            if self.plan.idle_timeout is not None:
                idle_end = last_frame + self.plan.idle_timeout
                deadline = idle_end if deadline is None else min(deadline, idle_end)
            event = session.next(deadline, watch)
            if event is None:
                if end is not None and time.monotonic() >= end:
                    self.info(f"duration of {self.plan.duration:g}s reached")
                else:
                    self.info(f"no frame for {self.plan.idle_timeout:g}s (--idle-timeout)")
                session.close()
                return ExitCode.OK
            if isinstance(event, int):
                if event == self._wake_read:
                    os.read(self._wake_read, 512)  # the signal's handler runs as this returns
                elif event == self.writer.failed_fd:
                    self.writer.raise_error()
                elif not self._read_stdin():
                    watch.remove(0)
                continue
            last_frame = time.monotonic()
            if self._handle(event):
                session.close()
                return ExitCode.OK
            # A reader slower than the stream: pause reading a moment rather than pile up records.
            # Never for long, so the server's pings are still answered and nothing is dropped.
            self.writer.wait_for_room(timeout=1.0)

    # ----- frames -------------------------------------------------------------------------------

    def _handle(self, batch: list[Received]) -> bool:
        """Validate, count and render every frame of a batch; write its records with one write.

        True when the record count has been reached (records past it are not written).
        """
        out: list[bytes] = []
        renderer = self.renderer
        encode = renderer.encode if renderer is not None and renderer.plain else None
        kinds = self.stats.frames
        limit = self.plan.count
        done = False
        for data, binary, at in batch:
            if binary:
                kinds["(binary)"] += 1
                self._bad(f"binary frame of {len(data)} bytes", data, out)
            else:
                try:
                    frame = loads(data)
                except ValueError as exc:
                    kinds["(not JSON)"] += 1
                    self._bad(str(exc), data, out)
                else:
                    kind = frame.get("type") if type(frame) is dict else None
                    if type(kind) is not str:
                        kinds["(bad shape)"] += 1
                        self._bad(protocol.describe_shape_problem(frame) or "unexpected shape", data, out)
                    else:
                        kinds[kind] += 1
                        if kind == "connected" and self._own_ack(frame):
                            continue
                        if encode is not None:
                            out.append(encode(frame))
                        elif renderer is None:
                            out.append(data + b"\n")
                        else:
                            try:
                                out.extend(renderer.render(frame, at, data))
                            except JqRuntimeError as exc:
                                self.stats.jq_errors += 1
                                self.warn(f"jq error, frame skipped: {exc}")
            if limit is not None and self.stats.records + len(out) >= limit:
                del out[limit - self.stats.records:]
                done = True
                break
        if out:
            self.stats.records += len(out)
            self.writer.write(out[0] if len(out) == 1 else b"".join(out))
        return done

    def _own_ack(self, frame: dict[str, Any]) -> bool:
        """A ``connected`` frame mkstream asked for itself: bookkeeping, not the user's data."""
        cid = protocol.ack_id(frame)
        return cid is not None and self.session.note_ack(cid)

    def _bad(self, reason: str, data: bytes, out: list[bytes]) -> None:
        self.stats.bad_frames += 1
        if self.stats.bad_frames <= BAD_FRAMES_SHOWN:
            snippet = data[:120].decode("utf-8", "replace")
            more = "..." if len(data) > 120 else ""
            self.warn(f"bad frame skipped ({reason}): {snippet!r}{more}")
            if self.stats.bad_frames == BAD_FRAMES_SHOWN:
                self.warn("further bad frames are only counted")
        if self.renderer is None:
            out.append(data + b"\n")  # raw output is byte for byte, whatever the bytes

    # ----- stdin commands -----------------------------------------------------------------------

    def _read_stdin(self) -> bool:
        """Apply whole lines from stdin; False at end of input (the stream goes on)."""
        chunk = os.read(0, 65536)
        if not chunk:
            if self._stdin_buffer.strip():
                self._apply_line(self._stdin_buffer.decode("utf-8", "replace"))
            self._stdin_buffer = b""
            return False
        self._stdin_buffer += chunk
        *lines, self._stdin_buffer = self._stdin_buffer.split(b"\n")
        for line in lines:
            self._apply_line(line.decode("utf-8", "replace"))
        return True

    def _apply_line(self, line: str) -> None:
        try:
            command = commands.parse_command(line)
            if command is not None:
                self.apply(command)
        except (commands.CommandError, SpecError, UsageError) as exc:
            self.warn(f"stdin: {exc}")

    def apply(self, command: commands.Command) -> None:
        session = self.session
        if isinstance(command, commands.Connect):
            spec = command.spec
            for warning in check_connection(spec.channel, spec.params, bool(session.target.token)):
                self.warn(warning)
            conn = session.add_connection(spec.channel, spec.connection_id, spec.params)
            self.info(f"connecting {conn.channel} as {conn.id}")
        elif isinstance(command, commands.Disconnect):
            session.remove_connection(command.connection_id)
        elif isinstance(command, commands.Sub):
            session.add_capture(command.note_id)
        elif isinstance(command, commands.Unsub):
            session.remove_capture(command.note_id)
        elif isinstance(command, commands.Send):
            target = session.connections.get(command.connection_id)
            if target is None:
                hint = did_you_mean(command.connection_id, list(session.connections))
                raise UsageError(f"no channel connection with id {command.connection_id}{hint}")
            try:
                warnings = check_send(target.channel, command.message_type, force=False,
                                      override="send it as a raw JSON frame if you mean it")
            except SpecError as exc:
                raise UsageError(str(exc)) from None
            for warning in warnings:
                self.warn(warning)
            session.send_to_channel(command.connection_id, command.message_type, command.body)
        else:
            session.send_text(command.text)


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated()


def _exit_now(signum: int, frame: FrameType | None) -> None:
    os._exit(ExitCode.SIGINT if signum == signal.SIGINT else ExitCode.SIGTERM)


def _silence_stdout() -> None:
    """After the reader left, point stdout at /dev/null so the interpreter's final flush is quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.close(devnull)
    except OSError:
        pass

