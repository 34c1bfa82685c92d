"""Every line mkstream writes to stderr: warnings, notices, diagnostics, errors, the status line.

Each line is redacted (the token never appears) and has its control characters escaped, because
notices quote server data (close reasons, frame types, jq errors that quote values) and server
text must never drive the user's terminal. Notices about the connection (``event``) carry a UTC
timestamp when stderr is not a terminal, so a cron log shows when each drop and gap happened.
On a terminal, with the records going elsewhere, a ``StatusLine`` redraws itself below the notices.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

from misskey_cli.core.safetext import escape_controls
from misskey_cli.core.timefmt import rfc3339_seconds
from misskey_cli.net.endpoint import Redactor


def one_line(text: str) -> str:
    """``text`` with every control character (newlines too) shown as a visible escape."""
    return escape_controls(text)


def stderr_notices(quiet: bool = False) -> Notices:
    """Notices on the process's stderr, for the command line's own lines before (or without) a run."""
    import sys

    return Notices(sys.stderr, quiet=quiet)


class Notices:
    def __init__(self, stream: TextIO | None, redact: Redactor | None = None, quiet: bool = False,
                 verbose: bool = False, timestamps: bool = False) -> None:
        self.stream = stream
        self.redact = redact or Redactor(None)
        self.quiet = quiet
        self.verbose = verbose
        self.timestamps = timestamps
        self.status: StatusLine | None = None

    def _emit(self, line: str) -> None:
        if self.stream is None:
            return
        try:
            if self.status is not None:
                self.status.clear()
            self.stream.write(one_line(self.redact(line)) + "\n")
            if self.status is not None:
                self.status.draw()
            self.stream.flush()
        except (OSError, ValueError):
            pass  # stderr closed or gone: nothing left to tell

    def event(self, message: str) -> None:
        """A notice about the connection (lost, retrying, reconnected, a gap), timestamped in a log."""
        if not self.quiet:
            stamp = rfc3339_seconds() + " " if self.timestamps else ""
            self._emit(f"mkstream: {stamp}{message}")

    def warn(self, message: str) -> None:
        if not self.quiet:
            self._emit(f"mkstream: warning: {message}")

    def info(self, message: str) -> None:
        if not self.quiet:
            self._emit(f"mkstream: {message}")

    def report(self, message: str) -> None:
        """Something the user asked for (``--stats``): shown even with ``-q``."""
        self._emit(f"mkstream: {message}")

    def debug(self, message: str) -> None:
        if self.verbose:
            self._emit(f"mkstream: {message}")

    def error(self, message: str) -> None:
        self._emit(f"mkstream: error: {message}")

    def traceback(self, text: str) -> None:
        """A traceback, with -v only: several lines, each redacted and escaped."""
        if self.verbose and self.stream is not None:
            for line in text.rstrip("\n").splitlines():
                self._emit(line)


@dataclass
class Progress:
    records: int = 0
    bytes: int = 0
    reconnects: int = 0
    backfilled: int = 0


class LiveLine:
    """One line on a terminal's stderr that redraws itself in place (carriage return, erase line):
    the one mechanism behind the stream's status line and login's countdown.

    Cut to the terminal's width (``resize`` follows the window). A stream that cannot be written (a
    terminal gone, a full device) ends the line quietly: it is a courtesy, never a reason to stop.
    """

    def __init__(self, stream: TextIO | None, width: int = 80) -> None:
        self.stream = stream
        self.width = max(20, width - 1)
        self.drawn = False

    def resize(self, width: int) -> None:
        self.width = max(20, width - 1)

    def show(self, text: str) -> None:
        self._write("\r\x1b[K" + text[:self.width])
        self.drawn = self.stream is not None

    def clear(self) -> None:
        if self.drawn:
            self._write("\r\x1b[K")
            self.drawn = False

    def _write(self, text: str) -> None:
        if self.stream is None:
            return
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):
            self.stream = None
            self.drawn = False


class StatusLine:
    """One self-updating stderr line: state, uptime, records, rate, reconnects, backfill, bytes.

    Only for a terminal on stderr while the records go to a pipe or a file; redrawn at most
    ``every`` seconds, cleared before each notice and at the end.
    """

    def __init__(self, stream: TextIO, width: int = 80, every: float = 0.5,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.line = LiveLine(stream, width)
        self.every = every
        self.clock = clock
        self.started = clock()
        self.state = "connecting"
        self._until: float | None = None  # when the wait the state names ends: counted down
        self.progress = Progress()
        self._last = -1e9
        self._rate_mark = (self.started, 0)
        self.rate = 0.0

    def resize(self, width: int) -> None:
        """The terminal was resized: cleared and drawn again at the new width."""
        self.line.resize(width)
        if self.line.drawn:
            self.clear()
            self._last = -1e9
            self.tick()

    def set_state(self, state: str, wait: float | None = None) -> None:
        """``connected``; with ``wait`` seconds, a wait counted down on the line (``reconnecting in 15s``)."""
        self.state = state
        self._until = self.clock() + wait if wait is not None else None
        self._last = -1e9
        self.tick()

    def tick(self) -> None:
        now = self.clock()
        if now - self._last < self.every:
            return
        mark_at, mark_records = self._rate_mark
        if now - mark_at >= 1.0:
            self.rate = (self.progress.records - mark_records) / (now - mark_at)
            self._rate_mark = (now, self.progress.records)
        self._last = now
        self.draw()

    def text(self) -> str:
        p = self.progress
        up = int(self.clock() - self.started)
        state = self.state
        if self._until is not None:
            state = f"{state} in {max(0.0, self._until - self.clock()):.0f}s"
        parts = [state, f"up {up // 3600:d}:{up // 60 % 60:02d}:{up % 60:02d}", f"{p.records} records",
                 f"{self.rate:.1f}/s", f"{p.reconnects} reconnects"]
        if p.backfilled:
            parts.append(f"{p.backfilled} backfilled")
        parts.append(_size(p.bytes))
        return ("mkstream: " + " | ".join(parts))[:self.line.width]

    def draw(self) -> None:
        self.line.show(self.text())

    def clear(self) -> None:
        self.line.clear()


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    size = float(n)
    for unit in ("KB", "MB", "GB"):
        size /= 1024
        if size < 1024 or unit == "GB":
            break
    return f"{size:.1f} {unit}"
