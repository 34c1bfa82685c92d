"""--record and mkstream replay: recorded from the simulator over real sockets, replayed through
the same output pipeline, compared byte for byte; the format read by jq; every bad input."""

from __future__ import annotations

import base64
import gzip
import itertools
import json
import os
import shutil
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest
from helpers import SAFETY, in_background, join_ok, records, run_cli, spawn

from misskey_cli.core.timefmt import TimeBound, parse_time_bound
from misskey_cli.errors import ExitCode
from misskey_cli.recording.format import RecordedChannel, Subscriptions, frame_line
from misskey_cli.recording.reader import Reader, open_inputs
from misskey_cli.recording.writer import Recorder

JQ = shutil.which("jq")
T0 = 1795807722.0  # 2026-11-27T19:28:42Z


def host(sim):
    return ("--host", f"http://{sim.host_port}")


def lines_of(path: Path) -> list[dict]:
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    return [json.loads(line) for line in data.splitlines()]


def note_frame(connection_id: str, text: str, note_id: str = "n1") -> bytes:
    note = {"id": note_id, "text": text, "user": {"username": "alice"}}
    return json.dumps({"type": "channel", "body": {"id": connection_id, "type": "note", "body": note}},
                      ensure_ascii=False, separators=(",", ":")).encode()


def write_recording(path: Path, frames: list[tuple[bytes, float]], channels=(), captures=(), host="misskey.example"):
    subs = Subscriptions(tuple(RecordedChannel(c, c) for c in channels), tuple(captures))
    with Recorder.open(str(path)) as recorder:
        recorder.header(host, subs, T0)
        recorder.frames([(data, False, at) for data, at in frames])


# ----- the format, as pure functions ------------------------------------------------------------

FRAME_LINES = [
    # (what, data, binary, the line after {"t":...,)
    ("a JSON frame is spliced in verbatim", b'{"type":"x","body":{"a":"\\u00e9 \xc3\xa9"}}', False,
     b'"frame":{"type":"x","body":{"a":"\\u00e9 \xc3\xa9"}}}'),
    ("spacing kept", b'{ "type" : "x" }', False, b'"frame":{ "type" : "x" }}'),
    ("a lone surrogate escape stops jq 1.6: text", b'{"type":"x","body":"\\ud83c"}', False,
     b'"text":"{\\"type\\":\\"x\\",\\"body\\":\\"\\\\ud83c\\"}"}'),
    ("a JSON array is JSON", b"[1,2]", False, b'"frame":[1,2]}'),
    ("not JSON: text", b"hello", False, b'"text":"hello"}'),
    ("NaN is not JSON that jq reads", b'{"type":"x","body":NaN}', False, b'"text":"{\\"type\\":\\"x\\",\\"body\\":NaN}"}'),
    ("a newline would break the line", b'{"type":"x",\n"body":1}', False, b'"text":"{\\"type\\":\\"x\\",\\n\\"body\\":1}"}'),
    ("not UTF-8: bytes", b'{"type":"\xff"}', False, b'"bytes":"' + base64.b64encode(b'{"type":"\xff"}') + b'"}'),
    ("binary", b"\x00\x01\xfe", True, b'"binary":"AAH+"}'),
    ("binary JSON is still binary", b'{"type":"x"}', True, b'"binary":"' + base64.b64encode(b'{"type":"x"}') + b'"}'),
]


@pytest.mark.parametrize(("what", "data", "binary", "tail"), FRAME_LINES, ids=[row[0] for row in FRAME_LINES])
def test_frame_lines_are_json_and_read_back_byte_for_byte(tmp_path, what, data, binary, tail):
    line = frame_line(data, binary, T0 + 0.25)
    assert line == b'{"t":1795807722.250000,' + tail + b"\n"
    json.loads(line)  # every line is strict JSON
    path = tmp_path / "r.ndjson"
    path.write_bytes(line)
    (batch,) = list(Reader(open_inputs([str(path)], None), pytest.fail).batches())
    assert batch.items == [(data, binary, T0 + 0.25)]


