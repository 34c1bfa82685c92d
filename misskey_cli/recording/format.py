"""Recordings (``--record FILE[.gz]``): the format, the writer and the reader. Pure apart from file I/O.

A recording is NDJSON (gzip when the name ends in ``.gz``) that jq reads as it is:

- a header line, ``{"mkstream":"recording","version":1,"t":..,"started":..,"host":..,
  "channels":[{"id":..,"channel":..,"params":{..}}],"captures":[..]}``, saying what was subscribed
  (the host without the token; never the token);
- one line per frame received, with its receive time in epoch seconds: ``{"t":..,"frame":FRAME}``
  with the frame's JSON text spliced in byte for byte (not re-encoded), or, for a frame that is
  not one line of strict JSON, ``{"t":..,"text":".."}`` (UTF-8 text), ``{"t":..,"bytes":"BASE64"}``
  (a text frame that is not UTF-8), ``{"t":..,"binary":"BASE64"}`` (a binary frame);
- from ``mkstream proxy``, one line per relayed frame or API call, with its connection number and
  side: ``{"t":..,"conn":N,"from":"client"|"server","frame":FRAME}`` (or ``text``, ``bytes``,
  ``binary``, ``ping``, ``pong``, ``close``, ``api`` in place of ``frame``); without ``conn`` a line
  is a frame the recording run received, as above;
- a line whenever the subscriptions change, ``{"t":..,"event":"subscriptions","channels":[..],
  "captures":[..]}``, and after a reconnect, ``{"t":..,"event":"reconnected",..}``.

Recordings are appended to (a file may hold several, each from its header on) and flushed after
every batch of frames, gzip ones with ``Z_SYNC_FLUSH``, so a killed run keeps all it received.

The reader takes recordings and plain NDJSON frames alike (``--ndjson`` output, with or without
``--timestamps``), gzip or not, from files or stdin. Its hot path never decodes the wrapper: the
frame's text is sliced out of the line, because the writer spliced it there verbatim. A bad line
(not JSON, cut short, a header from a newer format) is one warning with the file and line
number, and reading goes on. ``RecordingSource`` wraps a live frame source to record it.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import json
import math
import os
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, BinaryIO, NamedTuple, TypeGuard

import orjson

from misskey_cli.errors import OutputError, UsageError

if TYPE_CHECKING:
    from misskey_cli.core.events import Counters, Event

FORMAT_NAME = "recording"
VERSION = 1
CHUNK = 1 << 20  # bytes read at a time: about 700 typical frames
BAD_LINES_SHOWN = 5  # per file; then only counted
# A "ts" of whole milliseconds, as a float, can fall a hair below them (.329 -> .32899...), and
# --timestamps would then print .328: read it a microsecond later (an epoch float today is
# precise to about a quarter of one).
TS_ROUNDING = 1e-6

Warn = Callable[[str], None]


# ----- what was subscribed --------------------------------------------------------------------


@dataclass(frozen=True)
class RecordedChannel:
    """A channel connection as a recording names it."""

    id: str
    channel: str
    params: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "channel": self.channel, "params": self.params}


@dataclass(frozen=True)
class Subscriptions:
    channels: tuple[RecordedChannel, ...] = ()
    captures: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"channels": [c.to_json() for c in self.channels], "captures": list(self.captures)}

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> Subscriptions:
        channels = []
        for item in value.get("channels") or ():
            if isinstance(item, dict) and isinstance(item.get("id"), str) and isinstance(item.get("channel"), str):
                params = item.get("params")
                params = params if isinstance(params, dict) else {}
                channels.append(RecordedChannel(item["id"], item["channel"], params))
        captures = tuple(c for c in value.get("captures") or () if isinstance(c, str))
        return cls(tuple(channels), captures)


def subscriptions_of(source: Any) -> Subscriptions:
    """What a frame source (a ``Session``, a replay) is subscribed to: its ``connections`` and ``captures``."""
    return Subscriptions(tuple(RecordedChannel(c.id, c.channel, dict(c.params)) for c in source.connections.values()),
                         named_captures(source))


def named_captures(source: Any) -> tuple[str, ...]:
    """The captures a user named: not those of ``--capture-seen`` (the frames say which notes they are),
    which would make a line of up to 500 ids for every note."""
    return tuple(note_id for note_id, seen in source.captures.items() if not seen)


# ----- time ----------------------------------------------------------------------------------


def rfc3339(epoch: float) -> str:
    """``2026-11-27T19:28:42.184Z``: milliseconds, UTC (the ``--timestamps`` form)."""
    whole = math.floor(epoch)
    millis = min(999, round((epoch - whole) * 1000))
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{millis:03d}Z"


def parse_rfc3339(text: str) -> float:
    """Epoch seconds of an RFC 3339 time (``2026-11-27T19:28:42.184Z``, ``...+09:00``, or a date).

    A time without an offset is UTC, like every time mkstream prints. Raises ValueError.
    """
    raw = text.strip()
    try:
        moment = datetime.datetime.fromisoformat(raw.replace("z", "Z"))
    except ValueError:
        raise ValueError(f"{text!r} is not an RFC 3339 time (e.g. 2026-11-27T19:28:42Z)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.timestamp()


@dataclass(frozen=True)
class TimeBound:
    """A ``--since``/``--until`` value: an epoch time, ``ago`` seconds before now, or ``after_start``
    seconds after the input starts (its first header's time, else its first frame's)."""

    kind: str  # "at", "ago", "after_start"
    seconds: float

    def resolve(self, now: float, start: float | None) -> float | None:
        """The epoch time meant, or None while the input's start is not known yet."""
        if self.kind == "at":
            return self.seconds
        if self.kind == "ago":
            return now - self.seconds
        return None if start is None else start + self.seconds


