"""Peers that break the rules, through the real CLI against raw servers on loopback.

Redirects that would carry the token elsewhere, framing errors behind good frames, a peer that
floods pings and never reads, handshakes that dribble or never end, abusive response heads,
plain servers dialled with TLS, and proxies that refuse or want credentials.
"""

from __future__ import annotations

import base64
import json
import signal
import ssl
import subprocess
import threading

import pytest
from helpers import SAFETY, in_background, join_ok, records, run_cli, spawn
from hostile import OP_PING, RawServer, closed_port, frame, note_frame, read_line, wait_until_closed

from misskey_cli.errors import ExitCode
from misskey_cli.simulator import Simulator

# These raw peers speak no HTTP API: no backfill after their reconnects.
FAST = ("--reconnect-delay", "0.01", "--no-backfill")
TOKEN = "tok-hostile-0123456789"
PING = frame(b"p" * 125, OP_PING)


def plain(server):
    return ("--host", f"ws://{server.host_port}")


def finish(proc, timeout=30.0):
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"mkstream did not end within {timeout:g}s; stderr: {err.decode()[-2000:]}") from None
    return out.decode(), err.decode()


# ----- 1. redirects ---------------------------------------------------------------------------


@pytest.mark.parametrize("auth", ["header", "query"])
def test_a_redirect_is_never_followed_and_the_error_names_the_target(auth):
    with RawServer(lambda conn, index: None, host="127.0.0.2") as other:
        target = f"ws://{other.host_port}"

        def redirect(conn, index):
            server.read_head(conn)
            conn.sendall(f"HTTP/1.1 302 Found\r\nLocation: {target}/streaming?i={TOKEN}\r\n"
                         f"Content-Length: 0\r\n\r\n".encode())
            server.hold(conn)

        with RawServer(redirect) as server:
            result = run_cli("connect", "localTimeline", *plain(server), "--token", TOKEN, "--auth", auth, *SAFETY)
    assert result.exit_code == ExitCode.CONNECT_FAILED, result.stderr
    assert f"the server redirects to {target}: use --host {target} if you trust it" in result.stderr
    assert other.connections == 0  # the token went nowhere else
    assert TOKEN not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_redirect_to_https_of_a_plain_host_reads_as_the_hint():
    def redirect(conn, index):
        server.read_head(conn)
        conn.sendall(f"HTTP/1.1 301 Moved Permanently\r\nLocation: https://{server.host_port}/streaming\r\n\r\n"
                     .encode())
        server.hold(conn)

    with RawServer(redirect) as server:
        result = run_cli("connect", "localTimeline", "--host", f"http://{server.host_port}", *SAFETY)
    assert result.exit_code == ExitCode.CONNECT_FAILED, result.stderr
    https = f"https://{server.host_port}"
    assert f"the server redirects to {https}: use --host {https} if you trust it" in result.stderr
    assert server.connections == 1


# ----- 2. framing errors ----------------------------------------------------------------------


@pytest.mark.parametrize("bad", [frame(b"x", 0x3), frame(b"", length=1 << 62)], ids=["bad-opcode", "2^62-length"])
def test_frames_before_a_framing_error_are_written_then_the_socket_is_replaced(bad):
    def handler(conn, index):
        server.upgrade(conn)
        if index == 0:
            conn.sendall(b"".join(note_frame(n) for n in range(1, 51)) + bad)  # one write, one read
        else:
            conn.sendall(note_frame(51))
        server.hold(conn)

    with RawServer(handler) as server:
        result = run_cli("connect", "localTimeline", *plain(server), *FAST, "-n", "51", "--ndjson",
                         "--jq", ".body.body.seq", "--duration", "20s")
    assert result.exit_code == 0, result.stderr
    assert [int(line) for line in result.stdout.split()] == list(range(1, 52))
    assert "broken WebSocket framing" in result.stderr
    assert result.stderr.count("connection lost") == 1
    assert server.connections == 2


# ----- 3. a peer that does not read -----------------------------------------------------------


def test_a_peer_flooding_pings_and_never_reading_does_not_freeze_mkstream():
    # 8 MB of pings: answered one by one, their pongs would fill every socket buffer on the way.
    flooded = threading.Event()

    def handler(conn, index):
        server.upgrade(conn)
        conn.sendall(PING * (64 * 1024) + note_frame(1))
        flooded.set()
        server.hold(conn, read=False)

    with RawServer(handler, rcvbuf=4096) as server:
        proc = spawn("connect", "localTimeline", *plain(server), "--ndjson", "--jq", ".body.body.seq", *SAFETY)
        try:
            assert read_line(proc, timeout=30) == "1"
            assert flooded.is_set()
        finally:
            proc.send_signal(signal.SIGTERM)  # the goodbye cannot be read: leaving must stay bounded
            _, err = finish(proc)
    assert proc.returncode == ExitCode.SIGTERM, err