@pytest.mark.parametrize(("text", "bound"), [
    ("2026-11-27T19:28:42Z", TimeBound("at", T0)),
    ("2026-11-28T04:28:42.5+09:00", TimeBound("at", T0 + 0.5)),
    ("2026-11-27T19:28:42", TimeBound("at", T0)),  # no offset: UTC
    ("2026-11-27", TimeBound("at", T0 - 19 * 3600 - 28 * 60 - 42)),
    ("10m", TimeBound("ago", 600.0)),
    ("-1h30m", TimeBound("ago", 5400.0)),
    ("+90s", TimeBound("after_start", 90.0)),
    ("+0", TimeBound("after_start", 0.0)),
])
def test_time_bounds(text, bound):
    assert parse_time_bound(text) == bound


@pytest.mark.parametrize("text", ["yesterday", "2026-13-01", "+ten", "10x", ""])
def test_bad_time_bounds_say_what_is_accepted(text):
    with pytest.raises(ValueError, match="RFC 3339"):
        parse_time_bound(text)


# ----- record live, replay, compare ------------------------------------------------------------

ODD_FRAMES = [
    "not json at all",
    '{"type":"x",\n "body":1}',
    '{"type":"channel","body":NaN}',
    '{"type":"channel","body":{"id":"localTimeline","type":"note","body":"\\ud83c"}}',
    b"\x00binary\xff",
    '["an","array"]',
    '{"type":"emojiAdded","body":{"emoji":{"name":"blobcat"}}}',
]


def test_replay_of_a_recording_is_byte_for_byte_what_was_received(sim, tmp_path):
    recording = tmp_path / "live.ndjson"

    def feed():
        sim.wait_for_subscription("localTimeline")
        sim.post_note(text="こんにちは 🌱")
        for frame in ODD_FRAMES:
            sim.inject(frame)
        sim.inject_invalid_utf8()
        sim.post_note(text="last")

    count = str(len(ODD_FRAMES) + 3)
    feeder = in_background(feed)
    live = run_cli("connect", "localTimeline", *host(sim), "--format", "raw", "--record", str(recording),
                   "-n", count, "-q", *SAFETY)
    join_ok(feeder)
    assert live.exit_code == 0, live.stderr
    replayed = run_cli("replay", str(recording), "--format", "raw", "-q")
    assert replayed.exit_code == 0, replayed.stderr
    assert replayed.stdout_bytes == live.stdout_bytes
    assert len(live.stdout_bytes.split(b"\n")) > int(count)  # the newline frame makes one more
    if JQ:  # jq reads the recording as it is
        kinds = subprocess.run([JQ, "-r", 'if .mkstream then "header" else keys_unsorted[1] end'],
                               input=recording.read_bytes(),
                               capture_output=True, check=True).stdout.decode().split()
        assert kinds == ["header", "frame", "text", "text", "text", "text", "binary", "frame", "frame", "bytes",
                         "frame"]


def test_replay_writes_what_the_live_stream_wrote_in_every_format(sim, tmp_path):
    recording = tmp_path / "live.ndjson.gz"
    output = ("--jq", "select(.body.type == \"note\") | {text: .body.body.text, ts}", "--timestamps")

    def feed():
        sim.wait_for_subscription("localTimeline")
        for n in range(20):
            sim.post_note(text=f"note {n} ノート")

    feeder = in_background(feed)
    live = run_cli("connect", "localTimeline", *host(sim), "--ndjson", *output, "--record", str(recording),
                   "-n", "20", *SAFETY)
    join_ok(feeder)
    assert live.exit_code == 0, live.stderr
    assert recording.read_bytes()[:2] == b"\x1f\x8b"
    replayed = run_cli("replay", str(recording), "--ndjson", *output)
    assert replayed.exit_code == 0, replayed.stderr
    assert replayed.stdout == live.stdout  # --timestamps shows the recorded receive times
    line = run_cli("replay", str(recording), "--format", "line", "--width", "60", "-n", "3")
    assert line.exit_code == 0 and len(line.stdout.splitlines()) == 3
    assert "note 2 ノート" in line.stdout.splitlines()[2]


