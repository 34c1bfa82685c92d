"""The human view through the real CLI: --format line, server text that never drives the terminal,
and the status line in a real pseudo-terminal (issue: a timeline a person can read)."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys

import pytest
from helpers import SAFETY, in_background, join_ok, records, run_cli

from misskey_cli.output.lineformat import display_width

HOSTILE = {
    "osc52": "copy \x1b]52;c;ZWNobyBwd25lZA==\x07 me",
    "clear": "\x1b[2J\x1b[Hcleared",
    "overwrite": "innocent\rEVIL",
    "bidi": "abc\u202edcba",
    "c1": "next\x85line \x9b31m",
}
RAW_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
ANSI_SGR = re.compile(r"\x1b\[[0-9;]*m")


def host(sim):
    return ("--host", f"http://{sim.host_port}")


def post(sim, texts, **extra):
    def feed():
        sim.wait_for_subscription("localTimeline")
        for text in texts:
            sim.post_note(text=text, **extra)

    return in_background(feed)


def test_line_format_is_one_readable_line_per_note_fitted_to_the_width(sim):
    texts = ["お昼はラーメン 🍜 とんこつ最高 " * 4, "short one", "二行目\nがある"]
    feeder = post(sim, texts)
    result = run_cli("connect", "localTimeline", *host(sim), "--format", "line", "--width", "60", "-n", "3", *SAFETY)
    join_ok(feeder)
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 3
    assert all(display_width(line) <= 60 for line in lines)
    assert re.match(r"\d\d:\d\d:\d\d localTimeline @\w+: お昼はラーメン", lines[0]) and lines[0].endswith("…")
    assert lines[1].endswith(": short one")
    assert "二行目 ⏎ がある" in lines[2]


def test_line_format_without_a_width_in_a_pipe_is_not_cut(sim):
    text = "あ" * 300
    feeder = post(sim, [text])
    result = run_cli("connect", "localTimeline", *host(sim), "--line", "-n", "1", *SAFETY)
    join_ok(feeder)
    assert text in result.stdout


def test_line_format_renders_jq_frames_as_lines_and_other_values_as_json(sim):
    feeder = post(sim, ["hello"])
    result = run_cli("connect", "localTimeline", *host(sim), "--line", "-n", "2", "--jq", "., {t: .body.body.text}",
                     *SAFETY)
    join_ok(feeder)
    frame_line, value_line = result.stdout.splitlines()
    assert frame_line.endswith(": hello") and "localTimeline" in frame_line
    assert value_line.endswith('{"t":"hello"}')


def test_line_format_colours_connections_when_asked(sim):
    feeder = post(sim, ["colour"])
    result = run_cli("connect", "localTimeline", *host(sim), "--line", "--color", "always", "-n", "1", *SAFETY)
    join_ok(feeder)
    assert ANSI_SGR.search(result.stdout)
    assert ANSI_SGR.sub("", result.stdout).rstrip("\n").endswith(": colour")


@pytest.mark.parametrize("fmt", [("--line",), ("--pretty",), ("--pretty", "--color", "always"),
                                 ("--line", "--color", "always"), ("--line", "--timestamps")])
def test_server_text_never_reaches_the_terminal_raw(sim, fmt):
    feeder = post(sim, list(HOSTILE.values()), cw="\x1b]0;title\x07")
    result = run_cli("connect", "localTimeline", *host(sim), *fmt, "-n", str(len(HOSTILE)), *SAFETY)
    join_ok(feeder)
    assert result.exit_code == 0, result.stderr
    out = ANSI_SGR.sub("", result.stdout)  # mkstream's own colours are the only escapes allowed
    assert not RAW_CONTROL.search(out), repr(out[:500])
    assert "\\x1b" in out or "\\u001b" in out  # shown, not hidden


def test_pretty_output_stays_the_same_json(sim):
    feeder = post(sim, list(HOSTILE.values()))
    result = run_cli("connect", "localTimeline", *host(sim), "--pretty", "-n", str(len(HOSTILE)), *SAFETY)
    join_ok(feeder)
    import json

    decoder = json.JSONDecoder()
    text, texts = result.stdout, []
    while text.strip():
        value, end = decoder.raw_decode(text.lstrip())
        texts.append(value["body"]["body"]["text"])
        text = text.lstrip()[end:]
    assert texts == list(HOSTILE.values())


class Terminal:
    """mkstream with stdout as given and stderr on a real pseudo-terminal, read as it is drawn."""

    def __init__(self, args, stdout=subprocess.DEVNULL):
        master, slave = pty.openpty()
        self.master = master
        self.proc = subprocess.Popen([sys.executable, "-m", "misskey_cli", *args], stdout=stdout, stderr=slave,
                                     stdin=subprocess.DEVNULL)
        os.close(slave)
        self.seen = ""

    def until(self, pattern, timeout=30.0):
        """Read until ``pattern`` is on the screen (or the child is gone); True when it is."""
        while not re.search(pattern, self.seen):
            ready, _, _ = select.select([self.master], [], [], timeout)
            if not ready:
                return False
            try:
                chunk = os.read(self.master, 65536)
            except OSError:  # the child closed its end
                return False
            if not chunk:
                return False
            self.seen += chunk.decode("utf-8", "replace")
        return True

    def finish(self):
        self.until(r"(?!x)x")  # to the end
        os.close(self.master)
        return self.proc.wait(timeout=60)


@pytest.mark.parametrize(("unsafe", "escaped"), [((), True), (("--unsafe-raw",), False)])
def test_raw_strings_to_a_terminal_are_escaped_unless_asked(sim, unsafe, escaped):
    master, slave = pty.openpty()
    term = Terminal.__new__(Terminal)
    term.master, term.seen = master, ""
    term.proc = subprocess.Popen([sys.executable, "-m", "misskey_cli", "connect", "localTimeline", *host(sim),
                                  "--jq", ".body.body.text", "-r", "-n", "1", *unsafe, *SAFETY],
                                 stdout=slave, stderr=slave, stdin=subprocess.DEVNULL)
    os.close(slave)
    feeder = post(sim, [HOSTILE["clear"]])
    assert term.finish() == 0
    join_ok(feeder)
    assert ("\\x1b[2J\\x1b[Hcleared" in term.seen) is escaped
    assert ("\x1b[2J" in term.seen) is not escaped


def test_raw_strings_to_a_pipe_are_verbatim_as_jq_writes_them(sim):
    feeder = post(sim, [HOSTILE["clear"]])
    result = run_cli("connect", "localTimeline", *host(sim), "--jq", ".body.body.text", "-r", "-n", "1", *SAFETY)
    join_ok(feeder)
    assert result.stdout == HOSTILE["clear"] + "\n"


def test_status_line_on_a_terminal_while_records_go_to_a_pipe(sim):
    term = Terminal(["connect", "localTimeline", *host(sim), "-n", "5", *SAFETY])
    sim.wait_for_subscription("localTimeline")
    for n in range(3):
        sim.post_note(text=f"n{n}")
    assert term.until(r"\r\x1b\[Kmkstream: connected \| up 0:00:0\d \| 3 records \| [\d.]+/s \| 0 reconnects \| [\d.]+ KB")
    for n in range(3, 5):
        sim.post_note(text=f"n{n}")
    assert term.finish() == 0
    assert term.seen.endswith("\r\x1b[K")  # cleared at the end: nothing left behind on the screen


def test_no_status_line_with_no_status_or_without_a_terminal(sim):
    term = Terminal(["connect", "localTimeline", *host(sim), "-n", "1", "--no-status", *SAFETY])
    feeder = post(sim, ["a"])
    assert term.finish() == 0
    join_ok(feeder)
    assert "\x1b[K" not in term.seen
    sim.wait_for_closed()
    feeder = post(sim, ["b"])
    result = run_cli("connect", "localTimeline", *host(sim), "-n", "1", *SAFETY)
    join_ok(feeder)
    assert "\x1b" not in result.stderr and records(result)


def test_connection_notices_carry_a_timestamp_when_stderr_is_a_log(sim):
    def feed():
        sim.wait_for_subscription("localTimeline")
        sim.drop_all()
        sim.wait_for_sockets(1)
        sim.wait_for_subscription("localTimeline")
        sim.post_note(text="after")

    feeder = in_background(feed)
    result = run_cli("connect", "localTimeline", *host(sim), "-n", "1", "--reconnect-delay", "0.05", *SAFETY)
    join_ok(feeder)
    assert re.search(r"^mkstream: \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ connection lost: ", result.stderr, re.M)
    assert re.search(r"^mkstream: \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ reconnected after \d", result.stderr, re.M)