def parse_time_bound(text: str) -> TimeBound:
    """``2026-11-27T19:28:42Z`` (RFC 3339), ``10m`` (ten minutes ago) or ``+10m`` (after the start)."""
    from misskey_cli.core.timefmt import parse_duration

    raw = text.strip()
    if raw[:1] in ("+", "-") or (raw[:1].isdigit() and not _looks_like_date(raw)):
        sign, rest = (raw[0], raw[1:]) if raw[:1] in ("+", "-") else ("", raw)
        try:
            seconds = parse_duration(rest)
        except ValueError:
            raise ValueError(f"{text!r} is not a time: give an RFC 3339 time (2026-11-27T19:28:42Z), "
                             "a duration ago (10m) or a duration after the start of the input (+10m)") from None
        return TimeBound("after_start" if sign == "+" else "ago", seconds)
    return TimeBound("at", parse_rfc3339(raw))


def _looks_like_date(text: str) -> bool:
    return len(text) >= 10 and text[4:5] == "-" and text[7:8] == "-"


# ----- writing --------------------------------------------------------------------------------


def frame_line(data: bytes, binary: bool, at: float) -> bytes:
    """The recording line of one received frame."""
    if not binary and b"\n" not in data and _spliceable(data):
        return b'{"t":%.6f,"frame":%s}\n' % (at, data)
    if binary:
        key, value = "binary", base64.b64encode(data).decode("ascii")
    else:
        try:
            key, value = "text", data.decode("utf-8")
        except UnicodeDecodeError:
            key, value = "bytes", base64.b64encode(data).decode("ascii")
    return b'{"t":%.6f,"%s":%s}\n' % (at, key.encode(), orjson.dumps(value))


def relayed_line(at: float, conn: int, side: str, key: str, value: bytes) -> bytes:
    """The recording line of a relayed frame or API call: ``value`` is the JSON text of ``key``'s value."""
    return b'{"t":%.6f,"conn":%d,"from":"%s","%s":%s}\n' % (at, conn, side.encode(), key.encode(), value)


