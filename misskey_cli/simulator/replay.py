"""Serving a recording (``mkstream serve --replay FILE``): the recorded frames instead of generated traffic.

A ``Playback`` runs on the engine's loop. It starts when the first client has subscribed to
something (a moment later, so that a client's connects and captures have all arrived), reads the
recording with ``recording.Reader`` and sends each frame to the clients it concerns:

- a ``channel`` frame goes to every client connection of the same channel, with the client's own
  connection id put in place of the recorded one. The recording's header (and its subscription
  lines) say which channel each recorded id was; without them an id is taken for its channel's
  name (``localTimeline``, ``localTimeline-2``). When the recording holds several connections of
  one channel, a client connection gets the one recorded with the same params, else the first.
  Params are not applied again: the recorded server already filtered;
- ``noteUpdated`` goes to the sockets that capture that note;
- ``connected`` acks are not sent again (the server acknowledges its own connects);
- everything else, broadcasts and frames that are not JSON or are binary, goes to every socket.

The server's own rules still hold: tokens and suspended accounts at the handshake, which connects
are accepted (credentials, the 32-channel cap, shareable channels), acks, pings. Without
``speed`` frames go as fast as the clients take them; with it the recorded gaps are kept, divided
by ``speed``. With ``loop`` the recording starts over at its end; without, the server stays up
and quiet.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from misskey_cli.core import protocol
from misskey_cli.core.channels import CATALOGUE
from misskey_cli.errors import UsageError
from misskey_cli.recording.reader import Reader, Section, close_inputs, open_inputs

if TYPE_CHECKING:
    from misskey_cli.simulator.engine import Engine

START_GRACE = 0.05  # seconds between the first subscription and the first frame
FAST_SLICE = 256  # frames sent between two yields to the loop when there is no pacing
BUFFER_HIGH = 1 << 20  # a client whose unsent bytes pass this is waited for (a while) before more
BUFFER_WAIT = 2.0
CHANNEL_PREFIX = b'{"type":"channel","body":{"id":"'


@dataclass(frozen=True)
class ReplayOptions:
    path: str
    speed: float | None = None  # None: as fast as the clients take them
    loop: bool = False


class Playback:
    """Plays one recording to the engine's clients; see the module docstring. Observable from any thread."""

    def __init__(self, options: ReplayOptions, warn: Callable[[str], None] | None = None) -> None:
        self.options = options
        self.warnings: list[str] = []
        self._warn = warn
        self._cond = threading.Condition()
        self.frames_read = 0  # recorded frames played (sent to whoever they concern, maybe nobody)
        self.frames_sent = 0  # frames written to sockets, one per socket
        self.unroutable = 0  # channel frames of a connection id the recording does not explain
        self.rounds = 0  # times the recording was played to its end
        self.started = False
        self.broken = False  # the recording could not be read to its end

    # -- observing (any thread) ----------------------------------------------------------------

    def warn(self, message: str) -> None:
        """A warning about the recording (a bad line), said once: every round of a --loop reads
        the same file and would say it again."""
        with self._cond:
            if message in self.warnings:
                return
            self.warnings.append(message)
        if self._warn is not None:
            self._warn(message)

    def wait_for_rounds(self, rounds: int = 1, timeout: float = 10.0) -> None:
        """Wait until the recording has been played to its end ``rounds`` times."""
        with self._cond:
            if not self._cond.wait_for(lambda: self.rounds >= rounds, timeout):
                raise TimeoutError(f"playback: {self.rounds} round(s) after {timeout:g} s, waiting for {rounds}")

    # -- playing (on the loop) -----------------------------------------------------------------

    async def run(self, engine: Engine) -> None:
        while True:
            await self._someone_listens(engine)
            await self._play_once(engine)
            with self._cond:
                self.rounds += 1
                self._cond.notify_all()
            if not self.options.loop or self.frames_read == 0 or self.broken:
                return

    async def _someone_listens(self, engine: Engine) -> None:
        """Wait for a subscribed client (a loop does not spin for nobody); the first time, a moment more."""
        first = not self.started
        while not any(s.live and (s.connections or s.captures) for s in engine._open_sockets()):
            await asyncio.sleep(0.02)
        await asyncio.sleep(START_GRACE if first else 0)
        with self._cond:
            self.started = True
            self._cond.notify_all()

    async def _play_once(self, engine: Engine) -> None:
        speed = self.options.speed
        inputs = open_inputs([self.options.path], None)
        loop = asyncio.get_running_loop()
        anchor: tuple[float, float] | None = None
        section_number = -1
        try:
            for batch in Reader(inputs, self.warn).batches():
                section = batch.section
                if section.number != section_number:
                    section_number, anchor = section.number, None
                for data, binary, at in batch.items:
                    if speed is not None:
                        now = loop.time()
                        if anchor is None:
                            anchor = (now, at)
                        delay = anchor[0] + (at - anchor[1]) / speed - now
                        if delay > 0:
                            await asyncio.sleep(delay)
                    self._deliver(engine, data, binary, section)
                    if self.frames_read % FAST_SLICE == 0:
                        await self._let_clients_catch_up(engine)
        except UsageError as exc:  # input that is no recording (a line without end): said, and not played again
            self.warn(f"{exc.message}; the rest is not served")
            self.broken = True
        finally:
            close_inputs(inputs)

    async def _let_clients_catch_up(self, engine: Engine) -> None:
        """Yield to the loop (client frames, pings); wait a while for a client that lags far behind."""
        await asyncio.sleep(0)
        deadline = time.monotonic() + BUFFER_WAIT
        while time.monotonic() < deadline and any(
                s.conn.transport.get_write_buffer_size() > BUFFER_HIGH for s in engine._open_sockets() if s.live):
            await asyncio.sleep(0.005)

    def _deliver(self, engine: Engine, data: bytes, binary: bool, section: Section) -> None:
        with self._cond:
            self.frames_read += 1
        sent = 0
        decoded = None if binary else protocol.decode(data)
        if type(decoded) is protocol.Frame and decoded.kind == "channel":
            sent = self._deliver_channel(engine, data, decoded.value, section)
        elif type(decoded) is protocol.Frame and decoded.kind == "noteUpdated":
            body = decoded.value.get("body")
            note_id = body.get("id") if isinstance(body, dict) else None
            sent = sum(engine._send(s, data) for s in engine._open_sockets() if note_id in s.captures)
        elif type(decoded) is protocol.Frame and decoded.kind == "connected":
            return
        else:  # broadcasts, other types, frames that are not JSON, binary frames: to everyone
            sent = sum(engine._send(s, data, binary) for s in engine._open_sockets())
        with self._cond:
            self.frames_sent += sent

    def _deliver_channel(self, engine: Engine, data: bytes, frame: dict[str, Any], section: Section) -> int:
        body = frame.get("body")
        recorded_id = body.get("id") if isinstance(body, dict) else None
        if not isinstance(recorded_id, str):
            return 0
        channel = recorded_channel(recorded_id, section)
        if channel is None:
            with self._cond:
                self.unroutable += 1
            return 0
        sent = 0
        for sock in engine._open_sockets():
            for connection in list(sock.connections.values()):
                if connection.channel != channel or connection.inert:
                    continue
                if choose_recorded(connection.channel, connection.params, section) == recorded_id:
                    sent += engine._send(sock, with_connection_id(data, frame, recorded_id, connection.id))
        return sent


