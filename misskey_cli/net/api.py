"""The Misskey HTTP API client (docs/protocol.md §9), for backfill, login and diagnosis.

Owns one request at a time to ``POST {base}/api/{endpoint}`` (JSON body, the token as ``i`` in
it) or a ``GET`` of a JSON document (nodeinfo), and the turning of every failure into the
project's exceptions: an HTTP error answer is an ``ApiError`` carrying the Misskey error object
(401 exits like a rejected token, 403 like a forbidden account), a connection that cannot be
made is ``ConnectFailed`` with a one-line reason like the socket's. 429 and 5xx answers are
retried a few times, honouring ``Retry-After`` (bounded); redirects are never followed, only
reported; answers are size-bounded; the token never appears in a message.

Standard library only (``http.client``): the API must go through the same proxy and TLS context
as the WebSocket, and ``transport`` decides both for the two of them (the proxy's ``CONNECT``
tunnel too; for a plain-http server the request goes to the proxy in absolute form, with the same
credentials); a second HTTP library would bring its own proxy and certificate rules to keep in
line, which is not worth a dependency.
"""

from __future__ import annotations

import http.client
import json
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

from misskey_cli.core.safetext import escape_controls
from misskey_cli.errors import ConnectFailed, ExitCode, MkstreamError, UsageError
from misskey_cli.net.dial import Failed, host_port
from misskey_cli.net.endpoint import Proxy, Redactor
from misskey_cli.net.transport import (
    connect_through,
    describe_network_error,
    proxy_authorization,
    proxy_unreachable,
    tls_context,
)

MAX_RESPONSE = 32 * 1024 * 1024
MAX_ERROR_BODY = 64 * 1024
MAX_RETRY_WAIT = 60.0  # seconds: one Retry-After, and all the waiting of one call


def http_base_url(scheme: str, netloc: str) -> str:
    """The HTTP API's base URL for a streaming endpoint's scheme and netloc (ws -> http, wss -> https)."""
    http_scheme = {"ws": "http", "wss": "https", "http": "http", "https": "https"}.get(scheme.lower())
    if http_scheme is None:
        raise UsageError(f"bad scheme {scheme!r}: expected ws, wss, http or https")
    return f"{http_scheme}://{netloc}"


class ApiError(MkstreamError):
    """An HTTP error answer; ``code``/``server_message``/``kind``/``info`` are Misskey's error object."""

    def __init__(self, status: int, code: str | None, message: str, kind: str | None = None, info: Any = None,
                 retry_after: float | None = None, *, summary: str | None = None) -> None:
        super().__init__(summary or f"HTTP {status}{f' {code}' if code else ''}: {message}")
        self.status = status
        self.code = code
        self.server_message = message
        self.kind = kind
        self.info = info
        self.retry_after = retry_after
        if status == 401:
            self.exit_code = ExitCode.TOKEN_REJECTED
        elif status == 403:
            self.exit_code = ExitCode.FORBIDDEN
        elif 300 <= status < 400:
            self.exit_code = ExitCode.CONNECT_FAILED

    @property
    def retryable(self) -> bool:
        return self.status == 429 or self.status >= 500