def test_a_recording_says_what_was_subscribed_and_when_it_changed(sim, tmp_path):
    recording = tmp_path / "subs.ndjson"
    proc = spawn("connect", "localTimeline:ltl?withReplies=true", "--capture", "note1", "--stdin", *host(sim),
                 "--token", "tok-alice", "--ndjson", "--record", str(recording), "--reconnect-delay", "0.1",
                 *SAFETY, stdin=subprocess.PIPE)

    def say(line):
        proc.stdin.write(line.encode() + b"\n")
        proc.stdin.flush()

    sim.wait_for_subscription("localTimeline")
    sim.wait_for_captures("note1")
    say("connect main")
    sim.wait_for_subscription("main")
    sim.post_note(text="after main")
    say("sub note2")
    sim.wait_for_captures("note2")
    say("disconnect ltl")
    sim.wait_for_client_frame(lambda f: f == {"type": "disconnect", "body": {"id": "ltl"}})
    sim.drop_all()
    sim.wait_for_sockets(2)
    sim.wait_for_captures("note2")
    sim.broadcast("emojiAdded", {"emoji": {"name": "new"}})
    proc.stdout.readline()  # the note
    proc.stdout.readline()  # the broadcast, after the reconnect
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == ExitCode.SIGINT, err
    header, *rest = lines_of(recording)
    assert header["mkstream"] == "recording" and header["version"] == 1
    assert header["host"] == sim.host_port
    assert header["channels"] == [{"id": "ltl", "channel": "localTimeline", "params": {"withReplies": True}}]
    assert header["captures"] == ["note1"]
    events = [(line["event"], line.get("captures")) for line in rest if "event" in line]
    assert events == [("subscriptions", ["note1"]), ("subscriptions", ["note1", "note2"]),
                      ("subscriptions", ["note1", "note2"]), ("reconnected", None)]
    channel_ids = [[c["id"] for c in line["channels"]] for line in rest if line.get("event") == "subscriptions"]
    assert channel_ids == [["ltl", "main"], ["ltl", "main"], ["main"]]
    kinds = [line.get("event") or line["frame"]["type"] for line in rest]
    assert kinds.index("subscriptions") < kinds.index("channel")  # main was recorded before its frames
    assert kinds[-2:] == ["reconnected", "emojiAdded"]
    assert "the server closed the connection" in next(line for line in rest if line.get("event") == "reconnected")[
        "cause"]
    assert stat.S_IMODE(recording.stat().st_mode) == 0o600


@pytest.mark.parametrize("name", ["tok.ndjson", "tok.ndjson.gz"])
def test_the_token_is_in_no_recording(sim, tmp_path, name):
    recording = tmp_path / name

    def feed():
        sim.wait_for_subscription("main")
        sim.notify("alice", "app", body="tok-alice is not in here")  # ... but the server may say anything
        sim.drop_all()
        sim.wait_for_sockets(2)
        sim.wait_for_subscription("main")
        sim.wait_for_subscription("localTimeline")
        sim.post_note(text="hello", author="bob")

    feeder = in_background(feed)
    result = run_cli("connect", "main", "localTimeline", *host(sim), "--token", "tok-alice", "--jq", ".body.type",
                     "--record", str(recording), "--reconnect-delay", "0.1", "-n", "2", "-v", *SAFETY)
    join_ok(feeder)
    assert result.exit_code == 0, result.stderr
    data = recording.read_bytes()
    if name.endswith(".gz"):
        data = gzip.decompress(data)
    frames_said = data.count(b"tok-alice is not in here")
    assert data.count(b"tok-alice") == frames_said == 1  # what the server sent, verbatim; nothing else
    assert b"i=" not in data and b"Bearer" not in data
    assert b'"event":"reconnected"' in data


def test_a_recorded_demo_run_replays_the_texts_it_wrote_live_as_jq_reads_them(tmp_path):
    """mkstream connect localTimeline --demo -n 50 --record s.ndjson >/dev/null &&
    mkstream replay s.ndjson --jq .body.body.text -r  prints the 50 texts."""
    recording = tmp_path / "s.ndjson"
    live = run_cli("connect", "localTimeline", "--demo", "-n", "50", "--record", str(recording), "--ndjson", *SAFETY,
                   env={"MKSTREAM_DEMO_RATE": "500"})
    assert live.exit_code == 0, live.stderr
    replayed = run_cli("replay", str(recording), "--jq", ".body.body.text", "-r")
    assert replayed.exit_code == 0, replayed.stderr
    texts = [t if isinstance(t := r["body"]["body"]["text"], str) else json.dumps(t) for r in records(live)]
    assert len(texts) == 50
    assert replayed.stdout == "".join(f"{text}\n" for text in texts)  # some texts are several lines
    if JQ:
        by_jq = subprocess.run([JQ, "-r", "select(.frame) | .frame.body.body.text", str(recording)],
                               capture_output=True, check=True, text=True).stdout
        assert by_jq == replayed.stdout


