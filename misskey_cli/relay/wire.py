"""The proxy's wire: an asyncio server relaying a client's HTTP requests and WebSocket streams upstream.

Bytes are relayed, not messages: after the upgrade each chunk read from one side is written to
the other as it is, and a copy goes through ``wsframes.FrameParser`` to be observed. So every frame
stays byte-identical (masks, fragments, control frames, close codes and reasons) and the server's
pings reach the client, which a WebSocket library in the middle would answer itself. The one
change to the upgrade request is ``Host`` (the server's) and no ``Sec-WebSocket-Extensions``, so
that no compression is negotiated and the frames can be read (Misskey does not compress anyway).

Any other request is forwarded as it came (method, target, headers but the hop-by-hop ones, body),
one request per connection (``Connection: close`` both ways), and the answer relayed as it came.
When the server cannot be reached the client gets what a server that is down gives: a 502 for a
request or an upgrade, a dropped connection for an open stream; the observer hears of it too.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import parse_qsl, urlsplit

from misskey_cli.net.dial import Failed
from misskey_cli.net.endpoint import Endpoint, Proxy, hostname_of
from misskey_cli.net.transport import describe_network_error
from misskey_cli.net.wsframes import FrameParser, FramingError, ResponseHead

MAX_HEAD = 64 * 1024
MAX_BODY = 16 * 1024 * 1024
CHUNK = 64 * 1024
CLOSE_GRACE = 5.0  # after one side of a stream ends, how long the other may take to end too
TICK = 0.1

# Headers that describe one hop, not the message (RFC 9110 7.6.1): not forwarded.
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-connection", "proxy-authenticate", "proxy-authorization",
                        "te", "trailer", "transfer-encoding", "upgrade"})


class Observer(Protocol):
    """Who hears what the relay sees; called on the loop's thread, in order."""

    def opened(self, conn: int, token: str | None) -> None: ...

    def message(self, conn: int, side: str, opcode: int, payload: bytes, at: float) -> None: ...

    def api(self, conn: int, call: ApiCall, at: float) -> None: ...

    def closed(self, conn: int) -> None: ...

    def notice(self, message: str) -> None: ...

    def tick(self, now: float) -> None: ...


@dataclass(frozen=True)
class Upstream:
    """The server relayed to; ``tls`` is set for https/wss."""

    endpoint: Endpoint
    tls: ssl.SSLContext | None
    connect_timeout: float = 10.0
    proxy: Proxy | None = None  # reached through it: an http CONNECT tunnel, or SOCKS

    @property
    def host_port(self) -> tuple[str, int]:
        host = hostname_of(self.endpoint)
        netloc = self.endpoint.netloc
        port_text = netloc.rsplit("]", 1)[-1].rpartition(":")[2] if ":" in netloc.rsplit("]", 1)[-1] else ""
        return host, int(port_text) if port_text else (443 if self.tls is not None else 80)


@dataclass
class ApiCall:
    method: str
    path: str
    status: int
    ms: float
    request_body: bytes = b""
    response_body: bytes = b""
    response_type: str = ""
    token: str | None = None  # the request's ?i= or Authorization token, for the records to hide


@dataclass
class Request:
    method: str
    target: str
    version: str
    headers: list[tuple[str, str]]

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name), None)

    @property
    def is_upgrade(self) -> bool:
        return "websocket" in (self.header("upgrade") or "").lower()

    @property
    def token(self) -> str | None:
        """The access token the request carries: ``?i=`` or ``Authorization: Bearer``."""
        query = dict(parse_qsl(urlsplit(self.target).query))
        auth = self.header("authorization") or ""
        if auth.lower().startswith("bearer "):
            return auth[7:].strip() or None
        return query.get("i") or None

    def head(self, headers: list[tuple[str, str]]) -> bytes:
        lines = [f"{self.method} {self.target} {self.version}", *(f"{k}: {v}" for k, v in headers), "", ""]
        return "\r\n".join(lines).encode("latin-1")


def parse_request(head: bytes) -> Request | None:
    lines = head.decode("latin-1").rstrip("\r\n").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        return None
    headers = []
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip():
            return None
        headers.append((name, value.strip()))
    return Request(parts[0], parts[1], parts[2], headers)