class ApiClient:
    """Calls one server's HTTP API; one connection per request (like ``Connection: close``), so calls in
    several threads do not share one (the client's own fields are only read)."""

    def __init__(self, base_url: str, token: str | None, *, ca_file: str | None = None, insecure: bool = False,
                 proxy: Proxy | None = None, timeout: float = 10.0, retries: int = 2,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UsageError(f"bad API URL {base_url!r}: expected http(s)://host[:port]")
        if proxy is not None and proxy.kind != "http":
            raise UsageError(f"the HTTP API needs an http:// proxy; a {proxy.kind} proxy works only for the stream")
        self.base_url = base_url.rstrip("/")
        self._secure = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._secure else 80)
        self._prefix = parts.path.rstrip("/")
        self._token = token
        self._redact = Redactor(token)
        self._context = tls_context(ca_file, insecure) if self._secure else None
        self._proxy = proxy
        self.timeout = timeout
        self.retries = retries
        self._sleep = sleep
        self._clock = clock

    # -- the interface ------------------------------------------------------------------------

    def call(self, endpoint: str, body: dict[str, Any] | None = None) -> Any:
        """``POST /api/{endpoint}`` with ``body`` (and the token as ``i``); the decoded JSON answer."""
        payload = dict(body or {})
        if self._token is not None:
            payload["i"] = self._token
        data = json.dumps(payload, ensure_ascii=False).encode()
        return self._request("POST", f"/api/{endpoint.strip('/')}", data, endpoint)

    def call_within(self, seconds: float, endpoint: str, body: dict[str, Any] | None = None) -> Any:
        """``call``, given up after ``seconds`` in all (``ConnectFailed``). The timeout of ``call`` bounds
        each read, so a server sending a byte at a time could hold it for ever; here the request runs
        in a daemon thread, left to end on its own when its time is up. For callers that must not
        wait long (the stream loop's lookups)."""
        outcome: list[Any] = []

        def work() -> None:
            try:
                outcome.append((True, self.call(endpoint, body)))
            except BaseException as exc:  # noqa: BLE001 - raised again in the caller's thread
                outcome.append((False, exc))

        thread = threading.Thread(target=work, name="mkstream-api", daemon=True)
        thread.start()
        thread.join(seconds)
        if not outcome:
            raise ConnectFailed(f"{self.base_url} ({endpoint}): no answer within {seconds:g}s")
        ok, value = outcome[0]
        if not ok:
            raise value
        return value

    def get_json(self, path: str) -> Any:
        """``GET path`` (``/.well-known/nodeinfo``, ``/nodeinfo/2.1``); the decoded JSON answer."""
        return self._request("GET", "/" + path.lstrip("/"), None, path)

    # -- one call, with retries ---------------------------------------------------------------

    def _request(self, method: str, path: str, data: bytes | None, what: str) -> Any:
        deadline = self._clock() + MAX_RETRY_WAIT
        attempt = 0
        while True:
            try:
                return self._once(method, path, data, what)
            except ApiError as error:
                if not error.retryable or attempt >= self.retries:
                    raise
                delay = error.retry_after if error.retry_after is not None else min(0.5 * 2 ** attempt, 8.0)
                if self._clock() + delay > deadline:
                    raise
                attempt += 1
                self._sleep(delay)

    def _once(self, method: str, path: str, data: bytes | None, what: str) -> Any:
        conn, target, headers = self._connection(self._prefix + path)
        if data is not None:
            headers["Content-Type"] = "application/json"
        try:
            try:
                conn.request(method, target, body=data, headers=headers)
                response = conn.getresponse()
                status = response.status
                limit = MAX_RESPONSE if 200 <= status < 300 else MAX_ERROR_BODY
                raw = response.read(limit + 1)
                answer_headers = {k.lower(): v for k, v in response.getheaders()}
            except (OSError, http.client.HTTPException, Failed) as exc:
                reason = describe_network_error(exc)
                raise ConnectFailed(self._redact(f"could not reach {self.base_url} ({what}): {reason}")) from None
        finally:
            conn.close()
        return self._answer(status, answer_headers, raw, what)

    def _answer(self, status: int, headers: dict[str, str], raw: bytes, what: str) -> Any:
        if 200 <= status < 300:
            if len(raw) > MAX_RESPONSE:
                raise ApiError(status, None, f"the answer is larger than {MAX_RESPONSE // 2 ** 20} MB",
                               summary=f"{what}: the answer is larger than {MAX_RESPONSE // 2 ** 20} MB")
            if not raw.strip():
                return None
            try:
                return json.loads(raw)
            except ValueError:
                raise ApiError(status, None, "not JSON",
                               summary=f"{what}: the server answered HTTP {status} with something that is not JSON"
                               ) from None
        if 300 <= status < 400:
            try:
                where = urlsplit(headers.get("location", ""))
                target = f"{where.scheme}://{where.netloc}" if where.netloc else "another page of the same server"
            except ValueError:  # an unclosed "["
                target = "a Location that is no URL"
            if not target.isprintable():  # server text never drives the terminal
                target = escape_controls(target)
            raise ApiError(status, None, f"redirected to {target}",
                           summary=self._redact(f"{what}: the server redirects to {target} (not followed: "
                                                "check the host and its scheme)"))
        raise self._error(status, headers, raw, what)

    def _error(self, status: int, headers: dict[str, str], raw: bytes, what: str) -> ApiError:
        code = kind = None
        info: Any = None
        message = _text_of(raw) or (http.client.responses.get(status, "error"))
        try:
            error = json.loads(raw).get("error")
        except (ValueError, AttributeError):
            error = None
        if isinstance(error, dict):
            code = error.get("code") if isinstance(error.get("code"), str) else None
            message = str(error.get("message") or message)
            kind = error.get("kind") if isinstance(error.get("kind"), str) else None
            info = error.get("info")
        retry_after = _retry_after(headers, info if code == "RATE_LIMIT_EXCEEDED" else None)
        message = self._redact(message)
        summary = self._redact(f"{what}: HTTP {status}{f' {code}' if code else ''}: {message}")
        return ApiError(status, code, message, kind, info, retry_after, summary=summary)

    # -- connections --------------------------------------------------------------------------

    def _connection(self, path: str) -> tuple[http.client.HTTPConnection, str, dict[str, str]]:
        """The connection to open, the request target, and headers (proxy auth for plain http)."""
        headers = {"Accept": "application/json", "User-Agent": "mkstream"}
        proxy = self._proxy
        if proxy is None:
            return self._direct(self._host, self._port), path, headers
        if self._secure:
            assert self._context is not None
            return _Tunnelled(proxy, self._host, self._port, self._context, self.timeout), path, headers
        credentials = proxy_authorization(proxy)
        if credentials is not None:
            headers["Proxy-Authorization"] = credentials
        host = f"[{self._host}]" if ":" in self._host else self._host
        return _Forwarded(proxy.host, proxy.port, timeout=self.timeout), f"http://{host}:{self._port}{path}", headers

    def _direct(self, host: str, port: int) -> http.client.HTTPConnection:
        if self._secure:
            return http.client.HTTPSConnection(host, port, timeout=self.timeout, context=self._context)
        return http.client.HTTPConnection(host, port, timeout=self.timeout)


