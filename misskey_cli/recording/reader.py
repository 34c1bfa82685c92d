"""Reading recordings back, for ``mkstream replay`` and the simulator's replay.

The reader takes recordings and plain NDJSON frames alike (``--ndjson`` output, with or without
``--timestamps``), gzip or not, from files or stdin, and yields batches of frames with their
receive times and the ``Section`` (what was subscribed) they belong to. Its hot path never decodes
the wrapper: the frame's text is sliced out of the line, because the writer spliced it there
verbatim. A bad line (not JSON, cut short, a header from a newer format) is one warning with the
file and line number, and reading goes on.
"""

from __future__ import annotations

import base64
import contextlib
import math
import os
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any, BinaryIO, NamedTuple

from misskey_cli.core import jsoncodec, protocol
from misskey_cli.core.timefmt import parse_rfc3339
from misskey_cli.errors import UsageError
from misskey_cli.recording.format import FORMAT_NAME, VERSION, Subscriptions, is_time

# The kind of a record ``mkstream proxy`` wrote ({"conn": N, "from": "client"|"server", ...}) when a
# replay reads it back: it has no "type" of its own, the frame inside it has.
RELAYED = "(relayed)"


def decode_relayed(data: bytes, binary: bool = False) -> protocol.Frame | protocol.Bad:
    """``protocol.decode`` for a replay that may hold mkstream proxy's records (``Reader(relayed=True)``).

    A live server's frame of that shape stays a bad frame: only a replay knows what its lines are.
    """
    decoded = protocol.decode(data, binary)
    if type(decoded) is protocol.Bad and decoded.label == "(bad shape)":
        value, clean = jsoncodec.loads(data)
        if type(value) is dict and "conn" in value and value.get("from") in ("client", "server"):
            return protocol.Frame(value, RELAYED, data, clean)
    return decoded


CHUNK = 1 << 20  # bytes read at a time: about 700 typical frames
# The longest line read: a frame as large as the socket takes (wsframes' 256 MB) recorded as it
# came. Input without newlines (/dev/zero, a binary file) is refused when it passes this, instead
# of growing without end.
MAX_LINE = 256 << 20
BAD_LINES_SHOWN = 5  # per file; then only counted

Warn = Callable[[str], None]
# While reading: a file descriptor that turns readable when a signal arrives, and what to call then
# (it raises to end the run): a silent pipe then does not keep a signal waiting.
Wake = tuple[int, Callable[[], None]]


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
                 relayed: bool = False, wake: Wake | None = None) -> None:
        self.inputs = list(inputs)
        self.wake = wake
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
        wait = self._waiter(fd) if fd >= 0 else None
        while True:
            if wait is not None:
                wait()
            try:
                data = os.read(fd, size) if fd >= 0 or read is None else read(size)
            except OSError as exc:
                self.cut_short = f"read error ({exc.strerror or exc})"
                return
            if not data:
                return
            yield data

    def _waiter(self, fd: int) -> Callable[[], None] | None:
        """Waits until ``fd`` has data, acting on a signal that comes first (see ``Wake``)."""
        wake = self.reader.wake
        if wake is None:
            return None
        import select

        wake_fd, check = wake
        poll = select.poll()
        poll.register(fd, select.POLLIN)
        poll.register(wake_fd, select.POLLIN)

        def wait() -> None:
            while True:
                ready = {ready_fd for ready_fd, _ in poll.poll()}
                if wake_fd in ready:
                    with contextlib.suppress(BlockingIOError):
                        os.read(wake_fd, 512)
                    check()
                if fd in ready:
                    return

        return wait

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
        pieces: list[bytes] = []  # a line longer than a chunk, joined once its newline comes
        held = 0
        for chunk in self._chunks():
            if pieces:
                if b"\n" not in chunk:
                    pieces.append(chunk)
                    held += len(chunk)
                    self._bound(held)
                    continue
                chunk, pieces = b"".join([*pieces, chunk]), []
            buf = carry + chunk if carry else chunk
            end = buf.rfind(b"\n") + 1
            carry = buf[end:]
            if end:
                self._scan(buf, end)
            elif len(carry) >= self.reader.chunk:
                pieces, held, carry = [carry], len(carry), b""
            yield from self._flush()
        if pieces:
            carry = b"".join(pieces)
        partial = bool(carry) and self.cut_short is not None
        if carry:
            self._last_line(carry)
        if self.cut_short is not None:
            at = self.lineno if partial else self.lineno + 1
            self.reader.warn(f"{self.label}: {self.cut_short} at line {at}: the rest is lost")
        if self.bad > BAD_LINES_SHOWN:
            self.reader.warn(f"{self.label}: {self.bad} bad lines skipped in all (the first {BAD_LINES_SHOWN} shown)")
        yield from self._flush()

    def _bound(self, held: int) -> None:
        if held > MAX_LINE:
            raise UsageError(f"{self.label}: line {self.lineno + 1} is longer than {MAX_LINE >> 20} MB: "
                             "not a recording or NDJSON frames")

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
            at = parse_rfc3339(line[7:end].decode("ascii"))
        except (ValueError, UnicodeDecodeError):
            return None
        return b"{" + line[end + 2:], at

    def _last_line(self, line: bytes) -> None:
        """A last line without a newline: kept if it is whole (a hand-made file), else a warning."""
        self.lineno += 1
        if not line.strip():
            return
        try:
            jsoncodec.loads(line)
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
            value, _ = jsoncodec.loads(line)
        except ValueError:
            shown = line[:60].decode("utf-8", "replace")
            self._bad(n, f"not JSON, skipped: {shown!r}{'...' if len(line) > 60 else ''}")
            return
        if type(value) is dict:
            if value.get("mkstream") == FORMAT_NAME:
                self._header(value, n)
                return
            t = value.get("t")
            if "event" in value and is_time(t):
                self._event(value)
                return
            if "conn" in value and "from" in value and is_time(t):
                self._relayed(value, float(t), n)
                return
            for key in ("frame", "text", "bytes", "binary"):
                if key in value and is_time(t) and "type" not in value:
                    self._wrapped(key, value[key], float(t), n)
                    return
            ts = value.get("ts")
            if isinstance(ts, str) and isinstance(value.get("type"), str):
                try:
                    self.last_t = parse_rfc3339(ts)
                    self.timed = True
                    del value["ts"]
                    line = jsoncodec.dumps(value)
                except ValueError:
                    pass
        self.out.append(self.reader.make(line.strip(), False, self.last_t))

    def _relayed(self, value: dict[str, Any], t: float, n: int) -> None:
        if self.reader.relayed:
            del value["t"]
            self.last_t, self.timed = t, True
            self.out.append(self.reader.make(jsoncodec.dumps(value), False, t))
            return
        if value["from"] != "server":
            return  # what the client sent is not the server's to play back
        for key in ("frame", "text", "bytes", "binary"):
            if key in value:
                self._wrapped(key, value[key], t, n)
                return

    def _wrapped(self, key: str, value: Any, t: float, n: int) -> None:
        if key == "frame":
            data, binary = jsoncodec.dumps(value), False
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
                                                float(start) if is_time(start) else None)

    def _event(self, value: dict[str, Any]) -> None:
        if value.get("event") != "subscriptions":
            return
        self._cut()
        old = self.section
        self.section = Section(old.file, old.number, old.host, Subscriptions.from_json(value), old.start)
