"""The doctor's report: each check as one line as it completes, or the whole report as JSON at the end.

Every line is redacted (the token never appears) and server text has its control characters escaped.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from misskey_cli.core.safetext import escape_controls, escape_json_text
from misskey_cli.doctor.verdict import FAIL, OK, SKIP, WARN, Check
from misskey_cli.errors import OutputError
from misskey_cli.net.endpoint import Redactor

if TYPE_CHECKING:
    from misskey_cli.run.app import Environment

MARKS = {OK: "✓", WARN: "!", FAIL: "✗", SKIP: "-"}
ASCII_MARKS = {OK: "ok", WARN: "warn", FAIL: "FAIL", SKIP: "skip"}
COLORS = {OK: "32", WARN: "33", FAIL: "31", SKIP: "2"}


class Printer:
    """Writes each check as one line (or, for --json, the whole report at the end)."""

    def __init__(self, out: Callable[[str], None], redact: Redactor, *, as_json: bool, unicode: bool,
                 color: bool) -> None:
        self.out = out
        self.redact = redact
        self.as_json = as_json
        self.marks = MARKS if unicode else ASCII_MARKS
        self.color = color
        self.width = max(len(m) for m in self.marks.values())

    def line(self, check: Check) -> None:
        if not self.as_json:
            self.out(self.format(check) + "\n")

    def format(self, check: Check) -> str:
        mark = self.marks[check.status].ljust(self.width)
        if self.color:
            mark = f"\x1b[{COLORS[check.status]}m{mark}\x1b[0m"
        text = f"{check.title:<21}  {check.found}"
        if check.fix and check.status in (FAIL, WARN):
            text += f"; fix: {check.fix}"
        return f"{mark} {escape_controls(self.redact(text))}"

    def header(self, text: str) -> None:
        if not self.as_json:
            self.out(escape_controls(self.redact(text)) + "\n")

    def summary(self, checks: list[Check], code: int, server: str) -> None:
        if self.as_json:
            document = {"server": server, "ok": code == 0, "exit_code": code,
                        "checks": [check.as_json() for check in checks]}
            text = json.dumps(document, ensure_ascii=False, indent=2)
            self.out(escape_json_text(self.redact(text)) + "\n")
            return
        failed = [c for c in checks if c.status == FAIL]
        warned = [c for c in checks if c.status == WARN]
        if failed:
            self.out(escape_controls(self.redact(f"failed: {failed[0].title} (exit {code})")) + "\n")
            return
        note = f" ({len(warned)} warning{'s' if len(warned) != 1 else ''})" if warned else ""
        self.out(f"all checks passed{note}\n")


def stdout_writer(env: Environment) -> Callable[[str], None]:
    """Each piece of the report written and flushed at once (a slow check shows the lines before it)."""
    binary = env.stdout_stream

    def write(text: str) -> None:
        try:
            if binary is not None:
                binary.write(text.encode("utf-8"))
                binary.flush()
            else:
                sys.stdout.write(text)
                sys.stdout.flush()
        except BrokenPipeError:
            pass  # the reader went away: the report is theirs to cut short
        except OSError as exc:  # a full device: one line, as every command says it
            raise OutputError(f"cannot write to stdout: {exc.strerror or exc}") from None

    return write
