"""A log that survives kill -9: ``--state`` never ahead of ``-o FILE`` nor behind it, and resumes that retry.

Every test compares the log with what the simulator posted: each note once, in id order. Kills
are timed by events (what the log or the state file holds, what the simulator saw), never by
sleeps; the restart that follows must neither lose nor repeat a note.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from helpers import SAFETY, finish, in_background, join_ok, records, run_cli, spawn

from misskey_cli.errors import ExitCode

FAST = ("--reconnect-delay", "0.05")
TIMELINE = "notes/local-timeline"


def host(sim) -> tuple[str, str]:
    return ("--host", f"http://{sim.host_port}")


def wait_until(ready: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    """Poll for an event outside mkstream (a file's contents); fails the test when it never comes."""
    deadline = time.monotonic() + timeout
    while True:
        value = ready()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.005)


def logged(out: Path) -> list[str]:
    """The note ids in the log, whole lines only (a line being written is not there yet)."""
    try:
        text = out.read_bytes()
    except FileNotFoundError:
        return []
    lines = text.split(b"\n")[:-1]
    return [json.loads(line)["body"]["body"]["id"] for line in lines if line.strip()]


def saved_last(state: Path, out: Path | None = None) -> str | None:
    """The last id the state holds for the log as it is now (before or after the batch it announced)."""
    try:
        data = json.loads(state.read_text())
        size = os.stat(out).st_size if out is not None else None
    except (OSError, ValueError):
        return None
    connections = data["connections"]
    if "next" in data and size != data["output"]["offset"]:
        assert size is None or size == data["next"]["offset"], (size, data)
        connections = data["next"]["connections"]
    entry = connections.get("localTimeline")
    return entry["lastId"] if entry else None


def start(sim, state: Path, out: Path, *extra: str) -> subprocess.Popen[bytes]:
    return spawn("connect", "localTimeline", *host(sim), "--state", str(state), "-o", str(out), *FAST, *extra,
                 *SAFETY)


def kill9(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGKILL)
    code, _, err = finish(proc, timeout=10)
    assert code == -signal.SIGKILL, err


def catch_up(sim, state: Path, out: Path, posted: list[str], missing: int | None = None) -> None:
    """A clean restart with one more live note: afterwards the log must be exactly what was posted."""
    if missing is None:
        missing = len([i for i in posted if i not in set(logged(out))])

    def feed() -> None:
        sim.wait_for_subscription("localTimeline")
        posted.append(sim.post_note(text="final")["id"])

    feeder = in_background(feed)
    result = run_cli("connect", "localTimeline", *host(sim), "--state", str(state), "-o", str(out), *FAST,
                     "-n", str(missing + 1), *SAFETY)
    join_ok(feeder)
    assert result.exit_code == 0, result.stderr
    sim.wait_for_closed()
    assert logged(out) == posted, result.stderr
    assert saved_last(state, out) == posted[-1]


def first_run(sim, state: Path, out: Path, posted: list[str], notes: int = 2) -> None:
    def feed() -> None:
        sim.wait_for_subscription("localTimeline")
        posted.extend(sim.post_note(text=f"first {i}")["id"] for i in range(notes))

    feeder = in_background(feed)
    result = run_cli("connect", "localTimeline", *host(sim), "--state", str(state), "-o", str(out),
                     "-n", str(notes), *SAFETY)
    join_ok(feeder)
    assert result.exit_code == 0, result.stderr
    sim.wait_for_closed()


# ----- kill -9 at the moments that lost or repeated notes ---------------------------------------


@pytest.mark.parametrize("moment", ["after a write", "after a state save"])
def test_kill_9_then_a_restart_neither_loses_nor_repeats(sim, tmp_path, moment):
    state, out = tmp_path / "s.state", tmp_path / "log.ndjson"
    posted: list[str] = []
    for cycle in range(3):
        proc = start(sim, state, out)
        sim.wait_for_subscription("localTimeline")
        for i in range(cycle + 2):
            posted.append(sim.post_note(text=f"cycle {cycle} note {i}")["id"])
        if moment == "after a write":
            wait_until(lambda: posted[-1] in logged(out), "the last note in the log")
        else:
            wait_until(lambda: saved_last(state, out) == posted[-1], "the state to name the last note")
        kill9(proc)
        assert saved_last(state, out) in (None, *logged(out)), "the state names a note the log does not hold"
        posted.extend(sim.post_note(text=f"while down {cycle}")["id"] for _ in range(2))
        sim.wait_for_closed()
    catch_up(sim, state, out, posted)