def forwarded_headers(request: Request, host: str, upgrade: bool) -> list[tuple[str, str]]:
    """The request's headers as sent upstream: the server's Host; hop-by-hop ones dropped (kept for an upgrade)."""
    named = {part.strip().lower() for part in (request.header("connection") or "").split(",")}
    out = []
    for name, value in request.headers:
        low = name.lower()
        if low == "host":
            value = host
        elif upgrade and low in ("upgrade", "connection"):
            pass
        elif (upgrade and low == "sec-websocket-extensions") or low in HOP_BY_HOP or (low in named and not upgrade):
            continue  # no compression on a relayed stream: its frames must stay readable
        out.append((name, value))
    if request.header("host") is None:
        out.insert(0, ("Host", host))
    if not upgrade:
        out.append(("Connection", "close"))
    return out


def bad_gateway(why: str) -> bytes:
    body = f"mkstream proxy: the server cannot be reached: {why}\n".encode()
    return (b"HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\n"
            b"Connection: close\r\n\r\n%s" % (len(body), body))


def dechunk(data: bytes) -> bytes:
    """The body of a chunked message (what is whole of it)."""
    out, pos = bytearray(), 0
    while True:
        end = data.find(b"\r\n", pos)
        if end < 0:
            break
        try:
            size = int(data[pos:end].split(b";")[0], 16)
        except ValueError:
            break
        if size == 0:
            break
        out += data[end + 2:end + 2 + size]
        pos = end + 2 + size + 2
    return bytes(out)


class BodyTooLarge(ValueError):
    """A request body past MAX_BODY."""


async def read_chunked(reader: asyncio.StreamReader, limit: int) -> bytes:
    """A chunked request body (RFC 9112 7.1), de-chunked; its trailer fields are read and left.

    Raises ValueError when the framing is broken, BodyTooLarge past ``limit`` bytes.
    """
    try:
        return await _read_chunks(reader, limit)
    except asyncio.LimitOverrunError:
        raise ValueError("a chunk line is too long") from None


async def _read_chunks(reader: asyncio.StreamReader, limit: int) -> bytes:
    body = bytearray()
    while True:
        line = await reader.readuntil(b"\r\n")
        size_text = line[:-2].split(b";", 1)[0].strip()
        if not size_text or len(size_text) > 16 or not all(c in b"0123456789abcdefABCDEF" for c in size_text):
            raise ValueError("bad chunk size")
        size = int(size_text, 16)
        if size == 0:
            break
        if len(body) + size > limit:
            raise BodyTooLarge(f"the body is over {limit} bytes")
        body += await reader.readexactly(size)
        if await reader.readexactly(2) != b"\r\n":
            raise ValueError("a chunk does not end with CRLF")
    trailer = 0
    while (line := await reader.readuntil(b"\r\n")) != b"\r\n":
        trailer += len(line)  # a trailer field: metadata of this hop's message, not forwarded
        if trailer > MAX_HEAD:
            raise ValueError("the trailer fields are too long")
    return bytes(body)


