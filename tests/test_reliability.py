"""Survive real networks: reconnect with resubscription, liveness, faults, output errors."""

from __future__ import annotations

import json
import selectors
import signal
import subprocess
import time

import pytest
from helpers import SAFETY, in_background, join_ok, records, run_cli, spawn

from misskey_cli.errors import ExitCode

FAST = ("--reconnect-delay", "0.01")


def host(sim):
    return ("--host", f"http://{sim.host_port}")


def connects_on_socket(sim, index):
    return [f for f in sim.client_frames_of(index) if f.get("type") in ("connect", "subNote")]


class LineReader:
    """Reads a child's stdout line by line with a deadline, so tests wait for output events."""

    def __init__(self, proc):
        self.proc = proc
        self.selector = selectors.DefaultSelector()
        self.selector.register(proc.stdout, selectors.EVENT_READ)
        self.buffer = b""
        self.lines: list[str] = []

    def until(self, predicate, timeout=20.0):
        deadline = time.monotonic() + timeout
        while not any(predicate(line) for line in self.lines):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self.selector.select(remaining):
                raise TimeoutError(f"no matching line; got {self.lines[-5:]}")
            chunk = self.proc.stdout.read1(65536)
            if not chunk:
                raise EOFError(f"mkstream exited; got {self.lines[-5:]}")
            self.buffer += chunk
            *done, self.buffer = self.buffer.split(b"\n")
            self.lines.extend(line.decode() for line in done)


@pytest.mark.parametrize("fault", ["drop", "close-1000", "close-1001", "close-1011", "close-4000"])
def test_reconnect_restores_every_channel_and_capture(sim, fault):
    def feed():
        sim.wait_for_subscription("hashtag")
        sim.wait_for_client_frame(lambda f: f.get("type") == "subNote")
        if fault == "drop":
            sim.drop_all()
        else:
            sim.close_all(code=int(fault.split("-")[1]))
        sim.wait_for_sockets(2)
        sim.wait_for_subscription("hashtag")
        sim.wait_for_client_frame(lambda f: f == {"type": "subNote", "body": {"id": "n1"}}, after=1)
        sim.post_note(text="#misskey after", tags=["misskey"])

    feeder = in_background(feed)
    result = run_cli("connect", "localTimeline:ltl", "hashtag?q=misskey", "--capture", "n1", *host(sim), *FAST,
                     "-n", "1", "--ndjson", *SAFETY)
    join_ok(feeder)
    assert result.exit_code == 0, result.stderr
    assert records(result)[0]["body"]["body"]["text"] == "#misskey after"
    first, second = connects_on_socket(sim, 0), connects_on_socket(sim, 1)
    assert first == second  # same ids, same params, same captures
    assert [f["body"].get("id") for f in second] == ["ltl", "hashtag", "n1"]
    reason = "without a close frame" if fault == "drop" else f"code {fault.split('-')[1]}"
    assert reason in result.stderr and "reconnecting in" in result.stderr
    assert result.stderr.count("connection lost") == 1


def test_stdin_changes_survive_a_reconnect(sim):
    proc = spawn("connect", "localTimeline", "--stdin", *host(sim), *FAST, "--ndjson", stdin=subprocess.PIPE)
    sim.wait_for_subscription("localTimeline")
    proc.stdin.write(b"connect globalTimeline:g\nsub n9\nsub n10\nunsub n9\ndisconnect localTimeline\n")
    proc.stdin.flush()
    sim.wait_for_client_frame(lambda f: f == {"type": "disconnect", "body": {"id": "localTimeline"}})
    sim.drop_all()
    sim.wait_for_sockets(2)
    sim.wait_for_client_frame(lambda f: f == {"type": "subNote", "body": {"id": "n10"}}, after=1)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=30)
    replayed = [(f["type"], f["body"].get("id")) for f in connects_on_socket(sim, 1)]
    assert replayed == [("connect", "g"), ("subNote", "n10")]


