"""api.py, the HTTP API client, against the real simulator over loopback (TLS and proxies included)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from test_transport import ConnectProxy, ForwardProxy

from misskey_cli.errors import ConnectFailed, ExitCode, UsageError
from misskey_cli.net import api
from misskey_cli.net.api import ApiClient, ApiError, http_base_url
from misskey_cli.net.endpoint import Proxy
from misskey_cli.simulator import Simulator

TOKEN = "tok-alice"


class Sleeps(list[float]):
    """An injected sleep that records instead of waiting."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def client(sim: Simulator, token: str | None = TOKEN, **kwargs: Any) -> ApiClient:
    kwargs.setdefault("sleep", Sleeps())
    return ApiClient(sim.api_url, token, **kwargs)


def raised(call: Any) -> ApiError | ConnectFailed:
    with pytest.raises((ApiError, ConnectFailed)) as caught:
        call()
    error = caught.value
    for token in (TOKEN, "not-a-token", "tok-suspended"):
        assert token not in str(error) and token not in repr(error.args)
    assert "\n" not in str(error)
    return error


@pytest.mark.parametrize(("scheme", "url"), [
    ("ws", "http://h:1"), ("wss", "https://h:1"), ("http", "http://h:1"), ("https", "https://h:1"),
])
def test_http_base_url(scheme, url):
    assert http_base_url(scheme, "h:1") == url


def test_success(sim):
    assert client(sim).call("i")["username"] == "alice"
    assert client(sim, None).call("meta", {"detail": False})["version"] == "2026.5.1"
    assert client(sim, None).get_json("/nodeinfo/2.1")["software"]["name"] == "misskey"
    [*_, record] = sim.http_requests()
    assert record["path"] == "/nodeinfo/2.1"
    assert sim.http_requests()[0]["auth"] == "body"


def test_posted_notes_come_back(sim):
    note = sim.post_note(author="alice", text="backfill me")
    ids = [n["id"] for n in client(sim).call("notes/local-timeline", {"limit": 5})]
    assert ids[0] == note["id"] and ids == sorted(ids, reverse=True)  # the newest, then the simulator's history


@pytest.mark.parametrize(("token", "endpoint", "body", "status", "code", "exit_code"), [
    ("not-a-token", "i", {}, 401, "AUTHENTICATION_FAILED", ExitCode.TOKEN_REJECTED),
    (None, "i", {}, 401, "CREDENTIAL_REQUIRED", ExitCode.TOKEN_REJECTED),
    ("tok-suspended", "i", {}, 403, "YOUR_ACCOUNT_SUSPENDED", ExitCode.FORBIDDEN),
    (TOKEN, "notes/local-timeline", {"limit": 101}, 400, "INVALID_PARAM", ExitCode.RUNTIME_ERROR),
    (TOKEN, "no/such/endpoint", {}, 404, "UNKNOWN_API_ENDPOINT", ExitCode.RUNTIME_ERROR),
])
def test_error_answers(sim, token, endpoint, body, status, code, exit_code):
    error = raised(lambda: client(sim, token).call(endpoint, body))
    assert isinstance(error, ApiError)
    assert (error.status, error.code, error.exit_code) == (status, code, exit_code)
    assert error.kind in ("client", "permission") and error.server_message
    assert endpoint in str(error) and code in str(error)
    if code == "INVALID_PARAM":
        assert error.info == {"param": "#/properties/limit/maximum", "reason": "must be <= 100"}


def test_429_is_retried_after_retry_after_then_succeeds(sim):
    sleeps = Sleeps()
    sim.fail_next("i", 429, count=2, retry_after=7)
    assert client(sim, sleep=sleeps).call("i")["username"] == "alice"
    assert sleeps == [7.0, 7.0]
    assert [r["status"] for r in sim.http_requests()] == [429, 429, 200]


def test_429_retries_exhausted(sim):
    sleeps = Sleeps()
    sim.fail_next("i", 429, count=3, retry_after=2)
    error = raised(lambda: client(sim, sleep=sleeps, retries=2).call("i"))
    assert isinstance(error, ApiError) and error.status == 429 and error.code == "RATE_LIMIT_EXCEEDED"
    assert error.retry_after == 2.0 and sleeps == [2.0, 2.0]


def test_retry_after_is_bounded_and_so_is_the_total_wait(sim):
    sleeps = Sleeps()
    sim.fail_next("i", 429, count=1, retry_after=3600)
    error = raised(lambda: client(sim, sleep=sleeps).call("i"))  # waiting an hour is never worth it
    assert isinstance(error, ApiError) and error.retry_after == api.MAX_RETRY_WAIT and sleeps == []


def test_no_retries_means_one_attempt(sim):
    sim.fail_next("meta", 503)
    error = raised(lambda: client(sim, retries=0).call("meta"))
    assert isinstance(error, ApiError) and error.status == 503


@pytest.mark.parametrize(("status", "code", "text"), [
    (500, "INTERNAL_ERROR", "Internal error occurred"),
    (502, None, "502 Bad Gateway"),  # a proxy's HTML page: its title
])
def test_server_errors_are_retried_then_raised(sim, status, code, text):
    sleeps = Sleeps()
    sim.fail_next("*", status, count=3)
    error = raised(lambda: client(sim, sleep=sleeps).call("meta"))
    assert isinstance(error, ApiError) and (error.status, error.code) == (status, code)
    assert text in str(error) and len(sleeps) == 2
    sim.fail_next("*", status, count=1)
    assert client(sim).call("meta")["version"]  # one failure, then the retry answers


def test_connection_refused():
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    error = raised(lambda: ApiClient(f"http://127.0.0.1:{port}", TOKEN).call("i"))
    assert isinstance(error, ConnectFailed) and error.exit_code == ExitCode.CONNECT_FAILED
    assert "connection refused" in str(error)