def test_a_send_the_server_never_reads_makes_the_socket_dead():
    def handler(conn, index):
        server.upgrade(conn)
        if index == 0:
            # Never read; keep the read side lively with pings, so only the stuck send tells.
            while not server.stopping.is_set() and server.connections == 1:
                conn.sendall(PING)
                server.stopping.wait(0.05)
        else:
            conn.sendall(note_frame(1))
            server.hold(conn)

    body = json.dumps({"id": "x" * (8 << 20), "length": 1})  # more than the loopback buffers hold
    with RawServer(handler, rcvbuf=4096) as server:
        result = run_cli("send", "queueStats", "requestLog", body, *plain(server), *FAST, "--ping-timeout", "1",
                         "-n", "1", "--ndjson", "--duration", "30s")
    assert result.exit_code == 0, result.stderr[-2000:]
    assert json.loads(result.stdout)["body"]["body"] == {"seq": 1}
    assert "has not read" in result.stderr and result.stderr.count("connection lost") == 1


# ----- 4. time limits while connecting ------------------------------------------------------


def test_connect_timeout_bounds_the_whole_handshake_not_each_read():
    outcome: dict[str, int | None] = {}
    ended = threading.Event()

    def handler(conn, index):
        server.read_head(conn)
        conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\n")
        line = b"X-Slow: a\r\n"
        outcome["bytes"] = None
        for n in range(400):  # 20 s of one byte every 50 ms, never a pause as long as the timeout
            conn.sendall(line[n % len(line):n % len(line) + 1])
            if wait_until_closed(conn, 0.05):
                outcome["bytes"] = n
                break
        ended.set()

    with RawServer(handler) as server:
        result = run_cli("connect", "localTimeline", *plain(server), "--connect-timeout", "1", *SAFETY)
    assert result.exit_code == ExitCode.CONNECT_FAILED, result.stderr
    assert "timed out" in result.stderr and "--connect-timeout" in result.stderr
    assert ended.wait(30)
    assert outcome["bytes"] is not None  # mkstream gave up before the server ran out of bytes


def test_duration_ends_a_run_still_retrying_its_first_connection():
    proc = spawn("connect", "localTimeline", "--host", f"ws://127.0.0.1:{closed_port()}", "--duration", "1",
                 "--max-retries", "20")
    _, err = finish(proc)
    # A run that never connected did not end as asked: exit 3, said once.
    assert proc.returncode == ExitCode.CONNECT_FAILED, err
    assert err.rstrip().endswith("before the run's time limit")
    assert 2 <= err.count("could not connect") <= 5  # delays 0.5, 1, 2...: a second allows few


def test_duration_ends_a_run_inside_a_slow_connection_attempt():
    def silent(conn, index):
        server.read_head(conn)
        server.hold(conn)

    with RawServer(silent) as server:
        proc = spawn("connect", "localTimeline", *plain(server), "--duration", "1", "--connect-timeout", "60")
        _, err = finish(proc)
    assert proc.returncode == ExitCode.CONNECT_FAILED, err
    assert "before the run's time limit" in err


# ----- 5. handshake abuse ----------------------------------------------------------------------


@pytest.mark.parametrize("line", [b"X-Pad: " + b"a" * 90 + b"\r\n", b"Set-Cookie: c=" + b"b" * 90 + b"\r\n"],
                         ids=["headers", "set-cookie"])
def test_a_huge_handshake_response_is_cut_off(line):
    def handler(conn, index):
        server.read_head(conn)
        conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\n" + line * ((2 << 20) // len(line)) + b"\r\n")
        server.hold(conn)

    with RawServer(handler) as server:
        result = run_cli("connect", "localTimeline", *plain(server), *SAFETY)
    assert result.exit_code == ExitCode.CONNECT_FAILED, result.stderr
    assert "handshake response is larger than 64 KB" in result.stderr


def test_an_error_body_that_never_ends_is_not_waited_for():
    def handler(conn, index):
        server.read_head(conn)
        conn.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 20000000\r\n\r\n" + b"z" * 1024)
        server.hold(conn)

    with RawServer(handler) as server:
        result = run_cli("connect", "localTimeline", *plain(server), "--connect-timeout", "20", *SAFETY)
    assert result.exit_code == ExitCode.CONNECT_FAILED, result.stderr
    assert "HTTP 503" in result.stderr and "timed out" not in result.stderr


# ----- 6. connect errors that say what to do --------------------------------------------------


def test_tls_to_the_plain_simulator_hints_at_http(sim):
    # The simulator waits for a request line that a TLS hello never ends: the attempt times out.
    result = run_cli("connect", "localTimeline", "--host", sim.host_port, "--connect-timeout", "0.5", *SAFETY)
    assert result.exit_code == ExitCode.CONNECT_FAILED, result.stderr
    assert f"(is it a plain http server? try --host http://{sim.host_port})" in result.stderr


