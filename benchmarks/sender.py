"""The benchmark's Misskey stand-in: a plain-socket WebSocket server that blasts pre-built frames.

``run.py`` starts it as a child process (``python benchmarks/sender.py``). It prints its port on
the first line of stdout, then one JSON line per event, and exits when its stdin closes. It does
the handshake by hand and writes unmasked text frames prepared at start-up, in chunks of 128
frames, so that sending costs a ``sendall`` of ready bytes and the sender is never the bottleneck.

Each connection says what it wants in its URL path, ``/bench/RUN/MODE/COUNT[/RATE]``:

- ``blast``: acknowledge the ``connect``, send COUNT notes as fast as the socket takes them, close
  (1000) and wait for the client to leave;
- ``hold``: the same, but stay connected after the notes (answering pings) until the client leaves;
- ``unique``: like ``hold``, but every note gets an id of its own (the pool repeats every 2,048
  notes, which ``--dedupe`` would rightly drop);
- ``paced``: send COUNT notes at RATE per second, each stamped with its send time
  (``_benchSentNs``, ``time.monotonic_ns()`` zero-padded to 20 digits, a system-wide clock on
  Linux), then close;
- ``silent``: acknowledge, then send nothing (pings are answered) until the client leaves.

Events: ``{"run": RUN, "event": "acked", "t": NS}`` when the ack is written, then
``{"run": RUN, "event": "sent", "t0": NS, "t1": NS, "cpu": S, "frames": N, "bytes": B}`` when the
notes are written (``cpu`` is this connection thread's CPU time while sending), then
``{"run": RUN, "event": "closed"}``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import struct
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import frames

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
POOL_SIZE = 2048  # distinct frames, cycled
CHUNK_FRAMES = 128  # frames per sendall (about 190 KB)

_print_lock = threading.Lock()


def emit(event: dict[str, Any]) -> None:
    with _print_lock:
        sys.stdout.write(json.dumps(event) + "\n")
        sys.stdout.flush()


@dataclass
class Pool:
    """Wire-ready frames for one connection id."""

    wires: list[bytes]
    chunks: list[bytes] = field(default_factory=list)

    @classmethod
    def build(cls, connection_id: str) -> Pool:
        wires = [frames.wire(payload) for payload in frames.note_frames(POOL_SIZE, connection_id)]
        chunks = [b"".join(wires[i:i + CHUNK_FRAMES]) for i in range(0, POOL_SIZE, CHUNK_FRAMES)]
        return cls(wires, chunks)


class Pools:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._blast: dict[str, Pool] = {}
        self._paced: dict[str, list[tuple[bytearray, int]]] = {}

    def blast(self, connection_id: str) -> Pool:
        with self._lock:
            if connection_id not in self._blast:
                self._blast[connection_id] = Pool.build(connection_id)
            return self._blast[connection_id]

    def paced(self, connection_id: str) -> list[tuple[bytearray, int]]:
        """Frames with a send-time placeholder, and the placeholder's offset in the wire bytes."""
        with self._lock:
            if connection_id not in self._paced:
                marker = f'"{frames.SENT_AT_KEY}":"'.encode()
                stamped = []
                for payload in frames.note_frames(POOL_SIZE // 4, connection_id, sent_at=True):
                    data = bytearray(frames.wire(payload))
                    stamped.append((data, data.index(marker) + len(marker)))
                self._paced[connection_id] = stamped
            return self._paced[connection_id]


class ClientReader:
    """Masked client frames from a socket, with whatever followed the handshake already buffered."""

    def __init__(self, sock: socket.socket, buffered: bytes) -> None:
        self.sock = sock
        self.buffer = bytearray(buffered)

    def _fill(self, size: int) -> bool:
        while len(self.buffer) < size:
            chunk = self.sock.recv(65536)
            if not chunk:
                return False
            self.buffer += chunk
        return True

    def next(self) -> tuple[int, bytes] | None:
        """(opcode, payload) of the next frame, or None at EOF."""
        if not self._fill(2):
            return None
        first, second = self.buffer[0], self.buffer[1]
        opcode, masked, size = first & 0x0F, second & 0x80, second & 0x7F
        offset = 2
        if size == 126:
            if not self._fill(4):
                return None
            size = struct.unpack_from("!H", self.buffer, 2)[0]
            offset = 4
        elif size == 127:
            if not self._fill(10):
                return None
            size = struct.unpack_from("!Q", self.buffer, 2)[0]
            offset = 10
        key = b""
        if masked:
            if not self._fill(offset + 4):
                return None
            key = bytes(self.buffer[offset:offset + 4])
            offset += 4
        if not self._fill(offset + size):
            return None
        payload = bytes(self.buffer[offset:offset + size])
        del self.buffer[:offset + size]
        if key:
            mask = (key * (size // 4 + 1))[:size]
            payload = (int.from_bytes(payload, "little") ^ int.from_bytes(mask, "little")).to_bytes(size, "little")
        return opcode, payload


def handshake(sock: socket.socket) -> tuple[str, bytes] | None:
    """Answer the HTTP upgrade by hand; returns the request path and any bytes read past it."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk or len(data) > 65536:
            return None
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    path = lines[0].split(" ")[1] if len(lines[0].split(" ")) >= 2 else "/"
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    key = headers.get("sec-websocket-key")
    if not key:
        sock.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        return None
    accept = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
    sock.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  f"Sec-WebSocket-Accept: {accept}\r\n\r\n").encode())
    return path, rest


def await_connect(reader: ClientReader, sock: socket.socket) -> tuple[str, bool] | None:
    """Read until the client's ``connect`` frame: (connection id, whether it asked for an ack)."""
    while True:
        frame = reader.next()
        if frame is None:
            return None
        opcode, payload = frame
        if opcode == frames.OPCODE_PING:
            sock.sendall(frames.wire(payload, frames.OPCODE_PONG))
        elif opcode == frames.OPCODE_CLOSE:
            return None
        elif opcode == frames.OPCODE_TEXT:
            try:
                message = json.loads(payload)
                if message.get("type") == "connect":
                    body = message["body"]
                    return str(body["id"]), bool(body.get("pong"))
            except (ValueError, KeyError, TypeError, AttributeError):
                continue


def linger(reader: ClientReader, sock: socket.socket, close_sent: bool, timeout: float | None) -> None:
    """Answer pings until the client closes (or leaves); then close the TCP connection."""
    sock.settimeout(timeout)
    try:
        while True:
            frame = reader.next()
            if frame is None:
                return
            opcode, payload = frame
            if opcode == frames.OPCODE_PING:
                sock.sendall(frames.wire(payload, frames.OPCODE_PONG))
            elif opcode == frames.OPCODE_CLOSE:
                if not close_sent:
                    sock.sendall(frames.wire(payload[:2] or frames.close_payload(), frames.OPCODE_CLOSE))
                return
    except OSError:
        return


def send_blast(sock: socket.socket, pool: Pool, count: int) -> int:
    full, rest = divmod(count, CHUNK_FRAMES)
    sent = 0
    for i in range(full):
        chunk = pool.chunks[i % len(pool.chunks)]
        sock.sendall(chunk)
        sent += len(chunk)
    if rest:
        tail = b"".join(pool.wires[:rest])
        sock.sendall(tail)
        sent += len(tail)
    return sent


NOTE_ID_AT = b'"type":"note","body":{"id":"'


def send_unique(sock: socket.socket, pool: Pool, count: int) -> int:
    offsets = [wire.index(NOTE_ID_AT) + len(NOTE_ID_AT) for wire in pool.wires]
    width = pool.wires[0].index(b'"', offsets[0]) - offsets[0]
    sent, batch = 0, []
    for i in range(count):
        n = i % len(pool.wires)
        data = bytearray(pool.wires[n])
        data[offsets[n]:offsets[n] + width] = b"%0*d" % (width, i)  # same length: the frame header still holds
        batch.append(data)
        if len(batch) == CHUNK_FRAMES or i == count - 1:
            chunk = b"".join(batch)
            sock.sendall(chunk)
            sent += len(chunk)
            batch = []
    return sent


def send_paced(sock: socket.socket, stamped: list[tuple[bytearray, int]], count: int, rate: float) -> int:
    start = time.monotonic()
    sent = 0
    for i in range(count):
        due = start + i / rate
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        data, offset = stamped[i % len(stamped)]
        data[offset:offset + frames.SENT_AT_WIDTH] = b"%020d" % time.monotonic_ns()
        sock.sendall(data)
        sent += len(data)
    return sent


def serve(sock: socket.socket, pools: Pools) -> None:
    run = "?"
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as Node's ws does: no Nagle delay
        shaken = handshake(sock)
        if shaken is None:
            return
        path, rest = shaken
        parts = path.strip("/").split("/")
        if len(parts) < 4 or parts[0] != "bench":
            return
        run, mode, count = parts[1], parts[2], int(parts[3])
        rate = float(parts[4]) if len(parts) > 4 else 1000.0
        reader = ClientReader(sock, rest)
        connect = await_connect(reader, sock)
        if connect is None:
            return
        connection_id, wants_ack = connect
        pool = pools.blast(connection_id)
        stamped = pools.paced(connection_id) if mode == "paced" else []
        if wants_ack:
            sock.sendall(frames.wire(frames.connected_frame(connection_id)))
        emit({"run": run, "event": "acked", "t": time.monotonic_ns()})
        if mode == "silent":
            linger(reader, sock, close_sent=False, timeout=None)
            return
        cpu0, t0 = time.thread_time(), time.monotonic_ns()
        if mode == "paced":
            sent = send_paced(sock, stamped, count, rate)
        elif mode == "unique":
            sent = send_unique(sock, pool, count)
        else:
            sent = send_blast(sock, pool, count)
        t1, cpu1 = time.monotonic_ns(), time.thread_time()
        emit({"run": run, "event": "sent", "t0": t0, "t1": t1, "cpu": cpu1 - cpu0, "frames": count, "bytes": sent})
        if mode in ("hold", "unique"):
            linger(reader, sock, close_sent=False, timeout=None)
        else:
            sock.sendall(frames.wire(frames.close_payload(1000), frames.OPCODE_CLOSE))
            linger(reader, sock, close_sent=True, timeout=10.0)
    except OSError:
        pass
    finally:
        sock.close()
        emit({"run": run, "event": "closed"})


def main() -> None:
    pools = Pools()
    pools.blast("localTimeline")  # build the common pool before anyone connects
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    emit({"event": "listening", "port": listener.getsockname()[1]})

    def watch_parent() -> None:
        sys.stdin.read()  # EOF: run.py is gone
        os._exit(0)

    threading.Thread(target=watch_parent, daemon=True).start()
    while True:
        try:
            client, _ = listener.accept()
        except OSError:
            return
        threading.Thread(target=serve, args=(client, pools), daemon=True).start()


if __name__ == "__main__":
    main()