def test_a_killed_run_keeps_every_frame_it_received(sim, tmp_path):
    for name in ("kill.ndjson", "kill.ndjson.gz"):
        recording = tmp_path / name
        proc = spawn("connect", "localTimeline", *host(sim), "--jq", ".body.body.text", "-r",
                     "--record", str(recording), *SAFETY)
        sim.wait_for_subscription("localTimeline")
        for n in range(30):
            sim.post_note(text=f"kept {n}")
        for n in range(30):
            assert proc.stdout.readline().decode().strip() == f"kept {n}"
        proc.kill()
        proc.communicate(timeout=30)
        sim.wait_for_closed()
        replayed = run_cli("replay", str(recording), "--jq", ".body.body.text", "-r")
        assert replayed.stdout.splitlines() == [f"kept {n}" for n in range(30)]
        if name.endswith(".gz"):  # no gzip trailer after a kill: said once, everything flushed is there
            assert replayed.stderr.count("warning") == 1 and "gzip data cut short" in replayed.stderr
        else:
            assert replayed.stderr == ""


def test_record_refuses_stdout_and_the_output_file(tmp_path):
    result = run_cli("connect", "localTimeline", "--demo", "--record", "-")
    assert result.exit_code == ExitCode.USAGE and "--record" in result.stderr
    same = str(tmp_path / "x.ndjson")
    result = run_cli("connect", "localTimeline", "--demo", "--record", same, "-o", same)
    assert result.exit_code == ExitCode.USAGE and "same file" in result.stderr
    result = run_cli("connect", "localTimeline", "--demo", "--record", str(tmp_path / "no" / "dir.ndjson"))
    assert result.exit_code == ExitCode.USAGE and "cannot open recording file" in result.stderr


# ----- pacing -----------------------------------------------------------------------------------


def test_speed_1_keeps_the_order_and_the_recorded_gaps(tmp_path):
    recording = tmp_path / "paced.ndjson"
    write_recording(recording, [(note_frame("localTimeline", f"p{n}"), T0 + 0.25 * n) for n in range(5)])
    proc = spawn("replay", str(recording), "--speed", "1", "--jq", ".body.body.text", "-r")
    start = time.monotonic()
    seen = []
    for _ in range(5):
        seen.append((proc.stdout.readline().decode().strip(), time.monotonic() - start))
    proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert [text for text, _ in seen] == [f"p{n}" for n in range(5)]
    gaps = [b - a for (_, a), (_, b) in itertools.pairwise(seen)]
    assert all(0.15 < gap < 1.0 for gap in gaps), gaps  # 0.25 s each, loosely
    assert seen[-1][1] - seen[0][1] >= 0.9


def test_default_is_as_fast_as_possible_and_speed_divides_the_gaps(tmp_path):
    recording = tmp_path / "slow.ndjson"
    write_recording(recording, [(note_frame("localTimeline", f"s{n}"), T0 + 3600 * n) for n in range(3)])
    start = time.monotonic()
    fast = run_cli("replay", str(recording), "--jq", ".body.body.text", "-r")
    assert fast.stdout.splitlines() == ["s0", "s1", "s2"]
    assert time.monotonic() - start < 10  # two hours of recording
    paced = tmp_path / "paced.ndjson"
    write_recording(paced, [(note_frame("localTimeline", f"q{n}"), T0 + 2.0 * n) for n in range(3)])
    start = time.monotonic()
    result = run_cli("replay", str(paced), "--speed", "10", "--jq", ".body.body.text", "-r")
    elapsed = time.monotonic() - start
    assert result.stdout.splitlines() == ["q0", "q1", "q2"]
    assert 0.3 < elapsed < 3.5  # 4 s recorded, at 10x: 0.4 s


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, ExitCode.SIGTERM), (signal.SIGINT, ExitCode.SIGINT)])
def test_a_signal_ends_a_paced_replay_with_everything_so_far_written(tmp_path, signum, code):
    recording = tmp_path / "slow.ndjson"
    write_recording(recording, [(note_frame("localTimeline", f"w{n}"), T0 + 100 * n) for n in range(3)])
    proc = spawn("replay", str(recording), "--speed", "1", "--jq", ".body.body.text", "-r")
    assert proc.stdout.readline() == b"w0\n"
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == code, err
    assert out == b"" and b"Traceback" not in err


