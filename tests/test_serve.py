"""mkstream serve: a recording served to clients that pick their own ids (and to mkstream itself),
the fault flags, and the banner and token fixes. In-process Simulators, and real child processes."""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest
import websocket
from helpers import SAFETY, run_cli, spawn

from misskey_cli.errors import ExitCode
from misskey_cli.recording.format import RecordedChannel, Subscriptions, frame_line
from misskey_cli.recording.reader import Section
from misskey_cli.recording.writer import Recorder
from misskey_cli.simulator import Simulator
from misskey_cli.simulator.replay import ReplayOptions, choose_recorded, recorded_channel, with_connection_id

T0 = 1795807722.0


def note(connection_id: str, text: str) -> bytes:
    body = {"id": f"id-{text}", "text": text, "user": {"username": "alice", "name": "アリス"}}
    return json.dumps({"type": "channel", "body": {"id": connection_id, "type": "note", "body": body}},
                      ensure_ascii=False, separators=(",", ":")).encode()


def record(path: Path, frames: list[tuple[bytes, bool]], channels: tuple[RecordedChannel, ...] = (),
           captures: tuple[str, ...] = (), gap: float = 0.01) -> None:
    with Recorder.open(str(path)) as recorder:
        recorder.header("misskey.example", Subscriptions(channels, captures), T0)
        recorder.frames([(data, binary, T0 + gap * n) for n, (data, binary) in enumerate(frames)])


LTL = RecordedChannel("localTimeline", "localTimeline")
BROADCAST = b'{"type":"emojiAdded","body":{"emoji":{"name":"blobcat"}}}'
REACTED = b'{"type":"noteUpdated","body":{"id":"n1","type":"reacted","body":{"reaction":"\xf0\x9f\x91\x8d"}}}'
MAIN = b'{"type":"channel","body":{"id":"main","type":"notification","body":{"type":"follow"}}}'
ACK = b'{"type":"connected","body":{"id":"localTimeline"}}'


@pytest.fixture
def replaying(tmp_path):
    """Start a Simulator serving a recording made of ``frames``; stopped (and checked) at the end."""
    started = []

    def start(frames, channels=(LTL,), captures=(), **options):
        path = tmp_path / "served.ndjson"
        record(path, frames, channels, captures, gap=options.pop("gap", 0.01))
        sim = Simulator(replay=ReplayOptions(str(path), **options))
        sim.start()
        started.append(sim)
        return sim

    yield start
    for sim in started:
        sim.stop()
        assert sim.errors == [], sim.errors


def client(sim, token=None, timeout=10.0):
    return websocket.create_connection(sim.url + (f"?i={token}" if token else ""), timeout=timeout)


def send(ws, kind, **body):
    ws.send(json.dumps({"type": kind, "body": body}))


def receive(ws, n):
    """``n`` frames as (opcode, bytes)."""
    out = []
    for _ in range(n):
        opcode, data = ws.recv_data()
        out.append((opcode, data))
    return out


def test_a_client_that_picks_its_own_ids_gets_the_recorded_frames_of_its_channel(replaying):
    frames = [(note("localTimeline", "一"), False), (ACK, False), (REACTED, False), (MAIN, False),
              (BROADCAST, False), (b"not json", False), (b"\x00\xff", True), (note("localTimeline", "二"), False)]
    sim = replaying(frames, channels=(LTL, RecordedChannel("main", "main")), captures=("n1",))
    ws = client(sim)
    send(ws, "subNote", id="n1")
    send(ws, "connect", channel="localTimeline", id="7", pong=True)
    send(ws, "connect", channel="main", id="m", pong=True)  # anonymous: refused in silence, as ever
    assert json.loads(ws.recv()) == {"type": "connected", "body": {"id": "7"}}
    sim.playback.wait_for_rounds(1)
    got = receive(ws, 6)
    ws.close()
    assert got == [
        (websocket.ABNF.OPCODE_TEXT, note("7", "一")),
        (websocket.ABNF.OPCODE_TEXT, REACTED),
        (websocket.ABNF.OPCODE_TEXT, BROADCAST),
        (websocket.ABNF.OPCODE_TEXT, b"not json"),
        (websocket.ABNF.OPCODE_BINARY, b"\x00\xff"),
        (websocket.ABNF.OPCODE_TEXT, note("7", "二")),
    ]
    assert sim.playback.frames_read == len(frames)


