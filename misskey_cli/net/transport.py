"""How mkstream reaches a server: which proxy, which TLS context, the proxy's tunnel, and the words for a failure.

One answer for every connection mkstream makes, so they cannot drift apart: the socket
(``net.session``), the HTTP API (``net.api``, for backfill and login) and ``mkstream doctor``'s
walk down the wire all ask here.

- The proxy: ``--proxy``, else ``https_proxy`` (wss) or ``http_proxy`` (ws), either case, unless
  ``no_proxy`` names the host (``*``, the name, a domain and its subdomains with or without a
  leading dot, or an IP network). Decided once per run (``effective_proxy``); what it returns is
  what every connection of that run uses.
- The TLS context: the system's CA certificates, or ``--ca-file`` as the only CA, or with
  ``--insecure`` nothing verified.
- The tunnel: an http proxy's ``CONNECT host:port`` with Basic credentials ``user:password`` (RFC
  7617: the colon is there even when the password is empty), read with a bounded head, a refusal
  worded for the user; a SOCKS proxy through python-socks.
- The one-line reason a connection failed (``describe_network_error``).

The tunnel is written as ``dial``'s generator steps so that the socket's event loop drives it
without blocking; ``blocking`` runs the same steps on a blocking socket for the API and the doctor.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import http.client
import ipaddress
import select
import socket
import ssl
from collections.abc import Generator, Mapping
from typing import TypeVar

from misskey_cli.core.safetext import escape_controls
from misskey_cli.errors import UsageError
from misskey_cli.net.dial import Ended, Failed, Wait, host_port, read_head, send_all
from misskey_cli.net.endpoint import Endpoint, Proxy, hostname_of, parse_proxy

T = TypeVar("T")

# ----- the proxy -------------------------------------------------------------------------------


def no_proxy_matches(hostname: str, no_proxy: str) -> bool:
    """Whether ``no_proxy`` names the host: ``*``, the name, a domain suffix, or an IP network."""
    entries = [entry for entry in no_proxy.replace(" ", "").split(",") if entry]
    if "*" in entries or hostname in entries:
        return True
    try:
        address = ipaddress.ip_address(hostname)
    except ValueError:
        address = None
    for entry in entries:
        if address is not None:
            with contextlib.suppress(ValueError):
                if address in ipaddress.ip_network(entry, strict=False):
                    return True
            continue
        domain = entry.lstrip(".")
        if hostname == domain or hostname.endswith("." + domain):
            return True
    return False


def effective_proxy(endpoint: Endpoint, explicit: Proxy | None,
                    environ: Mapping[str, str]) -> tuple[Proxy | None, str]:
    """The proxy every connection to ``endpoint`` goes through, and where it comes from
    (``--proxy``, ``$https_proxy``..., or ``no_proxy`` when that names the host)."""
    hostname = hostname_of(endpoint)
    no_proxy = environ.get("no_proxy", environ.get("NO_PROXY", ""))
    if no_proxy and no_proxy_matches(hostname, no_proxy):
        return None, "no_proxy"
    if explicit is not None:
        return explicit, "--proxy"
    key = "https_proxy" if endpoint.scheme == "wss" else "http_proxy"
    for name in (key, key.upper()):
        value = environ.get(name, "").replace(" ", "")
        if value:
            return parse_proxy(value), name
    return None, ""


def proxy_authorization(proxy: Proxy) -> str | None:
    """The ``Proxy-Authorization`` value for an http proxy's credentials, or None without them."""
    if proxy.auth is None:
        return None
    user, password = proxy.auth
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