class Relay:
    """Accepts clients and relays each of them; every connection gets the next number, from 1."""

    def __init__(self, upstream: Upstream, observer: Observer, keep_bodies: bool = False) -> None:
        self.upstream = upstream
        self.observer = observer
        self.keep_bodies = keep_bodies
        self.count = 0
        self.tasks: set[asyncio.Task[None]] = set()

    async def start(self, host: str, port: int) -> asyncio.Server:
        return await asyncio.start_server(self._accepted, host, port, limit=MAX_HEAD)

    async def ticking(self) -> None:
        while True:
            await asyncio.sleep(TICK)
            self.observer.tick(time.time())

    async def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.count += 1
        conn = self.count
        task = asyncio.current_task()
        if task is not None:
            self.tasks.add(task)
        try:
            await self._serve(conn, reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, OSError):
            pass  # the client went away: nothing to relay any more
        except asyncio.CancelledError:
            pass  # the proxy is ending with the client still connected (asyncio's own callback would log a traceback)
        finally:
            writer.close()
            if task is not None:
                self.tasks.discard(task)

    async def _serve(self, conn: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            writer.write(_bare(431, "Request Header Fields Too Large"))
            return
        request = parse_request(head)
        if request is None:
            writer.write(_bare(400, "Bad Request"))
            return
        if request.is_upgrade:
            await self._stream(conn, request, reader, writer)
        else:
            await self._http(conn, request, reader, writer)

    async def _dial(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.wait_for(self._open(), self.upstream.connect_timeout)

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        host, port = self.upstream.host_port
        tls, proxy = self.upstream.tls, self.upstream.proxy
        name = host if tls else None
        if proxy is None:
            return await asyncio.open_connection(host, port, ssl=tls, server_hostname=name, limit=MAX_HEAD)
        # The tunnel (CONNECT or SOCKS) is the one every connection of mkstream's makes, blocking, in a thread.
        from misskey_cli.net.transport import connect_through, socks_connect

        connect = connect_through if proxy.kind == "http" else socks_connect
        sock = await asyncio.to_thread(connect, proxy, host, port, self.upstream.connect_timeout)
        return await asyncio.open_connection(sock=sock, ssl=tls, server_hostname=name, limit=MAX_HEAD)

    async def _dial_or_502(self, conn: int, what: str, writer: asyncio.StreamWriter
                           ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        try:
            return await self._dial()
        except (OSError, TimeoutError, ssl.SSLError, ValueError, asyncio.IncompleteReadError,
                asyncio.LimitOverrunError, Failed) as exc:
            why = exc.reason if isinstance(exc, Failed) else describe_network_error(exc)
            self.observer.notice(f"#{conn}: cannot reach {self.upstream.endpoint.netloc} for {what}: {why}; "
                                 "answered 502")
            writer.write(bad_gateway(why))
            return None

    # ----- HTTP -------------------------------------------------------------------------------

    async def _http(self, conn: int, request: Request, reader: asyncio.StreamReader,
                    writer: asyncio.StreamWriter) -> None:
        chunked = "chunked" in (request.header("transfer-encoding") or "").lower()
        length_text = (request.header("content-length") or "0").strip()
        length = int(length_text) if length_text.isascii() and length_text.isdigit() else -1
        if not chunked and not 0 <= length <= MAX_BODY:
            writer.write(_bare(413, "Content Too Large") if length > MAX_BODY else _bare(400, "Bad Request"))
            return
        if (length or chunked) and "100-continue" in (request.header("expect") or "").lower():
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")  # the body is read here, before the server sees the head
            request.headers = [(k, v) for k, v in request.headers if k.lower() != "expect"]
        if chunked:
            # Read whole (bounded like any body) and sent on with its length: the server and the
            # records see one body, whatever chunks the client cut it in.
            try:
                body = await read_chunked(reader, MAX_BODY)
            except ValueError as exc:
                writer.write(_bare(413, "Content Too Large") if isinstance(exc, BodyTooLarge)
                             else _bare(400, "Bad Request"))
                return
            request.headers = [(k, v) for k, v in request.headers if k.lower() != "content-length"]
            request.headers.append(("Content-Length", str(len(body))))
        else:
            body = await reader.readexactly(length) if length else b""
        started = time.monotonic()
        path = urlsplit(request.target).path
        dialed = await self._dial_or_502(conn, f"{request.method} {path}", writer)
        if dialed is None:
            self.observer.api(conn, ApiCall(request.method, path, 502, _ms(started), body, token=request.token),
                              time.time())
            return
        up_reader, up_writer = dialed
        try:
            up_writer.write(request.head(forwarded_headers(request, self.upstream.endpoint.netloc, False)) + body)
            await up_writer.drain()
            status, response_type, response_body, last = await self._relay_answer(up_reader, writer)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
            why = describe_network_error(exc) if isinstance(exc, OSError) else "the server's answer is not HTTP"
            self.observer.notice(f"#{conn}: {request.method} {path}: {why}; answered 502")
            writer.write(bad_gateway(why))
            self.observer.api(conn, ApiCall(request.method, path, 502, _ms(started), body, token=request.token),
                              time.time())
            return
        finally:
            up_writer.close()
        # Observed before the answer's last bytes go out: when the client has its answer, the call is a record.
        self.observer.api(conn, ApiCall(request.method, path, status, _ms(started), body, response_body, response_type,
                                          request.token),
                          time.time())
        writer.write(last)

    async def _relay_answer(self, up_reader: asyncio.StreamReader,
                            writer: asyncio.StreamWriter) -> tuple[int, str, bytes, bytes]:
        """Relay the server's answer (head with ``Connection: close``, then the body to its end) but for its
        last bytes, which are returned: (status, content type, body kept, the last bytes)."""
        head = await up_reader.readuntil(b"\r\n\r\n")
        parsed = ResponseHead.parse(head)
        lines = head.decode("latin-1").rstrip("\r\n").split("\r\n")
        kept = [line for line in lines[1:]
                if line.partition(":")[0].strip().lower() not in ("connection", "keep-alive")]
        held = "\r\n".join([lines[0], *kept, "Connection: close", "", ""]).encode("latin-1")
        kept_body = bytearray()
        while data := await up_reader.read(CHUNK):
            writer.write(held)
            held = data
            if self.keep_bodies and len(kept_body) < MAX_BODY:
                kept_body += data
            await writer.drain()
        body = bytes(kept_body)
        if "chunked" in parsed.headers.get("transfer-encoding", "").lower():
            body = dechunk(body)
        return parsed.status, parsed.headers.get("content-type", ""), body, held

    # ----- WebSocket --------------------------------------------------------------------------

    async def _stream(self, conn: int, request: Request, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> None:
        path = urlsplit(request.target).path
        dialed = await self._dial_or_502(conn, f"the stream {path}", writer)
        if dialed is None:
            return
        up_reader, up_writer = dialed
        try:
            up_writer.write(request.head(forwarded_headers(request, self.upstream.endpoint.netloc, True)))
            await up_writer.drain()
            head = await up_reader.readuntil(b"\r\n\r\n")
            status = ResponseHead.parse(head).status
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
            why = describe_network_error(exc) if isinstance(exc, OSError) else "the server's answer is not HTTP"
            self.observer.notice(f"#{conn}: the upgrade to {path} failed: {why}; answered 502")
            writer.write(bad_gateway(why))
            up_writer.close()
            return
        writer.write(head)
        if status != 101:
            self.observer.notice(f"#{conn}: the server refused the stream with HTTP {status}")
            with contextlib.suppress(OSError, asyncio.IncompleteReadError):
                while data := await up_reader.read(CHUNK):
                    writer.write(data)
            up_writer.close()
            return
        self.observer.opened(conn, request.token)
        ended: dict[str, bool] = {}
        pumps = [asyncio.ensure_future(self._pump(conn, "client", reader, up_writer, ended)),
                 asyncio.ensure_future(self._pump(conn, "server", up_reader, writer, ended))]
        try:
            _, pending = await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            if pending:
                await asyncio.wait(pending, timeout=CLOSE_GRACE)
        finally:
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            up_writer.close()
            if next(iter(ended), None) == "server" and not ended["server"]:
                self.observer.notice(f"#{conn}: the server dropped the stream without a close frame; "
                                     "dropped the client's too")
            self.observer.closed(conn)

    async def _pump(self, conn: int, side: str, source: asyncio.StreamReader, sink: asyncio.StreamWriter,
                    ended: dict[str, bool]) -> None:
        """Copy one direction of a stream, observing its frames; ``ended[side]``: whether a close frame passed."""
        parser: FrameParser | None = FrameParser()
        closed = False
        try:
            while data := await source.read(CHUNK):
                sink.write(data)
                if parser is not None:
                    try:
                        messages = parser.feed(data)
                    except FramingError as exc:
                        messages = exc.messages
                        parser = None
                        self.observer.notice(f"#{conn}: cannot follow the {side}'s frames any more ({exc}); "
                                             "still relaying them")
                    at = time.time()
                    for opcode, payload in messages:
                        closed = closed or opcode == 0x8
                        self.observer.message(conn, side, opcode, payload, at)
                await sink.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            ended.setdefault(side, closed)
            with contextlib.suppress(OSError, RuntimeError):
                if sink.can_write_eof():
                    sink.write_eof()
                else:
                    sink.close()


def _bare(status: int, phrase: str) -> bytes:
    return f"HTTP/1.1 {status} {phrase}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode()


def _ms(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 1)
