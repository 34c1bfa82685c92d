"""The stream loop: events from a frame source in, records out, until a limit says stop.

A *frame source* is anything with the ``FrameSource`` shape: the live ``Session`` today, a
recording file for replay. The loop decodes and classifies each frame (``protocol.decode``),
renders it (``Renderer``), hands the records to the ``Writer`` in one write per batch, applies
``--stdin`` commands to a live session, and sees reconnects and missing acks as events. Before a
frame is written, the notes it delivers go to the ``--capture-seen`` policy (``live_notes.py``),
whose captures and releases it applies to the session, and to the line view's ``NoteContext``,
which it also asks to look up the note and the user of a ``noteUpdated``. It has
no process-wide effects: signals, the wake-up fd and stdout belong to ``app.py``, which passes
the fds to watch and turns the exceptions raised here into exit statuses.
"""

from __future__ import annotations

import contextlib
import os
import select
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from misskey_cli.core import protocol
from misskey_cli.core.channels import SpecError, check_connection, check_send, did_you_mean, unacked_reason
from misskey_cli.core.events import (
    AckMissing,
    Connected,
    Counters,
    Deadline,
    Event,
    Frames,
    Readable,
    Received,
    Reconnected,
)
from misskey_cli.core.notes import notes_in
from misskey_cli.errors import ConnectFailed, ExitCode, NotAcknowledged, UsageError
from misskey_cli.net.session import Session
from misskey_cli.output.notecontext import NoteContext
from misskey_cli.output.notices import Notices, StatusLine
from misskey_cli.output.render import JqRuntimeError, Renderer
from misskey_cli.output.writer import Writer
from misskey_cli.run import stdin_commands as commands
from misskey_cli.run.backfill import DROP, HOLD, TIMELINES, Gaps, Target, unfetchable_notice
from misskey_cli.run.live_notes import LiveNotes
from misskey_cli.run.settings import Limits

BAD_FRAMES_SHOWN = 5
# A frame jq makes many records of is written in batches of this many, each waiting for room.
RECORDS_PER_WRITE = 4096
JQ_ERRORS_SHOWN = 5
# Distinct frame types counted by name; a server that invents more is counted as "(other)".
FRAME_TYPES_COUNTED = 64


class FrameSource(Protocol):
    """Where frames come from: a live session, or a recording."""

    counters: Counters

    def open(self) -> None: ...

    def next(self, deadline: float | None, watch: Sequence[int]) -> Event: ...

    def close(self) -> None:
        """Leave cleanly (a live session disconnects every channel and closes with 1000)."""

    def abort(self) -> None: ...


@dataclass
class Stats:
    frames: dict[str, int] = field(default_factory=dict)  # a plain dict: a Counter's += is 3x slower
    bad_frames: int = 0
    jq_errors: int = 0

    def count(self, kind: str) -> None:
        frames = self.frames
        seen = frames.get(kind)
        if seen is not None:
            frames[kind] = seen + 1
        elif len(frames) < FRAME_TYPES_COUNTED:
            frames[kind] = 1
        else:
            frames["(other)"] = frames.get("(other)", 0) + 1

    def report(self, records: int, counters: Counters) -> str:
        kinds = ", ".join(f"{k} {v}" for k, v in Counter(self.frames).most_common()) or "none"
        return (f"stats: frames received {sum(self.frames.values())} ({kinds}); records written {records}; "
                f"bad frames {self.bad_frames}; jq errors {self.jq_errors}; "
                f"reconnects {counters.reconnects}; connected {counters.connected_seconds:.1f}s")


