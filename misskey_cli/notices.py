"""Every line mkstream writes to stderr: warnings, notices, diagnostics and errors.

Each line is redacted (the token never appears) and has its control characters escaped, because
notices quote server data (close reasons, frame types, jq errors that quote values) and server
text must never drive the user's terminal.
"""

from __future__ import annotations

import re
from typing import TextIO

from misskey_cli.config import Redactor

_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match[0])
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def one_line(text: str) -> str:
    """``text`` with every control character (newlines too) shown as a visible escape."""
    return _CONTROLS.sub(_escape, text)


class Notices:
    def __init__(self, stream: TextIO | None, redact: Redactor | None = None, quiet: bool = False,
                 verbose: bool = False) -> None:
        self.stream = stream
        self.redact = redact or Redactor(None)
        self.quiet = quiet
        self.verbose = verbose

    def _emit(self, line: str) -> None:
        if self.stream is None:
            return
        try:
            self.stream.write(one_line(self.redact(line)) + "\n")
            self.stream.flush()
        except (OSError, ValueError):
            pass  # stderr closed or gone: nothing left to tell

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
