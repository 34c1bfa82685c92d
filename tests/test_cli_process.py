"""End to end in a child process: signals, live stdin commands and real pipes."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys

import pytest
from helpers import finish, spawn

from misskey_cli.errors import ExitCode


def host(sim):
    return ("--host", f"http://{sim.host_port}")


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, ExitCode.SIGINT), (signal.SIGTERM, ExitCode.SIGTERM)])
def test_signal_disconnects_cleanly(sim, signum, code):
    proc = spawn("connect", "localTimeline", "--capture", "n1", *host(sim), "--ndjson")
    sim.wait_for_subscription("localTimeline")
    sim.wait_for_client_frame(lambda f: f.get("type") == "subNote")
    proc.send_signal(signum)
    returncode, _, err = finish(proc)
    assert returncode == code, err
    assert "Traceback" not in err
    sim.wait_for_client_frame(lambda f: f == {"type": "disconnect", "body": {"id": "localTimeline"}})
    sim.wait_for_client_frame(lambda f: f == {"type": "unsubNote", "body": {"id": "n1"}})
    assert sim.wait_for_closed() == [(1000, "")]


def test_closed_pipe_is_exit_0_without_traceback(sim):
    # mkstream ... | head -1: the reader goes away after one line.
    reader = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdout.write(sys.stdin.readline())"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    proc = spawn("connect", "localTimeline", *host(sim), "--ndjson", "--jq", ".body.body.text", stdout=reader.stdin)
    reader.stdin.close()
    sim.wait_for_subscription("localTimeline")
    sim.post_note(text="first")
    assert json.loads(reader.stdout.readline()) == "first"
    assert reader.wait(timeout=30) == 0
    # Keep the stream flowing until mkstream notices the closed pipe.
    while proc.poll() is None:
        sim.post_note(text="more")
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=0.05)
    returncode, _, err = finish(proc)
    assert returncode == 0
    assert err == ""


def test_stdin_commands_change_the_stream_live(sim):
    proc = spawn("connect", "--stdin", *host(sim), "--ndjson", "--token", "tok-alice", stdin=subprocess.PIPE)

    def say(line):
        proc.stdin.write(line.encode() + b"\n")
        proc.stdin.flush()

    say("connect localTimeline:ltl?withFiles=false")
    assert sim.wait_for_subscription("localTimeline") == "ltl"
    say("connect queueStats")
    sim.wait_for_subscription("queueStats")
    say("sub n1")
    sim.wait_for_client_frame(lambda f: f == {"type": "subNote", "body": {"id": "n1"}})
    say('send queueStats requestLog {"id":"x","length":2}')
    say("connect chatUser:chat?otherId=u1")
    sim.wait_for_subscription("chatUser")
    say("send chat read")
    say("frobnicate")
    say("send nosuchid requestLog")
    say('{"type":"readNotification"}')
    sim.wait_for_client_frame(lambda f: f.get("type") == "readNotification")
    say("unsub n1")
    sim.wait_for_client_frame(lambda f: f == {"type": "unsubNote", "body": {"id": "n1"}})
    say("disconnect ltl")
    sim.wait_for_client_frame(lambda f: f == {"type": "disconnect", "body": {"id": "ltl"}})
    proc.send_signal(signal.SIGINT)
    returncode, out, err = finish(proc)
    assert returncode == ExitCode.SIGINT
    statslog = [json.loads(line) for line in out.splitlines()]
    assert [r["body"]["type"] for r in statslog] == ["statsLog"]
    assert "stdin: unknown command 'frobnicate'" in err
    assert "chatUser message read changes state on the server; send it as a raw JSON frame" in err
    assert not [f for f in sim.client_frames() if f.get("type") == "channel" and f["body"]["type"] == "read"]
    assert "stdin: no channel connection with id nosuchid" in err
    connect = sim.wait_for_client_frame(lambda f: f.get("type") == "connect")
    assert connect["body"] == {"channel": "localTimeline", "id": "ltl", "params": {"withFiles": False}, "pong": True}


def test_demo_pipeline_prints_three_texts():
    env = {**os.environ, "MKSTREAM_DEMO_RATE": "100"}
    proc = subprocess.run(
        f"{sys.executable} -m misskey_cli connect localTimeline --demo -n 3 --ndjson"
        f" | {sys.executable} -c \"import sys, json; [print(json.loads(l)['body']['body']['text']) for l in sys.stdin]\"",
        shell=True, capture_output=True, env=env, timeout=60, check=False)
    texts = proc.stdout.decode().splitlines()
    assert proc.returncode == 0, proc.stderr.decode()
    assert len(texts) >= 3 and all(t and t != "None" for t in texts)


def test_serve_runs_the_simulator_until_interrupted():
    server = spawn("serve", "--port", "0", "--rate", "50", "--token", "s3cret=carol")
    try:
        line = server.stderr.readline().decode()
        url = line.split("listening on ")[1].split()[0]
        assert url.startswith("ws://127.0.0.1:")
        tokens = server.stderr.readline().decode()
        assert "tok-alice (alice)" in tokens
        assert "s3cret" not in server.stderr.readline().decode()  # tokens given on the command line are not echoed
        http = url.replace("ws://", "http://").removesuffix("/streaming")
        client = spawn("connect", "localTimeline", "main", "--host", http, "--token", "s3cret", "-n", "3", "--ndjson",
                       "--ack-timeout", "30")
        returncode, out, err = finish(client)
        assert returncode == 0, err
        ids = [json.loads(line)["body"]["id"] for line in out.splitlines()]
        assert len(ids) == 3 and set(ids) <= {"localTimeline", "main"}
        assert "not acknowledged" not in err  # main needs a login: the token was accepted
    finally:
        server.send_signal(signal.SIGINT)
        returncode, _, err = finish(server)
    assert returncode == ExitCode.SIGINT
    assert "Traceback" not in err
