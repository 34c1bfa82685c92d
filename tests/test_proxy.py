"""``mkstream proxy`` through the real CLI: clients of our own talk to the simulator through it.

The proxy runs as a child process; the clients are websocket-client sockets and urllib requests
pointed at it. Each test checks what the client got against what the server sent (and the
other way round, through the simulator's record of client frames), the records, the warnings,
and the recording through ``mkstream replay`` and ``serve --replay``.
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import websocket
from helpers import SAFETY, finish, run_cli, spawn

from misskey_cli.simulator import Simulator
from misskey_cli.simulator.replay import ReplayOptions

BANNER = re.compile(r"proxy listening on http://127\.0\.0\.1:(\d+),")


class Proxy:
    """A running ``mkstream proxy`` child: its port, its stderr so far, and a clean stop."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self.stderr = b""
        self.port = int(self._wait_for(BANNER).group(1))

    def _wait_for(self, pattern: re.Pattern[str], timeout: float = 30.0) -> re.Match[str]:
        assert self.proc.stderr is not None
        deadline = time.monotonic() + timeout
        fd = self.proc.stderr.fileno()
        while (found := pattern.search(self.stderr.decode("utf-8", "replace"))) is None:
            left = deadline - time.monotonic()
            assert left > 0, f"proxy said: {self.stderr.decode()}"
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 65536)
                assert chunk, f"proxy ended: {self.stderr.decode()}"
                self.stderr += chunk
        return found

    def wait_for_notice(self, text: str) -> None:
        self._wait_for(re.compile(re.escape(text)))

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/streaming"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self, sig: int = signal.SIGINT) -> tuple[int, str, str]:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code, out, err = finish(self.proc, timeout=30)
        return code, out, self.stderr.decode() + err


@pytest.fixture
def start_proxy() -> Iterator[Callable[..., Proxy]]:
    started: list[Proxy] = []

    def start(host: str, *args: str) -> Proxy:
        proxy = Proxy(spawn("proxy", "--host", host, "--listen", "127.0.0.1:0", *SAFETY, *args))
        started.append(proxy)
        return proxy

    yield start
    for proxy in started:
        if proxy.proc.poll() is None:
            proxy.proc.kill()
            proxy.proc.communicate(timeout=10)


