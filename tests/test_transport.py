"""TLS (wss with --ca-file / --insecure), proxies, and the URL forms, against real sockets."""

from __future__ import annotations

import contextlib
import re
import socket
import threading
from urllib.parse import urlsplit

import pytest
from helpers import SAFETY, in_background, join_ok, records, run_cli

from misskey_cli.errors import ConnectFailed, ExitCode
from misskey_cli.net.api import ApiClient
from misskey_cli.net.endpoint import parse_proxy
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
    """A minimal HTTP CONNECT proxy on loopback that records where it was asked to go.

    ``routes`` maps a host name to the loopback address it stands for here, so a test can name a
    server that has no DNS entry: only the proxy ever resolves it.
    """

    def __init__(self, routes=None):
        self.routes = routes or {}
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
        upstream = socket.create_connection((self.routes.get(host, host), int(port)))
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
        with client, socket.create_connection((self.routes.get(parts.hostname, parts.hostname), parts.port)) as upstream:
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


# ----- the socket, the HTTP API and the doctor take one proxy, one way --------------------------------

AGREE = ("--ack-timeout", "0.3", "--connect-timeout", "5")


@pytest.fixture
def no_dns(monkeypatch):
    """A name lookup of anything but an address or localhost fails here instead of leaving the machine:
    the made-up host names below must only ever reach the proxy."""
    real = socket.getaddrinfo

    def lookup(host, *args, **kwargs):
        if host not in (None, "localhost") and not re.fullmatch(r"[\d.]+|[\da-fA-F:]+", str(host)):
            raise socket.gaierror(socket.EAI_NONAME, f"no DNS in this test: {host}")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", lookup)


def tunnels(proxy):
    return [request for request in proxy.requests if request.startswith("CONNECT ")]


def forwarded(proxy):
    return [request for request in proxy.requests if not request.startswith("CONNECT ")]


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_a_no_proxy_suffix_sends_the_socket_the_api_and_the_doctor_the_same_way(scheme, no_dns, monkeypatch,
                                                                                 certificate):
    # example.com ends with "ample.com" but is not in .ample.com: every connection takes the proxy.
    # (websocket-client's own rule let the socket go direct while the API took the proxy.)
    cert, key = certificate
    context = None
    if scheme == "https":
        import ssl

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
    with Simulator(ssl_context=context) as sim:
        proxy = ForwardProxy(routes={"example.com": "127.0.0.1"})
        try:
            monkeypatch.setenv(f"{scheme}_proxy", f"http://127.0.0.1:{proxy.port}")
            monkeypatch.setenv("no_proxy", ".ample.com")
            host = f"{scheme}://example.com:{sim.port}"
            tls = ("--insecure",) if scheme == "https" else ()
            # First the stream (its note is posted once it subscribes: before the doctor's check does).
            streamed = stream_one_note(sim, "--host", host, *tls)
            assert streamed.exit_code == 0 and records(streamed), streamed.stderr
            assert tunnels(proxy) == [f"CONNECT example.com:{sim.port} HTTP/1.1\r\nHost: example.com:{sim.port}"]
            result = run_cli("doctor", *AGREE, "--host", host, *tls, "--token", "tok-alice")
            assert result.exit_code == 0, result.stdout + result.stderr
            assert f"(from {scheme}_proxy)" in result.stdout
            # The doctor's own walk and its stream check each open a tunnel to example.com...
            assert all(t.startswith(f"CONNECT example.com:{sim.port} ") for t in tunnels(proxy))
            # ...and the HTTP API (nodeinfo, meta, i) goes through the proxy as well: tunnelled for
            # https, forwarded in absolute form for http.
            api_calls = (tunnels(proxy)[3:] if scheme == "https" else
                         [r for r in forwarded(proxy) if f"http://example.com:{sim.port}/" in r.split("\r\n")[0]])
            assert len(api_calls) >= 3, proxy.requests
        finally:
            proxy.close()