def test_duration_and_count_stop_a_replay(tmp_path):
    recording = tmp_path / "long.ndjson"
    write_recording(recording, [(note_frame("localTimeline", f"d{n}"), T0 + 10 * n) for n in range(5)])
    result = run_cli("replay", str(recording), "--speed", "1", "--duration", "0.5", "--jq", ".body.body.text", "-r")
    assert result.exit_code == 0 and result.stdout.splitlines() == ["d0"]
    assert "duration of 0.5s reached" in result.stderr
    result = run_cli("replay", str(recording), "-n", "2", "--jq", ".body.body.text", "-r")
    assert result.stdout.splitlines() == ["d0", "d1"]


# ----- inputs ------------------------------------------------------------------------------------


def test_plain_ndjson_frames_and_timestamps_output_replay_too(sim, tmp_path):
    def feed():
        sim.wait_for_subscription("localTimeline")
        for n in range(5):
            sim.post_note(text=f"plain {n}")

    feeder = in_background(feed)
    live = run_cli("connect", "localTimeline", *host(sim), "--ndjson", "--timestamps", "-n", "5", *SAFETY)
    join_ok(feeder)
    stamped = tmp_path / "stamped.ndjson"
    stamped.write_text(live.stdout, encoding="utf-8")
    again = run_cli("replay", str(stamped), "--ndjson", "--timestamps")
    assert again.stdout == live.stdout  # the ts key gave the times back
    plain = run_cli("replay", str(stamped), "--ndjson")
    assert [r for r in records(plain)] == [{k: v for k, v in r.items() if k != "ts"} for r in records(live)]
    frames = tmp_path / "frames.ndjson"
    frames.write_text(plain.stdout, encoding="utf-8")
    from_stdin = run_cli("replay", "-", "--jq", ".body.body.text", "-r", input=plain.stdout)
    assert from_stdin.stdout.splitlines() == [f"plain {n}" for n in range(5)]
    # Frames from elsewhere: any key order, any spacing, CRLF line ends.
    elsewhere = tmp_path / "elsewhere.ndjson"
    elsewhere.write_bytes(b'{"body": {"id": "x", "type": "note", "body": {"text": "a"}}, "type": "channel"}\r\n'
                          b'  {"type":"channel","body":{"id":"x","type":"note","body":{"text":"b"}}}\r\n')
    result = run_cli("replay", str(elsewhere), "--jq", ".body.body.text", "-r")
    assert result.stdout.splitlines() == ["a", "b"] and result.stderr == ""


def test_files_replay_in_order_and_a_file_may_hold_several_recordings(tmp_path):
    first, second = tmp_path / "a.ndjson.gz", tmp_path / "b.ndjson"
    write_recording(first, [(note_frame("localTimeline", "a1"), T0), (note_frame("localTimeline", "a2"), T0 + 1)])
    write_recording(first, [(note_frame("localTimeline", "a3"), T0 + 9)])  # appended: a second gzip member
    write_recording(second, [(note_frame("localTimeline", "b1"), T0 + 5)])
    result = run_cli("replay", str(first), str(second), "--jq", ".body.body.text", "-r")
    assert result.exit_code == 0 and result.stderr == ""
    assert result.stdout.splitlines() == ["a1", "a2", "a3", "b1"]
    assert [line.get("mkstream") for line in lines_of(first)].count("recording") == 2