def post(url: str, body: dict[str, Any]) -> tuple[int, Any]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=20) as answer:
            return answer.status, json.loads(answer.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def lines_of(out: str) -> list[Any]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def connect_frame(channel: str, cid: str, params: dict[str, Any] | None = None, pong: bool = True) -> str:
    body: dict[str, Any] = {"channel": channel, "id": cid}
    if params is not None:
        body["params"] = params
    if pong:
        body["pong"] = True
    return json.dumps({"type": "connect", "body": body})


# ----- relaying ---------------------------------------------------------------------------------


def test_streams_and_api_calls_are_relayed_byte_for_byte_and_every_frame_is_a_record(sim, start_proxy, tmp_path):
    proxy = start_proxy(sim.http_url, "--ndjson", "--record", str(tmp_path / "rec.ndjson"))
    ws = websocket.create_connection(proxy.ws_url + "?i=tok-alice", timeout=20)
    sent_text = [
        connect_frame("localTimeline", "a1"),
        '{"type":"connect",  "body":{"channel":"main","id":"m"}}',  # spacing kept as sent
        "not json \u00e9 \x01",
    ]
    for text in sent_text:
        ws.send(text)
    ws.send_binary(b"\x00\xffbin")
    assert json.loads(ws.recv()) == {"type": "connected", "body": {"id": "a1"}}
    sim.wait_for_subscription("main")
    note = sim.post_note(author="bob")
    got_note = ws.recv()
    assert json.loads(got_note)["body"]["body"]["id"] == note["id"]
    ws.send(json.dumps({"type": "subNote", "body": {"id": note["id"]}}))
    sim.wait_for_captures(note["id"])
    sim.note_updated(note["id"], "reacted", {"reaction": "👍", "userId": "u1"})
    got_update = ws.recv()
    # Frames the server writes its own way reach the client as they were written.
    raw = b'{"type":"emojiAdded" ,"body":{"emoji":{"name":"x"}}}'
    sim.send_raw(raw)
    assert ws.recv().encode() == raw
    sim.send_raw(b"\x01\x02", binary=True)
    opcode, data = ws.recv_data()
    assert (opcode, data) == (websocket.ABNF.OPCODE_BINARY, b"\x01\x02")

    status, me = post(proxy.http_url + "/api/i", {"i": "tok-alice"})
    assert status == 200 and me["username"] == "alice"
    through = post(proxy.http_url + "/api/notes/local-timeline", {"limit": 2})
    assert through == post(sim.http_url + "/api/notes/local-timeline", {"limit": 2})
    assert through[1][0]["id"] == note["id"]
    ws.close(status=4000, reason="bye")

    # What the server got is what the client sent, byte for byte where the simulator keeps the text.
    frames = sim.client_frames()
    assert frames[:4] == [json.loads(sent_text[0]), json.loads(sent_text[1]), {"_raw": sent_text[2]},
                          {"_binary": b"\x00\xffbin"}]
    assert sim.wait_for_closed()[0] == (4000, "bye")

    code, out, err = proxy.stop()
    assert code == 130, err
    records = lines_of(out)
    assert all(r["conn"] == 1 for r in records if "api" not in r)
    stream = [r for r in records if r["conn"] == 1]
    # The client's frames in the order sent (the server's answers may come in between).
    assert [r for r in stream if r["from"] == "client"][:4] == [
        {"conn": 1, "from": "client", "frame": json.loads(sent_text[0])},
        {"conn": 1, "from": "client", "frame": json.loads(sent_text[1])},
        {"conn": 1, "from": "client", "text": sent_text[2]},
        {"conn": 1, "from": "client", "binary": "AP9iaW4="},
    ]
    assert {"conn": 1, "from": "server", "frame": {"type": "connected", "body": {"id": "a1"}}} in stream
    assert {"conn": 1, "from": "server", "frame": json.loads(got_note)} in stream
    assert {"conn": 1, "from": "server", "frame": json.loads(got_update)} in stream
    assert {"conn": 1, "from": "server", "frame": json.loads(raw)} in stream
    assert {"conn": 1, "from": "server", "binary": "AQI="} in stream
    assert stream[-2:] == [{"conn": 1, "from": "client", "close": {"code": 4000, "reason": "bye"}},
                           {"conn": 1, "from": "server", "close": {"code": 4000, "reason": "bye"}}]
    calls = [r for r in records if "api" in r]
    assert [(c["conn"], c["from"], c["api"]["method"], c["api"]["endpoint"], c["api"]["status"]) for c in calls] == [
        (2, "client", "POST", "i", 200), (3, "client", "POST", "notes/local-timeline", 200)]
    assert all(isinstance(c["api"]["ms"], float) and c["api"]["ms"] >= 0 for c in calls)
    assert "request" not in calls[0]["api"]  # bodies only with --bodies
    recording = (tmp_path / "rec.ndjson").read_text()
    for text in (out, err, recording):
        assert "tok-alice" not in text
    # The recording keeps the client's frame text as it was sent.
    assert '"frame":{"type":"connect",  "body":{"channel":"main","id":"m"}}' in recording

    # mkstream replay shows the same records, and the line view names the channels.
    replayed = run_cli("replay", str(tmp_path / "rec.ndjson"), "--ndjson")
    assert replayed.exit_code == 0, replayed.stderr
    assert lines_of(replayed.stdout) == records
    shown = run_cli("replay", str(tmp_path / "rec.ndjson"), "--line", "--color", "never").stdout
    assert "#1 -> connect localTimeline (id a1) pong" in shown
    assert "#1 <- localTimeline connected" in shown
    assert f"#1 <- localTimeline @bob: {note['text'][:10]}" in shown
    assert f"#1 -> subNote {note['id']}" in shown
    assert f"#1 <- noteUpdated {note['id']} reacted 👍" in shown
    assert "#2 -> POST i 200" in shown
    assert '#1 -> close 4000 "bye"' in shown


def test_serve_replay_plays_the_servers_side_of_a_proxy_recording(sim, start_proxy, tmp_path):
    recorded = tmp_path / "rec.ndjson.gz"
    proxy = start_proxy(sim.http_url, "--ndjson", "--record", str(recorded))
    ws = websocket.create_connection(proxy.ws_url, timeout=20)
    ws.send(connect_frame("localTimeline", "mine-1"))
    ws.recv()
    notes = [sim.post_note(author="bob") for _ in range(3)]
    for _ in notes:
        ws.recv()
    ws.send('{"type":"channel","body":{"id":"mine-1","type":"x","body":{}}}')
    ws.close()
    proxy.stop()

    with Simulator(replay=ReplayOptions(str(recorded))) as replaying:
        client = websocket.create_connection(replaying.url, timeout=20)
        client.send(connect_frame("localTimeline", "other-id"))
        got = [json.loads(client.recv()) for _ in range(4)]
        client.close()
        replaying.wait_for_closed()
    assert got[0] == {"type": "connected", "body": {"id": "other-id"}}
    assert [f["body"]["body"]["id"] for f in got[1:]] == [n["id"] for n in notes]
    assert all(f["body"]["id"] == "other-id" for f in got[1:])


def test_many_clients_get_their_own_numbers_and_the_proxy_outlives_them(sim, start_proxy):
    proxy = start_proxy(sim.http_url, "--ndjson", "--stats")
    sockets = [websocket.create_connection(proxy.ws_url, timeout=20) for _ in range(3)]
    for n, ws in enumerate(sockets):
        ws.send(connect_frame("localTimeline", f"c{n}"))
        assert json.loads(ws.recv())["body"]["id"] == f"c{n}"
    for ws in sockets:
        ws.close()
    later = websocket.create_connection(proxy.ws_url, timeout=20)
    later.send(connect_frame("globalTimeline", "late"))
    assert json.loads(later.recv())["body"]["id"] == "late"
    later.close()
    code, out, err = proxy.stop(signal.SIGTERM)
    assert code == 143, err
    connects = {r["conn"]: r["frame"]["body"]["id"] for r in lines_of(out)
                if r["from"] == "client" and r.get("frame", {}).get("type") == "connect"}
    assert sorted(connects.values()) == ["c0", "c1", "c2", "late"]
    assert sorted(connects) == [1, 2, 3, 4]
    records = len(lines_of(out))
    assert f"mkstream: {records} frames and 0 API calls relayed on 4 connections, {records} records written, " \
           "0 dropped" in err


def test_bodies_are_recorded_only_when_asked_and_without_the_token(sim, start_proxy):
    proxy = start_proxy(sim.http_url, "--ndjson", "--bodies", "-n", "1")
    status, _ = post(proxy.http_url + "/api/i", {"i": "tok-alice"})
    assert status == 200
    code, out, err = finish(proxy.proc)
    assert code == 0, err
    (record,) = lines_of(out)
    assert record["api"]["request"] == {}
    assert record["api"]["response"]["username"] == "alice"
    assert "tok-alice" not in out + err


def proxy_on_a_small_disk(host: str, *args: str, limit: int) -> Proxy:
    """A proxy whose files may grow to ``limit`` bytes: a write past it fails (EFBIG), as on a full disk."""
    import resource
    import sys

    def small_disk() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of being killed
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return Proxy(subprocess.Popen([sys.executable, "-m", "misskey_cli", "proxy", "--host", host, "--listen",
                                   "127.0.0.1:0", *SAFETY, *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, preexec_fn=small_disk))


@pytest.mark.parametrize("path", ["stream", "api"])
def test_a_recording_that_cannot_be_written_ends_the_proxy_with_one_error_line(sim, tmp_path, path):
    recording = tmp_path / "rec.ndjson"
    proxy = proxy_on_a_small_disk(sim.http_url, "--ndjson", "--record", str(recording), limit=2000)
    try:
        if path == "stream":
            ws = websocket.create_connection(proxy.ws_url + "?i=tok-alice", timeout=20)
            try:
                for n in range(200):
                    ws.send(json.dumps({"type": "ping", "n": n, "pad": "x" * 100}))
            except (OSError, websocket.WebSocketException):
                pass  # the proxy ended while we were sending
            finally:
                ws.close()
        else:
            for _ in range(40):
                try:
                    post(proxy.http_url + "/api/meta", {})
                except OSError:
                    break  # the proxy ended
        code, _, err = finish(proxy.proc, timeout=30)
    finally:
        if proxy.proc.poll() is None:
            proxy.proc.kill()
            proxy.proc.communicate(timeout=10)
    err = proxy.stderr.decode() + err
    assert code == 1, err
    assert f"mkstream: error: cannot write to recording {recording}: File too large\n" in err
    assert "Traceback" not in err and "exception" not in err.lower(), err
    assert len(recording.read_bytes()) <= 2000


class TokenServer:
    """A real HTTP server standing in for Misskey's answers that carry a token (auth/session/userkey)."""

    def __init__(self, answer_token: str) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                body = json.dumps({"accessToken": answer_token, "user": {"id": "u1", "note": f"?i={answer_token}"}})
                data = body.encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_bodies_never_hold_a_token_sent_in_json_a_form_a_header_or_answered(start_proxy, tmp_path):
    secrets = {"json": "Json-Secret-1234", "form": "Form+Secret/5678", "multipart": "Multipart-Secret-9",
               "header": "Header-Secret-42", "answer": "Answer-Secret-77"}
    server = TokenServer(secrets["answer"])
    recording = tmp_path / "rec.ndjson"
    try:
        proxy = start_proxy(server.url, "--ndjson", "--bodies", "-n", "5", "--record", str(recording), "-v")

        def send(path: str, data: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
            request = urllib.request.Request(proxy.http_url + path, data=data,
                                             headers={"Content-Type": content_type, **(headers or {})})
            with urllib.request.urlopen(request, timeout=20) as answer:
                answer.read()

        send("/api/i", json.dumps({"i": secrets["json"], "deep": [{"token": secrets["json"]}],
                                   "text": f"mine is {secrets['json']}"}).encode(), "application/json")
        send("/api/i", f"i={urllib.parse.quote_plus(secrets['form'])}&x=1".encode(),
             "application/x-www-form-urlencoded")
        boundary = "b0undary"
        multipart = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"i\"\r\n\r\n{secrets['multipart']}\r\n"
                     f"--{boundary}--\r\n").encode()
        send("/api/drive/files/create", multipart, f"multipart/form-data; boundary={boundary}")
        send("/api/notes/create", json.dumps({"text": f"token {secrets['header']}"}).encode(), "application/json",
             {"Authorization": f"Bearer {secrets['header']}"})
        send("/api/auth/session/userkey", json.dumps({"appSecret": "s", "token": "session-token"}).encode(),
             "application/json")
        code, out, err = finish(proxy.proc, timeout=30)
    finally:
        server.close()
    assert code == 0, err
    records = lines_of(out)
    assert len(records) == 5
    assert records[0]["api"]["request"]["deep"] == [{"token": "***"}]
    assert records[4]["api"]["response"]["accessToken"] == "***"
    everything = out + proxy.stderr.decode() + err + recording.read_text(encoding="utf-8")
    for secret in secrets.values():
        for form in (secret, urllib.parse.quote_plus(secret), urllib.parse.quote(secret, safe="")):
            assert form not in everything, (form, everything)


# ----- upstream failures ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_server_that_cannot_be_reached_is_a_502_and_a_notice_and_the_proxy_goes_on(start_proxy):
    proxy = start_proxy(f"http://127.0.0.1:{free_port()}", "--ndjson")
    for _ in range(2):
        with pytest.raises(websocket.WebSocketBadStatusException) as refused:
            websocket.create_connection(proxy.ws_url, timeout=20)
        assert refused.value.status_code == 502
    status, _ = post(proxy.http_url + "/api/meta", {})
    assert status == 502
    code, out, err = proxy.stop()
    assert code == 130
    assert err.count("cannot reach 127.0.0.1:") == 3 and "connection refused" in err
    assert [r["api"]["status"] for r in lines_of(out)] == [502]


def test_a_server_that_drops_the_stream_drops_the_clients_too(sim, start_proxy):
    proxy = start_proxy(sim.http_url, "--ndjson")
    ws = websocket.create_connection(proxy.ws_url, timeout=20)
    ws.send(connect_frame("localTimeline", "a"))
    ws.recv()
    sim.drop_all()
    with pytest.raises((websocket.WebSocketConnectionClosedException, ConnectionError)):
        ws.recv()
    proxy.wait_for_notice("#1: the server dropped the stream without a close frame")
    proxy.stop()


# ----- Misskey-aware warnings -------------------------------------------------------------------


def test_warnings_say_what_the_server_silently_ignores(sim, start_proxy):
    proxy = start_proxy(sim.http_url, "--ndjson", "--ack-timeout", "0.5s")
    ws = websocket.create_connection(proxy.ws_url, timeout=20)  # anonymous
    ws.send(connect_frame("localTimeline", "ltl"))
    ws.recv()
    ws.send(connect_frame("main", "m"))  # needs a login: the server ignores it, never acknowledges
    proxy.wait_for_notice("#1: connect main (id m): channel main needs a logged-in user")
    proxy.wait_for_notice("#1: connect main (id m) asked for pong and was not acknowledged within 0.5s")
    ws.send(connect_frame("noSuchChannel", "x", pong=False))
    proxy.wait_for_notice("#1: connect noSuchChannel (id x): unknown channel noSuchChannel")
    ws.send(connect_frame("globalTimeline", "g", {"withFiles": "yes"}, pong=False))
    proxy.wait_for_notice('globalTimeline param withFiles is a boolean: give true or false, not "yes"')
    ws.send('{"type":"channel","body":{"id":"nope","type":"x","body":{}}}')
    proxy.wait_for_notice("#1: a channel message for id 'nope', which was never connected")
    ws.send('{"type":"disconnect","body":{"id":"nope"}}')
    proxy.wait_for_notice("#1: disconnect of id 'nope', which was never connected")
    ws.send('{"type":"subNote","body":{"id":"n1"}}')
    ws.send('{"type":"s","body":{"id":"n1"}}')
    proxy.wait_for_notice("#1: note n1 is captured twice on this socket")
    ws.send('{"type":"sr","body":{"id":"n2"}}')
    proxy.wait_for_notice("#1: the client sent sr: the server marks the note as read")
    # Only what the server holds counts: localTimeline and globalTimeline, not main or noSuchChannel.
    for n in range(31):
        ws.send(connect_frame("localTimeline", f"more{n}", pong=False))
    proxy.wait_for_notice("#1: connect localTimeline (id more30) would be channel 33 on this socket: "
                          "the server ignores connects past 32")
    for n in range(31):
        ws.send(json.dumps({"type": "disconnect", "body": {"id": f"more{n}"}}))
    for cid in ("m", "x", "g"):
        ws.send(json.dumps({"type": "disconnect", "body": {"id": cid}}))
    ws.send(connect_frame("serverStats", "s1", pong=False))
    ws.send(connect_frame("serverStats", "s2", pong=False))
    proxy.wait_for_notice("#1: connect serverStats (id s2): serverStats can be connected once per socket and already "
                          "is: the server ignores this one")
    ws.send('{"type":"disconnect","body":{"id":"ltl"}}')
    proxy.wait_for_notice("#1: localTimeline (id ltl) disconnected with note(s) still captured: n1, n2")
    ws.close()
    code, _, err = proxy.stop()
    assert code == 130
    warned = [line for line in err.splitlines() if "warning: #1:" in line]
    assert len(warned) == 11, "\n".join(warned)  # each said once


def test_a_ping_the_client_does_not_answer_is_a_warning(start_proxy):
    with Simulator(ping_interval=0.2, ping_timeout=60) as pinging:
        proxy = start_proxy(pinging.http_url, "--ndjson", "--ack-timeout", "0.5s")
        websocket.create_connection(proxy.ws_url, timeout=20)  # never read: websocket-client answers pings as it reads
        proxy.wait_for_notice("#1: the client did not answer the server's ping")
        code, out, _ = proxy.stop()
    assert code == 130
    assert {"conn": 1, "from": "server", "ping": ""} in lines_of(out)


# ----- the command line -------------------------------------------------------------------------


@pytest.mark.parametrize(("args", "message"), [
    (("--listen", "localhost:http"), "expected HOST:PORT"),
    (("--listen", "127.0.0.1:70000"), "expected HOST:PORT"),
    (("--ca-file", __file__), "holds no PEM certificate"),
    (("-r",), "-r/--raw-output applies to --jq results"),
])
def test_bad_options_are_one_line_and_exit_2(args, message):
    result = run_cli("proxy", "--host", "misskey.example", *args)
    assert result.exit_code == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("host", ["https://misskey.example/prefix", "http://localhost:3000/misskey/streaming",
                                  "https://misskey.example/streaming/"])
def test_a_path_in_the_host_is_refused_in_one_line_with_exit_2(host):
    result = run_cli("proxy", "--host", host, "--listen", "127.0.0.1:0")
    assert result.exit_code == 2
    (line,) = result.stderr.splitlines()
    assert "not a URL with a path" in line and "relays the paths the client asks for" in line


def test_a_host_with_the_default_streaming_path_is_its_origin(sim, start_proxy):
    proxy = start_proxy(sim.http_url + "/streaming", "--ndjson", "-n", "1")
    assert post(proxy.http_url + "/api/meta", {})[0] == 200
    code, out, err = finish(proxy.proc)
    assert code == 0, err
    assert lines_of(out)[0]["api"]["status"] == 200


def test_without_a_host_it_says_so():
    result = run_cli("proxy")
    assert result.exit_code == 2 and "--host" in result.stderr


def test_a_listening_address_in_use_exits_3(sim):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, _, err = finish(spawn("proxy", "--host", sim.http_url, "--listen", f"127.0.0.1:{port}"))
    assert code == 3
    assert f"cannot listen on 127.0.0.1:{port}" in err and "Traceback" not in err


# ----- TLS and proxies to the server; the live line view ----------------------------------------


def test_a_tls_server_is_reached_with_the_ca_file_and_through_an_http_proxy(tls_sim, certificate, start_proxy):
    from test_transport import ConnectProxy

    tunnel = ConnectProxy()
    proxy = start_proxy(f"https://localhost:{tls_sim.port}", "--ca-file", str(certificate[0]),
                        "--proxy", f"http://127.0.0.1:{tunnel.port}", "--line", "--color", "never")
    ws = websocket.create_connection(proxy.ws_url + "?i=tok-bob", timeout=20)
    ws.send(connect_frame("homeTimeline", "home"))
    assert json.loads(ws.recv()) == {"type": "connected", "body": {"id": "home"}}
    note = tls_sim.post_note(author="bob")
    assert json.loads(ws.recv())["body"]["body"]["id"] == note["id"]
    ws.send(json.dumps({"type": "subNote", "body": {"id": note["id"]}}))
    tls_sim.wait_for_captures(note["id"])
    tls_sim.note_updated(note["id"], "reacted", {"reaction": "👍", "userId": "u1"})
    ws.recv()
    status, me = post(proxy.http_url + "/api/i", {"i": "tok-bob"})
    assert status == 200 and me["username"] == "bob"
    ws.close()
    code, out, err = proxy.stop()
    assert code == 130, err
    assert all(request.startswith(f"CONNECT localhost:{tls_sim.port} ") for request in tunnel.requests)
    assert len(tunnel.requests) == 2
    lines = out.splitlines()
    expected = ["#1 -> connect homeTimeline (id home) pong", "#1 <- homeTimeline connected",
                "#1 <- homeTimeline @bob: ", f"#1 -> subNote {note['id']}", f"#1 <- noteUpdated {note['id']} reacted 👍",
                "#2 -> POST i 200 (", "#1 -> close 1000", "#1 <- close 1000"]
    for want, line in zip(expected, lines, strict=True):
        assert want in line, (want, line)
    assert f"reacted 👍 by u1 on @bob: {note['text'][:10]}" in lines[4]  # the note, from the line view's memory
    assert "tok-bob" not in out + err


def test_a_certificate_the_proxy_cannot_verify_is_a_502_that_says_so(tls_sim, start_proxy):
    proxy = start_proxy(f"https://localhost:{tls_sim.port}")
    status, body = post(proxy.http_url + "/api/meta", {})
    assert status == 502 and b"TLS certificate rejected" in body
    proxy.wait_for_notice("#1: cannot reach localhost:")
    proxy.stop()


# ----- the line view on its own -----------------------------------------------------------------


def test_the_relay_line_view_takes_any_json_without_raising_and_escapes_server_text():
    from misskey_cli.output.relayline import RelayLines

    view = RelayLines(width=None, color=False)
    odd: list[Any] = [None, 1, "x", [], {}, {"conn": [1], "from": ["client"]}, {"conn": {"a": 1}, "from": "client"},
                      {"conn": 1, "from": "server", "frame": None}, {"conn": 1, "from": "client", "frame": {"type": 3}},
                      {"conn": 1, "from": "client", "frame": {"type": "connect", "body": {"id": [], "channel": {}}}},
                      {"conn": 1, "from": "client", "frame": {"type": "channel", "body": {"id": {}, "type": []}}},
                      {"conn": 1, "from": "server", "close": "x"}, {"conn": 1, "from": "client", "api": []},
                      {"conn": 1, "from": "server", "close": {"code": 1000, "reason": "\x1b[31mred"}},
                      {"conn": 1, "from": "client", "frame": {"type": "connect",
                                                              "body": {"id": "i", "channel": "c\x1b]0;t\x07"}}}]
    for value in odd:
        line = view.format(value, 1795807722.0)
        assert "\x1b" not in line and "\x07" not in line, line


def test_the_socket_watch_takes_any_client_frame_without_raising():
    from misskey_cli.core.channels import CATALOGUE
    from misskey_cli.relay.watch import SocketWatch

    values: list[Any] = [None, 1, 1.5, "x", "", [], {}, [[]], [[1]], [["a", None]], [[{}]], {"a": 1}, True,
                         [1, [2]], "a,b", [["a"], "b"]]
    watch = SocketWatch(logged_in=False)
    n = 0
    for channel in [*CATALOGUE, "nope", None, 1]:
        names = [p.name for p in CATALOGUE[channel].params] if channel in CATALOGUE else []
        for param in [*names, "zz"]:
            for value in values:
                for kind in ("connect", "disconnect", "channel", "subNote", "s", "sr", "un", "unsubNote", "x", 1):
                    n += 1
                    for body in ({"channel": channel, "id": str(n), "params": {param: value}, "pong": True},
                                 value, {"id": value}):
                        assert all(isinstance(w, str) for w in watch.client_frame({"type": kind, "body": body}, n))
    watch.server_frame({"type": "connected", "body": []})
    assert watch.server_ping(1) == [] and len(watch.server_ping(2)) == 1
    assert watch.tick(1e9) and watch.closed() == []


def test_a_request_that_is_not_http_gets_a_400_and_the_proxy_goes_on(sim, start_proxy):
    proxy = start_proxy(sim.http_url, "--ndjson")
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=20) as raw:
        raw.sendall(b"hello there\r\n\r\n")
        assert raw.makefile("rb").readline().startswith(b"HTTP/1.1 400 ")
    status, meta = post(proxy.http_url + "/api/meta", {})
    assert status == 200 and isinstance(meta, dict)
    assert proxy.stop()[0] == 130


def test_generated_frames_of_every_size_pass_unchanged_both_ways_and_as_records(sim, start_proxy):
    import base64
    import random

    rng = random.Random(24)
    alphabet = "abcあい🐈\x00\x1b\n\"\\ \u200b\ud7ff\ue000"
    sizes = [0, 1, 125, 126, 127, 65535, 65536, 70000] + [rng.randrange(1, 3000) for _ in range(12)]
    texts = ["".join(rng.choice(alphabet) for _ in range(size)) + "!" for size in sizes]
    blobs = [rng.randbytes(size) for size in sizes]
    proxy = start_proxy(sim.http_url, "--ndjson")
    ws = websocket.create_connection(proxy.ws_url, timeout=30)
    for text, blob in zip(texts, blobs, strict=True):
        ws.send(text)
        ws.send_binary(blob)
    # One message in three fragments, as a client may send it.
    ws.send_frame(websocket.ABNF.create_frame("frag", websocket.ABNF.OPCODE_TEXT, fin=0))
    ws.send_frame(websocket.ABNF.create_frame("ment", websocket.ABNF.OPCODE_CONT, fin=0))
    ws.send_frame(websocket.ABNF.create_frame("ed", websocket.ABNF.OPCODE_CONT, fin=1))
    sim.wait_for_client_frame(lambda frame: frame.get("_raw") == "fragmented")
    expected_at_server = [item for text, blob in zip(texts, blobs, strict=True)
                          for item in ({"_raw": text}, {"_binary": blob})] + [{"_raw": "fragmented"}]
    assert sim.client_frames() == expected_at_server
    for text, blob in zip(texts, blobs, strict=True):
        sim.send_raw(text.encode())
        sim.send_raw(blob, binary=True)
    for text, blob in zip(texts, blobs, strict=True):
        assert ws.recv_data() == (websocket.ABNF.OPCODE_TEXT, text.encode())
        assert ws.recv_data() == (websocket.ABNF.OPCODE_BINARY, blob)
    ws.close()
    _, out, err = proxy.stop()
    records = [r for r in lines_of(out) if "close" not in r]
    as_records = [record for text, blob in zip(texts, blobs, strict=True)
                  for record in ({"text": text}, {"binary": base64.b64encode(blob).decode()})]
    assert [{k: v for k, v in r.items() if k in ("text", "binary")} for r in records if r["from"] == "client"] == \
        [*as_records, {"text": "fragmented"}]
    assert [{k: v for k, v in r.items() if k in ("text", "binary")} for r in records if r["from"] == "server"] == \
        as_records
    assert "warning" not in err


def test_replay_shows_other_recordings_exactly_as_before_in_every_width(tmp_path):
    from misskey_cli.output.lineformat import LineFormatter
    from misskey_cli.output.relayline import RelayLines

    frames: list[Any] = [{"type": "channel", "body": {"id": "localTimeline", "type": "note", "body": {
        "id": "9x", "text": "word " * 60, "user": {"username": "alice", "name": "Alice"}}}},
        {"type": "noteUpdated", "body": {"id": "9x", "type": "reacted", "body": {"reaction": "👍", "userId": "u"}}},
        {"type": "emojiAdded", "body": {"emoji": {"name": "x" * 300}}}]
    for width in (None, 20, 40, 80, 200):
        relay, plain = RelayLines(width=width, color=True), LineFormatter(width=width, color=True)
        for frame in frames:
            assert relay.format(frame, 1795807722.5) == plain.format(frame, 1795807722.5)


def test_relayed_lines_fit_the_width():
    from misskey_cli.output.cells import display_width
    from misskey_cli.output.relayline import RelayLines

    records: list[Any] = [
        {"conn": 1, "from": "client", "frame": {"type": "connect", "body": {"id": "x" * 50, "channel": "hashtag",
                                                                          "params": {"q": [["あ" * 40]]}}}},
        {"conn": 1, "from": "client", "frame": {"type": "channel", "body": {"id": "x" * 50, "type": "t",
                                                                          "body": {"k": "🐈" * 80}}}},
        {"conn": 12, "from": "server", "frame": {"type": "channel", "body": {"id": "x" * 50, "type": "note",
                                                                           "body": {"id": "n", "text": "w " * 90}}}},
        {"conn": 1, "from": "server", "close": {"code": 1000, "reason": "r" * 120}},
        {"conn": 1, "from": "client", "api": {"method": "POST", "endpoint": "e/" * 60, "status": 200, "ms": 1.5}},
    ]
    for width in (20, 40, 80):
        view = RelayLines(width=width, color=False)
        for record in records:
            assert display_width(view.format(record, 1795807722.0)) <= width


# ----- records never hold up the traffic --------------------------------------------------------


def test_traffic_keeps_flowing_while_jq_computes_and_sigterm_ends_the_proxy_at_once(sim, start_proxy):
    # Each frame takes jq for ever: the relay must not wait for its records, and a signal must stop jq.
    proxy = start_proxy(sim.http_url, "--ndjson", "--jq", "last(range(1e12))")
    ws = websocket.create_connection(proxy.ws_url, timeout=20)
    for n in range(5):
        ws.send(connect_frame("localTimeline", f"c{n}"))
        assert json.loads(ws.recv())["body"]["id"] == f"c{n}"
    status, answer = post(proxy.http_url + "/api/meta", {})
    assert status == 200 and "version" in answer
    proxy.proc.send_signal(signal.SIGTERM)
    code, out, err = finish(proxy.proc, timeout=15)  # jq alone would take hours
    assert code == 143, err
    assert out == ""
    assert "frame(s) were not shown: the proxy stopped before their records" in err
    assert "Traceback" not in err, err
    ws.close()


def test_a_filter_that_never_ends_is_cut_at_n_records(sim, start_proxy):
    proxy = start_proxy(sim.http_url, "--ndjson", "--jq", "repeat(1)", "-n", "3")
    ws = websocket.create_connection(proxy.ws_url, timeout=20)
    ws.send(connect_frame("localTimeline", "a"))
    code, out, err = finish(proxy.proc, timeout=30)
    assert code == 0, err
    assert out == "1\n1\n1\n"
    ws.close()


def test_records_jq_makes_after_a_slow_start_are_written_and_a_jq_error_is_a_notice(sim, start_proxy):
    # A filter that makes records of some frames and fails on others: the relay goes on either way.
    proxy = start_proxy(sim.http_url, "--ndjson", "--jq", 'if .from == "client" then .frame.body.id else error("no") end')
    ws = websocket.create_connection(proxy.ws_url, timeout=20)
    ws.send(connect_frame("localTimeline", "first"))
    ws.recv()
    proxy.wait_for_notice("jq: no; record skipped")
    code, out, err = proxy.stop(signal.SIGTERM)
    assert code == 143, err
    assert out == '"first"\n'


# ----- only a replay knows relayed records ------------------------------------------------------


def test_a_live_frame_shaped_like_a_relayed_record_is_a_bad_frame_and_a_replay_shows_every_record(sim, start_proxy,
                                                                                                   tmp_path):
    def feed() -> None:
        sim.wait_for_subscription("localTimeline")
        sim.inject({"conn": 1, "from": "server"})
        sim.inject({"type": "forkSpecialEvent", "body": {"x": 1}})

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    result = run_cli("connect", "localTimeline", "--host", sim.http_url, "-n", "1", "--ndjson", "--stats", *SAFETY)
    feeder.join(30)
    assert result.exit_code == 0, result.stderr
    assert [json.loads(line) for line in result.stdout.splitlines()] == [{"type": "forkSpecialEvent", "body": {"x": 1}}]
    assert "(bad shape) 1" in result.stderr, result.stderr
    assert "bad frames 1" in result.stderr, result.stderr

    recording = tmp_path / "rec.ndjson"
    proxy = start_proxy(sim.http_url, "--ndjson", "--record", str(recording))
    ws = websocket.create_connection(proxy.ws_url, timeout=20)
    ws.send(connect_frame("localTimeline", "a"))
    ws.recv()
    ws.send('{"conn":1,"from":"server"}')  # a client frame of that shape is still a record like any other
    ws.close()
    code, out, err = proxy.stop()
    assert code == 130, err
    shown = run_cli("replay", str(recording), "--ndjson", "--stats")
    assert shown.exit_code == 0, shown.stderr
    assert [json.loads(line) for line in shown.stdout.splitlines()] == lines_of(out)
    assert "bad frames 0" in shown.stderr and f"(relayed) {len(lines_of(out))}" in shown.stderr, shown.stderr


# ----- chunked request bodies -------------------------------------------------------------------


def raw_request(port: int, data: bytes) -> bytes:
    """Send ``data`` as is and read the whole answer (the proxy closes every HTTP connection)."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        s.sendall(data)
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    return answer


def test_a_chunked_request_body_is_forwarded_whole_and_recorded(sim, start_proxy):
    import http.client

    proxy = start_proxy(sim.http_url, "--ndjson", "--bodies", "-n", "2")
    parts = [b'{"i":', b' "tok-alice",', b' "detail": true', b"}"]
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=20)
    conn.request("POST", "/api/i", body=iter(parts), headers={"Content-Type": "application/json"},
                 encode_chunked=True)
    answer = conn.getresponse()
    assert answer.status == 200
    assert json.loads(answer.read())["username"] == "alice"
    conn.close()
    # Chunk extensions and trailer fields are read and left; a zero-length body is a body too.
    raw = (b"POST /api/meta HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"1;ext=1\r\n{\r\n1\r\n}\r\n0\r\nX-Trailer: yes\r\n\r\n")
    assert raw_request(proxy.port, raw).startswith(b"HTTP/1.1 200")
    code, out, err = finish(proxy.proc)
    assert code == 0, err
    first, second = lines_of(out)
    assert first["api"]["endpoint"] == "i" and first["api"]["status"] == 200 and first["api"]["request"] == {"detail": True}
    assert second["api"]["endpoint"] == "meta" and second["api"]["request"] == {}
    assert "tok-alice" not in out + err


@pytest.mark.parametrize(("body", "status"), [
    (b"zz\r\n{}\r\n0\r\n\r\n", b"400"),  # not a chunk size
    (b"2\r\n{}XX0\r\n\r\n", b"400"),  # a chunk without its CRLF
    (b"%x\r\n" % (16 * 1024 * 1024 + 1), b"413"),  # past the body limit: refused before it is read
    (b"", b"413"),  # the same limit said in a Content-Length
])
def test_a_broken_or_too_large_chunked_body_is_refused_and_the_proxy_goes_on(sim, start_proxy, body, status):
    proxy = start_proxy(sim.http_url, "--ndjson")
    framing = b"Transfer-Encoding: chunked" if body else b"Content-Length: %d" % (16 * 1024 * 1024 + 1)
    head = b"POST /api/meta HTTP/1.1\r\nHost: x\r\n" + framing + b"\r\n\r\n"
    assert raw_request(proxy.port, head + body).startswith(b"HTTP/1.1 " + status)
    assert post(proxy.http_url + "/api/meta", {})[0] == 200
    code, out, err = proxy.stop()
    assert code == 130, err
    assert [r["api"]["endpoint"] for r in lines_of(out)] == ["meta"]


def test_a_reader_that_does_not_read_loses_records_past_max_backlog_never_the_traffic(sim, start_proxy):
    # stdout is a pipe nobody reads: once it is full the records wait, then are dropped; the client is unaffected.
    proxy = start_proxy(sim.http_url, "--ndjson", "--max-backlog", "1M", "--stats")
    ws = websocket.create_connection(proxy.ws_url, timeout=20)
    ws.send(connect_frame("localTimeline", "a"))
    ws.recv()
    filler = "x" * 65536
    n = 0
    while b"records are dropped (--max-backlog)" not in proxy.stderr:
        n += 1
        assert n < 500, proxy.stderr.decode()
        ws.send(json.dumps({"type": "ch", "body": {"id": "a", "type": "filler", "body": {"x": filler, "n": n}}}))
        ws.ping(str(n))
        assert ws.recv_data_frame(True)[1].data == str(n).encode()  # the pong: the traffic flows
        ready, _, _ = select.select([proxy.proc.stderr], [], [], 0)
        if ready:
            proxy.stderr += os.read(proxy.proc.stderr.fileno(), 65536)
    ws.close()
    code, out, err = proxy.stop(signal.SIGTERM)
    assert code == 143, err
    stats = re.search(r"(\d+) frames and 0 API calls relayed on 1 connections, (\d+) records written, (\d+) dropped", err)
    assert stats is not None, err
    frames, written, dropped = map(int, stats.groups())
    assert dropped > 0 and written == len(lines_of(out))
    assert written + dropped == frames  # one record a frame: each one written or counted