def test_several_clients_each_get_the_frames_under_their_own_ids(replaying):
    sim = replaying([(note("localTimeline", f"n{n}"), False) for n in range(3)])
    first, second = client(sim), client(sim, token="tok-alice")
    send(first, "connect", channel="localTimeline", id="1", pong=True)
    send(second, "connect", channel="localTimeline", id="ltl", pong=True)
    send(second, "connect", channel="localTimeline", id="again", pong=True)
    assert json.loads(first.recv())["body"] == {"id": "1"}
    assert {json.loads(second.recv())["body"]["id"] for _ in range(2)} == {"ltl", "again"}
    sim.playback.wait_for_rounds(1)
    assert [data for _, data in receive(first, 3)] == [note("1", f"n{n}") for n in range(3)]
    second_got = sorted(data for _, data in receive(second, 6))
    assert second_got == sorted([note("ltl", f"n{n}") for n in range(3)] + [note("again", f"n{n}") for n in range(3)])
    first.close()
    second.close()


def test_recorded_ids_map_through_the_header_its_subscription_lines_and_names(replaying, tmp_path):
    sim = replaying([(note("1", "via header"), False), (note("localTimeline-2", "by name"), False),
                     (note("zzz", "unknown id"), False), (note("1", "again"), False)],
                    channels=(RecordedChannel("1", "localTimeline"),))
    ws = client(sim)
    send(ws, "connect", channel="localTimeline", id="x", pong=True)
    ws.recv()
    sim.playback.wait_for_rounds(1)
    assert [json.loads(data)["body"]["body"]["text"] for _, data in receive(ws, 2)] == ["via header", "again"]
    assert sim.playback.unroutable == 1  # zzz; localTimeline-2 is a localTimeline, just not the one recorded
    ws.close()
    header = RecordedChannel("1", "localTimeline")
    with_header = Section("f", 1, None, Subscriptions((header,), ()), None)
    bare = Section("f", 1, None, Subscriptions(), None)
    assert recorded_channel("1", with_header) == "localTimeline"
    assert recorded_channel("localTimeline-3", bare) == "localTimeline"
    assert recorded_channel("7", bare) is None
    assert choose_recorded("localTimeline", {}, bare) == "localTimeline"


def test_a_client_gets_the_recorded_connection_with_its_params(replaying):
    plain, replies = RecordedChannel("localTimeline", "localTimeline"), RecordedChannel(
        "localTimeline-2", "localTimeline", {"withReplies": True})
    sim = replaying([(note("localTimeline", "plain"), False), (note("localTimeline-2", "with replies"), False)],
                    channels=(plain, replies))
    ws = client(sim)
    send(ws, "connect", channel="localTimeline", id="a", params={"withReplies": True}, pong=True)
    send(ws, "connect", channel="localTimeline", id="b", pong=True)
    ws.recv()
    ws.recv()
    sim.playback.wait_for_rounds(1)
    got = {json.loads(data)["body"]["id"]: json.loads(data)["body"]["body"]["text"] for _, data in receive(ws, 2)}
    assert got == {"a": "with replies", "b": "plain"}
    ws.close()


def test_the_connection_id_is_put_in_without_touching_the_rest():
    data = note("localTimeline", "é \\u00e9")
    assert with_connection_id(data, json.loads(data), "localTimeline", "7") == note("7", "é \\u00e9")
    odd = b'{"body":{"type":"note","id":"localTimeline","body":1},"type":"channel"}'
    assert json.loads(with_connection_id(odd, json.loads(odd), "localTimeline", "x")) == {
        "body": {"type": "note", "id": "x", "body": 1}, "type": "channel"}
    escaped = b'{"type":"channel","body":{"id":"loc\\u0061lTimeline","type":"note","body":1}}'
    assert json.loads(with_connection_id(escaped, json.loads(escaped), "localTimeline", "q"))["body"]["id"] == "q"


def test_the_servers_rules_still_apply(replaying):
    sim = replaying([(note("localTimeline", "n"), False)])
    for token, status in (("nosuch", 401), ("tok-suspended", 403)):
        with pytest.raises(websocket.WebSocketBadStatusException) as refused:
            client(sim, token=token)
        assert refused.value.status_code == status
    ws = client(sim)
    for n in range(33):
        send(ws, "connect", channel="localTimeline", id=f"c{n}", pong=n % 2 == 0)
    acks = [json.loads(ws.recv())["body"]["id"] for _ in range(16)]
    assert acks == [f"c{n}" for n in range(0, 32, 2)]  # no ack without pong; the 33rd is over the cap
    sim.playback.wait_for_rounds(1)
    assert sim.playback.frames_sent == 32
    ws.close()


def test_speed_keeps_the_recorded_gaps_and_loop_starts_over(replaying):
    sim = replaying([(note("localTimeline", f"g{n}"), False) for n in range(3)], gap=0.2, speed=1.0, loop=True)
    ws = client(sim)
    send(ws, "connect", channel="localTimeline", id="p", pong=True)
    ws.recv()
    arrivals = []
    for _ in range(6):
        ws.recv()
        arrivals.append(time.monotonic())
    ws.close()
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    assert all(0.12 < gap < 1.0 for gap in (gaps[0], gaps[1], gaps[3], gaps[4])), gaps
    assert gaps[2] < 0.15  # a new round starts at once
    assert sim.playback.rounds >= 1