def test_no_loss_no_duplicates_across_forced_reconnects(sim):
    proc = spawn("connect", "localTimeline", *host(sim), *FAST, "--ndjson", "--jq", ".body.seq")
    reader = LineReader(proc)
    seq = 0
    faults = [lambda: sim.drop_all(), lambda: sim.close_all(1001), lambda: sim.close_all(4000),
              lambda: sim.drop_all(), lambda: sim.close_all(1011), lambda: sim.drop_all()]
    for round_number, fault in enumerate(faults, 1):
        sim.wait_for_sockets(round_number)
        sim.wait_for_subscription("localTimeline")
        for _ in range(50):
            seq += 1
            sim.inject({"type": "channel", "body": {"id": "localTimeline", "type": "note", "seq": seq}})
        last = str(seq)
        reader.until(lambda line, last=last: line == last)
        fault()
    sim.wait_for_sockets(len(faults) + 1)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    reader.lines.extend(line for line in out.decode().splitlines())
    assert proc.returncode == ExitCode.SIGTERM, err.decode()
    assert [int(line) for line in reader.lines] == list(range(1, seq + 1))
    assert err.decode().count("connection lost") == len(faults)


def test_server_restart_on_the_same_port(sim):
    def feed():
        sim.wait_for_subscription("localTimeline")
        sim.stop()
        sim.start()
        sim.wait_for_subscription("localTimeline")
        sim.post_note(text="after restart")

    feeder = in_background(feed)
    result = run_cli("connect", "localTimeline", *host(sim), *FAST, "-n", "1", "--ndjson", *SAFETY)
    join_ok(feeder)
    assert result.exit_code == 0, result.stderr
    assert records(result)[0]["body"]["body"]["text"] == "after restart"


def test_half_open_socket_is_detected_by_ping_timeout(sim):
    def feed():
        sim.wait_for_subscription("localTimeline")
        sim.freeze_all()
        sim.wait_for_sockets(2)
        sim.wait_for_subscription("localTimeline")
        sim.post_note(text="fresh socket")

    feeder = in_background(feed)
    result = run_cli("connect", "localTimeline", *host(sim), *FAST, "--ping-interval", "0.1", "--ping-timeout", "0.5",
                     "-n", "1", "--ndjson", *SAFETY)
    join_ok(feeder)
    assert result.exit_code == 0, result.stderr
    assert "no frame and no pong for 0.5s" in result.stderr


def test_client_answers_server_pings(sim):
    sim.set_ping_interval(0.05)

    def feed():
        sim.wait_for_subscription("localTimeline")
        sim.wait_for_pongs(3)
        sim.post_note(text="still here")

    feeder = in_background(feed)
    result = run_cli("connect", "localTimeline", *host(sim), "-n", "1", "--ndjson", *SAFETY)
    join_ok(feeder)
    assert result.exit_code == 0, result.stderr
    assert sim.sockets_opened == 1


def test_no_reconnect_exit_codes(sim):
    def feed_close():
        sim.wait_for_subscription("localTimeline")
        sim.close_all(1001)

    feeder = in_background(feed_close)
    result = run_cli("connect", "localTimeline", *host(sim), "--no-reconnect", *SAFETY)
    join_ok(feeder)
    assert result.exit_code == 0 and "code 1001" in result.stderr

    def feed_drop():
        sim.wait_for_subscription("localTimeline", count=1)
        sim.drop_all()

    feeder = in_background(feed_drop)
    result = run_cli("connect", "localTimeline", *host(sim), "--no-reconnect", *SAFETY)
    join_ok(feeder)
    assert result.exit_code == ExitCode.CONNECTION_LOST and "connection lost" in result.stderr


def test_retries_spent_is_exit_6(sim):
    def feed():
        sim.wait_for_subscription("localTimeline")
        sim.refuse_next(10, status=503)
        sim.drop_all()

    feeder = in_background(feed)
    result = run_cli("connect", "localTimeline", *host(sim), *FAST, "--max-retries", "2", *SAFETY)
    join_ok(feeder)
    assert result.exit_code == ExitCode.CONNECTION_LOST, result.stderr
    assert result.stderr.count("HTTP 503") == 2  # two reconnect attempts, both refused
    assert "after 2 retries" in result.stderr


