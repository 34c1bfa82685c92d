"""Turning received frames into output records; the only user of pygments.

``FORMATS`` is the registry of output formats (pretty, ndjson, raw, line): the one place that
knows what each format does with a frame. ``Renderer`` applies the ``--jq`` filters and the chosen
format: a decoded frame in, its encoded records out (jq may make 0..n of one frame, lazily).
A filter is answered by ``jqfast`` where it can promise jq's answer, else by libjq in its worker
process (``jqworker``). Every record is strict JSON: a frame passed through is written as the
server sent it, a filter's result as jq prints it. Writing the records is ``writer.py``'s job.
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from misskey_cli.core import jsoncodec
from misskey_cli.core.choices import DEFAULT_STYLE
from misskey_cli.core.protocol import Frame, without_surrogates
from misskey_cli.core.safetext import escape_controls, escape_json_text
from misskey_cli.core.timefmt import rfc3339
from misskey_cli.errors import UsageError
from misskey_cli.output.jqfast import check_output, compile_fast, frame_is_exact
from misskey_cli.output.jqworker import JqError, JqProcess, compile_error
from misskey_cli.output.notecontext import NoteContext

if TYPE_CHECKING:
    from misskey_cli.output.lineformat import LineFormatter
    from misskey_cli.output.relayline import RelayLines


@dataclass(frozen=True)
class OutputOptions:
    """Output settings with every terminal fact already decided (by the app, once)."""

    format: str = "ndjson"
    color: bool = False
    truecolor: bool = False
    style: str = DEFAULT_STYLE
    filters: tuple[str, ...] = ()
    args: dict[str, Any] = field(default_factory=dict)
    raw_output: bool = False
    timestamps: bool = False
    # -r strings and --format raw frames to a terminal: control characters from server text are
    # shown escaped (unless --unsafe-raw).
    escape_raw_strings: bool = False
    # Records go to a terminal: NDJSON writes DEL, C1 and bidi controls as \u escapes (the same JSON).
    terminal: bool = False
    width: int | None = None  # line format: the columns to fit (None: no cut)
    show_cw: bool = False  # line format: show the text behind a content warning
    note_context: NoteContext | None = None  # line format: the notes and users behind noteUpdated events
    relayed: bool = False  # line format: records may be mkstream proxy's (relayline.py)


@dataclass(frozen=True)
class Format:
    """One entry of the format registry."""

    name: str
    summary: str
    # Records are the frame's bytes as received: no decoding, no filters, no timestamps.
    verbatim: bool = False
    # Whether `--timestamps` is rendered by adding a "ts" key to the frame (else the format shows it).
    ts_key: bool = True


FORMATS: dict[str, Format] = {f.name: f for f in (
    Format("pretty", "indented JSON, coloured on a terminal"),
    Format("ndjson", "one compact JSON text per line"),
    Format("raw", "each frame's text byte for byte as received", verbatim=True),
    Format("line", "one human-readable line per frame, fitted to the terminal", ts_key=False),
)}


class JqRuntimeError(Exception):
    """A filter failed on one frame: that frame is skipped, the stream goes on."""


def decide_format(requested: str | None, is_terminal: bool) -> Format:
    return FORMATS[requested or ("pretty" if is_terminal else "ndjson")]


def decide_truecolor(environ: Mapping[str, str]) -> bool:
    return environ.get("COLORTERM", "").lower() in ("truecolor", "24bit")


def decide_color(mode: str, is_terminal: bool, environ: Mapping[str, str]) -> bool:
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


def compile_filters(filters: tuple[str, ...], args: dict[str, Any]) -> str:
    """Check ``--jq`` filters, and the program ``f1 | f2`` they make; a filter that fails is a usage error.

    Each filter is compiled on its own first, so an error names the filter the user typed and a
    filter cannot close another's parenthesis. They are then chained with each one on its own
    lines, so a ``# comment`` ends where its filter does (a comment ending in a backslash runs on
    one line, hence the empty line after each).
    """
    for f in filters:
        if not f.strip():
            raise UsageError("empty --jq filter: use '.' for the whole frame")
        _check(f, args)
        if _HALT_ERROR.search(_STRINGS.sub('""', f)):
            # The jq library ends the frame's output on halt_error and drops its message and status.
            raise UsageError(f"bad --jq filter {f!r}: halt_error would end jq, which mkstream runs once per frame: "
                             "use error(...) to skip a frame with a message")
    program = program_text(filters)
    if len(filters) > 1:
        _check(program, args)
    return program


_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"')
_HALT_ERROR = re.compile(r"(?<![.$\w])halt_error\b(?!\s*:)")  # not .halt_error, $halt_error, {halt_error: 1}


def program_text(filters: tuple[str, ...]) -> str:
    return filters[0] if len(filters) == 1 else " | ".join(f"(\n{f}\n\n)" for f in filters)


def _check(program: str, args: dict[str, Any]) -> None:
    detail = compile_error(program, args)
    if detail is not None:
        raise UsageError(f"bad --jq filter {program!r}: {detail}")


def check_style(name: str) -> str:
    from pygments.styles import STYLE_MAP

    if name in STYLE_MAP:
        return name  # built in: asking the installed plugins costs a scan of every package (~30 ms a run)
    styles = style_names()
    if name not in styles:
        raise UsageError(f"unknown --style {name!r}; choose one of: {', '.join(styles)}")
    return name


def style_names() -> list[str]:
    from pygments.styles import get_all_styles

    return sorted(get_all_styles())


def _utf8(text: str) -> bytes:
    # A lone surrogate (JSON allows "\ud83c"; JavaScript makes it of a string cut mid-emoji) can
    # only stand inside a JSON string, where backslashreplace writes it as that same escape.
    return text.encode("utf-8", "backslashreplace")


def finite(value: Any) -> Any:
    """``value`` with infinities as jq prints them (the largest double) and NaN as null.

    A loosely decoded frame (``1e999``) holds them; the standard library would write ``Infinity``,
    which is not JSON.
    """
    kind = type(value)
    if kind is float:
        if value != value:
            return None
        if value in (_INF, -_INF):
            return sys.float_info.max if value > 0 else -sys.float_info.max
    elif kind is dict:
        return {k: finite(v) for k, v in value.items()}
    elif kind is list:
        return [finite(v) for v in value]
    return value


_INF = float("inf")


def parse_jq_text(data: bytes) -> Any:
    """A record jq printed, as a value (integers exact, floats as doubles, 1E+1000 as the largest one)."""
    value, strict = jsoncodec.loads(data)
    return value if strict else finite(value)


def encode_like_jq(value: Any) -> bytes:
    """A value jqfast vouched for (``check_output``), encoded as ``jq -c`` prints it, with the newline.

    orjson and jq agree on such a value byte for byte but for U+007F, which jq escapes.
    """
    data = jsoncodec.dumps_line(value)
    return data.replace(b"\x7f", b"\\u007f") if b"\x7f" in data else data


def as_sent(data: bytes) -> bytes:
    """A frame's text as the server sent it, as one line (a line break can only be whitespace in JSON)."""
    if b"\n" in data or b"\r" in data:
        data = data.replace(b"\r", b" ").replace(b"\n", b" ")
    return data + b"\n"