def test_tls_to_a_plain_http_server_that_answers_400_hints_at_http():
    def http(conn, index):
        conn.recv(4096)
        conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")

    with RawServer(http) as server:
        result = run_cli("connect", "localTimeline", "--host", server.host_port, *SAFETY)
    assert result.exit_code == ExitCode.CONNECT_FAILED, result.stderr
    assert "TLS error" in result.stderr
    assert f"(is it a plain http server? try --host http://{server.host_port})" in result.stderr


def test_a_refused_proxy_is_blamed_on_the_proxy():
    port = closed_port()
    result = run_cli("connect", "localTimeline", "--host", "http://127.0.0.2:9", "--proxy", f"http://127.0.0.1:{port}",
                     "--token", TOKEN, *SAFETY)
    assert result.exit_code == ExitCode.CONNECT_FAILED, result.stderr
    assert f"proxy 127.0.0.1:{port} refused the connection" in result.stderr
    assert TOKEN not in result.stderr


@pytest.mark.parametrize(("status", "credentials", "expected"), [
    ("407 Proxy Authentication Required", "", "wants credentials (HTTP 407 Proxy Authentication Required)"),
    ("407 Proxy Authentication Required", "user:s3cret-pw@", "rejected the credentials of user (HTTP 407 Proxy Authentication Required)"),
    ("502 Bad Gateway", "", "could not reach 127.0.0.2:9 (HTTP 502 Bad Gateway)"),
])
def test_a_proxy_that_refuses_the_tunnel_says_why(status, credentials, expected):
    def proxy(conn, index):
        server.read_head(conn)
        conn.sendall(f"HTTP/1.1 {status}\r\nProxy-Authenticate: Basic realm=\"p\"\r\nContent-Length: 0\r\n\r\n"
                     .encode())
        server.hold(conn)

    with RawServer(proxy) as server:
        result = run_cli("connect", "localTimeline", "--host", "http://127.0.0.2:9", "--token", TOKEN,
                         "--proxy", f"http://{credentials}{server.host_port}", *SAFETY)
    assert result.exit_code == ExitCode.CONNECT_FAILED, result.stderr
    assert f"proxy {server.host_port} {expected}" in result.stderr
    assert "s3cret-pw" not in result.stderr and base64.b64encode(b"user:s3cret-pw").decode() not in result.stderr
    assert TOKEN not in result.stderr


@pytest.mark.parametrize(("behaviour", "expected"), [
    ("close", "closed the connection without answering"),
    ("silent", "timed out waiting for proxy {proxy} to open the tunnel (0.5s, --connect-timeout)"),
])
def test_a_proxy_that_hangs_up_or_never_answers_is_blamed(behaviour, expected):
    def proxy(conn, index):
        server.read_head(conn)
        if behaviour == "silent":
            server.hold(conn)

    with RawServer(proxy) as server:
        result = run_cli("connect", "localTimeline", "--host", "http://127.0.0.2:9", "--connect-timeout", "0.5",
                         "--proxy", f"http://{server.host_port}", *SAFETY)
    assert result.exit_code == ExitCode.CONNECT_FAILED, result.stderr
    assert f"proxy {server.host_port}" in result.stderr
    assert expected.format(proxy=server.host_port) in result.stderr


# ----- the non-blocking paths with well-behaved peers -----------------------------------------


def test_big_frames_both_ways_over_tls(certificate):
    # Non-blocking TLS: writes that cannot finish at once, reads of many records per frame.
    cert, key = certificate
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    body = {"id": "y" * (6 << 20), "length": 1}
    with Simulator(ssl_context=context) as sim:
        def feed():
            sim.wait_for_client_frame(lambda f: f.get("type") == "channel", timeout=30)
            sim.inject_huge(10 << 20)

        feeder = in_background(feed)
        result = run_cli("send", "queueStats", "requestLog", json.dumps(body), "--host", sim.host_port,
                         "--ca-file", str(cert), "-n", "2", "--ndjson", *SAFETY)
        join_ok(feeder)
        sent = [f for f in sim.client_frames() if f.get("type") == "channel"]
    assert result.exit_code == 0, result.stderr
    answer, note = records(result)  # requestLog is answered with a statsLog
    assert answer["body"]["type"] == "statsLog" and note["body"]["type"] == "note"
    assert len(result.stdout_bytes) > 9 << 20
    assert sent[0]["body"]["body"] == body


def test_a_host_name_is_looked_up_without_blocking(sim):
    def feed():
        sim.wait_for_subscription("localTimeline")
        sim.post_note(text="by name")

    feeder = in_background(feed)
    port = sim.host_port.rsplit(":", 1)[1]
    result = run_cli("connect", "localTimeline", "--host", f"ws://localhost:{port}", "-n", "1", "--ndjson", *SAFETY)
    join_ok(feeder)
    assert result.exit_code == 0, result.stderr
    assert records(result)[0]["body"]["body"]["text"] == "by name"
