"""Turning received frames into output records, and writing them. The only user of jq and pygments.

``Renderer`` is pure: a decoded frame in, a list of encoded records out (jq may make 0..n of one
frame). ``Writer`` is the only code that touches the output file: one write per record, so every
record is on its way downstream as soon as it is rendered.
"""

from __future__ import annotations

import json
import os
import queue
import re
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import orjson

from misskey_cli.choices import DEFAULT_STYLE
from misskey_cli.errors import OutputError, UsageError


@dataclass(frozen=True)
class OutputOptions:
    format: str = "ndjson"
    color: bool = False
    style: str = DEFAULT_STYLE
    filters: tuple[str, ...] = ()
    args: dict[str, Any] = field(default_factory=dict)
    raw_output: bool = False
    timestamps: bool = False


class JqRuntimeError(Exception):
    """A filter failed on one frame: that frame is skipped, the stream goes on."""


def decide_format(requested: str | None, is_terminal: bool) -> str:
    if requested:
        return requested
    return "pretty" if is_terminal else "ndjson"


def decide_color(mode: str, is_terminal: bool, environ: dict[str, str] | os._Environ[str]) -> bool:
    """``--color``: always/never win; auto honours NO_COLOR, then FORCE_COLOR, then the terminal."""
    if mode == "always":
        return True
    if mode == "never":
        return False
    if environ.get("NO_COLOR"):
        return False
    if environ.get("FORCE_COLOR"):
        return True
    return is_terminal


def compile_filters(filters: tuple[str, ...], args: dict[str, Any]) -> Any:
    """Compile ``--jq`` filters as one program ``(f1) | (f2)``; a syntax error is a usage error."""
    import jq

    program = " | ".join(f"({f})" for f in filters)
    try:
        return jq.compile(program, args=args)
    except ValueError as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        detail = lines[0] if lines else "syntax error"
        detail = detail.removeprefix("jq: error: ")
        raise UsageError(f"bad --jq filter {' | '.join(filters)!r}: {detail}") from None


def check_style(name: str) -> str:
    from pygments.styles import get_all_styles

    styles = sorted(get_all_styles())
    if name not in styles:
        raise UsageError(f"unknown --style {name!r}; choose one of: {', '.join(styles)}")
    return name


def style_names() -> list[str]:
    from pygments.styles import get_all_styles

    return sorted(get_all_styles())