def test_a_no_proxy_entry_sends_the_socket_the_api_and_the_doctor_direct(no_dns, monkeypatch):
    with Simulator(host="127.0.0.2") as sim:
        proxy = ForwardProxy()
        try:
            monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{proxy.port}")
            monkeypatch.setenv("no_proxy", "127.0.0.0/8")
            streamed = stream_one_note(sim, "--host", f"http://{sim.host_port}")
            assert streamed.exit_code == 0 and records(streamed), streamed.stderr
            result = run_cli("doctor", *AGREE, "--host", f"http://{sim.host_port}", "--token", "tok-alice")
            assert result.exit_code == 0, result.stdout + result.stderr
            assert "no_proxy names 127.0.0.2" in result.stdout
            assert proxy.requests == []
            assert sim.sockets_opened == 2
        finally:
            proxy.close()


@pytest.mark.parametrize("given", ["environment", "option"])
def test_a_user_without_a_password_is_sent_alike_by_the_socket_the_api_and_the_doctor(given, sim, monkeypatch):
    proxy = ForwardProxy()
    try:
        url = f"http://user@127.0.0.1:{proxy.port}"
        option = ("--proxy", url) if given == "option" else ()
        if given == "environment":
            monkeypatch.setenv("http_proxy", url)
        streamed = stream_one_note(sim, "--host", f"http://{sim.host_port}", *option)
        assert streamed.exit_code == 0 and records(streamed), streamed.stderr
        result = run_cli("doctor", *AGREE, "--host", f"http://{sim.host_port}", "--token", "tok-alice", *option)
        assert result.exit_code == 0, result.stdout + result.stderr
        # RFC 7617: user-id ":" password, the colon there even when the password is empty.
        expected = "Proxy-Authorization: Basic dXNlcjo="  # base64("user:")
        assert len(tunnels(proxy)) == 3  # the stream, the doctor's walk, its stream check
        assert len(forwarded(proxy)) >= 3  # the doctor's nodeinfo, meta and i
        assert all(expected in request.split("\r\n") for request in proxy.requests), proxy.requests
    finally:
        proxy.close()


class CredentialsWantedProxy(ConnectProxy):
    """Answers every CONNECT with 407, as a proxy that wants a user and password does."""

    def _answer(self, client, head):
        with client:
            client.sendall(b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n")


def _free_port():
    with socket.create_server(("127.0.0.1", 0)) as listener:
        return listener.getsockname()[1]


def _reasons(host, proxy_url):
    """Why the socket (``mkstream connect``) and the HTTP API each failed, without their prefixes."""
    result = run_cli("connect", "localTimeline", "--host", host, "--proxy", proxy_url, "--no-reconnect", *SAFETY)
    assert result.exit_code == ExitCode.CONNECT_FAILED, result.stderr
    socket_reason = result.stderr.strip().splitlines()[-1].split("/streaming: ", 1)[1]
    with pytest.raises(ConnectFailed) as failed:
        ApiClient(host, None, proxy=parse_proxy(proxy_url), retries=0).call("meta")
    api_reason = failed.value.message.split("(meta): ", 1)[1]
    return socket_reason, api_reason


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_the_socket_and_the_api_word_an_unreachable_proxy_alike(scheme):
    port = _free_port()
    socket_reason, api_reason = _reasons(f"{scheme}://127.0.0.2:9", f"http://127.0.0.1:{port}")
    assert socket_reason == api_reason == f"proxy 127.0.0.1:{port} refused the connection"


def test_the_socket_and_the_api_word_a_proxy_wanting_credentials_alike():
    proxy = CredentialsWantedProxy()
    try:
        socket_reason, api_reason = _reasons("https://127.0.0.2:9", f"http://127.0.0.1:{proxy.port}")
    finally:
        proxy.close()
    assert socket_reason == api_reason
    assert socket_reason.startswith(f"proxy 127.0.0.1:{proxy.port} wants credentials (HTTP 407 Proxy Authentication")