class Stream:
    def __init__(self, source: FrameSource, renderer: Renderer, writer: Writer, limits: Limits,
                 notices: Notices, *, control: Session | None = None, require_ack: bool = False,
                 logged_in: bool = False, stdin_fd: int | None = None, watch: Sequence[int] = (),
                 status: StatusLine | None = None, gaps: Gaps | None = None,
                 max_backlog: int = 256 * 1024 * 1024, on_wake: Callable[[], None] | None = None,
                 live: LiveNotes | None = None, context: NoteContext | None = None,
                 decode: Callable[[bytes, bool], protocol.Frame | protocol.Bad] = protocol.decode) -> None:
        self.source = source
        self.decode = decode  # a server's frames; a replay of mkstream proxy's recording knows its records too
        self.renderer = renderer
        self.writer = writer
        self.limits = limits
        self.notices = notices
        self.control = control  # the live session that --stdin commands and sends act on
        self.require_ack = require_ack
        self.logged_in = logged_in
        self.stdin_fd = stdin_fd
        self.extra_watch = list(watch)  # e.g. the app's signal wake-up fd: drained, then on_wake is called
        self.on_wake = on_wake  # acts on the signals that woke the loop (raises to end the run)
        self.status = status
        self.gaps = gaps
        self.live = live  # --capture-seen: which of the notes delivered to capture
        self.context = context  # the line view's notes and users, fed here
        self._watch = self._watch_frame if live is not None or context is not None else None
        # Records waiting for a slow reader are held in memory up to this many bytes; past it new
        # frames are dropped (counted) until the reader catches up, and then backfilled.
        self.max_backlog = max_backlog
        self.dropping = False
        self.dropped = 0
        self._dropping_since = 0.0
        self.stats = Stats()
        self.records = 0  # records handed to the writer
        self._stdin_buffer = b""
        self._end: float | None = None
        self._last_frame = 0.0
        self._resuming: list[Target] = []  # what --state says to fetch once the first connection is up
        self._idle: list[tuple[str, str, dict[str, Any], str]] = []  # saved cursors of connections not made this run
        self._moves = -1  # the backfill's cursor moves last marked in a write (--state)
        # While jq computes a frame's records, the run still hears its signals and a failed write.
        renderer.watch_while_computing([writer.failed_fd, *self.extra_watch], self._woken, self._write_pending)
        self._pending: list[bytes] = []  # the records of the batch being rendered, not yet written

    def run(self) -> ExitCode:
        """Stream until a limit is reached; raises on errors, signals and a closed pipe."""
        self.source.open()
        watch = [self.writer.failed_fd, *self.extra_watch]
        if self.stdin_fd is not None:
            watch.append(self.stdin_fd)
        if self.gaps is not None and self.gaps.fd is not None:
            watch.append(self.gaps.fd)
            self._resume()
        start = time.monotonic()
        self._end = start + self.limits.duration if self.limits.duration is not None else None
        self._last_frame = start
        while True:
            if self.dropping and self.writer.backlog <= self.max_backlog // 4:
                self._caught_up()
            limit = self._limit()
            deadline = limit
            # Wake up to keep the status line's clock moving, or to see a slow reader catch up.
            every = 0.2 if self.dropping else self.status.every if self.status is not None else None
            if every is not None:
                tick = time.monotonic() + every
                deadline = tick if deadline is None else min(deadline, tick)
            event = self.source.next(deadline, watch)
            try:
                if self._dispatch(event, watch, limit):
                    return ExitCode.OK
            except CountReached:
                return ExitCode.OK
            if self.status is not None:
                self.status.progress.reconnects = self.source.counters.reconnects
                self.status.tick()

    def _dispatch(self, event: Event, watch: list[int], limit: float | None) -> bool:
        """Act on one event; True when the run is over."""
        if isinstance(event, Frames):
            self._last_frame = time.monotonic()
            if self._handle(event.items):
                return True
        elif isinstance(event, Readable):
            self._readable(event.fd, watch)
        elif isinstance(event, Deadline):
            if limit is not None and time.monotonic() >= limit:
                self._limit_reached()
                return True
        elif isinstance(event, Reconnected):
            self._reconnected(event)
        elif isinstance(event, Connected):
            self._connected(event)
        elif isinstance(event, AckMissing):
            self._ack_missing(event)
        return False

    def _limit(self) -> float | None:
        """The monotonic time at which --duration or --idle-timeout ends the run, if any."""
        deadline = self._end
        if self.limits.idle_timeout is not None:
            idle_end = self._last_frame + self.limits.idle_timeout
            deadline = idle_end if deadline is None else min(deadline, idle_end)
        return deadline

    def _limit_reached(self) -> None:
        duration_reached = self._end is not None and time.monotonic() >= self._end
        if self.control is not None and not self.control.ever_connected:
            # A run that never got a socket did not end "as asked": a cron job must hear of it.
            limit = "before the run's time limit" if duration_reached else \
                f"within --idle-timeout {self.limits.idle_timeout:g}s"
            raise ConnectFailed(f"could not connect to {self.control.target.display_url()} {limit}")
        if duration_reached:
            self.notices.info(f"duration of {self.limits.duration:g}s reached")
        else:
            self.notices.info(f"no frame for {self.limits.idle_timeout:g}s (--idle-timeout)")

    def finish_notices(self) -> None:
        if self.dropping:
            self.notices.warn(f"{self.dropped} frames were dropped while {self.writer.label} was not reading "
                              "(--max-backlog)")
        if self.stats.bad_frames > BAD_FRAMES_SHOWN:
            self.notices.warn(f"{self.stats.bad_frames} bad frames skipped in all (the first {BAD_FRAMES_SHOWN} shown)")
        if self.stats.jq_errors > JQ_ERRORS_SHOWN:
            self.notices.warn(f"{self.stats.jq_errors} frames skipped for jq errors in all "
                              f"(the first {JQ_ERRORS_SHOWN} shown)")

    def stats_line(self) -> str:
        line = self.stats.report(self.writer.records_written, self.source.counters)
        if self.live is not None:
            line += f"; seen notes captured {self.live.captured}, released {self.live.released}"
        return line

    # ----- events -------------------------------------------------------------------------------

    def _readable(self, fd: int, watch: list[int]) -> None:
        if fd == self.writer.failed_fd:
            self.writer.raise_error()
        elif self.gaps is not None and fd == self.gaps.fd:
            self._backfilled()
        elif fd == self.stdin_fd:
            if not self._read_stdin():
                watch.remove(fd)
        else:
            self._woken(fd)

    def _woken(self, fd: int) -> None:
        """A signal's wake-up fd (or the writer's failure fd) is readable: act on it (may raise)."""
        if fd == self.writer.failed_fd:
            self.writer.raise_error()
            return
        with contextlib.suppress(BlockingIOError):
            os.read(fd, 512)  # a wake-up byte: a signal was noted
        if self.on_wake is not None:
            self.on_wake()

    def _reconnected(self, event: Reconnected) -> None:
        what = f"reconnected after {_seconds(event.down_for)}"
        if event.captures:
            self.notices.warn(f"events on {len(event.captures)} captured note(s) during the "
                              f"{_seconds(event.down_for)} gap cannot be fetched and may be missing")
        gaps = self.gaps
        if gaps is None or gaps.backfill is None or self.control is None:
            self.notices.event(what)
            return
        targets, unfetchable = [], []
        for conn in self.control.connections.values():
            if conn.channel in TIMELINES:
                targets.append(Target(conn.id, conn.channel, conn.params, gaps.backfill.cursors.get(conn.id),
                                      event.down_since))
            else:
                unfetchable.append(unfetchable_notice(conn.id, conn.channel, event.down_since))
        gaps.start(what, targets, unfetchable)
        self._gap_notices(gaps.finished()[2] if not targets else [])

    def _resume(self) -> None:
        """Start from a state file: what each connection missed since the last run, fetched once connected."""
        gaps = self.gaps
        assert gaps is not None and gaps.backfill is not None
        if gaps.state is None or self.control is None:
            return
        output = self.writer.output_stat()
        saved, updated, cut = gaps.state.load(output)
        if cut is not None:
            self.writer.cut(cut)
            output = self.writer.output_stat()
        since = updated if updated is not None else time.time()
        for conn in self.control.connections.values():
            entry = saved.pop(conn.id, None)
            if entry is None:
                continue
            if entry.channel != conn.channel:
                self.notices.warn(f"state file {gaps.state.path}: {conn.id} was channel {entry.channel}, "
                                  f"is {conn.channel} this run: starting it fresh")
                continue
            if entry.params != conn.params:
                self.notices.warn(f"state file {gaps.state.path}: {conn.id} ({conn.channel}) was saved with other "
                                  "params: starting it fresh")
                continue
            gaps.backfill.observe(conn.id, entry.last_id)
            if conn.channel in TIMELINES:
                self._resuming.append(Target(conn.id, conn.channel, conn.params, entry.last_id, since))
        # Kept as saved, so a run with fewer channels does not lose the others' cursors.
        self._idle = [(cid, entry.channel, entry.params, entry.last_id) for cid, entry in saved.items()]
        if saved:
            self.notices.warn(f"state file {gaps.state.path} also holds {', '.join(saved)} (not connected this run): "
                              "kept unchanged for a later run")
        gaps.state.start(self._rows(), output)
        self._moves = gaps.backfill.moves

    def _connected(self, event: Connected) -> None:
        """The first connection: the resume, and what the failed attempts before it left out, are fetched."""
        gaps = self.gaps
        if gaps is None or gaps.backfill is None or self.control is None:
            return
        targets, self._resuming = self._resuming, []
        what = f"resumed from {gaps.state.path}" if targets and gaps.state is not None else \
            f"connected after {_seconds(event.waited)}"
        if event.failures:
            resumed = {target.connection_id for target in targets}
            targets += [Target(c.id, c.channel, c.params, gaps.backfill.cursors.get(c.id), event.since)
                        for c in self.control.connections.values() if c.channel in TIMELINES and c.id not in resumed]
        if targets:
            gaps.start(what, targets, [])

    def _backfilled(self) -> None:
        assert self.gaps is not None
        frames, released, notices = self.gaps.finished()
        now = time.time()
        done = False
        if frames:
            done = self._handle([Received(frame, False, now) for frame in frames], live=False)
        if released and not done:
            done = self._handle(released)
        self._gap_notices(notices)
        if done:
            raise CountReached()

    def _gap_notices(self, lines: list[str]) -> None:
        for line in lines:
            if line.startswith("warning: "):
                self.notices.warn(line.removeprefix("warning: "))
            else:
                self.notices.event(line)

    def finish_state(self) -> None:
        """The state file's last save, once the writer is done (what it wrote, nothing announced)."""
        if self.gaps is not None and self.gaps.state is not None:
            self.gaps.state.finish()

    def _rows(self) -> list[tuple[str, str, dict[str, Any], str]]:
        """Each connection's cursor, as the state file keeps it."""
        assert self.gaps is not None and self.control is not None
        cursors = self.gaps.cursors()
        rows = [(c.id, c.channel, c.params, cursors[c.id]) for c in self.control.connections.values()
                if c.id in cursors]
        return rows + [row for row in self._idle if row[0] not in self.control.connections]

    def _mark(self) -> Any:
        """What the records queued now bring the state's cursors to, if they moved (--state)."""
        gaps = self.gaps
        if self.writer.journal is None or gaps is None or gaps.backfill is None or self.control is None \
                or gaps.backfill.moves == self._moves:
            return None
        self._moves = gaps.backfill.moves
        return self._rows()

    def _ack_missing(self, event: AckMissing) -> None:
        conn = event.connection
        reason = unacked_reason(conn.channel, [c.channel for c in event.others], self.logged_in)
        ack_timeout = self.control.liveness.ack_timeout if self.control is not None else 0
        message = f"channel {conn.channel} (id {conn.id}) was not acknowledged within {ack_timeout:g}s: {reason}"
        if self.require_ack:
            raise NotAcknowledged(message)
        self.notices.warn(message)

    # ----- frames -------------------------------------------------------------------------------

    def _handle(self, batch: list[Received], live: bool = True) -> bool:
        """Decode, count and render every frame of a batch; write its records with one write.

        True when the record count has been reached (records past it are not written). Live
        note frames go through the backfill and dedupe rules first (``live=False``: frames the
        backfill made, already sorted).
        """
        out: list[bytes] = []
        renderer = self.renderer
        record = renderer.record  # a frame's one record (None: jq, any number of them)
        limit = self.limits.count
        gaps = self.gaps if live else None
        watch = self._watch
        decode = self.decode
        done = False
        if self.writer.backlog > self.max_backlog or self.dropping:
            return self._drop(batch)
        for received in batch:
            data, binary, at = received
            decoded = decode(data, binary)
            if type(decoded) is protocol.Bad:
                self.stats.count(decoded.label)
                self._bad(decoded)
                out.extend(renderer.verbatim(data))
            else:
                assert type(decoded) is protocol.Frame
                self.stats.count(decoded.kind)
                if gaps is not None and decoded.kind == "channel" and self._held_or_dropped(gaps, decoded, received):
                    continue
                if watch is not None:
                    watch(decoded.value, decoded.kind)
                if record is not None:
                    out.append(record(decoded, at))
                else:
                    out = self._render(decoded, at, out, limit)
            if limit is not None and self.records + len(out) >= limit:
                del out[limit - self.records:]
                done = True
                break
        # A backfill cut by -n moved its cursors past what is written: rather repeat than skip those.
        cut = done and not live and received is not batch[-1]
        mark = self._mark() if self.gaps is not None and not cut else None
        self._write(out, mark)
        return done

    def _render(self, decoded: protocol.Frame, at: float, out: list[bytes], limit: int | None) -> list[bytes]:
        """Add one frame's records to ``out`` (records written meanwhile leave it); returns it.

        jq may make any number of records of one frame: they are taken one at a time, no more
        than ``-n`` asks for, and written in batches that wait for the writer to make room. If a
        signal ends the run meanwhile, the records made so far are written first.
        """
        records = self.renderer.records(decoded.value, at, decoded.data, decoded.clean)
        self._pending = out
        try:
            for record in records:
                out.append(record)
                if limit is not None and self.records + len(out) >= limit:
                    break
                if len(out) >= RECORDS_PER_WRITE:
                    self._write_pending()
                    self._wait_for_room()
        except JqRuntimeError as exc:
            self._jq_error(exc)
        except BaseException:
            self._write(out)
            raise
        finally:
            close = getattr(records, "close", None)
            if close is not None:
                close()  # stops jq mid-frame (-n reached)
        return out

    def _write_pending(self) -> None:
        """jq is about to compute for a while: what is rendered so far goes out now, as jq would print it."""
        self._write(self._pending)
        self._pending.clear()

    def _write(self, out: list[bytes], mark: Any = None) -> None:
        """Queue records with one write; ``mark`` is what they bring the --state cursors to."""
        if out:
            self.records += len(out)
            data = out[0] if len(out) == 1 else b"".join(out)
            self.writer.write(data, len(out), mark)
            if self.status is not None:
                self.status.progress.records = self.records
                self.status.progress.bytes += len(data)
        elif mark is not None:
            self.writer.write(b"", 0, mark)  # nothing to write (a filter), but the cursor moved

    def _wait_for_room(self) -> None:
        """Block while more than --max-backlog waits for the writer, still acting on signals."""
        writer = self.writer
        while not writer.wait_for_room(self.max_backlog, 0.1):
            ready, _, _ = select.select([writer.failed_fd, *self.extra_watch], [], [], 0)
            for fd in ready:
                self._woken(fd)

    def _watch_frame(self, value: object, kind: str) -> None:
        """Before a frame is written: capture the notes it delivers (--capture-seen) and tell the line
        view about them; for a noteUpdated, let the line view look up what it does not know."""
        if kind == "noteUpdated":
            self._note_event(value)
        elif kind == "channel":
            notes = notes_in(value)
            if notes:
                self._notes_seen(notes)

    def _notes_seen(self, notes: list[dict[str, Any]]) -> None:
        if self.context is not None:
            for note in notes:
                self.context.saw(note)
        session = self.control
        if self.live is not None and session is not None:
            capture, release = self.live.seen([note["id"] for note in notes])
            for note_id in release:  # first: the server never holds more than the budget
                if note_id in session.captures:
                    session.remove_capture(note_id)
            for note_id in capture:
                if note_id not in session.captures:
                    session.add_capture(note_id, seen=True)

    def _note_event(self, value: object) -> None:
        if self.context is not None:
            self.context.look_up(value)
        deleted = self.live.deleted(value) if self.live is not None else None
        if deleted is not None and self.control is not None and deleted in self.control.captures:
            self.control.remove_capture(deleted)  # a deleted note has nothing more to say

    def _drop(self, batch: list[Received]) -> bool:
        """The reader is too far behind: count the frames, write nothing, keep reading the socket."""
        if not self.dropping:
            self.dropping = True
            self._dropping_since = time.time()
            mb = self.writer.backlog // (1024 * 1024)
            recovered = " (notes will be backfilled once it catches up)" if self._can_backfill() else ""
            self.notices.warn(f"{self.writer.label} is not reading: {mb} MB of records wait (--max-backlog); "
                              f"dropping new frames until it catches up{recovered}")
        self.dropped += len(batch)
        for data, binary, _ in batch:
            decoded = self.decode(data, binary)
            self.stats.count(decoded.kind if isinstance(decoded, protocol.Frame) else decoded.label)
        return False

    def _can_backfill(self) -> bool:
        return self.gaps is not None and self.gaps.backfill is not None and self.control is not None

    def _caught_up(self) -> None:
        self.dropping = False
        self.notices.warn(f"{self.writer.label} caught up; {self.dropped} frames were dropped while it was not reading")
        if not self._can_backfill():
            return
        assert self.gaps is not None and self.gaps.backfill is not None and self.control is not None
        since = self._dropping_since
        targets = [Target(c.id, c.channel, c.params, self.gaps.backfill.cursors.get(c.id), since)
                   for c in self.control.connections.values() if c.channel in TIMELINES]
        if targets:
            self.gaps.start(f"{self.writer.label} caught up", targets, [])

    def _held_or_dropped(self, gaps: Gaps, frame: protocol.Frame, received: Received) -> bool:
        body = frame.value.get("body")
        if type(body) is not dict:
            return False
        kind = body.get("type")
        if kind != "note" and kind != "notification":
            return False
        item = body.get("body")
        item_id = item.get("id") if type(item) is dict else None
        if type(item_id) is not str:
            return False
        verdict = gaps.sort(body.get("id"), kind, item_id)
        if verdict == HOLD:
            gaps.hold(body["id"], received)
        return verdict in (HOLD, DROP)

    def _bad(self, bad: protocol.Bad) -> None:
        self.stats.bad_frames += 1
        if self.stats.bad_frames <= BAD_FRAMES_SHOWN:
            snippet = bad.data[:120].decode("utf-8", "replace")
            more = "..." if len(bad.data) > 120 else ""
            self.notices.warn(f"bad frame skipped ({bad.reason}): {snippet!r}{more}")
            if self.stats.bad_frames == BAD_FRAMES_SHOWN:
                self.notices.warn("further bad frames are only counted")

    def _jq_error(self, exc: JqRuntimeError) -> None:
        self.stats.jq_errors += 1
        if self.stats.jq_errors <= JQ_ERRORS_SHOWN:
            self.notices.warn(f"jq error, frame skipped: {str(exc)[:300]}")
            if self.stats.jq_errors == JQ_ERRORS_SHOWN:
                self.notices.warn("further jq errors are only counted")

    # ----- stdin commands -----------------------------------------------------------------------

    MAX_COMMAND_LINE = 64 * 1024

    def _read_stdin(self) -> bool:
        """Apply whole lines from stdin; False at end of input (the stream goes on)."""
        assert self.stdin_fd is not None
        try:
            chunk = os.read(self.stdin_fd, 65536)
        except OSError as exc:
            self.notices.warn(f"stdin: cannot read ({exc.strerror or exc}); no more live commands")
            return False
        if not chunk:
            if self._stdin_buffer.strip():
                self._apply_line(self._stdin_buffer.decode("utf-8", "replace"))
            self._stdin_buffer = b""
            self.notices.debug("stdin: end of input; the stream goes on")
            return False
        self._stdin_buffer += chunk
        *lines, self._stdin_buffer = self._stdin_buffer.split(b"\n")
        for line in lines:
            self._apply_line(line.decode("utf-8", "replace"))
        if len(self._stdin_buffer) > self.MAX_COMMAND_LINE:  # not commands (/dev/zero, a binary file)
            self._stdin_buffer = b""
            self.notices.warn(f"stdin: a line longer than {self.MAX_COMMAND_LINE // 1024} KB is no command; "
                              "no more live commands")
            return False
        return True

    def _apply_line(self, line: str) -> None:
        try:
            command = commands.parse_command(line)
            if isinstance(command, commands.Help):
                self.notices.report(commands.HELP)
            elif command is not None:
                self.apply(command)
        except (commands.CommandError, SpecError, UsageError) as exc:
            message = str(exc)
            if len(message) > 300:
                message = message[:300] + "..."
            self.notices.warn(f"stdin: {message}")

    def apply(self, command: commands.Command) -> None:
        session = self.control
        if session is None:
            raise UsageError("live commands need a live session")
        if isinstance(command, commands.Connect):
            spec = command.spec
            for warning in check_connection(spec.channel, spec.params, self.logged_in):
                self.notices.warn(warning)
            conn = session.add_connection(spec.channel, spec.connection_id, spec.params)
            self.notices.info(f"connecting {conn.channel} as {conn.id}")
        elif isinstance(command, commands.Disconnect):
            gone = session.remove_connection(command.connection_id)
            self.notices.info(f"disconnected {gone.channel} (id {gone.id})")
        elif isinstance(command, commands.Sub):
            self._sub(session, command.note_id)
        elif isinstance(command, commands.Unsub):
            self._unsub(session, command.note_id)
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
                self.notices.warn(warning)
            session.send_to_channel(command.connection_id, command.message_type, command.body)
        elif isinstance(command, commands.RawFrame):
            session.send_text(command.text)

    def _sub(self, session: Session, note_id: str) -> None:
        """``sub``: the note is named, never released by --capture-seen (a seen note stays captured)."""
        session.add_capture(note_id)
        if self.live is not None:
            self.live.name(note_id)

    def _unsub(self, session: Session, note_id: str) -> None:
        session.remove_capture(note_id)
        if self.live is not None:
            self.live.forget(note_id)


def _seconds(value: float) -> str:
    return f"{value:.1f} s" if value < 10 else f"{value:.0f} s"


class CountReached(Exception):
    """-n records were written (raised where the loop cannot simply return)."""