def test_replay_can_record_a_selection(tmp_path):
    source, copy = tmp_path / "src.ndjson", tmp_path / "copy.ndjson.gz"
    frames = [(note_frame("localTimeline", f"c{n}"), T0 + n) for n in range(4)]
    write_recording(source, frames, channels=("localTimeline",), host="misskey.example")
    whole = tmp_path / "whole.ndjson"
    result = run_cli("replay", str(source), "--record", str(whole), "-o", str(tmp_path / "out"))
    assert result.exit_code == 0, result.stderr
    assert lines_of(whole)[0]["t"] == T0  # the source's start
    result = run_cli("replay", str(source), "--since", "+1s", "--record", str(copy), "-o", str(tmp_path / "out"))
    assert result.exit_code == 0, result.stderr
    header, *rest = lines_of(copy)
    assert header["host"] == "misskey.example" and header["t"] == T0 + 1
    assert header["channels"] == [{"id": "localTimeline", "channel": "localTimeline", "params": {}}]
    assert [(line["t"], line["frame"]["body"]["body"]["text"]) for line in rest] == [
        (T0 + n, f"c{n}") for n in range(1, 4)]
    raw = gzip.decompress(copy.read_bytes())
    assert all(data in raw for data, _ in frames[1:])  # spliced byte for byte again


# ----- selection ---------------------------------------------------------------------------------


def mixed_recording(path: Path) -> None:
    write_recording(path, [
        (note_frame("localTimeline", "ltl 1"), T0),
        (note_frame("mine", "mine 1"), T0 + 60),
        (b'{"type":"emojiAdded","body":{"emoji":{"name":"x"}}}', T0 + 120),
        (b'{"type":"noteUpdated","body":{"id":"n1","type":"reacted","body":{}}}', T0 + 180),
        (b'{"body":{"id":"mine","type":"note","body":{"text":"mine 2"}},"type":"channel"}', T0 + 240),
        (b'{"type":"channel","body":{"id":"loc\\u0061lTimeline","type":"note","body":{"text":"ltl 2"}}}', T0 + 300),
    ], channels=("localTimeline", "mine"))


@pytest.mark.parametrize(("options", "texts"), [
    (("--channel", "mine"), ["mine 1", "mine 2"]),
    (("--channel", "localTimeline"), ["ltl 1", "ltl 2"]),
    (("--channel", "mine", "--channel", "localTimeline"), ["ltl 1", "mine 1", "mine 2", "ltl 2"]),
    (("--channel", "nosuch"), []),
    (("--since", "2026-11-27T19:29:42Z"), ["mine 1", "emojiAdded", "noteUpdated", "mine 2", "ltl 2"]),
    (("--until", "2026-11-27T19:30:42Z"), ["ltl 1", "mine 1"]),
    (("--since", "+3m", "--until", "+5m"), ["noteUpdated", "mine 2"]),
    (("--since", "+1m", "--channel", "localTimeline"), ["ltl 2"]),
    (("--until", "1h"), ["ltl 1", "mine 1", "emojiAdded", "noteUpdated", "mine 2", "ltl 2"]),  # all before an hour ago
    (("--since", "1h"), []),
])
def test_selection(tmp_path, options, texts):
    recording = tmp_path / "mixed.ndjson"
    mixed_recording(recording)
    result = run_cli("replay", str(recording), *options, "--jq", ".body.body.text // .type", "-r")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == texts


def test_time_selection_on_frames_without_times_keeps_them_and_says_so(tmp_path):
    frames = tmp_path / "frames.ndjson"
    frames.write_bytes(note_frame("x", "one") + b"\n" + note_frame("x", "two") + b"\n")
    result = run_cli("replay", str(frames), "--since", "10m", "--jq", ".body.body.text", "-r")
    assert result.stdout.splitlines() == ["one", "two"]
    assert "no receive times in it: --since/--until keep all its frames" in result.stderr


# ----- bad input ---------------------------------------------------------------------------------


def good_lines(n: int) -> bytes:
    return b"".join(frame_line(note_frame("localTimeline", f"g{i}"), False, T0 + i) for i in range(n))


BAD_INPUTS = [
    ("truncated last line", lambda: good_lines(3) + frame_line(note_frame("localTimeline", "cut"), False, T0)[:40],
     ["g0", "g1", "g2"], "x.ndjson:4: truncated last line (40 bytes, no newline at the end), skipped"),
    ("a line that is not JSON", lambda: good_lines(2) + b"garbage here\n" + good_lines(1),
     ["g0", "g1", "g0"], "x.ndjson:3: not JSON, skipped: 'garbage here'"),
    ("a header from a newer format", lambda: b'{"mkstream":"recording","version":99,"channels":[]}\n' + good_lines(2),
     ["g0", "g1"], "x.ndjson:1: recording format version 99 is newer than this mkstream reads (1): replaying what it can"),
    ("a wrapper with bad base64", lambda: good_lines(1) + b'{"t":1,"binary":"!!"}\n' + good_lines(1),
     ["g0", "g0"], "x.ndjson:2: binary is not base64, skipped"),
    ("a last line without a newline is fine when whole", lambda: good_lines(2)[:-1], ["g0", "g1"], None),
]


