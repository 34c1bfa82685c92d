"""TLS (wss with --ca-file / --insecure), proxies, and the URL forms, against real sockets."""

from __future__ import annotations

import contextlib
import re
import socket
import threading
from urllib.parse import urlsplit

import pytest
from helpers import SAFETY, in_background, join_ok, records, run_cli

from misskey_cli.errors import ExitCode
from misskey_cli.simulator import Simulator


def stream_one_note(sim, *args):
    def feed():
        sim.wait_for_subscription("localTimeline")
        sim.post_note(text="over TLS")

    feeder = in_background(feed)
    result = run_cli("connect", "localTimeline", *args, "-n", "1", "--ndjson", *SAFETY)
    join_ok(feeder)
    return result


def test_self_signed_certificate_is_rejected_with_a_hint(tls_sim):
    result = run_cli("connect", "localTimeline", "--host", tls_sim.host_port, *SAFETY)
    assert result.exit_code == ExitCode.CONNECT_FAILED
    assert "TLS certificate rejected" in result.stderr and "--ca-file" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_ca_file_verifies_the_server(tls_sim, certificate):
    cert, _ = certificate
    # A bare host means wss.
    result = stream_one_note(tls_sim, "--host", tls_sim.host_port, "--ca-file", str(cert))
    assert result.exit_code == 0, result.stderr
    assert records(result)[0]["body"]["body"]["text"] == "over TLS"


def test_insecure_skips_verification(tls_sim):
    result = stream_one_note(tls_sim, "--host", f"https://{tls_sim.host_port}", "--insecure")
    assert result.exit_code == 0, result.stderr


class ConnectProxy:
    """A minimal HTTP CONNECT proxy on loopback that records where it was asked to go."""

    def __init__(self):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.requests: list[str] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._tunnel, args=(client,), daemon=True).start()

    def _tunnel(self, client):
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = client.recv(4096)
            if not chunk:
                return
            head += chunk
        self.requests.append(head.split(b"\r\n\r\n")[0].decode())
        self._answer(client, head)

    def _answer(self, client, head):
        self._connect(client, head)

    def _connect(self, client, head):
        request = head.split(b"\r\n")[0].decode()
        host, port = request.split()[1].rsplit(":", 1)
        upstream = socket.create_connection((host, int(port)))
        client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")

        def pipe(src, dst):
            try:
                while data := src.recv(65536):
                    dst.sendall(data)
            except OSError:
                pass
            finally:
                for s in (src, dst):
                    with contextlib.suppress(OSError):
                        s.shutdown(socket.SHUT_RDWR)

        threading.Thread(target=pipe, args=(upstream, client), daemon=True).start()
        pipe(client, upstream)

    def close(self):
        self.listener.close()


class ForwardProxy(ConnectProxy):
    """A ConnectProxy that also forwards plain-HTTP requests in absolute form (POST http://host/path)
    as a real HTTP proxy does: the API client uses that form for http:// servers. Proxy-* headers
    are not passed on; ``requests`` holds every head as received."""

    def _answer(self, client, head):
        if head.startswith(b"CONNECT "):
            self._connect(client, head)
            return
        header_block, _, body = head.partition(b"\r\n\r\n")
        lines = header_block.decode().split("\r\n")
        method, target, version = lines[0].split(" ")
        # The body may come in reads of its own (http.client sends it apart from the head).
        length = re.search(r"(?im)^content-length:\s*(\d+)", header_block.decode())
        while length and len(body) < int(length[1]) and (chunk := client.recv(65536)):
            body += chunk
        parts = urlsplit(target)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        kept = [line for line in lines[1:] if not line.lower().startswith("proxy-")]
        with client, socket.create_connection((parts.hostname, parts.port)) as upstream:
            upstream.sendall("\r\n".join([f"{method} {path} {version}", *kept]).encode() + b"\r\n\r\n" + body)
            while data := upstream.recv(65536):
                client.sendall(data)


@pytest.fixture
def far_sim():
    # 127.0.0.2: websocket-client never proxies localhost or 127.0.0.1 unless told otherwise.
    with Simulator(host="127.0.0.2") as sim:
        yield sim


@pytest.fixture
def proxy():
    proxy = ConnectProxy()
    yield proxy
    proxy.close()


def test_proxy_option_tunnels_the_socket(far_sim, proxy):
    result = stream_one_note(far_sim, "--host", f"http://{far_sim.host_port}",
                             "--proxy", f"http://user:p%40ss@127.0.0.1:{proxy.port}")
    assert result.exit_code == 0, result.stderr
    [request] = proxy.requests
    assert request.startswith(f"CONNECT {far_sim.host_port} HTTP/1.1")
    assert "Proxy-Authorization: Basic dXNlcjpwQHNz" in request  # user:p@ss


def test_proxy_from_the_environment(far_sim, proxy, monkeypatch):
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{proxy.port}")
    result = stream_one_note(far_sim, "--host", f"http://{far_sim.host_port}")
    assert result.exit_code == 0, result.stderr
    assert len(proxy.requests) == 1
    monkeypatch.setenv("no_proxy", "127.0.0.2")
    result = stream_one_note(far_sim, "--host", f"http://{far_sim.host_port}")
    assert result.exit_code == 0, result.stderr
    assert len(proxy.requests) == 1


def test_bad_proxy_is_a_usage_error(sim):
    result = run_cli("connect", "localTimeline", "--host", sim.host_port, "--proxy", "ftp://x:1", *SAFETY)
    assert result.exit_code == ExitCode.USAGE and "bad proxy" in result.stderr
    assert sim.sockets_opened == 0


def test_url_path_is_kept_for_prefixing_proxies(sim):
    result = stream_one_note(sim, "--host", f"ws://{sim.host_port}/some/prefix/streaming")
    assert result.exit_code == 0, result.stderr
    assert sim.handshakes[0]["path"] == "/some/prefix/streaming"
