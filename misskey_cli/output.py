"""Turning received frames into output records, and writing them. The only user of jq and pygments.

``Renderer`` is pure: a decoded frame in, a list of encoded records out (jq may make 0..n of one
frame). ``Writer`` is the only code that touches the output file: one write per record, so every
record is on its way downstream as soon as it is rendered.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import orjson

from misskey_cli.errors import OutputError, UsageError

FORMATS = ("pretty", "ndjson", "raw")
COLOR_MODES = ("auto", "always", "never")
DEFAULT_STYLE = "monokai"


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


class Renderer:
    """Frames to records for one set of output options."""

    def __init__(self, options: OutputOptions) -> None:
        self.options = options
        self.program = compile_filters(options.filters, options.args) if options.filters else None
        self._highlight: Callable[[str], str] | None = None
        if options.format == "pretty" and options.color:
            self._highlight = make_highlighter(options.style)
        if options.format == "pretty":
            self._encode: Callable[[Any], bytes] = self._pretty
        else:
            self._encode = _ndjson

    def render(self, frame: Any, received_at: float) -> list[bytes]:
        if self.options.timestamps:
            frame = {"ts": rfc3339(received_at), **frame}
        if self.program is None:
            return [self._encode(frame)]
        try:
            values = self.program.input_value(frame).all()
        except ValueError as exc:
            raise JqRuntimeError(str(exc).splitlines()[0] if str(exc) else "jq error") from None
        if self.options.raw_output:
            return [v.encode("utf-8") + b"\n" if isinstance(v, str) else self._encode(v) for v in values]
        return [self._encode(v) for v in values]

    def _pretty(self, value: Any) -> bytes:
        text = json.dumps(value, indent=2, ensure_ascii=False)
        if self._highlight is not None:
            return self._highlight(text).encode("utf-8")
        return text.encode("utf-8") + b"\n"


def _ndjson(value: Any) -> bytes:
    return dumps_compact(value) + b"\n"


def make_highlighter(style: str) -> Callable[[str], str]:
    from pygments import highlight
    from pygments.formatters import Terminal256Formatter, TerminalTrueColorFormatter
    from pygments.lexers.data import JsonLexer

    lexer = JsonLexer()
    truecolor = os.environ.get("COLORTERM", "").lower() in ("truecolor", "24bit")
    formatter = (TerminalTrueColorFormatter if truecolor else Terminal256Formatter)(style=style)

    def colour(text: str) -> str:
        return highlight(text, lexer, formatter)

    return colour


class ReaderGone(Exception):
    """The reader closed the pipe: a normal end."""


class Writer:
    """Writes each record with one unbuffered write, so it leaves at once."""

    def __init__(self, fd: int, label: str, owns: bool = False, stream: BinaryIO | None = None) -> None:
        self.fd = fd
        self.label = label
        self.owns = owns
        self.stream = stream

    @classmethod
    def for_stdout(cls) -> Writer:
        """Write to file descriptor 1 directly, or to ``sys.stdout`` when it has none (a test harness)."""
        try:
            fd = sys.stdout.fileno()
        except (AttributeError, OSError, ValueError):
            return cls(-1, "stdout", stream=sys.stdout.buffer)
        sys.stdout.flush()
        return cls(fd, "stdout")

    @classmethod
    def open_append(cls, path: str) -> Writer:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise UsageError(f"cannot open output file {path}: {exc.strerror or exc}") from None
        return cls(fd, path, owns=True)

    def write(self, data: bytes) -> None:
        if self.stream is not None:
            self._write_stream(data)
            return
        try:
            written = os.write(self.fd, data)
            while written < len(data):
                data = data[written:]
                written = os.write(self.fd, data)
        except BrokenPipeError:
            raise ReaderGone() from None
        except OSError as exc:
            raise OutputError(f"cannot write to {self.label}: {exc.strerror or exc}") from None

    def _write_stream(self, data: bytes) -> None:
        assert self.stream is not None
        try:
            self.stream.write(data)
            self.stream.flush()
        except BrokenPipeError:
            raise ReaderGone() from None
        except OSError as exc:
            raise OutputError(f"cannot write to {self.label}: {exc.strerror or exc}") from None

    def close(self) -> None:
        if self.owns:
            os.close(self.fd)
            self.owns = False
