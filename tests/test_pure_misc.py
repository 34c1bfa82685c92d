"""The --stdin command language, durations, protocol helpers and file replacement (pure, table-driven)."""

from __future__ import annotations

import io
import json

import pytest

from misskey_cli.core import files, protocol
from misskey_cli.core.timefmt import parse_duration
from misskey_cli.output.notices import LiveLine, StatusLine
from misskey_cli.run import stdin_commands as commands


@pytest.mark.parametrize(("line", "expected"), [
    ("", None),
    ("# a comment", None),
    ("disconnect localTimeline", commands.Disconnect("localTimeline")),
    ("sub 9abc", commands.Sub("9abc")),
    ("unsub 9abc", commands.Unsub("9abc")),
    ("send qs requestLog", commands.Send("qs", "requestLog", {})),
    ('send qs requestLog {"id":"a","length":3}', commands.Send("qs", "requestLog", {"id": "a", "length": 3})),
    ('{"type":"subNote","body":{"id":"x"}}', commands.RawFrame('{"type":"subNote","body":{"id":"x"}}')),
])
def test_parse_command(line, expected):
    assert commands.parse_command(line) == expected


def test_parse_connect_command():
    command = commands.parse_command("connect hashtag:tags?q=misskey")
    assert isinstance(command, commands.Connect)
    assert (command.spec.channel, command.spec.connection_id, command.spec.params) == ("hashtag", "tags", {"q": [["misskey"]]})


@pytest.mark.parametrize(("line", "message"), [
    ("connect", "usage: connect"),
    ("connect local timeline", "bad channel spec"),
    ("disconnect", "usage: disconnect"),
    ("send qs", "usage: send"),
    ("send qs requestLog {bad", "not JSON"),
    ("frobnicate x", "unknown command"),
    ("{not json", "this one is not JSON"),
    ("[1,2]", "this one is a JSON array, not an object"),
    ('{"body": {}}', 'this one is an object without a string "type"'),
])
def test_bad_commands(line, message):
    with pytest.raises(commands.CommandError, match=message):
        commands.parse_command(line)


@pytest.mark.parametrize(("text", "seconds"), [
    ("30", 30.0), ("1.5", 1.5), ("30s", 30.0), ("5m", 300.0), ("1h", 3600.0), ("1h30m", 5400.0),
    ("500ms", 0.5), ("2d", 172800.0), (" 10S ", 10.0),
])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "abc", "5x", "m5", "-1", "nan", "inf", "5m30"])
def test_bad_durations(text):
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_frame_builders():
    assert json.loads(protocol.connect_frame("hashtag", "h", {"q": [["a"]]})) == {
        "type": "connect", "body": {"channel": "hashtag", "id": "h", "params": {"q": [["a"]]}, "pong": True}}
    assert json.loads(protocol.channel_message_frame("qs", "requestLog", {})) == {
        "type": "channel", "body": {"id": "qs", "type": "requestLog", "body": {}}}
    assert protocol.sub_note_frame("ノート") == '{"type":"subNote","body":{"id":"ノート"}}'


@pytest.mark.parametrize(("frame", "problem"), [
    ({"type": "channel", "body": None}, None),
    ({"type": "somethingNew"}, None),
    ([1, 2], "a JSON array, not an object"),
    ("text", "a JSON string, not an object"),
    ({"body": {}}, 'an object without a string "type"'),
])
def test_shape_problems(frame, problem):
    assert protocol.describe_shape_problem(frame) == problem


def test_a_live_line_redraws_in_place_cut_to_the_width_and_ends_quietly_when_stderr_fails():

    out = io.StringIO()
    line = LiveLine(out, width=30)
    line.clear()  # nothing drawn: nothing to erase
    assert out.getvalue() == ""
    line.show("x" * 100)
    assert out.getvalue() == "\r\x1b[K" + "x" * 29
    line.clear()
    assert out.getvalue().endswith("x\r\x1b[K") and not line.drawn

    class Full(io.StringIO):
        def write(self, text: str) -> int:
            raise OSError(28, "No space left on device")

    broken = LiveLine(Full())
    broken.show("status")  # no exception: the line is a courtesy
    assert broken.stream is None and not broken.drawn
    status = StatusLine(Full(), width=40, clock=lambda: 0.0)
    status.set_state("connected")
    status.clear()
    assert status.line.stream is None


def test_the_status_line_counts_a_wait_down_and_drops_it_once_connected():
    now = [100.0]
    out = io.StringIO()
    status = StatusLine(out, width=200, every=0.0, clock=lambda: now[0])
    status.set_state("reconnecting", 15.2)
    assert status.text().startswith("mkstream: reconnecting in 15s |")
    now[0] += 10
    assert status.text().startswith("mkstream: reconnecting in 5s |")
    now[0] += 60
    assert status.text().startswith("mkstream: reconnecting in 0s |")
    status.set_state("connected")
    assert status.text().startswith("mkstream: connected | up 0:01:10 |")


# ----- core.files: how mkstream replaces its own files -----------------------------------------


@pytest.mark.parametrize("fixed_name", [False, True])
def test_a_replaced_file_is_whole_private_and_leaves_no_temporary(tmp_path, fixed_name):
    target = tmp_path / "state"
    target.write_bytes(b"old")
    temporary = str(tmp_path / ".state.tmp-1") if fixed_name else None
    files.replace_atomically(str(target), b"new" * 100_000, temporary=temporary)
    assert target.read_bytes() == b"new" * 100_000
    assert target.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state"]


def test_a_replace_keeps_the_mode_it_is_given(tmp_path):
    target = tmp_path / "config.toml"
    files.replace_atomically(str(target), b"x = 1\n", mode=0o644, sync=True)
    assert target.stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize("fixed_name", [False, True])
def test_a_replace_that_fails_removes_its_temporary_and_says_why(tmp_path, fixed_name):
    target = tmp_path / "taken"
    target.mkdir()  # a rename over a directory fails
    temporary = str(tmp_path / ".taken.tmp-1") if fixed_name else None
    with pytest.raises(IsADirectoryError):
        files.replace_atomically(str(target), b"data", temporary=temporary)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]
