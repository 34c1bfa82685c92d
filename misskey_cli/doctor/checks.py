"""``mkstream doctor``: why nothing arrives, one check at a time, from the wire up.

The checks run in order, each one line: the proxy in use, name resolution, TCP connect (and the
proxy's tunnel), TLS (verified, and how long the certificate has left), HTTP reachability and the
server's clock (its ``Date``), nodeinfo (Misskey or which fork), ``meta`` (version, features),
the token (``i``: whose it is), the streaming handshake (101 or what came instead), and each
channel's ``connect`` with ``pong: true``: acknowledged within the ack timeout or not, and why.
A failure that makes the rest meaningless stops the run there; the exit status is that of the
first failure's kind (docs/cli.md §6: 3 connect, 4 token, 5 forbidden, 7 not acknowledged), warnings
leave it 0.

The network walk below the stream (DNS, TCP, the CONNECT tunnel, TLS, one HTTP request) is done
here step by step on one blocking connection, so each layer is seen alone; the HTTP API goes
through ``api.ApiClient`` and the stream through ``session.Session``. All three take the proxy,
its tunnel and the TLS context from ``net.transport``, as ``mkstream connect`` does, so the doctor
sees what a stream would.

Every line is redacted (the token never appears) and server text has its control characters
escaped; ``--json`` writes the same checks as one JSON document on stdout.
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import json
import re
import socket
import ssl
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from misskey_cli.core.safetext import escape_controls
from misskey_cli.doctor.forks import ServerKind
from misskey_cli.doctor.report import Printer, stdout_writer
from misskey_cli.doctor.verdict import FAIL, OK, SKIP, WARN, ChannelContext, Check, judge_channel
from misskey_cli.errors import (
    ConnectFailed,
    ExitCode,
    Forbidden,
    MkstreamError,
    TokenRejected,
    UsageError,
)
from misskey_cli.net.api import ApiClient, ApiError
from misskey_cli.net.dial import Failed
from misskey_cli.net.endpoint import Endpoint, Proxy, Redactor, Target, hostname_of
from misskey_cli.net.transport import (
    TunnelRefused,
    blocking,
    describe_network_error,
    effective_proxy,
    tls_context,
    tunnel,
)
from misskey_cli.run.settings import ConnectionRequest, Liveness, Reconnect, ServerSettings

if TYPE_CHECKING:
    from misskey_cli.output.notices import Notices
    from misskey_cli.run.app import Environment

CLOCK_SKEW_WARN = 30.0  # seconds
CERT_EXPIRY_WARN = 14  # days
MAX_BODY = 1 << 20
ACK_SLICE = 0.05  # seconds between looks at the acks: Session.next keeps waiting after an ack


@dataclass(frozen=True)
class DoctorSettings:
    server: ServerSettings
    connections: tuple[ConnectionRequest, ...] = ()  # none: localTimeline, and main with a token
    ack_timeout: float = 5.0
    connect_timeout: float = 10.0
    as_json: bool = False
    color: str = "auto"


class Stop(Exception):
    """A failure after which the next checks would say nothing new."""


# ----- the port ---------------------------------------------------------------------------------


def _port(endpoint: Endpoint) -> int:
    netloc = endpoint.netloc
    tail = netloc[netloc.index("]") + 1:] if netloc.startswith("[") else netloc
    if ":" in tail:
        return int(tail.rsplit(":", 1)[1])
    return 443 if endpoint.scheme == "wss" else 80


# ----- the run ---------------------------------------------------------------------------------


class Doctor:
    """Runs the checks in order; ``report`` is called with each as it is made."""

    def __init__(self, settings: DoctorSettings, endpoint: Endpoint, token: str | None,
                 environ: Mapping[str, str], report: Callable[[Check], None] = lambda check: None) -> None:
        self.settings = settings
        self.server = settings.server
        self.endpoint = endpoint
        self.token = token
        self.environ = environ
        self.report = report
        self.checks: list[Check] = []
        self.host = hostname_of(endpoint)
        self.port = _port(endpoint)
        self.secure = endpoint.scheme == "wss"
        self.proxy: Proxy | None = None
        self.kind = ServerKind()
        self.username: str | None = None
        self.moderator: bool | None = None
        self.policies: dict[str, Any] = {}
        self.nodeinfo_links: Any = None
        self.date: tuple[float, float] | None = None  # (server's Date, local time when it came)
        self.timeout = settings.connect_timeout

    # -- bookkeeping --------------------------------------------------------------------------

    def add(self, check: Check) -> Check:
        self.checks.append(check)
        self.report(check)
        return check

    def fail(self, name: str, title: str, found: str, fix: str | None, code: int, **details: Any) -> Stop:
        self.add(Check(name, title, FAIL, found, fix, code, details))
        return Stop()

    @property
    def exit_code(self) -> int:
        return next((check.exit_code for check in self.checks if check.status == FAIL), ExitCode.OK)

    # -- the order ----------------------------------------------------------------------------

    def run(self) -> list[Check]:
        try:
            self.check_proxy()
            if self.proxy is not None and self.proxy.kind != "http":
                self.add(Check("tcp", "network", SKIP, f"through a {self.proxy.kind} proxy only the stream is "
                                                        "checked (the HTTP API needs an http proxy)"))
            else:
                with self.walk() as sock:
                    self.check_http(sock)
                self.check_clock()
                self.check_nodeinfo()
                self.check_meta()
                self.check_token()
            self.check_stream()
        except Stop:
            pass
        return self.checks

    def check_proxy(self) -> None:
        proxy, source = effective_proxy(self.endpoint, self.server.proxy, self.environ)
        self.proxy = proxy
        if proxy is not None:
            found = f"{proxy.display} (from {source})"
            self.add(Check("proxy", "proxy", OK, found, details={"proxy": proxy.display, "source": source}))
        elif source == "no_proxy":
            self.add(Check("proxy", "proxy", OK, f"none: no_proxy names {self.host}", details={"proxy": None}))
        else:
            self.add(Check("proxy", "proxy", OK, "none (direct connection)", details={"proxy": None}))

    # -- DNS, TCP, tunnel, TLS: one connection, each layer a line -----------------------------

    @contextlib.contextmanager
    def walk(self) -> Iterator[socket.socket]:
        """The connection the HTTP check uses: resolved, connected, tunnelled, TLS'd, each reported."""
        dial_host, dial_port = (self.proxy.host, self.proxy.port) if self.proxy else (self.host, self.port)
        addresses = self.check_dns(dial_host, dial_port)
        sock = self.check_tcp(addresses, dial_host, dial_port)
        try:
            if self.proxy is not None:
                self.check_tunnel(sock)
            if self.secure:
                sock = self.check_tls(sock, addresses)
            else:
                self.check_plain()
            yield sock
        finally:
            sock.close()

    def check_dns(self, host: str, port: int) -> list[tuple[int, Any]]:
        title = "name resolution"
        who = f"the proxy {host}" if self.proxy else host
        then = f"; the proxy resolves {self.host} itself" if self.proxy else ""
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            raise self.fail("dns", title, f"{who}: no address ({reason})",
                            "check the host name for typos; is this machine online (DNS)?",
                            ExitCode.CONNECT_FAILED) from None
        addresses: list[tuple[int, Any]] = list(dict.fromkeys((int(info[0]), info[4]) for info in infos))
        shown = list(dict.fromkeys(str(address[0]) for _, address in addresses))
        if _is_ip(host):
            found = f"{who} is an IP address: nothing to resolve{then}"
        else:
            more = f" and {len(shown) - 3} more" if len(shown) > 3 else ""
            found = f"{who} -> {', '.join(shown[:3])}{more}{then}"
        self.add(Check("dns", title, OK, found, details={"host": host, "addresses": shown}))
        return addresses

    def check_tcp(self, addresses: list[tuple[int, Any]], host: str, port: int) -> socket.socket:
        title = "TCP connect"
        what = "the proxy " if self.proxy else ""
        errors = []
        for family, address in addresses:
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.settimeout(self.timeout)
            started = time.monotonic()
            try:
                sock.connect(address)
            except OSError as exc:
                sock.close()
                errors.append((address, exc))
                continue
            took = (time.monotonic() - started) * 1000
            self.add(Check("tcp", title, OK, f"connected to {what}{_address(address)} in {took:.0f} ms",
                           details={"address": _address(address), "ms": round(took, 1)}))
            return sock
        address, error = errors[-1]
        if isinstance(error, ConnectionRefusedError):
            found = f"{what}{_address(address)} refused the connection: nothing listens on port {port}"
            fix = ("start the proxy, or fix --proxy / https_proxy" if self.proxy else
                   "is the server running, and is this its port? (a bare host means https on 443; "
                   "a local Misskey is usually http://localhost:3000)")
        elif isinstance(error, (TimeoutError, socket.timeout)):
            found = f"no answer from {what}{_address(address)} within {self.timeout:g}s"
            fix = "a firewall may drop the packets, or the address is wrong; try --connect-timeout for slow links"
        else:
            found = f"cannot connect to {what}{_address(address)}: {(error.strerror or str(error)).lower()}"
            fix = "check the network path to the server"
        raise self.fail("tcp", title, found, fix, ExitCode.CONNECT_FAILED, address=_address(address))

    def check_tunnel(self, sock: socket.socket) -> None:
        assert self.proxy is not None
        title = "proxy tunnel"
        target = f"{self.host}:{self.port}" if ":" not in self.host else f"[{self.host}]:{self.port}"
        try:
            blocking(tunnel(sock, self.host, self.port, self.proxy), self.timeout)
        except TunnelRefused as exc:
            status = exc.status
            fix = ("give the proxy's user and password: --proxy http://USER:PASSWORD@HOST:PORT" if status == 407
                   else "the proxy does not let this host and port through: ask its admin, or set no_proxy")
            raise self.fail("tunnel", title, f"the proxy answered CONNECT {target} with HTTP {status} "
                            f"{escape_controls(exc.status_text)}", fix, ExitCode.CONNECT_FAILED,
                            http_status=status) from None
        except (OSError, Failed) as exc:
            raise self.fail("tunnel", title, f"the proxy did not answer CONNECT {target}: "
                            f"{describe_network_error(exc)}", "is it an HTTP proxy?", ExitCode.CONNECT_FAILED) from None
        self.add(Check("tunnel", title, OK, f"the proxy opened a tunnel to {target}"))

    def check_plain(self) -> None:
        insecure = self.token and not self.endpoint.is_loopback
        found = "plain ws:// and http://: no TLS"
        if insecure:
            self.add(Check("tls", "TLS", WARN, found + ": the token travels unencrypted",
                           f"use https:// (or a bare host) if {self.host} offers it"))
        else:
            self.add(Check("tls", "TLS", SKIP, found))

    def check_tls(self, sock: socket.socket, addresses: list[tuple[int, Any]]) -> ssl.SSLSocket:
        title = "TLS"
        server = self.server
        verified_by = f"--ca-file {server.ca_file}" if server.ca_file else "the system's CA certificates"
        try:
            tls = tls_context(server.ca_file, False).wrap_socket(sock, server_hostname=self.host)
        except ssl.SSLCertVerificationError as exc:
            sock.close()
            problem = f"certificate rejected: {escape_controls(str(exc.verify_message))}"
            if not server.insecure:
                raise self.fail("tls", title, problem + f" (checked against {verified_by})",
                                "if the server uses a private CA, --ca-file CA.pem; to skip the check (anyone on "
                                "the path could read the stream), --insecure", ExitCode.CONNECT_FAILED,
                                verified=False) from None
            tls = self._unverified(addresses, problem)
            return tls
        except (ssl.SSLError, OSError) as exc:
            sock.close()
            raise self._tls_failure(exc) from None
        cert = tls.getpeercert() or {}
        days, expires = _expiry(cert)
        subject = _name(cert.get("subject")) or self.host
        found = f"{tls.version()}, certificate for {subject} verified by {verified_by}"
        status = OK
        fix = None
        if days is not None:
            found += f", expires in {days} day{'s' if days != 1 else ''} ({expires})"
            if days < CERT_EXPIRY_WARN:
                status, fix = WARN, "renew the certificate soon (e.g. certbot renew)"
        if server.insecure:
            status, fix = WARN, "drop --insecure: the certificate verifies"
        self.add(Check("tls", title, status, found, fix, details={
            "version": tls.version(), "verified": True, "subject": subject, "days_left": days}))
        return tls

    def _unverified(self, addresses: list[tuple[int, Any]], problem: str) -> ssl.SSLSocket:
        """--insecure: the certificate failed, so connect again without checking it, and say so."""
        dial_host, dial_port = (self.proxy.host, self.proxy.port) if self.proxy else (self.host, self.port)
        sock = _quiet_connect(addresses, self.timeout)
        if sock is None:
            raise self.fail("tls", "TLS", f"cannot connect again to {dial_host}:{dial_port}", None,
                            ExitCode.CONNECT_FAILED)
        try:
            if self.proxy is not None:
                blocking(tunnel(sock, self.host, self.port, self.proxy), self.timeout)
            tls = tls_context(None, True).wrap_socket(sock, server_hostname=self.host)
        except (ssl.SSLError, OSError, Failed) as exc:
            sock.close()
            raise self._tls_failure(exc) from None
        self.add(Check("tls", "TLS", WARN, f"{tls.version()}, {problem}; accepted because of --insecure",
                       "give the server's CA with --ca-file instead: with --insecure anyone on the path can "
                       "read the stream", details={"version": tls.version(), "verified": False}))
        return tls

    def _tls_failure(self, exc: BaseException) -> Stop:
        reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or str(exc)
        fix = None
        text = f"{reason} {exc}".lower()
        if "wrong_version_number" in text or "wrong version number" in text:
            fix = f"this port speaks plain HTTP: use --host http://{self.endpoint.netloc}"
        elif "timed out" in text:
            fix = f"if this port speaks plain HTTP, use --host http://{self.endpoint.netloc}"
        return self.fail("tls", "TLS", f"the TLS handshake failed: {escape_controls(str(reason))}", fix,
                         ExitCode.CONNECT_FAILED)

    # -- HTTP ---------------------------------------------------------------------------------

    def check_http(self, sock: socket.socket) -> None:
        title = "HTTP"
        path = "/.well-known/nodeinfo"
        scheme = "https" if self.secure else "http"
        started = time.monotonic()
        try:
            status, reason, headers, body = _http_get(sock, self.endpoint.netloc, path, self.timeout)
        except (OSError, http.client.HTTPException, ValueError) as exc:
            raise self.fail("http", title, f"no HTTP answer to GET {path}: {describe_network_error(exc)}",
                            "is this port a web server? Misskey usually sits behind a reverse proxy on 443",
                            ExitCode.CONNECT_FAILED) from None
        received = time.time()
        took = (time.monotonic() - started) * 1000
        date = headers.get("date")
        if date:
            with contextlib.suppress(TypeError, ValueError, IndexError, OverflowError):
                self.date = (parsedate_to_datetime(date).timestamp(), received)
        where = f"GET {scheme}://{self.endpoint.netloc}{path}"
        details = {"http_status": status, "ms": round(took, 1)}
        if 300 <= status < 400:
            try:
                target = urlsplit(headers.get("location", ""))
                goes = f"{target.scheme}://{target.netloc}" if target.netloc else "another page of the same server"
                fix = f"use --host {escape_controls(goes)}" if target.netloc else "check the host's scheme and path"
            except ValueError:  # an unclosed "["
                goes, fix = "a Location that is no URL", "check the host's scheme and path"
            raise self.fail("http", title, f"{where}: HTTP {status}, redirected to {escape_controls(goes)}", fix,
                            ExitCode.CONNECT_FAILED, **details)
        if status >= 500:
            raise self.fail("http", title, f"{where}: HTTP {status} {escape_controls(reason)}: the web server "
                            "answers but Misskey behind it does not", "the server may be restarting: try again "
                            "in a minute", ExitCode.CONNECT_FAILED, **details)
        self.nodeinfo_links = _json_or_none(body) if status == 200 else None
        server = headers.get("server")
        by = f", server: {escape_controls(server)}" if server else ""
        self.add(Check("http", title, OK, f"{where}: HTTP {status} in {took:.0f} ms{by}", details=details))

    def check_clock(self) -> None:
        title = "clock"
        if self.date is None:
            self.add(Check("clock", title, SKIP, "the server sent no Date header"))
            return
        server_time, local_time = self.date
        # Date has whole seconds: a skew under a second cannot be seen.
        skew = server_time - local_time
        shown = abs(round(skew))
        details = {"skew_seconds": round(skew, 1)}
        if abs(skew) <= CLOCK_SKEW_WARN:
            self.add(Check("clock", title, OK, f"the server's clock is within {max(shown, 1)}s of this machine's",
                           details=details))
            return
        side = "ahead of" if skew > 0 else "behind"
        self.add(Check("clock", title, WARN, f"the server's clock is {_duration(shown)} {side} this machine's",
                       "receive times ('ts', --timestamps) are this machine's and note times the server's: "
                       "sync whichever clock is wrong (NTP)", details=details))

    def api(self, token: str | None) -> ApiClient:
        return ApiClient(self.endpoint.http_base, token, ca_file=self.server.ca_file, insecure=self.server.insecure,
                         proxy=self.proxy, timeout=self.timeout, retries=1)

    def check_nodeinfo(self) -> None:
        title = "nodeinfo"
        href = _nodeinfo_href(self.nodeinfo_links)
        if href is None:
            self.add(Check("nodeinfo", title, WARN, "no nodeinfo link at /.well-known/nodeinfo: the software is "
                           "not known, so fork differences cannot be told"))
            return
        try:
            info = self.api(None).get_json(href)
        except (ApiError, ConnectFailed) as exc:
            self.add(Check("nodeinfo", title, WARN, f"{escape_controls(href)}: {exc.message}"))
            return
        software = info.get("software") if isinstance(info, dict) else None
        name = software.get("name") if isinstance(software, dict) else None
        version = software.get("version") if isinstance(software, dict) else None
        if not isinstance(name, str):
            self.add(Check("nodeinfo", title, WARN, f"{escape_controls(href)} names no software"))
            return
        self.kind = ServerKind(name.lower(), version if isinstance(version, str) else None)
        details = {"software": self.kind.name, "version": self.kind.version}
        known = self.kind.software
        label = escape_controls(self.kind.label)
        if known is None:
            self.add(Check("nodeinfo", title, WARN, f"{label}: not Misskey nor a fork mkstream knows",
                           "the streaming API may differ: expect channels to go unacknowledged", details=details))
        elif not known.fork:
            self.add(Check("nodeinfo", title, OK, label, details=details))
        else:
            extra = [f"adds {', '.join(known.adds)}"] if known.adds else []
            extra += [f"has no {', '.join(known.lacks)}"] if known.lacks else []
            if not known.detailed:
                extra.append("its channels are not known in detail")
            self.add(Check("nodeinfo", title, OK, f"{label}, a Misskey fork ({'; '.join(extra)})", details=details))

    def check_meta(self) -> None:
        title = "meta"
        try:
            meta = self.api(None).call("meta", {"detail": True})
        except ApiError as exc:
            raise self.fail("meta", title, f"POST /api/meta: {exc.message}: this is not a Misskey API",
                            "--host must be the Misskey server itself (the address of its web page)",
                            ExitCode.CONNECT_FAILED) from None
        except ConnectFailed as exc:
            raise self.fail("meta", title, exc.message, None, ExitCode.CONNECT_FAILED) from None
        if not isinstance(meta, dict):
            raise self.fail("meta", title, "POST /api/meta did not answer an object: this is not a Misskey API",
                            None, ExitCode.CONNECT_FAILED)
        version = meta.get("version")
        raw_features = meta.get("features")
        features: dict[str, Any] = raw_features if isinstance(raw_features, dict) else {}
        if isinstance(meta.get("policies"), dict):
            self.policies = dict(meta["policies"])
        parts = [f"version {escape_controls(str(version))}"]
        named = (("localTimeline", "local timeline"), ("globalTimeline", "global timeline"), ("miauth", "MiAuth"))
        on = [label for key, label in named if features.get(key) is True]
        off = [label for key, label in named if features.get(key) is False]
        if on:
            parts.append(f"offers {', '.join(on)}")
        if off:
            parts.append(f"no {', '.join(off)}")
        self.add(Check("meta", title, OK, "; ".join(parts), details={
            "version": version, "features": {k: v for k, v in features.items() if isinstance(v, bool)}}))

    def check_token(self) -> None:
        title = "token"
        if not self.token:
            self.add(Check("token", title, OK, "none: anonymous (main, homeTimeline and other login-only channels "
                           f"need one: mkstream login {self.endpoint.netloc})", details={"user": None}))
            return
        try:
            me = self.api(self.token).call("i")
        except ApiError as exc:
            raise self._token_failure(exc) from None
        except ConnectFailed as exc:
            raise self.fail("token", title, exc.message, None, ExitCode.CONNECT_FAILED) from None
        username = me.get("username") if isinstance(me, dict) else None
        if not isinstance(username, str):
            raise self.fail("token", title, "i answered without a user", None, ExitCode.TOKEN_REJECTED)
        self.username = username
        self.moderator = bool(me.get("isModerator") or me.get("isAdmin"))
        if isinstance(me.get("policies"), dict):
            self.policies = dict(me["policies"])
        name = me.get("name")
        shown = f"@{username}" + (f" ({name})" if isinstance(name, str) and name else "")
        role = ", a moderator" if self.moderator else ""
        self.add(Check("token", title, OK, f"accepted: it belongs to {escape_controls(shown)}{role}",
                       details={"user": username, "moderator": self.moderator}))

    def _token_failure(self, exc: ApiError) -> Stop:
        title = "token"
        login = f"mkstream login {self.endpoint.netloc}"
        if exc.status == 401:
            return self.fail("token", title, f"rejected by i ({exc.message}): the server does not know it "
                             "(mistyped, revoked, or from another server)",
                             f"get a new one: {login} (or Settings > API in the web UI)", ExitCode.TOKEN_REJECTED)
        if exc.status == 403:
            if exc.code == "YOUR_ACCOUNT_SUSPENDED":
                found, fix = f"the account is suspended ({exc.message})", "ask the server's moderators"
            else:
                found = f"forbidden ({exc.message}): the token lacks read:account"
                fix = f"make one with read:account: {login} --force"
            return self.fail("token", title, found, fix, ExitCode.FORBIDDEN)
        return self.fail("token", title, f"i failed: {exc.message}", None, exc.exit_code)

    # -- the stream ---------------------------------------------------------------------------

    def connections(self) -> tuple[ConnectionRequest, ...]:
        if self.settings.connections:
            return self.settings.connections
        defaults = [ConnectionRequest("localTimeline", None)]
        if self.token:
            defaults.append(ConnectionRequest("main", None))
        return tuple(defaults)

    def check_stream(self) -> None:
        from misskey_cli.core.events import AckMissing
        from misskey_cli.net.session import Session, SessionNotices

        title = "streaming handshake"
        server = self.server
        target = Target(self.endpoint, self.token, server.auth, server.insecure, server.ca_file, self.proxy,
                        self.timeout)
        liveness = Liveness(ack_timeout=self.settings.ack_timeout, connect_timeout=self.timeout)
        session = Session(target, liveness, Reconnect(enabled=False), SessionNotices(), Redactor(self.token))
        connections = self.connections()
        ids = [session.add_connection(c.channel, c.connection_id, c.params).id for c in connections]
        try:
            try:
                self._connect(session)
            except MkstreamError as exc:
                raise self._handshake_failure(exc, target) from None
            how = " (the token in an Authorization header)" if self.token and server.auth == "header" else ""
            self.add(Check("stream", title, OK, f"HTTP 101 Switching Protocols at {target.display_url()}{how}"))
            missing: set[str] = set()
            deadline = time.monotonic() + self.settings.ack_timeout + 0.5
            try:
                while session.pending_acks and time.monotonic() < deadline:
                    event = session.next(min(deadline, time.monotonic() + ACK_SLICE), [])
                    if isinstance(event, AckMissing):
                        missing.add(event.connection.id)
            except MkstreamError as exc:
                raise self.fail("stream", "stream", f"the socket was lost while waiting for acks: {exc.message}",
                                None, ExitCode.CONNECTION_LOST) from None
            missing |= set(session.pending_acks)
            self.channel_checks(connections, ids, missing)
        finally:
            session.close()

    def _connect(self, session: Any) -> None:
        """The session's first connection, waited for (``Session.next`` makes the attempt)."""
        session.open()
        deadline = time.monotonic() + self.timeout + 1.0
        while session.wire is None:
            if time.monotonic() >= deadline:
                raise ConnectFailed(f"could not connect to {session.target.display_url()}: timed out")
            session.next(min(deadline, time.monotonic() + ACK_SLICE), [])

    def _handshake_failure(self, exc: MkstreamError, target: Target) -> Stop:
        title = "streaming handshake"
        login = f"mkstream login {self.endpoint.netloc}"
        if isinstance(exc, TokenRejected):
            found = "HTTP 401: the stream refuses the token"
            if self.username:
                found += " although the API accepts it: it lacks read:account"
            return self.fail("stream", title, found, f"get one with read:account: {login}", ExitCode.TOKEN_REJECTED,
                             http_status=401)
        if isinstance(exc, Forbidden):
            return self.fail("stream", title, "HTTP 403: the account is suspended", "ask the server's moderators",
                             ExitCode.FORBIDDEN, http_status=403)
        status_match = re.search(r"answered HTTP (\d{3})", exc.message)
        if status_match:
            status = int(status_match.group(1))
            meaning = {
                503: ("Misskey answers 503 to a request that does not ask for the upgrade: a reverse proxy in "
                      "between drops the Upgrade and Connection headers",
                      "in nginx: proxy_http_version 1.1; proxy_set_header Upgrade $http_upgrade; "
                      "proxy_set_header Connection \"upgrade\""),
                404: ("nothing at that path", "check the path of --host (the default is /streaming)"),
                400: ("the server (or a proxy) did not accept the upgrade request", None),
                502: ("the reverse proxy cannot reach Misskey", "the server may be restarting"),
            }.get(status, (f"the server did not switch to WebSocket (expected 101) at {target.display_url()}",
                           None))
            return self.fail("stream", title, f"HTTP {status} instead of 101: {meaning[0]}", meaning[1],
                             ExitCode.CONNECT_FAILED, http_status=status)
        return self.fail("stream", title, exc.message, None, exc.exit_code)

    def channel_checks(self, connections: tuple[ConnectionRequest, ...], ids: list[str], missing: set[str]) -> None:
        ctx = ChannelContext(bool(self.token), self.kind, self.username, self.moderator, self.policies,
                             self.settings.ack_timeout, self.endpoint.netloc)
        for index, (connection, cid) in enumerate(zip(connections, ids, strict=True)):
            others = [c.channel for i, c in enumerate(connections) if i != index]
            request = ConnectionRequest(connection.channel, cid, connection.params)
            self.add(judge_channel(request, cid not in missing, others, ctx))