def _spliceable(data: bytes) -> bool:
    """Strict JSON that every jq reads: what orjson accepts. Not NaN or Infinity, and not the
    escaped lone surrogates JavaScript makes of a string cut mid-emoji (jq 1.6 stops at them)."""
    try:
        orjson.loads(data)
    except orjson.JSONDecodeError:
        return False
    return True


def _loose_json(data: bytes) -> Any:
    """JSON as the standard library reads it (lone surrogates, NaN, huge integers); raises ValueError."""
    try:
        return json.loads(data.decode("utf-8"))
    except RecursionError:
        raise ValueError("nested too deeply") from None


def _json_line(value: dict[str, Any]) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "backslashreplace") + b"\n"


class Recorder:
    """Appends one recording to a file: the header, then frames and events, flushed per batch."""

    def __init__(self, fd: int, label: str, gzip: bool) -> None:
        self.fd = fd
        self.label = label
        self._deflate = zlib.compressobj(6, zlib.DEFLATED, 31) if gzip else None
        self.started = False

    @classmethod
    def open(cls, path: str) -> Recorder:
        """Open ``path`` for appending; a new file is made 0600 (``main`` frames carry sign-in IPs)."""
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise UsageError(f"cannot open recording file {path}: {exc.strerror or exc}") from None
        return cls(fd, path, path.endswith(".gz"))

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def header(self, host: str | None, subscriptions: Subscriptions, at: float | None = None) -> None:
        from misskey_cli import __version__

        now = time.time() if at is None else at
        head: dict[str, Any] = {"mkstream": FORMAT_NAME, "version": VERSION, "t": round(now, 6),
                                "started": rfc3339(now), "by": f"mkstream {__version__}", "host": host}
        head.update(subscriptions.to_json())
        self.started = True
        self._write(_json_line(head))

    def frames(self, items: Sequence[tuple[bytes, bool, float]]) -> None:
        if len(items) == 1:
            data, binary, at = items[0]
            self._write(frame_line(data, binary, at))
        else:
            self._write(b"".join([frame_line(data, binary, at) for data, binary, at in items]))

    def relayed(self, at: float, conn: int, side: str, key: str, value: bytes) -> None:
        self._write(relayed_line(at, conn, side, key, value))

    def event(self, kind: str, at: float | None = None, **fields: Any) -> None:
        self._write(_json_line({"t": round(time.time() if at is None else at, 6), "event": kind, **fields}))

    def _write(self, data: bytes) -> None:
        if self.fd < 0:
            return
        if self._deflate is not None:
            data = self._deflate.compress(data) + self._deflate.flush(zlib.Z_SYNC_FLUSH)
        self._write_all(data)

    def _write_all(self, data: bytes) -> None:
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self.fd, view):]
        except OSError as exc:
            raise OutputError(f"cannot write to recording {self.label}: {exc.strerror or exc}") from None

    def close(self) -> None:
        if self.fd < 0:
            return
        try:
            if self._deflate is not None:
                self._write_all(self._deflate.flush(zlib.Z_FINISH))
        finally:
            os.close(self.fd)
            self.fd = -1


