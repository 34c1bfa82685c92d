"""Nothing received is lost, on any exit path; the process is left as it was found (architecture issue).

The reader is slow on purpose: mkstream's stdout is a pipe nobody reads until mkstream has
decided to exit, so the records are still queued in the writer when it does. Every exit path
must then write them all before the process ends, and ``--stats`` must count what was written.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading

import pytest
from helpers import SAFETY, finish, run_cli, spawn

from misskey_cli.errors import ExitCode
from misskey_cli.simulator import Simulator

# ~1.6 KB of Japanese a note: 300 notes are far more than a pipe holds.
TEXTS = [f"note {n} " + "お" * 500 for n in range(300)]


def host(sim):
    return ("--host", f"http://{sim.host_port}")


def written(err):
    match = re.search(r"frames received (\d+) .*records written (\d+)", err)
    assert match, err
    return int(match[1]), int(match[2])


def test_connection_lost_without_retries_writes_every_record(sim):
    """Exit 6 after 300 records, with a reader that is not reading: every record is written."""
    proc = spawn("connect", "localTimeline", *host(sim), "--jq", ".body.body.text", "-r", "--no-reconnect",
                 "--ping-timeout", "1", "--stats", *SAFETY)
    sim.wait_for_subscription("localTimeline")
    for text in TEXTS:
        sim.post_note(text=text)
    sim.freeze_all()  # the path dies: mkstream finds out by its ping timeout and gives up
    sim.wait_for_closed()
    code, out, err = finish(proc)
    assert code == ExitCode.CONNECTION_LOST, err
    assert out.splitlines() == TEXTS
    assert written(err) == (300, 300)
    assert "Traceback" not in err


def test_not_acknowledged_exit_writes_every_record(sim):
    proc = spawn("connect", "localTimeline", "main", *host(sim), "--jq", ".body.body.text", "-r", "--require-ack",
                 "--ack-timeout", "3", "--stats", *SAFETY)
    sim.wait_for_subscription("localTimeline")
    for text in TEXTS:
        sim.post_note(text=text)
    sim.wait_for_closed()  # anonymous `main` is never acknowledged: mkstream leaves with exit 7
    code, out, err = finish(proc)
    assert code == ExitCode.NOT_ACKNOWLEDGED, err
    assert "channel main (id main) was not acknowledged" in err
    assert out.splitlines() == TEXTS


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, ExitCode.SIGTERM), (signal.SIGINT, ExitCode.SIGINT)])
def test_a_signal_writes_every_record_received(sim, signum, code):
    proc = spawn("connect", "localTimeline", *host(sim), "--jq", ".body.body.text", "-r", "--stats", *SAFETY)
    sim.wait_for_subscription("localTimeline")
    for text in TEXTS:
        sim.post_note(text=text)
    proc.send_signal(signum)
    sim.wait_for_closed()
    returncode, out, err = finish(proc)
    assert returncode == code, err
    received, records = written(err)
    lines = out.splitlines()
    assert received == records == len(lines) and lines == TEXTS[:len(lines)]


def test_count_reached_with_a_slow_reader_writes_every_record(sim):
    proc = spawn("connect", "localTimeline", *host(sim), "--jq", ".body.body.text", "-r", "-n", "250", "--stats",
                 *SAFETY)
    sim.wait_for_subscription("localTimeline")
    for text in TEXTS:
        sim.post_note(text=text)
    sim.wait_for_closed()
    code, out, err = finish(proc)
    assert code == ExitCode.OK, err
    assert out.splitlines() == TEXTS[:250]
    assert written(err)[1] == 250


def test_a_reader_that_never_reads_costs_a_bounded_wait_and_says_what_was_dropped():
    with Simulator(rate=0) as sim:
        read_end, write_end = os.pipe()
        proc = subprocess.Popen([*spawn_args(), "connect", "localTimeline", *host(sim), "--jq", ".body.body.text",
                                 "-r", "--no-reconnect", "--ping-timeout", "1", *SAFETY],
                                stdout=write_end, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=DRAIN_FAST)
        os.close(write_end)
        try:
            sim.wait_for_subscription("localTimeline")
            for text in TEXTS:
                sim.post_note(text=text)
            sim.freeze_all()
            _, err = proc.communicate(timeout=60)
        finally:
            os.close(read_end)
    assert proc.returncode == ExitCode.CONNECTION_LOST
    assert re.search(r"\d+ record\(s\) could not be written within 0.5s \(stdout is not reading\)", err.decode())


# The writer's drain bound, shortened (docs/cli.md §7) for the tests that wait it out.
DRAIN_FAST = {**os.environ, "MKSTREAM_DRAIN_TIMEOUT": "0.5"}


def spawn_args():
    import sys

    return [sys.executable, "-m", "misskey_cli"]


# ----- process state --------------------------------------------------------------------------


def test_a_run_leaves_signal_handlers_and_the_wakeup_fd_as_it_found_them(sim):
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    old = signal.set_wakeup_fd(wake_w)
    try:
        fd1 = os.fstat(1)
        feeder = threading.Thread(target=lambda: (sim.wait_for_subscription("localTimeline"), sim.post_note(text="x")))
        feeder.start()
        result = run_cli("connect", "localTimeline", *host(sim), "-n", "1", *SAFETY)
        feeder.join()
        assert result.exit_code == 0, result.stderr
        assert {s: signal.getsignal(s) for s in before} == before
        assert signal.set_wakeup_fd(-1) == wake_w
        assert os.fstat(1) == fd1
    finally:
        signal.set_wakeup_fd(old)
        os.close(wake_r)
        os.close(wake_w)


def test_truecolor_is_decided_from_the_environment_at_the_entry():
    def run(env):
        with Simulator(rate=0) as sim:
            feeder = threading.Thread(target=lambda: (sim.wait_for_subscription("localTimeline"),
                                                      sim.post_note(text="x")))
            feeder.start()
            result = run_cli("connect", "localTimeline", *host(sim), "-n", "1", "--pretty", "--color", "always",
                             *SAFETY, env=env)
            feeder.join()
        assert result.exit_code == 0, result.stderr
        return result.stdout

    assert "\x1b[38;2;" in run({"COLORTERM": "truecolor"})
    assert "\x1b[38;5;" in run({"COLORTERM": ""})


def test_sigterm_with_a_reader_that_never_reads_leaves_cleanly_and_says_what_was_dropped():
    with Simulator(rate=0) as sim:
        read_end, write_end = os.pipe()
        proc = subprocess.Popen([*spawn_args(), "connect", "localTimeline", *host(sim), "--jq", ".body.body.text",
                                 "-r", *SAFETY], stdout=write_end, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                env=DRAIN_FAST)
        os.close(write_end)
        try:
            sim.wait_for_subscription("localTimeline")
            for text in TEXTS:
                sim.post_note(text=text)
            proc.send_signal(signal.SIGTERM)
            # The goodbye goes out at once, before the bounded wait for the reader.
            sim.wait_for_client_frame(lambda f: f == {"type": "disconnect", "body": {"id": "localTimeline"}})
            assert sim.wait_for_closed() == [(1000, "")]
            _, err = proc.communicate(timeout=60)
        finally:
            os.close(read_end)
    assert proc.returncode == ExitCode.SIGTERM
    assert re.search(r"\d+ record\(s\) could not be written within 0.5s", err.decode())


def test_sighup_without_an_output_file_leaves_like_sigterm(sim):
    proc = spawn("connect", "localTimeline", *host(sim), *SAFETY)
    sim.wait_for_subscription("localTimeline")
    proc.send_signal(signal.SIGHUP)
    code, _, err = finish(proc)
    assert code == ExitCode.SIGHUP, err
    sim.wait_for_client_frame(lambda f: f == {"type": "disconnect", "body": {"id": "localTimeline"}})
    assert sim.wait_for_closed() == [(1000, "")]


def test_sighup_with_an_output_file_reopens_it_as_logrotate_expects(sim, tmp_path):
    log = tmp_path / "ltl.ndjson"
    proc = spawn("connect", "localTimeline", *host(sim), "-o", str(log), "--jq", ".body.body.text", "-r", *SAFETY)
    sim.wait_for_subscription("localTimeline")
    sim.post_note(text="before rotation")
    wait_for_line(log, "before rotation")
    log.rename(tmp_path / "ltl.ndjson.1")
    proc.send_signal(signal.SIGHUP)
    sim.post_note(text="after rotation")
    wait_for_line(log, "after rotation")
    proc.send_signal(signal.SIGINT)
    code, _, err = finish(proc)
    assert code == ExitCode.SIGINT, err
    assert (tmp_path / "ltl.ndjson.1").read_text() == "before rotation\n"
    assert log.read_text() == "after rotation\n"
    assert os.stat(log).st_mode & 0o777 == 0o600


def wait_for_line(path, line, timeout=30.0):
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and line in path.read_text().splitlines():
            return
        time.sleep(0.02)
    raise TimeoutError(f"{line!r} never reached {path}")


def test_sigquit_exits_at_once(sim):
    proc = spawn("connect", "localTimeline", *host(sim), *SAFETY)
    sim.wait_for_subscription("localTimeline")
    proc.send_signal(signal.SIGQUIT)
    code, _, _ = finish(proc)
    assert code == ExitCode.SIGQUIT


def test_a_full_disk_leaves_whole_records_counts_them_and_closes_cleanly(sim, tmp_path):
    """A file size limit stands in for a full disk: the write that crosses it fails part way."""
    import resource

    log = tmp_path / "out.ndjson"

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG instead of being killed
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))

    proc = subprocess.Popen([*spawn_args(), "connect", "localTimeline", *host(sim), "-o", str(log), "--stats",
                             *SAFETY], stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            preexec_fn=limit)
    sim.wait_for_subscription("localTimeline")
    while proc.poll() is None and sim.open_sockets:
        sim.post_note(text="あ" * 700)
    code, _, err = finish(proc)
    assert code == ExitCode.RUNTIME_ERROR, err
    assert "cannot write to" in err and "File too large" in err
    content = log.read_bytes()
    assert content.endswith(b"\n")
    lines = content.splitlines()
    assert all(json.loads(line)["type"] == "channel" for line in lines)
    assert written(err)[1] == len(lines)
    assert sim.wait_for_closed() == [(1000, "")]