@pytest.mark.parametrize(("what", "content", "texts", "warning"), BAD_INPUTS, ids=[row[0] for row in BAD_INPUTS])
def test_bad_input_is_one_warning_with_file_and_line_and_the_rest_replays(tmp_path, what, content, texts, warning):
    path = tmp_path / "x.ndjson"
    path.write_bytes(content())
    result = run_cli("replay", str(path), "--jq", ".body.body.text", "-r")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == texts
    if warning is None:
        assert result.stderr == ""
    else:
        assert result.stderr == f"mkstream: warning: {path}{warning[len('x.ndjson'):]}\n"


def test_a_gzip_file_cut_short_is_one_warning_and_the_rest_replays(tmp_path):
    whole = tmp_path / "whole.ndjson.gz"
    whole.write_bytes(gzip.compress(good_lines(2000)))
    cut = tmp_path / "cut.ndjson.gz"
    cut.write_bytes(whole.read_bytes()[:len(whole.read_bytes()) // 2])
    result = run_cli("replay", str(cut), "--jq", ".body.body.text", "-r")
    assert result.exit_code == 0
    texts = result.stdout.splitlines()
    assert 100 < len(texts) < 2000 and texts == [f"g{i}" for i in range(len(texts))]
    assert result.stderr.count("\n") == 1
    assert f"{cut}: gzip data cut short at line {len(texts) + 1}: the rest is lost" in result.stderr
    garbage = tmp_path / "garbage.gz"
    garbage.write_bytes(whole.read_bytes()[:100] + b"\x00" * 100)
    result = run_cli("replay", str(garbage), "--jq", ".body.body.text", "-r")
    assert result.exit_code == 0 and "gzip data is corrupt" in result.stderr


def test_many_bad_lines_are_counted_after_the_first_few(tmp_path):
    path = tmp_path / "bad.ndjson"
    path.write_bytes(b"nope\n" * 12 + good_lines(1))
    result = run_cli("replay", str(path), "--jq", ".body.body.text", "-r")
    assert result.stdout.splitlines() == ["g0"]
    assert result.stderr.count(": not JSON, skipped") == 5
    assert f"{path}: 12 bad lines skipped in all (the first 5 shown)" in result.stderr


def test_bad_frames_in_a_recording_are_reported_like_live_ones(tmp_path):
    path = tmp_path / "odd.ndjson"
    path.write_bytes(frame_line(b"not json", False, T0) + frame_line(b"\x01", True, T0) + good_lines(1))
    result = run_cli("replay", str(path), "--jq", ".body.body.text", "-r", "--stats")
    assert result.stdout.splitlines() == ["g0"]
    assert "bad frame skipped (not JSON" in result.stderr and "bad frame skipped (binary frame of 1 bytes)" in result.stderr
    assert "bad frames 2" in result.stderr


@pytest.mark.parametrize(("args", "message"), [
    (("missing.ndjson",), "does not exist"),
    ((".",), "is a directory"),
    (("-", "-"), "can be read once"),
    (("x", "--speed", "0"), "out of range"),
    (("x", "--speed", "nan"), "out of range"),
    (("x", "--speed", "inf"), "out of range"),
    (("x", "--since", "soon"), "RFC 3339"),
    (("x", "-r"), "add a --jq filter"),
    (("x", "--jq", ".["), "bad --jq filter"),
    (("x", "--format", "raw", "--timestamps"), "cannot be combined"),
])
def test_usage_errors_are_exit_2(tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x").write_bytes(good_lines(1))
    result = run_cli("replay", *args)
    assert result.exit_code == ExitCode.USAGE, result.stderr
    assert message in result.stderr
    assert result.stdout == ""


def test_a_file_that_cannot_be_read_is_exit_2(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root reads every file")
    path = tmp_path / "secret.ndjson"
    path.write_bytes(good_lines(1))
    path.chmod(0)
    result = run_cli("replay", str(path))
    assert result.exit_code == ExitCode.USAGE and "cannot read" in result.stderr
