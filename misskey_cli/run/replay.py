"""``mkstream replay``: recordings (or NDJSON frames) through the same stream loop as a live socket.

``ReplaySource`` is a frame source (``stream.FrameSource``) over ``recording.Reader``'s batches:
it selects (``--channel``, ``--since``, ``--until``), paces (``--speed``: as fast as it can by
default, the recorded gaps divided by X otherwise) and hands the ``Stream`` large ``Frames``
batches carrying the *recorded* receive times, so every output option behaves as it does live,
``--timestamps`` included. At the end of the input it raises ``SourceEnded``: exit 0.
``run_replay`` assembles the run from ``app.py``'s pieces (renderer, writer, signals, the exits).
"""

from __future__ import annotations

import contextlib
import os
import select
import stat
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from typing import Any

from misskey_cli.core.events import DEADLINE, Connection, Counters, Event, Frames, Readable, Received
from misskey_cli.core.timefmt import TimeBound
from misskey_cli.errors import SourceEnded, UsageError
from misskey_cli.output.notices import Notices
from misskey_cli.recording.reader import Batch, Input, Reader, Section, close_inputs, decode_relayed, open_inputs
from misskey_cli.recording.tee import RecordingSource
from misskey_cli.recording.writer import Recorder
from misskey_cli.run.app import (
    Environment,
    drain_and_report,
    follow_window,
    guarded,
    make_notices,
    make_renderer,
    open_writer,
    signal_handling,
    until_end,
)
from misskey_cli.run.settings import ReplaySettings

CHANNEL_PREFIX = b'{"type":"channel","body":{"id":"'


class Selection:
    """Which frames a replay keeps: channel frames of some connection ids, frames in a time window.

    ``--channel ID`` keeps only ``channel`` frames whose ``body.id`` is ID: broadcasts, captured
    notes' ``noteUpdated`` and frames that are not JSON are left out (select those with ``--jq``).
    The window is ``since <= t < until``, in receive times.
    """

    def __init__(self, connection_ids: Sequence[str] = (), since: TimeBound | None = None,
                 until: TimeBound | None = None, now: float | None = None) -> None:
        self.ids = frozenset(connection_ids)
        self._id_bytes = frozenset(i.encode("utf-8") for i in connection_ids)
        self.since, self.until = since, until
        self.now = time.time() if now is None else now
        self.lo: float | None = None
        self.hi: float | None = None
        self._resolved = since is None and until is None

    @property
    def active(self) -> bool:
        return bool(self.ids) or self.since is not None or self.until is not None

    @property
    def timed(self) -> bool:
        return self.since is not None or self.until is not None

    def resolve(self, start: float) -> None:
        """Fix the window once the input's first time is known (``+10m`` counts from it)."""
        if self._resolved:
            return
        self._resolved = True
        self.lo = self.since.resolve(self.now, start) if self.since is not None else None
        self.hi = self.until.resolve(self.now, start) if self.until is not None else None

    def keep(self, items: list[Any], timed: bool) -> list[Any]:
        if self.ids:
            items = [item for item in items if self._wanted(item[0], item[1])]
        if timed and (self.lo is not None or self.hi is not None):
            lo = -1e300 if self.lo is None else self.lo
            hi = 1e300 if self.hi is None else self.hi
            items = [item for item in items if lo <= item[2] < hi]
        return items

    def _wanted(self, data: bytes, binary: bool) -> bool:
        if binary:
            return False
        if data.startswith(CHANNEL_PREFIX):  # what Misskey and mkstream write: the id is sliced, not parsed
            start = len(CHANNEL_PREFIX)
            end = data.find(b'"', start)
            if end > 0 and b"\\" not in data[start:end]:
                return data[start:end] in self._id_bytes
        from misskey_cli.core import protocol

        decoded = protocol.decode(data)
        if type(decoded) is not protocol.Frame or decoded.kind != "channel":
            return False
        body = decoded.value.get("body")
        return isinstance(body, dict) and body.get("id") in self.ids