class _Forwarded(http.client.HTTPConnection):
    """Plain HTTP to the http proxy, which forwards the request; a proxy that cannot be reached says so."""

    def connect(self) -> None:
        try:
            super().connect()
        except OSError as exc:
            raise Failed(proxy_unreachable(host_port(self.host, self.port), exc), permanent=False) from None


class _Tunnelled(http.client.HTTPSConnection):
    """HTTPS to ``host:port`` through the http proxy's tunnel, opened by ``transport`` as the socket's is."""

    def __init__(self, proxy: Proxy, host: str, port: int, context: ssl.SSLContext, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self._proxy = proxy
        self._tls = context
        self._seconds = timeout

    def connect(self) -> None:
        sock: socket.socket = connect_through(self._proxy, self.host, self.port, self._seconds)
        self.sock = self._tls.wrap_socket(sock, server_hostname=self.host)


def _retry_after(headers: dict[str, str], rate_info: Any) -> float | None:
    """Seconds to wait: ``Retry-After`` (seconds or an HTTP date, read against the server's ``Date``),
    else a RATE_LIMIT_EXCEEDED error's ``info.resetMs``; bounded to 0..MAX_RETRY_WAIT."""
    value = headers.get("retry-after", "").strip()
    seconds: float | None = None
    if re.fullmatch(r"\d+(\.\d+)?", value):
        seconds = float(value)
    elif value:
        try:
            then = parsedate_to_datetime(value).timestamp()
            now = parsedate_to_datetime(headers["date"]).timestamp() if "date" in headers else time.time()
            seconds = then - now
        except (TypeError, ValueError, KeyError):
            seconds = None
    if seconds is None and isinstance(rate_info, dict) and isinstance(rate_info.get("resetMs"), (int, float)):
        seconds = rate_info["resetMs"] / 1000
    return None if seconds is None else min(max(seconds, 0.0), MAX_RETRY_WAIT)


def _text_of(raw: bytes) -> str:
    """A one-line summary of a non-JSON error body: an HTML page's title, or its first line."""
    text = raw[:MAX_ERROR_BODY].decode("utf-8", "replace")
    title = re.search(r"<title>(.*?)</title>", text, re.IGNORECASE | re.DOTALL)
    line = title.group(1) if title else next((ln for ln in text.splitlines() if ln.strip()), "")
    line = " ".join(line.split())
    return line if len(line) <= 200 else line[:197] + "..."