# ----- the wire, by hand -------------------------------------------------------------------------


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _address(address: Any) -> str:
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


def _quiet_connect(addresses: list[tuple[int, Any]], timeout: float) -> socket.socket | None:
    for family, address in addresses:
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(address)
        except OSError:
            sock.close()
            continue
        return sock
    return None


def _expiry(cert: Mapping[str, Any]) -> tuple[int | None, str | None]:
    not_after = cert.get("notAfter")
    if not isinstance(not_after, str):
        return None, None
    try:
        then = ssl.cert_time_to_seconds(not_after)
    except ValueError:
        return None, None
    return int((then - time.time()) // 86400), time.strftime("%Y-%m-%d", time.gmtime(then))


def _name(rdns: Any) -> str | None:
    """The CN of a certificate subject as ``ssl.getpeercert`` gives it."""
    if not isinstance(rdns, tuple):
        return None
    for rdn in rdns:
        for key, value in rdn:
            if key == "commonName":
                return escape_controls(str(value))
    return None


def _http_get(sock: socket.socket, host: str, path: str, timeout: float) -> tuple[int, str, dict[str, str], bytes]:
    sock.settimeout(timeout)
    request = (f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: application/json\r\nUser-Agent: mkstream doctor\r\n"
               "Connection: close\r\n\r\n")
    sock.sendall(request.encode())
    response = http.client.HTTPResponse(sock, method="GET")
    try:
        response.begin()
        body = response.read(MAX_BODY)
        headers = {key.lower(): value for key, value in response.getheaders()}
        return response.status, response.reason, headers, body
    finally:
        response.close()


def _json_or_none(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None


def _nodeinfo_href(links: Any) -> str | None:
    """The path of the newest nodeinfo schema the discovery document links to (2.1, else 2.0)."""
    items = links.get("links") if isinstance(links, dict) else None
    if not isinstance(items, list):
        return None
    found: dict[str, str] = {}
    for item in items:
        if isinstance(item, dict) and isinstance(item.get("rel"), str) and isinstance(item.get("href"), str):
            found[item["rel"].rsplit("/", 1)[-1]] = item["href"]
    href = found.get("2.1") or found.get("2.0")
    if href is None:
        return None
    parts = urlsplit(href)
    return parts.path or None


def _duration(seconds: int) -> str:
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds / 3600:.1f} h"


def run(settings: DoctorSettings, env: Environment) -> int:
    """Run the doctor; returns the exit status. The report goes to stdout, errors to stderr (one line
    each: a crash too, through the runs' ``guarded``)."""
    from misskey_cli.output.notices import Notices
    from misskey_cli.run.app import guarded

    notices = Notices(env.stderr)
    return guarded(notices, lambda stack: _run(settings, env, notices, stack))


def _run(settings: DoctorSettings, env: Environment, notices: Notices, stack: contextlib.ExitStack) -> int:
    from misskey_cli.output.render import decide_color

    endpoint, token = _endpoint_and_token(settings, env, notices, stack)
    notices.redact = redact = Redactor(token)
    encoding = (getattr(sys.stdout, "encoding", None) or "").lower()
    printer = Printer(stdout_writer(env), redact, as_json=settings.as_json,
                      unicode=env.stdout_isatty and "utf" in encoding,
                      color=not settings.as_json and decide_color(settings.color, env.stdout_isatty, env.environ))
    doctor = Doctor(settings, endpoint, token, env.environ, printer.line)
    shown = Target(endpoint, token, settings.server.auth).display_url()
    printer.header(f"mkstream doctor: {shown}")
    try:
        checks = doctor.run()
    except KeyboardInterrupt:
        notices.error("interrupted")
        return ExitCode.SIGINT
    code = doctor.exit_code
    printer.summary(checks, code, shown)
    return int(code)


def _endpoint_and_token(settings: DoctorSettings, env: Environment, notices: Notices,
                        stack: contextlib.ExitStack) -> tuple[Endpoint, str | None]:
    from misskey_cli.run.app import resolve_token

    server = settings.server
    if server.demo:
        from misskey_cli.simulator import DEMO_TOKEN, Simulator

        sim = stack.enter_context(Simulator(rate=0.0))
        return Endpoint("ws", sim.host_port, "/streaming"), DEMO_TOKEN
    if server.endpoint is None:
        raise UsageError("no server given: use --host misskey.example (or set MISSKEY_HOST), a profile "
                         "(mkstream login HOST makes one), or --demo")
    return server.endpoint, resolve_token(server, env, notices)