def with_ts(data: bytes, stamp: str) -> bytes:
    """A frame's text (an object) with ``"ts"`` as its first key, the rest as sent."""
    inner = data.strip()[1:].lstrip()
    head = b'{"ts":' + jsoncodec.dumps(stamp)
    return head + (inner if inner.startswith(b"}") else b"," + inner)


_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_ESCAPE = re.compile(rb"\\(?:u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}|u[dD][89a-fA-F][0-9a-fA-F]{2}|.)",
                     re.DOTALL)


def without_lone_surrogates(data: bytes) -> bytes:
    """A frame's text with each escaped lone surrogate as U+FFFD, which jq can read (it refuses them)."""

    def escape(match: re.Match[bytes]) -> bytes:
        text = match.group()
        return b"\\ufffd" if len(text) == 6 and text[1:2] in b"uU" and text[2:3] in b"dD" else text

    def string(match: re.Match[bytes]) -> bytes:
        text = match.group()
        return _ESCAPE.sub(escape, text) if b"\\u" in text else text

    return _STRING.sub(string, data)


class Renderer:
    """Frames to records for one set of output options.

    ``records`` is the general path (``render`` collects them). Without jq every frame makes exactly
    one record, and ``record`` is the one function that makes it, chosen here once for the options
    (the encoded frame, its line, the frame as received, or the general path's one record), so the
    stream loop calls it per frame without deciding anything; with jq ``record`` is None and the
    loop takes ``records`` lazily (jq may make any number).
    """

    def __init__(self, options: OutputOptions) -> None:
        self.options = options
        self.format = FORMATS[options.format]
        if self.format.verbatim and (options.filters or options.timestamps):
            raise UsageError(f"--format {options.format} writes frames byte for byte: "
                             "it cannot be combined with --jq or --timestamps")
        program = compile_filters(options.filters, options.args) if options.filters else None
        self.program = JqProcess(program, options.args) if program is not None else None
        if self.program is not None:
            weakref.finalize(self, self.program.close)
        # Common filters are evaluated in Python on the decoded frame (jqfast): jq would parse the
        # text again and convert every result back. A frame the shortcut cannot answer exactly
        # goes to jq.
        self.fast = compile_fast(program, options.args) if program is not None else None
        if self.program is not None and self.fast is None:
            with contextlib.suppress(JqError):  # (the first frame tries again, and says why)
                self.program.start()  # every frame goes to jq: the first need not wait for the worker
        # While jq computes: fds to watch and what to do when one is readable (the stream's signals).
        self._watch: Sequence[int] = ()
        self._woken: Callable[[int], None] | None = None
        self._idle: Callable[[], None] | None = None
        self.line: Callable[[Any, float], str] | None = None
        self.formatter: LineFormatter | RelayLines | None = None  # the line format's, which a resize refits
        if options.format == "pretty":
            self.encode: Callable[[Any], bytes] = (make_colourer(options.style, options.truecolor)
                                                   if options.color else _pretty)
        else:
            self.encode = _ndjson_for_terminal if options.terminal else jsoncodec.dumps_line
        if options.format == "line":  # every line record needs its receive time: encode is not used for it
            from misskey_cli.output.lineformat import LineFormatter
            from misskey_cli.output.relayline import RelayLines

            lines = RelayLines if options.relayed else LineFormatter
            self.formatter = lines(width=options.width, color=options.color, show_cw=options.show_cw,
                                   timestamps=options.timestamps, context=options.note_context)
            self.line = self.formatter.format
        self.ndjson = self.encode in (jsoncodec.dumps_line, _ndjson_for_terminal) and self.line is None
        self.record: Callable[[Frame, float], bytes] | None = None
        if self.program is None:
            self.record = self._choose_record()

    def _choose_record(self) -> Callable[[Frame, float], bytes]:
        """The one record of a frame, for options without jq."""
        if self.format.verbatim:
            verbatim = self.verbatim
            return lambda frame, at: verbatim(frame.data)[0]
        if self.line is not None:
            line = self._line
            return lambda frame, at: line(frame.value, at)
        render = self.render
        if self.options.timestamps:
            return lambda frame, at: render(frame.value, at, frame.data, frame.clean)[0]
        encode = self.encode

        def plain(frame: Frame, at: float) -> bytes:
            if frame.clean:
                return encode(frame.value)
            return render(frame.value, at, frame.data, False)[0]  # re-encoded with care (lone surrogates)

        return plain

    def watch_while_computing(self, fds: Sequence[int], woken: Callable[[int], None], idle: Callable[[], None]) -> None:
        """Before jq computes, ``idle`` is called (write what is held); while it does, a readable fd
        of ``fds`` is handed to ``woken`` (which may raise to end the run)."""
        self._watch = fds
        self._woken = woken
        self._idle = idle

    def close(self) -> None:
        """Stop jq's worker process, if one runs."""
        if self.program is not None:
            self.program.close()

    def verbatim(self, data: bytes) -> list[bytes]:
        """Records for a frame as received, decoded or not: the frame itself in a verbatim format.

        To a terminal its control characters (and bytes that are not UTF-8) are shown escaped:
        a server's frame must not clear the screen or set the clipboard.
        """
        if not self.format.verbatim:
            return []
        if self.options.escape_raw_strings:
            return [escape_controls(data.decode("utf-8", "backslashreplace")).encode("utf-8") + b"\n"]
        return [data + b"\n"]

    def render(self, frame: Any, received_at: float, data: bytes = b"", clean: bool = True) -> list[bytes]:
        """Every record of one decoded frame (``records``, collected)."""
        return list(self.records(frame, received_at, data, clean))

    def records(self, frame: Any, received_at: float, data: bytes = b"", clean: bool = True) -> Iterable[bytes]:
        """Records for one decoded frame; ``data`` is its text as received, when at hand.

        ``clean`` is False when the text holds what orjson refuses (a lone surrogate, a number
        beyond a double or 64 bits). jq's records come lazily: stop iterating to stop jq. A jq
        error raises JqRuntimeError after the records jq made before it.
        """
        if self.format.verbatim:
            return self.verbatim(data)
        if not data and clean and self.program is not None:
            data = jsoncodec.dumps(frame)  # a frame built here, not received: both paths read this text
        stamp = rfc3339(received_at) if self.options.timestamps and self.format.ts_key else None
        if stamp is not None:
            frame = {"ts": stamp, **frame}
        if self.program is None:
            if not clean:
                if self.ndjson and data:
                    return [self._terminal_safe(as_sent(with_ts(data, stamp) if stamp is not None else data))]
                frame = finite(frame)
            return [self._line(frame, received_at) if self.line is not None else self.encode(frame)]
        if self.fast is not None and clean and frame_is_exact(data):
            try:
                values = [check_output(v) for v in self.fast(frame)]
            except Exception:  # noqa: BLE001 - Fallback, or anything the shortcut did not foresee: jq answers
                pass
            else:
                return [self._encode_result(v, received_at) for v in values]
        if data:
            text = data if clean else without_lone_surrogates(data)
            if stamp is not None:
                text = with_ts(text, stamp)
        else:  # a loose frame without its text
            text = without_surrogates(jsoncodec.dumps_text(finite(frame))).encode("utf-8")
        return self._from_jq(text, received_at)

    def _from_jq(self, text: bytes, received_at: float) -> Iterator[bytes]:
        assert self.program is not None
        results = self.program.results(text, self._watch, self._woken, self._idle)
        try:
            for record in results:
                yield self._encode_jq(record, received_at)
        except JqError as exc:
            message = str(exc).splitlines()[0] if str(exc) else "jq error"
            if message == "break":  # what the jq library says when input/inputs find no next input
                message = "input/inputs: there is no next input (mkstream gives jq one frame at a time)"
            raise JqRuntimeError(message) from None
        finally:
            results.close()

    def _encode_jq(self, record: bytes, received_at: float) -> bytes:
        """A record as jq printed it: written as it is in ndjson, else decoded for the format."""
        if self.options.raw_output and record[:1] == b'"':
            return self._encode_result(jsoncodec.loads(record)[0], received_at)
        if self.ndjson:
            return self._terminal_safe(record + b"\n")
        return self._encode_result(parse_jq_text(record), received_at)

    def _encode_result(self, value: Any, received_at: float) -> bytes:
        if self.options.raw_output and type(value) is str:
            if self.options.escape_raw_strings:
                value = "\n".join(escape_controls(line) for line in value.split("\n"))
            return without_surrogates(value).encode("utf-8") + b"\n"
        if self.line is not None:
            return self._line(value, received_at)
        if self.ndjson:
            return self._terminal_safe(encode_like_jq(value))
        return self.encode(value)

    def _terminal_safe(self, record: bytes) -> bytes:
        """NDJSON to a terminal: DEL, C1 and bidi controls as \\u escapes (the same JSON), else as it is."""
        if not self.options.terminal:
            return record
        return escape_json_text(record.decode("utf-8", "backslashreplace")).encode("utf-8")

    def _line(self, value: Any, received_at: float) -> bytes:
        assert self.line is not None
        return self.line(value, received_at).encode("utf-8", "replace") + b"\n"