class OneAnswerServer:
    """A loopback server that answers every request with the same raw bytes."""

    def __init__(self, answer: bytes) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.answer = answer
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data and (chunk := conn.recv(65536)):
                    data += chunk
                conn.sendall(self.answer)

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def one_answer() -> Iterator[Any]:
    servers: list[OneAnswerServer] = []

    def make(answer: bytes) -> OneAnswerServer:
        servers.append(OneAnswerServer(answer))
        return servers[-1]

    yield make
    for server in servers:
        server.close()


def test_redirects_are_reported_not_followed(one_answer):
    server = one_answer(b"HTTP/1.1 301 Moved Permanently\r\nLocation: https://elsewhere.example/api/i?i=" +
                        TOKEN.encode() + b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    error = raised(lambda: ApiClient(server.url, TOKEN).call("i"))
    assert isinstance(error, ApiError) and error.exit_code == ExitCode.CONNECT_FAILED
    assert "https://elsewhere.example" in str(error) and "/api/i" not in str(error)


def test_a_non_json_success_and_a_too_large_answer(one_answer, monkeypatch):
    server = one_answer(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello")
    error = raised(lambda: ApiClient(server.url, TOKEN).call("i"))
    assert "not JSON" in str(error)
    monkeypatch.setattr(api, "MAX_RESPONSE", 3)
    error = raised(lambda: ApiClient(server.url, TOKEN).call("i"))
    assert "larger than" in str(error)


def test_the_server_closing_without_an_answer(one_answer):
    server = one_answer(b"")
    error = raised(lambda: ApiClient(server.url, TOKEN).call("i"))
    assert isinstance(error, ConnectFailed)
    assert "without answering" in str(error) or "connection reset" in str(error)  # depends on the unread body


def test_call_within_gives_up_on_a_server_that_dribbles(sim):
    """The per-read timeout never fires on a server sending a byte at a time; call_within's bound does."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def dribble() -> None:
        conn, _ = listener.accept()
        with conn:
            for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"x" * 100_000:
                if stop.wait(0.05):
                    return
                conn.sendall(bytes([byte]))

    server = threading.Thread(target=dribble, daemon=True)
    server.start()
    try:
        slow = ApiClient(f"http://127.0.0.1:{listener.getsockname()[1]}", TOKEN, timeout=5.0)
        error = raised(lambda: slow.call_within(0.3, "users/show", {"userId": "x"}))
        assert isinstance(error, ConnectFailed) and "no answer within 0.3s" in str(error)
        assert server.is_alive()  # still sending: only the bound ended the call
    finally:
        stop.set()
        listener.close()
        server.join(10)
    assert client(sim).call_within(5.0, "meta", {"detail": False})["uri"] == sim.http_url
    error = raised(lambda: client(sim).call_within(5.0, "users/show", {"userId": "nobody"}))
    assert isinstance(error, ApiError) and error.code == "NO_SUCH_USER"  # errors come back as they are


def test_tls_is_verified_by_default(tls_sim):
    error = raised(lambda: client(tls_sim).call("i"))
    assert isinstance(error, ConnectFailed) and "TLS certificate rejected" in str(error)


def test_tls_with_a_ca_file_or_insecure(tls_sim, certificate):
    cert, _ = certificate
    assert client(tls_sim, ca_file=str(cert)).call("i")["username"] == "alice"
    assert client(tls_sim, insecure=True).call("i")["username"] == "alice"


def test_a_missing_ca_file_is_a_usage_error(tls_sim, tmp_path):
    with pytest.raises(UsageError):
        client(tls_sim, ca_file=str(tmp_path / "missing.pem"))


@pytest.fixture
def proxy() -> Iterator[ConnectProxy]:
    proxy = ConnectProxy()
    yield proxy
    proxy.close()


def test_https_through_a_connect_proxy_with_basic_auth(tls_sim, certificate, proxy):
    cert, _ = certificate
    through = client(tls_sim, ca_file=str(cert), proxy=Proxy("127.0.0.1", proxy.port, "http", ("user", "p@ss")))
    assert through.call("i")["username"] == "alice"
    [request] = proxy.requests
    assert request.startswith(f"CONNECT {tls_sim.host_port} HTTP/1.")
    assert "Proxy-Authorization: Basic dXNlcjpwQHNz" in request  # user:p@ss
    assert TOKEN not in request  # the token travels inside the tunnel only


def test_plain_http_through_a_forward_proxy(sim):
    forward = ForwardProxy()
    try:
        through = client(sim, proxy=Proxy("127.0.0.1", forward.port, "http", ("user", "pw")))
        assert through.call("i")["username"] == "alice"
        [head] = forward.requests
        assert head.startswith(f"POST http://{sim.host_port}/api/i HTTP/1.1")
        assert "Proxy-Authorization: Basic dXNlcjpwdw==" in head
    finally:
        forward.close()


def test_a_socks_proxy_is_refused_clearly(sim):
    with pytest.raises(UsageError, match="http:// proxy"):
        client(sim, proxy=Proxy("127.0.0.1", 1080, "socks5", None))


def test_the_token_never_appears_in_any_error(sim):
    secret = "s3cret-token-value"
    sim.tokens[secret] = "alice"  # a real token, so that a server error cannot be blamed on it
    sim.fail_next("*", 500, count=3)
    for call in (lambda: ApiClient(sim.api_url, secret, sleep=Sleeps()).call("i"),
                 lambda: ApiClient(sim.api_url, secret + "x").call("i"),
                 lambda: ApiClient("http://127.0.0.1:1", secret).call("i")):
        with pytest.raises((ApiError, ConnectFailed)) as caught:
            call()
        assert secret not in str(caught.value) and secret not in repr(caught.value.args)