def rfc3339(epoch: float) -> str:
    """Receive time as RFC 3339 UTC with milliseconds: ``2026-11-27T19:28:42.184Z``."""
    whole = int(epoch)
    millis = int((epoch - whole) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{millis:03d}Z"


def dumps_compact(value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except (TypeError, orjson.JSONEncodeError):
        # orjson refuses integers beyond 64 bits; the standard library does not.
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def loads(data: bytes) -> Any:
    """Decode one frame (UTF-8 validated); raises ValueError with a short reason."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        pass
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("invalid UTF-8") from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ValueError(f"not JSON ({exc.args[0].split(':')[0]})") from None


_PATH_FILTER = re.compile(r"^\s*((?:\.[A-Za-z_][A-Za-z0-9_]*)+)\s*$")
_SAFE_INT = 2**53


def simple_path(filters: tuple[str, ...]) -> tuple[str, ...] | None:
    """The keys of a chain of plain path filters (``.body`` ``.body.text``), or None for anything else."""
    keys: list[str] = []
    for f in filters:
        match = _PATH_FILTER.match(f)
        if match is None:
            return None
        keys.extend(match[1][1:].split("."))
    return tuple(keys)


class Renderer:
    """Frames to records for one set of output options.

    ``render`` is the general path. ``plain`` is set when a record is just the encoded frame (no
    jq, no timestamps), so the caller can call ``encode`` directly.
    """

    def __init__(self, options: OutputOptions) -> None:
        self.options = options
        self.program = compile_filters(options.filters, options.args) if options.filters else None
        # Plain path filters are evaluated on the decoded frame: jq would convert it to its own
        # values and back for every frame. Anything the shortcut cannot answer exactly goes to jq.
        self.path = simple_path(options.filters) if options.filters else None
        if options.format == "pretty":
            self.encode: Callable[[Any], bytes] = make_colourer(options.style) if options.color else _pretty
        else:
            self.encode = _ndjson
        self.plain = self.program is None and not options.timestamps

    def render(self, frame: Any, received_at: float, data: bytes = b"") -> list[bytes]:
        """Records for one decoded frame; ``data`` is its text as received, when at hand."""
        if self.options.timestamps:
            frame = {"ts": rfc3339(received_at), **frame}
            data = b""
        if self.program is None:
            return [self.encode(frame)]
        if self.path is not None:
            value = frame
            for key in self.path:
                if type(value) is dict:
                    value = value.get(key)
                elif value is not None:
                    break  # an error: jq words it
            else:
                kind = type(value)
                if value is None or kind is str or kind is bool or kind is float or (
                        kind is int and -_SAFE_INT < value < _SAFE_INT):
                    return [self._encode_result(value)]
        try:
            text = data.decode("utf-8") if data else dumps_compact(frame).decode("utf-8")
            values = self.program.input_text(text).all()
        except ValueError as exc:
            raise JqRuntimeError(str(exc).splitlines()[0] if str(exc) else "jq error") from None
        return [self._encode_result(v) for v in values]

    def _encode_result(self, value: Any) -> bytes:
        if self.options.raw_output and type(value) is str:
            return value.encode("utf-8") + b"\n"
        return self.encode(value)


def _ndjson(value: Any) -> bytes:
    try:
        return orjson.dumps(value, option=orjson.OPT_APPEND_NEWLINE)
    except (TypeError, orjson.JSONEncodeError):
        return dumps_compact(value) + b"\n"


def _pretty(value: Any) -> bytes:
    return json.dumps(value, indent=2, ensure_ascii=False).encode("utf-8") + b"\n"


def make_colourer(style: str) -> Callable[[Any], bytes]:
    """Indented JSON in the pygments style's terminal colours, written straight from the value.

    The text is ``json.dumps(value, indent=2)``'s; each token gets the colour pygments' terminal
    formatter gives the JSON lexer's token of that kind. Lexing the text again would cost ten
    times as much per record.
    """
    from pygments.formatters import Terminal256Formatter, TerminalTrueColorFormatter
    from pygments.token import Keyword, Name, Number, Punctuation, String, _TokenType

    truecolor = os.environ.get("COLORTERM", "").lower() in ("truecolor", "24bit")
    formatter = (TerminalTrueColorFormatter if truecolor else Terminal256Formatter)(style=style)

    def paint(ttype: _TokenType | None) -> Callable[[str], str]:
        while ttype is not None and str(ttype) not in formatter.style_string:
            ttype = ttype.parent
        if ttype is None:
            return lambda text: text
        on, off = formatter.style_string[str(ttype)]
        return lambda text: on + text + off

    key, string, integer, floating, constant, punct = (
        paint(t) for t in (Name.Tag, String.Double, Number.Integer, Number.Float, Keyword.Constant, Punctuation))
    open_obj, close_obj, open_arr, close_arr = punct("{"), punct("}"), punct("["), punct("]")
    empty_obj, empty_arr, comma, colon = punct("{}"), punct("[]"), punct(","), punct(":") + " "
    literals = {True: constant("true"), False: constant("false"), None: constant("null")}
    dump = json.dumps

    def walk(value: Any, pad: str, out: list[str]) -> None:
        kind = type(value)
        if kind is str:
            out.append(string(dump(value, ensure_ascii=False)))
        elif kind is dict or kind is list:
            if not value:
                out.append(empty_obj if kind is dict else empty_arr)
                return
            inner = pad + "  "
            out.append(open_obj if kind is dict else open_arr)
            separator = "\n" + inner
            for n, item in enumerate(value.items() if kind is dict else value):
                out.append(separator if n == 0 else comma + separator)
                if kind is dict:
                    out.append(key(dump(str(item[0]), ensure_ascii=False)))
                    out.append(colon)
                    item = item[1]
                walk(item, inner, out)
            out.append("\n" + pad + (close_obj if kind is dict else close_arr))
        elif value is None or kind is bool:
            out.append(literals[value])
        elif kind is int:
            out.append(integer(dump(value)))
        else:
            out.append(floating(dump(value)))

    def colour(value: Any) -> bytes:
        out: list[str] = []
        walk(value, "", out)
        out.append("\n")
        return "".join(out).encode("utf-8")

    return colour


class ReaderGone(Exception):
    """The reader closed the pipe: a normal end."""


class Writer:
    """The only code that writes records: each one is handed to a writer thread that writes it at once.

    The thread is what keeps a slow or paused reader (``| less``, a full pipe, a stalled disk) from
    stalling the socket: the event loop goes on receiving frames and answering pings while the
    records queue up in memory, so the server never drops mkstream for not reading and nothing is
    lost. Write errors surface on the next ``write`` or at ``finish``.

    To keep memory flat when the reader is merely slower than the stream, ``wait_for_room`` lets
    the event loop pause (briefly, so pings are still answered in time) while the backlog is high.
    """

    BACKLOG_HIGH = 2 * 1024 * 1024
    BACKLOG_LOW = 512 * 1024
    BACKLOG_WARNING = 64 * 1024 * 1024

    def __init__(self, fd: int, label: str, owns: bool = False, stream: BinaryIO | None = None,
                 warn: Callable[[str], None] | None = None) -> None:
        self.fd = fd
        self.label = label
        self.owns = owns
        self.stream = stream
        self.warn = warn
        self.error: Exception | None = None
        self.backlog = 0
        self._backlog_changed = threading.Condition()
        self._warned = False
        self._queue: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        # Readable once a write has failed, so the event loop learns of it without waiting for a frame.
        self.failed_fd, self._failed_signal = os.pipe()

    @classmethod
    def for_stdout(cls, warn: Callable[[str], None] | None = None) -> Writer:
        """Write to file descriptor 1 directly, or to ``sys.stdout`` when it has none (a test harness)."""
        try:
            fd = sys.stdout.fileno()
        except (AttributeError, OSError, ValueError):
            return cls(-1, "stdout", stream=sys.stdout.buffer, warn=warn)
        sys.stdout.flush()
        return cls(fd, "stdout", warn=warn)

    @classmethod
    def open_append(cls, path: str, warn: Callable[[str], None] | None = None) -> Writer:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise UsageError(f"cannot open output file {path}: {exc.strerror or exc}") from None
        return cls(fd, path, owns=True, warn=warn)

    def raise_error(self) -> None:
        if self.error is not None:
            raise self.error

    def write(self, data: bytes) -> None:
        if self.error is not None:
            raise self.error
        if self._thread is None:
            self._thread = threading.Thread(target=self._drain, name="mkstream-writer", daemon=True)
            self._thread.start()
        with self._backlog_changed:
            self.backlog += len(data)
        if self.backlog > self.BACKLOG_WARNING and not self._warned and self.warn is not None:
            self._warned = True
            self.warn(f"{self.label} is not keeping up: {self.backlog // (1024 * 1024)} MB of records waiting "
                      "in memory (nothing is dropped)")
        self._queue.put(data)

    def wait_for_room(self, timeout: float) -> None:
        """If more than BACKLOG_HIGH bytes wait, wait (up to ``timeout``) until BACKLOG_LOW or less do."""
        if self.backlog <= self.BACKLOG_HIGH:
            return
        with self._backlog_changed:
            self._backlog_changed.wait_for(lambda: self.backlog <= self.BACKLOG_LOW or self.error is not None,
                                           timeout)

    def finish(self) -> None:
        """Wait until every record is written; raise the write error if there was one."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None
        if self.error is not None:
            raise self.error

    def _drain(self) -> None:
        get, get_nowait, write = self._queue.get, self._queue.get_nowait, self._write
        finished = False
        while not finished:
            item = get()
            if item is None:
                return
            batch = [item]
            # Buffers that queued up while the last write ran go out in one system call (writev:
            # no copy into one big buffer).
            try:
                while len(batch) < 512:
                    more = get_nowait()
                    if more is None:
                        finished = True
                        break
                    batch.append(more)
            except queue.Empty:
                pass
            size = sum(map(len, batch))
            if self.error is None:
                write(batch)
            with self._backlog_changed:
                self.backlog -= size
                self._backlog_changed.notify_all()

    def _write(self, batch: list[bytes]) -> None:
        try:
            if self.stream is not None:
                self.stream.write(b"".join(batch))
                self.stream.flush()
                return
            pending = list(batch)
            while pending:
                written = os.writev(self.fd, pending)
                skip = 0
                while skip < len(pending) and written >= len(pending[skip]):
                    written -= len(pending[skip])
                    skip += 1
                pending = pending[skip:]
                if written:
                    pending[0] = pending[0][written:]
        except BrokenPipeError:
            self.error = ReaderGone()
        except OSError as exc:
            self.error = OutputError(f"cannot write to {self.label}: {exc.strerror or exc}")
        else:
            return
        os.write(self._failed_signal, b"!")

    def close(self) -> None:
        for fd in (self.failed_fd, self._failed_signal):
            if fd >= 0:
                os.close(fd)
        self.failed_fd = self._failed_signal = -1
        if self.owns:
            os.close(self.fd)
            self.owns = False