def test_first_connection_retries_only_when_asked(sim):
    sim.refuse_next(2, status=503)
    result = run_cli("connect", "localTimeline", *host(sim), *SAFETY)
    assert result.exit_code == ExitCode.CONNECT_FAILED and "HTTP 503" in result.stderr
    sim.refuse_next(2, status=503)

    def feed():
        sim.wait_for_subscription("localTimeline")
        sim.post_note(text="third time lucky")

    feeder = in_background(feed)
    result = run_cli("connect", "localTimeline", *host(sim), *FAST, "--max-retries", "3", "-n", "1", *SAFETY)
    join_ok(feeder)
    assert result.exit_code == 0, result.stderr
    assert result.stderr.count("retrying in") == 2


def test_rejected_token_on_reconnect_is_not_retried(sim):
    def feed():
        sim.wait_for_subscription("homeTimeline")
        sim.refuse_next(1, status=401)
        sim.drop_all()

    feeder = in_background(feed)
    result = run_cli("connect", "homeTimeline", *host(sim), "--token", "tok-alice", *FAST, *SAFETY)
    join_ok(feeder)
    assert result.exit_code == ExitCode.TOKEN_REJECTED
    assert "tok-alice" not in result.stderr


def test_huge_frame_and_bad_frames_do_not_stop_the_stream(sim):
    def feed():
        sim.wait_for_subscription("localTimeline")
        for _ in range(8):
            sim.inject("{broken")
        sim.inject_huge(10 * 1024 * 1024)
        sim.post_note(text="after")

    feeder = in_background(feed)
    result = run_cli("connect", "localTimeline", *host(sim), "-n", "2", "--ndjson", "--stats", *SAFETY)
    join_ok(feeder)
    assert result.exit_code == 0, result.stderr
    big, after = records(result)
    assert len(json.dumps(big)) > 9 * 1024 * 1024
    assert after["body"]["body"]["text"] == "after"
    assert result.stderr.count("bad frame skipped") == 5
    assert "8 bad frames skipped in all" in result.stderr
    assert "records written 2" in result.stderr and "bad frames 8" in result.stderr


def test_raw_format_still_writes_undecodable_frames(sim):
    def feed():
        sim.wait_for_subscription("localTimeline")
        sim.inject("{broken")
        sim.inject({"type": "channel", "body": {"id": "localTimeline", "type": "note", "body": {}}})

    feeder = in_background(feed)
    result = run_cli("connect", "localTimeline", *host(sim), "-n", "2", "--format", "raw", *SAFETY)
    join_ok(feeder)
    assert result.stdout.splitlines()[0] == "{broken"
    assert "bad frame skipped (not JSON" in result.stderr


def test_full_disk_is_a_one_line_error(sim):
    def feed():
        sim.wait_for_subscription("localTimeline")
        sim.post_note(text="x")

    feeder = in_background(feed)
    result = run_cli("connect", "localTimeline", *host(sim), "-o", "/dev/full", *SAFETY)
    join_ok(feeder)
    assert result.exit_code == ExitCode.RUNTIME_ERROR
    assert result.stderr.strip() == "mkstream: error: cannot write to /dev/full: No space left on device"


def test_a_paused_reader_loses_nothing_and_the_socket_stays_alive():
    from misskey_cli.simulator import Simulator

    # The server drops a client that does not answer its pings; a blocked stdout must not make
    # mkstream stop reading the socket.
    with Simulator(ping_interval=0.05, ping_timeout=1.0) as sim:
        proc = spawn("connect", "localTimeline", *host(sim), "--ndjson", "--jq", ".body.body.text", "-r")
        sim.wait_for_subscription("localTimeline")
        texts = [f"note {n} " + "あ" * 500 for n in range(200)]  # ~300 KB: far more than a pipe holds
        for text in texts:
            sim.post_note(text=text)
        pongs = sim.pongs
        sim.wait_for_pongs(pongs + 30)  # 1.5 s of pings, more than the server's patience, with stdout blocked
        assert sim.sockets_opened == 1 and sim.open_sockets == 1
        reader = LineReader(proc)
        reader.until(lambda line: line == texts[-1])
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
        assert reader.lines == texts