def _ndjson_for_terminal(value: Any) -> bytes:
    return escape_json_text(jsoncodec.dumps_line(value).decode("utf-8")).encode("utf-8")


def _pretty(value: Any) -> bytes:
    return _utf8(escape_json_text(json.dumps(value, indent=2, ensure_ascii=False))) + b"\n"


def make_colourer(style: str, truecolor: bool = False) -> Callable[[Any], bytes]:
    """Indented JSON in the pygments style's terminal colours, written straight from the value.

    The text is ``json.dumps(value, indent=2)``'s; each token gets the colour pygments' terminal
    formatter gives the JSON lexer's token of that kind. Lexing the text again would cost ten
    times as much per record.
    """
    return _Colourer(style, truecolor).colour


class _Colourer:
    def __init__(self, style: str, truecolor: bool) -> None:
        from pygments.formatters import Terminal256Formatter, TerminalTrueColorFormatter
        from pygments.token import Keyword, Name, Number, Punctuation, String

        self.formatter = (TerminalTrueColorFormatter if truecolor else Terminal256Formatter)(style=style)
        self.key, self.string, self.integer, self.floating, constant, punct = (
            self._paint(t) for t in (Name.Tag, String.Double, Number.Integer, Number.Float, Keyword.Constant,
                                     Punctuation))
        self.open_obj, self.close_obj, self.open_arr, self.close_arr = punct("{"), punct("}"), punct("["), punct("]")
        self.empty_obj, self.empty_arr, self.comma, self.colon = punct("{}"), punct("[]"), punct(","), punct(":") + " "
        self.literals = {True: constant("true"), False: constant("false"), None: constant("null")}

    def _paint(self, ttype: Any) -> Callable[[str], str]:
        styles = self.formatter.style_string
        while ttype is not None and str(ttype) not in styles:
            ttype = ttype.parent
        if ttype is None:
            return lambda text: text
        on, off = styles[str(ttype)]
        return lambda text: on + text + off

    def colour(self, value: Any) -> bytes:
        out: list[str] = []
        self.walk(value, "", out)
        out.append("\n")
        return _utf8("".join(out))

    def walk(self, value: Any, pad: str, out: list[str]) -> None:
        kind = type(value)
        if kind is str:
            out.append(self.string(escape_json_text(json.dumps(value, ensure_ascii=False))))
        elif kind is dict or kind is list:
            self.walk_container(value, kind is dict, pad, out)
        elif value is None or kind is bool:
            out.append(self.literals[value])
        elif kind is int:
            out.append(self.integer(json.dumps(value)))
        else:
            out.append(self.floating(json.dumps(value)))

    def walk_container(self, value: Any, is_dict: bool, pad: str, out: list[str]) -> None:
        if not value:
            out.append(self.empty_obj if is_dict else self.empty_arr)
            return
        inner = pad + "  "
        out.append(self.open_obj if is_dict else self.open_arr)
        separator = "\n" + inner
        for n, item in enumerate(value.items() if is_dict else value):
            out.append(separator if n == 0 else self.comma + separator)
            if is_dict:
                out.append(self.key(escape_json_text(json.dumps(str(item[0]), ensure_ascii=False))))
                out.append(self.colon)
                item = item[1]
            self.walk(item, inner, out)
        out.append("\n" + pad + (self.close_obj if is_dict else self.close_arr))