def test_a_quiet_stream_then_a_kill_repeats_nothing(sim, tmp_path):
    """Notes that come within a second of the last save, then nothing: the state must still cover them."""
    state, out = tmp_path / "s.state", tmp_path / "log.ndjson"
    posted: list[str] = []
    proc = start(sim, state, out)
    sim.wait_for_subscription("localTimeline")
    posted.append(sim.post_note(text="first")["id"])
    wait_until(lambda: saved_last(state, out) == posted[-1], "the state to name the first note")
    posted.extend(sim.post_note(text=f"quick {i}")["id"] for i in range(3))
    wait_until(lambda: posted[-1] in logged(out), "the last note in the log")
    kill9(proc)  # the stream is quiet now: no frame will come to save the state
    sim.wait_for_closed()
    catch_up(sim, state, out, posted)


@pytest.mark.parametrize("when", ["before its first page", "after its first page"])
def test_kill_9_during_a_resume_backfill_loses_and_repeats_nothing(sim, tmp_path, when):
    state, out = tmp_path / "s.state", tmp_path / "log.ndjson"
    posted: list[str] = []
    first_run(sim, state, out, posted)
    posted.extend(sim.post_note(text=f"between {i}")["id"] for i in range(150))  # two pages
    answered = len([r for r in sim.http_requests() if r["endpoint"] == TIMELINE])
    if when == "before its first page":
        sim.fail_next(TIMELINE, 503, count=20)  # the backfill keeps asking; live notes are held meanwhile
    proc = start(sim, state, out)
    sim.wait_for_subscription("localTimeline")
    posted.append(sim.post_note(text="live, held")["id"])

    def asked() -> bool:
        requests = [r for r in sim.http_requests() if r["endpoint"] == TIMELINE][answered:]
        if when == "before its first page":
            return len(requests) >= 4
        return any(r["status"] == 200 for r in requests)

    wait_until(asked, f"the backfill {when}")
    kill9(proc)
    assert saved_last(state, out) in logged(out), "the state names a note the log does not hold"
    if when == "before its first page":
        assert logged(out) == posted[:2], "held notes were written before the backfill"
        sim.fail_next(TIMELINE, 503, count=0)
    sim.wait_for_closed()
    catch_up(sim, state, out, posted)


def test_a_batch_a_kill_cut_in_half_is_cut_off_and_fetched_again(sim, tmp_path):
    """The state announced a batch and the kill came in the middle of its write: the log ends in half a line."""
    state, out = tmp_path / "s.state", tmp_path / "log.ndjson"
    posted: list[str] = []
    first_run(sim, state, out, posted, notes=3)
    lines = out.read_bytes().splitlines(keepends=True)
    whole = len(lines[0])
    out.write_bytes(lines[0] + lines[1] + lines[2][:10])  # the batch of notes 2 and 3, torn
    data = json.loads(state.read_text())
    info = os.stat(out)

    def cursor(note_id: str) -> dict[str, Any]:
        return {"localTimeline": {"channel": "localTimeline", "params": {}, "lastId": note_id}}

    data.update(connections=cursor(posted[0]), output={"device": info.st_dev, "inode": info.st_ino, "offset": whole},
                next={"offset": whole + len(lines[1]) + len(lines[2]), "connections": cursor(posted[2])})
    state.write_text(json.dumps(data))
    catch_up(sim, state, out, posted, missing=2)


def test_a_disk_that_fills_during_a_resume_then_a_restart_with_room_logs_each_note_once(sim, tmp_path):
    """The resume's backfill is one write of many notes; the disk fills part-way through it.

    Whole lines of the cut write would fit, but the state cannot name them (the batch's cursor is its
    last note): with --state the log is cut back to what the state names, and the next run fetches the rest.
    """
    state, out = tmp_path / "s.state", tmp_path / "log.ndjson"
    posted: list[str] = []
    first_run(sim, state, out, posted, notes=2)
    line = len(out.read_bytes().splitlines(keepends=True)[0])
    posted.extend(sim.post_note(text=f"while down {i}")["id"] for i in range(8))
    limit = os.stat(out).st_size + line * 5 // 2  # room for two and a half notes of the eight

    def small_disk() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of being killed
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    proc = subprocess.Popen([sys.executable, "-m", "misskey_cli", "connect", "localTimeline", *host(sim),
                             "--state", str(state), "-o", str(out), *FAST, *SAFETY],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=small_disk)
    code, _, err = finish(proc, timeout=60)
    assert code == ExitCode.RUNTIME_ERROR, err
    assert f"cannot write to {out}: File too large" in err
    assert logged(out) == posted[:2], "the log holds notes the state does not name"
    sim.wait_for_closed()
    catch_up(sim, state, out, posted)