class ReplaySource:
    """The frame source of a replay; ``connections``/``captures``/``host`` follow the recording's header."""

    def __init__(self, batches: Iterator[Batch], speed: float | None = None, selection: Selection | None = None,
                 warn: Callable[[str], None] | None = None) -> None:
        self.counters = Counters()
        self.connections: dict[str, Connection] = {}
        self.captures: dict[str, None] = {}
        self.host: str | None = None
        self.recorded_now = time.time()  # the receive time of the last frame handed on
        self.speed = speed
        self.selection = selection or Selection()
        self.warn = warn
        self._batches = batches
        self._items: list[Received] = []
        self._pos = 0
        self._section: Section | None = None
        self._anchor: tuple[float, float] | None = None  # (monotonic, recorded time) pacing counts from
        self._warned_untimed: set[str] = set()
        self._opened = False
        self._opened_at_start = False

    def open(self) -> None:
        """Read ahead to the first frame, so the header's subscriptions are known before it is handed on."""
        if not self._opened:
            self._opened = True
            self._load()

    def close(self) -> None:
        self._items, self._pos = [], 0

    def abort(self) -> None:
        self.close()

    # ----- reading ahead ------------------------------------------------------------------------

    def _load(self) -> bool:
        """The next batch with frames left after selection; False at the end of the input."""
        for batch in self._batches:
            self._enter(batch.section)
            items = batch.items
            selection = self.selection
            if items and selection.active:
                if selection.timed and not batch.timed and batch.section.file not in self._warned_untimed:
                    self._warned_untimed.add(batch.section.file)
                    if self.warn is not None:
                        self.warn(f"{batch.section.file}: no receive times in it: --since/--until keep all its frames")
                selection.resolve(batch.section.start if batch.section.start is not None else items[0][2])
                items = selection.keep(items, batch.timed)
            if items:
                if not self._opened_at_start:  # the first frame: the time a re-recording's header shows
                    self._opened_at_start = True
                    start = batch.section.start
                    self.recorded_now = start if start is not None and not selection.timed else items[0][2]
                self._items, self._pos = items, 0
                return True
        self._items, self._pos = [], 0
        return False

    def _enter(self, section: Section) -> None:
        old = self._section
        if old is section:
            return
        if old is None or old.number != section.number:
            self._anchor = None  # pacing starts over with each recording: no wait for the gap between them
            self.host = section.host
        self._section = section
        subscriptions = section.subscriptions
        self.connections = {c.id: Connection(c.channel, c.id, dict(c.params)) for c in subscriptions.channels}
        self.captures = dict.fromkeys(subscriptions.captures)

    # ----- the frame source ---------------------------------------------------------------------

    def next(self, deadline: float | None, watch: Sequence[int]) -> Event:
        while True:
            if self._pos >= len(self._items) and not self._load():
                raise SourceEnded()
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                return DEADLINE
            if self.speed is None:
                if watch:
                    ready, _, _ = select.select(watch, [], [], 0)
                    if ready:
                        return Readable(ready[0])
                items = self._items[self._pos:] if self._pos else self._items
                self._pos = len(self._items)
                self.recorded_now = items[-1][2]
                return Frames(items)
            event = self._paced(now, deadline, watch)
            if event is not None:
                return event

    def _paced(self, now: float, deadline: float | None, watch: Sequence[int]) -> Event | None:
        items, pos, speed = self._items, self._pos, self.speed
        assert speed is not None
        if self._anchor is None:
            self._anchor = (now, items[pos][2])
        anchor_mono, anchor_t = self._anchor
        due = anchor_mono + (items[pos][2] - anchor_t) / speed
        if due > now:
            wake = due if deadline is None else min(due, deadline)
            # At most an hour at a time: select refuses a timeout past a few centuries, and a slow
            # --speed over a recording's times (up to 1e11 s apart) asks for more.
            ready, _, _ = select.select(watch, [], [], min(max(0.0, wake - now), 3600.0))
            return Readable(ready[0]) if ready else None
        end = pos + 1
        limit = anchor_t + (now - anchor_mono) * speed  # every frame recorded by then is due
        while end < len(items) and items[end][2] <= limit:
            end += 1
        self._pos = end
        self.recorded_now = items[end - 1][2]
        return Frames(items[pos:end])


# ----- the command ----------------------------------------------------------------------------


def run_replay(settings: ReplaySettings, env: Environment) -> int:
    """Run ``mkstream replay``; returns the exit status."""
    notices = make_notices(settings.notices, env)
    return guarded(notices, lambda stack: _replay(settings, env, notices, stack))


def _refuse_own_output(inputs: Sequence[Input], record: str | None, path: str | None, stdout_fd: int | None) -> None:
    """A replay whose output is one of its inputs (same device and inode) would read what it writes
    without end: refused before anything is written."""
    reads: dict[tuple[int, int], str] = {}
    for item in inputs:
        with contextlib.suppress(OSError):
            info = os.fstat(item.fd) if item.fd >= 0 else None
            if info is not None and stat.S_ISREG(info.st_mode):
                reads[(info.st_dev, info.st_ino)] = item.label
    outputs = [(f"--record {record}", record), (f"-o {path}", path), ("standard output", stdout_fd)]
    for what, where in outputs:
        if where is None:
            continue
        try:
            info = os.stat(where) if isinstance(where, str) else os.fstat(where)
        except OSError:
            continue  # not there yet: written fresh, so it is no input
        same = reads.get((info.st_dev, info.st_ino))
        if same is not None:
            raise UsageError(f"{what} is the same file as the input {same}: replay would read its own output "
                             "without end; write to another file")


def _replay(settings: ReplaySettings, env: Environment, notices: Notices, stack: ExitStack) -> int:
    from misskey_cli.run.stream import Stream

    out = settings.output
    renderer, to_terminal = make_renderer(out, env, relayed=True)
    inputs = open_inputs(settings.files, env.stdin_fd, getattr(env.stdin, "buffer", None))
    stack.callback(close_inputs, inputs)
    _refuse_own_output(inputs, out.record, out.path, env.stdout_fd)
    recorder = stack.enter_context(Recorder.open(out.record)) if out.record else None
    writer, status = open_writer(out, settings.notices, env, notices, stack, to_terminal)
    signals = stack.enter_context(signal_handling())
    follow_window(signals, renderer, status, out, env, to_terminal)
    reader = Reader(inputs, notices.warn, make=Received, relayed=True, wake=(signals.fd, signals.check))
    replay = ReplaySource(reader.batches(), settings.speed,
                          Selection(settings.connection_ids, settings.since, settings.until), notices.warn)
    source: Any = replay
    if recorder is not None:
        source = RecordingSource(replay, recorder, host=lambda: replay.host, clock=lambda: replay.recorded_now,
                                 one_by_one=settings.limits.count is not None)
    stream = Stream(source, renderer, writer, settings.limits, notices, watch=[signals.fd], status=status,
                    on_wake=signals.check, decode=decode_relayed)
    code = until_end(stream, source, (), notices)
    return drain_and_report(stream, writer, notices, settings.notices.stats, code)