class RecordingSource:
    """A frame source that records what another one delivers: frames, reconnects, subscription changes.

    ``source`` is a live ``Session`` (or a replay, to re-record a selection); its ``connections``
    and ``captures`` are compared before every wait, so a ``--stdin`` connect, disconnect, sub or
    unsub is a ``subscriptions`` line ahead of the first frame it brings. ``host`` is called once,
    when the header is written (on ``open``); ``redact`` cleans the reconnect cause; ``clock`` gives
    the time of event lines (a replay's clock is its recorded time).

    With ``one_by_one`` (a run that stops after ``-n`` records), the frames of a batch are handed
    on, and recorded, one at a time: the stream stops in the middle of a batch, and the recording
    then ends where the output does instead of holding the rest of the batch.
    """

    def __init__(self, source: Any, recorder: Recorder, host: Callable[[], str | None],
                 redact: Callable[[str], str] = str, clock: Callable[[], float] = time.time,
                 one_by_one: bool = False) -> None:
        from misskey_cli.core.events import Frames, Reconnected  # here: the simulator reads recordings too

        self.source = source
        self.recorder = recorder
        self.host = host
        self.redact = redact
        self.clock = clock
        self.one_by_one = one_by_one
        self.counters: Counters = source.counters  # the same object: the source updates it
        self._frames, self._reconnected_type = Frames, Reconnected
        self._keys: tuple[tuple[str, ...], tuple[str, ...]] | None = None
        self._held: list[Any] = []  # one_by_one: the rest of the last batch, not handed on yet

    def open(self) -> None:
        self.source.open()
        if not self.recorder.started:
            self.recorder.header(self.host(), subscriptions_of(self.source), self.clock())
            self._keys = self._current_keys()

    def _current_keys(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        return tuple(self.source.connections), named_captures(self.source)

    def next(self, deadline: float | None, watch: Sequence[int]) -> Event:
        if not self.recorder.started:
            self.open()
        elif self._current_keys() != self._keys:
            self._keys = self._current_keys()
            self.recorder.event("subscriptions", self.clock(), **subscriptions_of(self.source).to_json())
        if self._held:
            return self._hand_on(self._held)
        event: Event = self.source.next(deadline, watch)
        if isinstance(event, self._frames):
            return self._hand_on(event.items) if self.one_by_one else self._record(event)
        if isinstance(event, self._reconnected_type):
            self.recorder.event("reconnected", self.clock(), down_since=round(event.down_since, 6),
                                down_for=round(event.down_for, 3), cause=self.redact(event.cause))
        return event

    def _record(self, event: Any) -> Event:
        self.recorder.frames(event.items)
        result: Event = event
        return result

    def _hand_on(self, items: list[Any]) -> Event:
        first, self._held = items[:1], items[1:]
        return self._record(self._frames(first))

    def close(self) -> None:
        self.source.close()

    def abort(self) -> None:
        self.source.abort()


# ----- reading --------------------------------------------------------------------------------


class Section(NamedTuple):
    """What the input says was subscribed, from a header or subscription line on (or nothing known)."""

    file: str
    number: int  # counts the sections read so far (a new file or header is a new one)
    host: str | None
    subscriptions: Subscriptions
    start: float | None  # the header's time


class Batch(NamedTuple):
    """Frames read in a row under one section: ``(data, binary, receive time)`` each, as ``make`` built them."""

    items: list[Any]
    section: Section
    timed: bool  # the frames carry receive times (plain NDJSON frames may not)


Make = Callable[[bytes, bool, float], Any]


def _tuple(data: bytes, binary: bool, at: float) -> tuple[bytes, bool, float]:
    return (data, binary, at)


class Input(NamedTuple):
    label: str  # the file name shown in warnings ("-" is "stdin")
    fd: int  # -1: read ``stream`` instead (a test harness's stdin has no file descriptor)
    owned: bool
    stream: BinaryIO | None = None


def open_inputs(paths: Sequence[str], stdin_fd: int | None, stdin: BinaryIO | None = None) -> list[Input]:
    """Open every file (``-`` = stdin) up front, so a missing one is a usage error before any output."""
    inputs: list[Input] = []
    try:
        for path in paths:
            if path == "-":
                if stdin_fd is None and stdin is None:
                    raise UsageError("-: standard input is closed")
                inputs.append(Input("stdin", -1 if stdin_fd is None else stdin_fd, False, stdin))
                continue
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError as exc:
                raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
            inputs.append(Input(path, fd, True))
    except UsageError:
        close_inputs(inputs)
        raise
    return inputs


def close_inputs(inputs: Sequence[Input]) -> None:
    for item in inputs:
        if item.owned:
            with contextlib.suppress(OSError):
                os.close(item.fd)


class Reader:
    """Reads recordings and NDJSON frames into batches, one input after the other.

    ``warn`` gets one line per bad line (``FILE:LINE: why``), at most ``BAD_LINES_SHOWN`` per
    input and then a count. Frames without a receive time get the last time seen before them in
    that input, or the time the input was opened.
    """

    def __init__(self, inputs: Sequence[Input], warn: Warn, make: Make = _tuple, chunk: int = CHUNK,
                 relayed: bool = False) -> None:
        self.inputs = list(inputs)
        # A proxy's lines: with ``relayed``, each one (without "t") is a frame of its own, the record
        # the proxy wrote; without, only the server's frames count, as if received (serve --replay).
        self.relayed = relayed
        self.warn = warn
        self.make = make
        self.chunk = chunk
        self._sections = 0

    def batches(self) -> Iterator[Batch]:
        for item in self.inputs:
            yield from _InputReader(self, item).batches()

    def next_section(self, file: str, host: str | None, subscriptions: Subscriptions, start: float | None) -> Section:
        self._sections += 1
        return Section(file, self._sections, host, subscriptions, start)


def read_ahead(chunks: Iterator[bytes], depth: int = 4) -> Iterator[bytes]:
    """``chunks``, produced by a thread up to ``depth`` ahead of the consumer (its errors re-raised here)."""
    import queue
    import threading

    ready: queue.Queue[tuple[bytes | None, BaseException | None]] = queue.Queue(depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for chunk in chunks:
                if stop.is_set():
                    return
                ready.put((chunk, None))
            ready.put((None, None))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            ready.put((None, exc))

    thread = threading.Thread(target=produce, name="mkstream-read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            chunk, error = ready.get()
            if error is not None:
                raise error
            if chunk is None:
                return
            yield chunk
    finally:
        stop.set()
        give_up = time.monotonic() + 1.0  # a producer blocked on a silent pipe is left to die with the process
        while thread.is_alive() and time.monotonic() < give_up:  # unblock a producer waiting for room
            with contextlib.suppress(queue.Empty):
                ready.get(timeout=0.1)


class _InputReader:
    """One input: chunks (gunzipped when the data says gzip), lines, batches."""

    def __init__(self, reader: Reader, item: Input) -> None:
        self.reader = reader
        self.item = item
        self.label = item.label
        self.section = reader.next_section(item.label, None, Subscriptions(), None)
        self.timed = False
        self.last_t = time.time()
        self.lineno = 0
        self.bad = 0
        self.out: list[Any] = []
        self.done: list[Batch] = []
        self.cut_short: str | None = None

    # -- bytes ------------------------------------------------------------------------------

    def _raw(self) -> Iterator[bytes]:
        fd, size, stream = self.item.fd, self.reader.chunk, self.item.stream
        read = getattr(stream, "read1", None) or getattr(stream, "read", None)
        while True:
            try:
                data = os.read(fd, size) if fd >= 0 or read is None else read(size)
            except OSError as exc:
                self.cut_short = f"read error ({exc.strerror or exc})"
                return
            if not data:
                return
            yield data

    def _chunks(self) -> Iterator[bytes]:
        raw = self._raw()
        first = next(raw, b"")
        while 0 < len(first) < 2:  # a pipe may hand over one byte: the gzip magic is two
            more = next(raw, b"")
            if not more:
                break
            first += more
        if first[:2] != b"\x1f\x8b":
            if first:
                yield first
            yield from raw
            return
        # zlib lets go of the GIL while it inflates: a thread inflates the next chunks meanwhile.
        yield from read_ahead(self._gunzip(first, raw))

    def _gunzip(self, first: bytes, raw: Iterator[bytes]) -> Iterator[bytes]:
        """Inflate gzip members one after another (appended recordings), in chunks of at most ``chunk``."""
        size = self.reader.chunk
        inflate = zlib.decompressobj(31)
        pending = first
        while True:
            try:
                out = inflate.decompress(pending, size)
            except zlib.error:
                self.cut_short = "gzip data is corrupt"
                return
            if out:
                yield out
            if inflate.eof:
                pending = inflate.unused_data  # another member follows
                if not pending:
                    pending = next(raw, b"")
                    if not pending:
                        return
                if pending[:2] != b"\x1f\x8b" and len(pending) >= 2:
                    self.cut_short = "data after the end of the gzip stream is not gzip"
                    return
                inflate = zlib.decompressobj(31)
                continue
            if inflate.unconsumed_tail or len(out) == size:  # more to come from what was read
                pending = inflate.unconsumed_tail
                continue
            pending = next(raw, b"")
            if not pending:
                self.cut_short = "gzip data cut short"
                return

    # -- lines ------------------------------------------------------------------------------

    def batches(self) -> Iterator[Batch]:
        carry = b""
        for chunk in self._chunks():
            buf = carry + chunk if carry else chunk
            end = buf.rfind(b"\n") + 1
            carry = buf[end:]
            if end:
                self._scan(buf, end)
            yield from self._flush()
        partial = bool(carry) and self.cut_short is not None
        if carry:
            self._last_line(carry)
        if self.cut_short is not None:
            at = self.lineno if partial else self.lineno + 1
            self.reader.warn(f"{self.label}: {self.cut_short} at line {at}: the rest is lost")
        if self.bad > BAD_LINES_SHOWN:
            self.reader.warn(f"{self.label}: {self.bad} bad lines skipped in all (the first {BAD_LINES_SHOWN} shown)")
        yield from self._flush()

    def _flush(self) -> Iterator[Batch]:
        self._cut()
        done, self.done = self.done, []
        yield from done

    def _cut(self) -> None:
        if self.out:
            self.done.append(Batch(self.out, self.section, self.timed))
            self.out = []

    def _scan(self, buf: bytes, end: int) -> None:
        """The hot loop over ``buf[:end]`` (whole lines): a recorded or plain frame is sliced out of
        the buffer (one copy, no decoding), anything else goes to ``_slow``."""
        make, out, last_t, n, timed = self.reader.make, self.out, self.last_t, self.lineno, self.timed
        find, starts = buf.find, buf.startswith
        pos = 0
        while pos < end:
            nl = find(b"\n", pos)
            n += 1
            if starts(b'{"t":', pos):
                j = find(b',"frame":', pos + 5, nl)
                if j > 0 and buf[nl - 1] == 0x7D:  # "}"
                    try:
                        t = float(buf[pos + 5:j])
                    except ValueError:
                        t = math.nan
                    if -1e11 < t < 1e11:
                        out.append(make(buf[j + 9:nl - 1], False, t))
                        last_t, timed = t, True
                        pos = nl + 1
                        continue
            elif starts(b'{"type":"', pos):
                out.append(make(buf[pos:nl], False, last_t))
                pos = nl + 1
                continue
            elif starts(b'{"ts":"', pos):
                frame = self._stamped(buf[pos:nl])
                if frame is not None:
                    last_t, timed = frame[1], True
                    out.append(make(frame[0], False, last_t))
                    pos = nl + 1
                    continue
            line = buf[pos:nl]
            pos = nl + 1
            if line.strip():
                self.last_t, self.timed = last_t, timed
                self._slow(line, n)
                last_t, out, timed = self.last_t, self.out, self.timed
        self.last_t, self.lineno, self.timed = last_t, n, timed

    def _stamped(self, line: bytes) -> tuple[bytes, float] | None:
        """``{"ts":"<RFC 3339>",REST`` (``--timestamps`` output): the frame ``{REST`` and its time."""
        end = line.find(b'"', 7)
        if end < 0 or line[end + 1:end + 2] != b",":
            return None
        try:
            at = parse_rfc3339(line[7:end].decode("ascii")) + TS_ROUNDING
        except (ValueError, UnicodeDecodeError):
            return None
        return b"{" + line[end + 2:], at

    def _last_line(self, line: bytes) -> None:
        """A last line without a newline: kept if it is whole (a hand-made file), else a warning."""
        self.lineno += 1
        if not line.strip():
            return
        try:
            _loose_json(line)
            whole = True
        except ValueError:
            whole = False
        if not whole:
            if self.cut_short is None:  # a cut gzip stream says so once, for this line too
                self._bad(self.lineno, f"truncated last line ({len(line)} bytes, no newline at the end), skipped")
            return
        self.lineno -= 1
        self._scan(line + b"\n", len(line) + 1)

    def _bad(self, n: int, why: str) -> None:
        self.bad += 1
        if self.bad <= BAD_LINES_SHOWN:
            self.reader.warn(f"{self.label}:{n}: {why}")

    def _slow(self, line: bytes, n: int) -> None:
        """A line the hot loop does not slice: parsed, then a header, an event, a frame wrapper or a frame."""
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError:
            try:
                value = _loose_json(line)
            except ValueError:
                shown = line[:60].decode("utf-8", "replace")
                self._bad(n, f"not JSON, skipped: {shown!r}{'...' if len(line) > 60 else ''}")
                return
        if type(value) is dict:
            if value.get("mkstream") == FORMAT_NAME:
                self._header(value, n)
                return
            t = value.get("t")
            if "event" in value and _is_time(t):
                self._event(value)
                return
            if "conn" in value and "from" in value and _is_time(t):
                self._relayed(value, float(t), n)
                return
            for key in ("frame", "text", "bytes", "binary"):
                if key in value and _is_time(t) and "type" not in value:
                    self._wrapped(key, value[key], float(t), n)
                    return
            ts = value.get("ts")
            if isinstance(ts, str) and isinstance(value.get("type"), str):
                try:
                    self.last_t = parse_rfc3339(ts) + TS_ROUNDING
                    self.timed = True
                    del value["ts"]
                    line = _dumps(value)
                except ValueError:
                    pass
        self.out.append(self.reader.make(line.strip(), False, self.last_t))

    def _relayed(self, value: dict[str, Any], t: float, n: int) -> None:
        if self.reader.relayed:
            del value["t"]
            self.last_t, self.timed = t, True
            self.out.append(self.reader.make(_dumps(value), False, t))
            return
        if value["from"] != "server":
            return  # what the client sent is not the server's to play back
        for key in ("frame", "text", "bytes", "binary"):
            if key in value:
                self._wrapped(key, value[key], t, n)
                return

    def _wrapped(self, key: str, value: Any, t: float, n: int) -> None:
        if key == "frame":
            data, binary = _dumps(value), False
        elif key == "text" and isinstance(value, str):
            data, binary = value.encode("utf-8", "surrogatepass"), False
        elif isinstance(value, str):
            try:
                data, binary = base64.b64decode(value, validate=True), key == "binary"
            except ValueError:
                self._bad(n, f"{key} is not base64, skipped")
                return
        else:
            self._bad(n, f"{key} is not a string, skipped")
            return
        self.last_t = t
        self.timed = True
        self.out.append(self.reader.make(data, binary, t))

    def _header(self, value: dict[str, Any], n: int) -> None:
        version = value.get("version")
        if type(version) is not int:
            self._bad(n, f"recording header without a version number ({version!r}): replaying what it can")
        elif version > VERSION:
            self._bad(n, f"recording format version {version} is newer than this mkstream reads ({VERSION}): "
                         "replaying what it can")
        start = value.get("t")
        host = value.get("host")
        self._cut()
        self.section = self.reader.next_section(self.label, host if isinstance(host, str) else None,
                                                Subscriptions.from_json(value),
                                                float(start) if _is_time(start) else None)

    def _event(self, value: dict[str, Any]) -> None:
        if value.get("event") != "subscriptions":
            return
        self._cut()
        old = self.section
        self.section = Section(old.file, old.number, old.host, Subscriptions.from_json(value), old.start)


def _dumps(value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except (TypeError, orjson.JSONEncodeError):  # integers beyond 64 bits, lone surrogates
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "backslashreplace")


def _is_time(value: Any) -> TypeGuard[float]:
    return type(value) in (int, float) and -1e11 < value < 1e11