@pytest.mark.parametrize(("saved", "warning"), [
    ({"channel": "homeTimeline", "params": {}},
     "state file {state}: localTimeline was channel homeTimeline, is localTimeline this run: starting it fresh"),
    ({"channel": "localTimeline", "params": {"withFiles": True}},
     "state file {state}: localTimeline (localTimeline) was saved with other params: starting it fresh"),
])
def test_a_saved_connection_that_differs_is_named_for_what_differs_and_the_others_are_kept(
        sim, tmp_path, saved, warning):
    state, out = tmp_path / "s.state", tmp_path / "log.ndjson"
    posted: list[str] = []
    first_run(sim, state, out, posted, notes=1)
    data = json.loads(state.read_text())
    other = {"channel": "hybridTimeline", "params": {}, "lastId": posted[0]}
    data["connections"] = {"localTimeline": {**saved, "lastId": posted[0]}, "elsewhere": other}
    data.pop("next", None)
    state.write_text(json.dumps(data))

    def feed() -> None:
        sim.wait_for_subscription("localTimeline")
        posted.append(sim.post_note(text="live")["id"])

    feeder = in_background(feed)
    result = run_cli("connect", "localTimeline", *host(sim), "--state", str(state), "-o", str(out), "-n", "1",
                     *SAFETY)
    join_ok(feeder)
    assert result.exit_code == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "state file" in line]
    assert warnings == [
        "mkstream: warning: " + warning.format(state=state),
        f"mkstream: warning: state file {state} also holds elsewhere (not connected this run): "
        "kept unchanged for a later run"], result.stderr
    connections = json.loads(state.read_text())["connections"]
    assert connections["elsewhere"] == other
    assert connections["localTimeline"]["lastId"] == posted[-1]


# ----- a start while the server refuses ---------------------------------------------------------


def test_a_run_started_while_the_server_refuses_resumes_once_connected_and_loses_nothing(sim, tmp_path):
    state, out = tmp_path / "s.state", tmp_path / "log.ndjson"
    posted: list[str] = []
    first_run(sim, state, out, posted)
    posted.extend(sim.post_note(text=f"between {i}")["id"] for i in range(3))
    sim.refuse_next(10_000)
    sim.fail_next(TIMELINE, 503, count=3)  # the API is down too, at first

    def feed() -> None:
        sim.wait_for_refused(3)
        posted.append(sim.post_note(text="while refused")["id"])
        sim.refuse_next(0)
        sim.wait_for_subscription("localTimeline")
        posted.append(sim.post_note(text="live")["id"])

    feeder = in_background(feed)
    result = run_cli("connect", "localTimeline", *host(sim), "--state", str(state), "-o", str(out), *FAST,
                     "--max-retries", "1000", "-n", "5", *SAFETY)
    join_ok(feeder)
    assert result.exit_code == 0, result.stderr
    assert logged(out) == posted
    assert "may be missing" not in result.stderr


def test_the_first_connection_after_refusals_backfills_what_was_posted_meanwhile(sim):
    sim.refuse_next(10_000)

    def feed() -> None:
        sim.wait_for_refused(2)
        sim.post_note(text="while refused")
        sim.refuse_next(0)
        sim.wait_for_subscription("localTimeline")
        sim.post_note(text="live")

    feeder = in_background(feed)
    result = run_cli("connect", "localTimeline", *host(sim), *FAST, "--max-retries", "1000", "-n", "2", *SAFETY)
    join_ok(feeder)
    assert result.exit_code == 0, result.stderr
    assert [r["body"]["body"]["text"] for r in records(result)] == ["while refused", "live"]


def test_a_first_connection_at_once_fetches_nothing(sim):
    feeder = in_background(lambda: (sim.wait_for_subscription("localTimeline"), sim.post_note(text="live")))
    result = run_cli("connect", "localTimeline", *host(sim), "-n", "1", *SAFETY)
    join_ok(feeder)
    assert result.exit_code == 0, result.stderr
    assert not [r for r in sim.http_requests() if r["endpoint"] == TIMELINE]


# ----- the state file itself ----------------------------------------------------------------------