# ----- TLS -------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def tls_context(ca_file: str | None, insecure: bool) -> ssl.SSLContext:
    """The standard library's default context: ``ca_file`` as the only CA, or verifying nothing."""
    try:
        context = ssl.create_default_context(cafile=None if insecure else ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise UsageError(f"cannot use the CA file {ca_file}: {describe_network_error(exc)}") from None
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


# ----- the tunnel ------------------------------------------------------------------------------


class TunnelRefused(Failed):
    """The http proxy answered ``CONNECT`` with a status other than 2xx."""

    def __init__(self, reason: str, permanent: bool, status: int, status_text: str) -> None:
        super().__init__(reason, permanent)
        self.status = status
        self.status_text = status_text


def tunnel(sock: socket.socket, host: str, port: int, proxy: Proxy) -> Generator[Wait, None, None]:
    """Ask the http proxy ``sock`` is connected to for a tunnel to ``host:port``; raises when it refuses."""
    where = host_port(host, port)
    shown = host_port(proxy.host, proxy.port)
    request = f"CONNECT {where} HTTP/1.1\r\nHost: {where}\r\n"
    credentials = proxy_authorization(proxy)
    if credentials is not None:
        request += f"Proxy-Authorization: {credentials}\r\n"
    yield from send_all(sock, (request + "\r\n").encode())
    try:
        head, _ = yield from read_head(sock, f"proxy {shown}'s answer", exact=True)
    except Ended:
        raise Failed(f"proxy {shown} closed the connection without answering", permanent=False) from None
    if 200 <= head.status < 300:
        return
    status = f"HTTP {head.status}{' ' + escape_controls(head.reason[:60]) if head.reason else ''}"
    user = escape_controls(proxy.auth[0]) if proxy.auth else ""
    if head.status == 407 and proxy.auth:
        reason, permanent = f"proxy {shown} rejected the credentials of {user} ({status})", True
    elif head.status == 407:
        reason = f"proxy {shown} wants credentials ({status}): give them as --proxy http://USER:PASSWORD@{shown}"
        permanent = True
    else:
        reason, permanent = f"proxy {shown} could not reach {where} ({status})", False
    raise TunnelRefused(reason, permanent, head.status, head.reason)


def socks_connect(proxy: Proxy, host: str, port: int, timeout: float) -> socket.socket:
    """A TCP connection to ``host:port`` through a SOCKS proxy (blocking: the socket runs it in a thread)."""
    from python_socks import ProxyError, ProxyTimeoutError, ProxyType
    from python_socks.sync import Proxy as SocksProxy

    kind, remote_dns = {"socks4": (ProxyType.SOCKS4, False), "socks4a": (ProxyType.SOCKS4, True),
                        "socks5": (ProxyType.SOCKS5, False), "socks5h": (ProxyType.SOCKS5, True)}[proxy.kind]
    user, password = proxy.auth or (None, None)
    shown = host_port(proxy.host, proxy.port)
    try:
        client = SocksProxy.create(proxy_type=kind, host=proxy.host, port=proxy.port, username=user,
                                   password=password, rdns=remote_dns)
        return client.connect(host, port, timeout=timeout)  # type: ignore[no-any-return]
    except ProxyTimeoutError:
        raise Failed(f"SOCKS proxy {shown} timed out", permanent=False) from None
    except ProxyError as exc:  # its messages name the proxy's reply, never the password
        raise Failed(f"SOCKS proxy {shown}: {exc}", permanent=True) from None
    except OSError as exc:
        raise Failed(f"SOCKS proxy {shown}: {describe_network_error(exc)}", permanent=False) from None


def blocking(steps: Generator[Wait, None, T], timeout: float | None) -> T:
    """Run ``dial``-style steps to the end, waiting up to ``timeout`` each time they wait for a socket."""
    try:
        while True:
            fd, for_write = next(steps)
            readable, writable, _ = select.select([] if for_write else [fd], [fd] if for_write else [], [], timeout)
            if not readable and not writable:
                raise TimeoutError("timed out")
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    finally:
        steps.close()


def connect_through(proxy: Proxy, host: str, port: int, timeout: float) -> socket.socket:
    """A blocking TCP connection to ``host:port`` through an http proxy's tunnel (for the HTTP API)."""
    try:
        sock = socket.create_connection((proxy.host, proxy.port), timeout=timeout)
    except OSError as exc:
        raise Failed(proxy_unreachable(host_port(proxy.host, proxy.port), exc), permanent=False) from None
    try:
        blocking(tunnel(sock, host, port, proxy), timeout)
    except BaseException:
        sock.close()
        raise
    return sock


# ----- the words -------------------------------------------------------------------------------


def proxy_unreachable(shown: str, exc: BaseException) -> str:
    """Why the proxy itself (``host:port``) could not be reached."""
    if isinstance(exc, socket.gaierror):
        return f"unknown proxy host {shown} (DNS lookup failed)"
    if isinstance(exc, ConnectionRefusedError):
        return f"proxy {shown} refused the connection"
    return f"cannot reach proxy {shown}: {describe_network_error(exc)}"


def describe_network_error(exc: BaseException) -> str:
    """The one-line reason a connection failed, worded the same for the socket, the HTTP API and the doctor."""
    if isinstance(exc, Failed):
        return exc.reason
    if isinstance(exc, socket.gaierror):
        return "unknown host (DNS lookup failed)"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (is the server running?)"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate rejected: {exc.verify_message} (use --ca-file or --insecure)"
    if isinstance(exc, ssl.SSLError):
        return f"TLS error: {exc.reason or exc}"
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "timed out"
    if isinstance(exc, ConnectionResetError):
        return "connection reset by the server"
    if isinstance(exc, (http.client.RemoteDisconnected, Ended)):
        return "the server closed the connection without answering"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    text = str(exc).strip() or type(exc).__name__
    return escape_controls(text.splitlines()[0])