def test_mkstream_streams_a_served_recording_byte_for_byte(tmp_path):
    recorded = tmp_path / "rec.ndjson"
    frames = [(note("localTimeline", f"r{n}"), False) for n in range(5)] + [(BROADCAST, False), (b"oops", False)]
    record(recorded, frames, (LTL,))
    with Simulator(replay=ReplayOptions(str(recorded))) as sim:
        result = run_cli("connect", "localTimeline", "--host", f"http://{sim.host_port}", "--format", "raw", "-n",
                         "7", "-q", *SAFETY)
        assert sim.errors == []
    assert result.exit_code == 0, result.stderr
    assert result.stdout_bytes == b"".join(data + b"\n" for data, _ in frames)


# ----- the real mkstream serve ---------------------------------------------------------------


class Server:
    """``mkstream serve`` in a child process; its stderr lines are collected as they come."""

    def __init__(self, *args: str) -> None:
        self.proc = spawn("serve", "--port", "0", *args)
        self.lines: list[str] = []
        self.cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()
        banner = self.wait_for("HTTP API on")
        self.http = banner.split("HTTP API on ")[1].split("/api/")[0]

    def _read(self) -> None:
        for raw in self.proc.stderr:
            with self.cond:
                self.lines.append(raw.decode().rstrip("\n"))
                self.cond.notify_all()

    def wait_for(self, text: str, timeout: float = 30.0) -> str:
        found: list[str] = []

        def ready() -> bool:
            found[:] = [line for line in self.lines if text in line]
            return bool(found) or self.proc.poll() is not None

        with self.cond:
            self.cond.wait_for(ready, timeout)
        assert found, f"no {text!r} in {self.lines}"
        return found[0]

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            code = self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(f"serve did not end within 30 s of SIGINT: {self.lines}")
        assert code == ExitCode.SIGINT
        with self.cond:
            assert not [line for line in self.lines if "Traceback" in line], self.lines


@pytest.fixture
def serve():
    servers: list[Server] = []

    def start(*args: str) -> Server:
        server = Server(*args)
        servers.append(server)
        return server

    yield start
    try:
        for server in servers:
            server.stop()
    finally:
        for server in servers:
            if server.proc.poll() is None:
                server.proc.kill()
                server.proc.wait()


def mkstream(server: Server, *args: str, timeout: float = 60) -> tuple[int, str, str]:
    proc = spawn("connect", "--host", server.http, *args)
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out.decode(), err.decode()


def test_serve_replay_in_a_child_process(serve, tmp_path):
    recorded = tmp_path / "rec.ndjson.gz"
    record(recorded, [(note("localTimeline", f"c{n}"), False) for n in range(3)], (LTL,))
    server = serve("--replay", str(recorded), "--loop")
    assert "serving" in server.wait_for(f"serving {recorded} as fast as clients take it, in a loop")
    code, out, err = mkstream(server, "localTimeline:mine", "-n", "7", "--jq",
                              '[.body.id, .body.body.text] | join(" ")', "-r", *SAFETY)
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == 7 and set(lines) == {"mine c0", "mine c1", "mine c2"}
    assert lines[:3] == ["mine c0", "mine c1", "mine c2"]


def test_serve_replay_options_are_checked(tmp_path):
    recorded = tmp_path / "r.ndjson"
    recorded.write_bytes(frame_line(note("localTimeline", "x"), False, T0))
    for args, message in ((("--speed", "2"), "add --replay FILE"), (("--loop",), "add --replay FILE"),
                          (("--replay", str(recorded), "--rate", "3"), "keep one"),
                          (("--replay", str(tmp_path / "missing")), "does not exist"),
                          (("--close-every", "1s:1006"), "not a close code"),
                          (("--close-every", "soon"), "not a duration"),
                          (("--rate", "inf"), "out of range"), (("--rate", "nan"), "out of range"),
                          (("--rate", "1001"), "out of range"), (("--rate", "-1"), "out of range"),
                          (("--refuse", "0"), "0"), (("--inject", str(tmp_path / "missing")), "does not exist")):
        result = run_cli("serve", "--port", "0", *args)
        assert result.exit_code == ExitCode.USAGE, (args, result.stderr)
        assert message in result.stderr, (args, result.stderr)