def test_temporary_files_a_killed_run_left_are_removed_on_the_next_start(sim, tmp_path):
    state, out = tmp_path / "s.state", tmp_path / "log.ndjson"
    left = tmp_path / ".s.state.tmp-x1y2z3"
    left.write_text("{")
    other = tmp_path / ".t.state.tmp-x1y2z3"  # another state file's: not ours to remove
    other.write_text("{")
    legacy = tmp_path / ".mkstream-state-abc123"  # what earlier versions left, whatever the state file
    legacy.write_text("{")
    os.utime(legacy, (time.time() - 3600, time.time() - 3600))
    posted: list[str] = []
    first_run(sim, state, out, posted, notes=1)
    assert not left.exists() and not legacy.exists() and other.exists()


def test_a_file_that_is_not_a_state_file_is_refused_and_left_untouched(sim, tmp_path):
    log = tmp_path / "log.ndjson"
    log.write_text("".join(json.dumps({"type": "channel", "n": i}) + "\n" for i in range(2000)))
    before = log.read_bytes()
    result = run_cli("connect", "localTimeline", *host(sim), "--state", str(log), "-n", "1", *SAFETY)
    assert result.exit_code == ExitCode.USAGE, result.stderr
    assert "is not an mkstream state file" in result.stderr and "Traceback" not in result.stderr
    assert log.read_bytes() == before
    assert sim.sockets_opened == 0


@pytest.mark.parametrize("content", [b"{not json", b"[1, 2]", b"\x00\xff", b'{"a": 1}'])
def test_a_corrupt_state_file_is_refused(sim, tmp_path, content):
    state = tmp_path / "s.state"
    state.write_bytes(content)
    result = run_cli("connect", "localTimeline", *host(sim), "--state", str(state), "-n", "1", *SAFETY)
    assert result.exit_code == ExitCode.USAGE, result.stderr
    assert state.read_bytes() == content


@pytest.mark.parametrize("kind", ["device", "fifo"])
def test_a_state_file_that_is_not_a_regular_file_is_refused_and_left_alone(sim, tmp_path, kind):
    # A copy of /dev/null in tmp_path, never /dev/null itself: a build with this bug, run as root,
    # would replace the machine's /dev/null with a regular file.
    node = tmp_path / "null"
    if kind == "device":
        try:
            os.mknod(node, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        except PermissionError:
            pytest.skip("making a device node needs root")
    else:
        os.mkfifo(node, 0o600)
    before = os.stat(node)
    result = run_cli("connect", "localTimeline", *host(sim), "--state", str(node), "-n", "1", *SAFETY)
    assert result.exit_code == ExitCode.USAGE, result.stderr
    assert "is not a regular file" in result.stderr
    after = os.stat(node)
    assert (after.st_ino, after.st_mode, after.st_rdev) == (before.st_ino, before.st_mode, before.st_rdev)


def test_two_runs_on_one_state_file_through_a_symlink_the_second_is_refused_and_the_link_stays(sim, tmp_path):
    real, link, out = tmp_path / "real.state", tmp_path / "link.state", tmp_path / "log.ndjson"
    link.symlink_to(real)
    proc = start(sim, real, out)
    sim.wait_for_subscription("localTimeline")
    second = run_cli("connect", "localTimeline", *host(sim), "--state", str(link), "-n", "1", *SAFETY)
    assert second.exit_code == ExitCode.USAGE, second.stderr
    assert "is in use by another mkstream run" in second.stderr
    proc.send_signal(signal.SIGTERM)
    assert finish(proc)[0] == ExitCode.SIGTERM
    sim.wait_for_closed()
    posted: list[str] = []

    def feed() -> None:
        sim.wait_for_subscription("localTimeline")
        posted.append(sim.post_note(text="through the link")["id"])

    feeder = in_background(feed)
    result = run_cli("connect", "localTimeline", *host(sim), "--state", str(link), "-o", str(out), "-n", "1",
                     *SAFETY)
    join_ok(feeder)
    assert result.exit_code == 0, result.stderr
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert saved_last(real) == posted[-1]


# ----- signals ------------------------------------------------------------------------------------


def test_sigterm_before_the_run_installs_its_handlers_is_143(sim, tmp_path):
    fifo = tmp_path / "token"
    os.mkfifo(fifo, 0o600)
    proc = spawn("connect", "localTimeline", *host(sim), "--token-file", str(fifo), *SAFETY)

    def reading() -> int | None:  # the FIFO opens for writing once mkstream opened it to read the token
        try:
            return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:
            assert proc.poll() is None, proc.communicate()
            return None

    fd = wait_until(reading, "mkstream to read the token file")
    try:
        proc.send_signal(signal.SIGTERM)
        code, _, err = finish(proc, timeout=20)
    finally:
        os.close(fd)
    assert code == ExitCode.SIGTERM, err
    assert "Traceback" not in err