def read_frames(path: str, warn: Callable[[str], None] | None = None) -> tuple[tuple[bytes, bool], ...]:
    """Every frame of a recording or NDJSON file: ``(data, binary)`` (for ``serve --inject``)."""
    inputs = open_inputs([path], None)
    try:
        return tuple((data, binary) for batch in Reader(inputs, warn or _ignore).batches()
                     for data, binary, _ in batch.items)
    finally:
        close_inputs(inputs)


def _ignore(message: str) -> None:
    pass


def recorded_channel(recorded_id: str, section: Section) -> str | None:
    """The channel a recorded connection id was: from the recording's subscriptions, else from its name."""
    for recorded in section.subscriptions.channels:
        if recorded.id == recorded_id:
            return recorded.channel
    if recorded_id in CATALOGUE:
        return recorded_id
    base, dash, number = recorded_id.rpartition("-")
    if dash and number.isdigit() and base in CATALOGUE:
        return base
    return None


def choose_recorded(channel: str, params: dict[str, Any], section: Section) -> str | None:
    """Which recorded connection of ``channel`` a client connection with ``params`` gets: the one
    with the same params, else the first one; without subscriptions, the channel's own name."""
    candidates = [c for c in section.subscriptions.channels if c.channel == channel]
    for recorded in candidates:
        if recorded.params == params:
            return recorded.id
    if candidates:
        return candidates[0].id
    return channel


def with_connection_id(data: bytes, frame: dict[str, Any], recorded_id: str, connection_id: str) -> bytes:
    """The frame with the client's connection id in ``body.id``; the rest of the text untouched when it
    starts the way Misskey writes it, else re-encoded."""
    if recorded_id == connection_id:
        return data
    quoted = json.dumps(recorded_id, ensure_ascii=False).encode("utf-8")[1:]  # `name"`
    if data.startswith(CHANNEL_PREFIX) and data.startswith(quoted, len(CHANNEL_PREFIX)):
        rest = data[len(CHANNEL_PREFIX) + len(quoted):]
        return CHANNEL_PREFIX[:-1] + json.dumps(connection_id, ensure_ascii=False).encode("utf-8") + rest
    body = dict(frame["body"])
    body["id"] = connection_id
    return protocol.encode({**frame, "body": body}).encode("utf-8", "backslashreplace")