def test_serve_banner_and_tokens(serve):
    server = serve("--token", "tok-alice=mallory", "--token", "s3cret=carol", "--suspended-token", "hush")
    banner = "\n".join(server.lines)
    assert "tok-alice (alice)" not in banner and "tok-bob (bob)" in banner
    assert "suspended (refused with 403): tok-suspended and 1 of yours" in banner
    assert "and 2 token(s) of yours, as mallory, carol" in banner
    assert "s3cret" not in banner and "hush" not in banner
    assert f"HTTP API on {server.http}/api/" in banner
    for token, code in (("tok-suspended", ExitCode.FORBIDDEN), ("hush", ExitCode.FORBIDDEN),
                        ("nosuch", ExitCode.TOKEN_REJECTED)):
        returncode, _, err = mkstream(server, "localTimeline", "--token", token, *SAFETY)
        assert returncode == code, err
    request = urllib.request.Request(f"{server.http}/api/i", data=b'{"i":"tok-alice"}',
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert json.load(answer)["username"] == "mallory"


def test_a_fresh_serve_has_a_history_and_answers_a_bot(serve):
    server = serve()

    def call(endpoint: str, body: dict) -> object:
        request = urllib.request.Request(f"{server.http}/api/{endpoint}", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as answer:
            return json.load(answer)

    timeline = call("notes/local-timeline", {"limit": 20})
    assert len(timeline) == 20 and [n["id"] for n in timeline] == sorted((n["id"] for n in timeline), reverse=True)
    created = call("notes/create", {"i": "tok-alice", "text": "hello from a bot"})["createdNote"]
    assert call("notes/show", {"noteId": created["id"]})["text"] == "hello from a bot"
    assert call("notes/local-timeline", {"limit": 1})[0]["id"] == created["id"]


def test_drop_every_drops_sockets_without_a_close_frame_and_mkstream_reconnects(serve):
    server = serve("--drop-every", "0.3s", "--rate", "20")
    code, _, err = mkstream(server, "localTimeline", "--reconnect-delay", "0.05", "--duration", "1.5s", "--stats")
    assert code == 0, err
    assert "the server closed the connection without a close frame" in err
    assert int(err.split("reconnects ")[1].split(";")[0]) >= 2


def test_close_every_closes_sockets_with_the_given_code(serve):
    server = serve("--close-every", "0.3s:4001")
    code, _, err = mkstream(server, "localTimeline", "--no-reconnect", *SAFETY)  # ends at the first close
    assert code == 0, err
    assert "the server closed the connection (code 4001" in err


def test_freeze_after_makes_a_path_that_mkstream_finds_dead(serve):
    server = serve("--freeze-after", "0.3s")
    # Ends when the frozen path is found dead: no window of wall time to wait out.
    code, _, err = mkstream(server, "localTimeline", "--ping-interval", "0.2s", "--ping-timeout", "0.5s",
                            "--no-reconnect", *SAFETY)
    assert code == ExitCode.CONNECTION_LOST, err
    assert "no frame and no pong for 0.5s" in err


def test_refuse_answers_the_next_handshakes_503_then_accepts(serve):
    server = serve("--refuse", "2")
    url = server.http.replace("http://", "ws://") + "/streaming"
    for _ in range(2):
        with pytest.raises(websocket.WebSocketBadStatusException) as refused:
            websocket.create_connection(url, timeout=10)
        assert refused.value.status_code == 503
    websocket.create_connection(url, timeout=10).close()


def test_inject_sends_its_frames_to_every_connection_once_open(serve, tmp_path):
    frames = [b"not json", b'{"type":"channel","body":{"id":"localTimeline","type":"note","body":{"text":"x"}}}']
    inject = tmp_path / "inject.ndjson"
    inject.write_bytes(frame_line(frames[0], False, T0) + frame_line(b"\x01\x02", True, T0) + frames[1] + b"\n")
    server = serve("--inject", str(inject), "--rate", "0")
    assert "inject" in server.wait_for("faults: inject")
    for _ in range(2):  # every connection gets them
        code, out, err = mkstream(server, "localTimeline", "--format", "raw", "-n", "3", *SAFETY)
        assert code == 0, err
        assert out.encode() == frames[0] + b"\n\x01\x02\n" + frames[1] + b"\n"
        assert "bad frame skipped (not JSON" in err and "binary frame of 2 bytes" in err


def test_serve_replay_to_mkstream_with_speed(serve, tmp_path):
    recorded = tmp_path / "rec.ndjson"
    record(recorded, [(note("localTimeline", f"s{n}"), False) for n in range(3)], (LTL,), gap=0.3)
    server = serve("--replay", str(recorded), "--speed", "2")
    start = time.monotonic()
    code, out, err = mkstream(server, "localTimeline", "-n", "3", "--jq", ".body.body.text", "-r", *SAFETY)
    assert code == 0, err
    assert out.splitlines() == ["s0", "s1", "s2"]
    assert time.monotonic() - start > 0.25  # 0.6 s recorded at 2x


def test_serve_says_what_it_cannot_listen_on():
    result = run_cli("serve", "--host", "203.0.113.1", "--port", "1")
    assert result.exit_code == ExitCode.CONNECT_FAILED
    assert "cannot listen on 203.0.113.1:1" in result.stderr
