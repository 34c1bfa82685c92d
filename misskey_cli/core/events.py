"""What a frame source hands the stream loop: typed events, and the frames inside them.

The live socket (``net/session.py``), a recording (``recording/``) and replay (``run/replay.py``)
are all frame sources; the stream loop (``run/stream.py``) reads these types from any of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple


@dataclass
class Connection:
    """One channel connection on the socket, identified by its connection id."""

    channel: str
    id: str
    params: dict[str, Any] = field(default_factory=dict)


class Received(NamedTuple):
    """A data frame as it came off the wire (text is not yet decoded: that is validation)."""

    data: bytes
    binary: bool
    at: float


class Frames(NamedTuple):
    """Data frames that arrived (at least one), in order."""

    items: list[Received]


class Readable(NamedTuple):
    """One of the extra file descriptors the caller asked to watch is readable."""

    fd: int


class Reconnected(NamedTuple):
    """The socket is back after a loss, every channel and capture re-sent."""

    down_since: float  # epoch seconds: when the lost socket was last known alive
    down_for: float  # seconds
    cause: str
    captures: tuple[str, ...]  # captures that were active: their events in the gap are gone


class Connected(NamedTuple):
    """The run's first connection is up, every channel and capture sent (later ones are ``Reconnected``)."""

    since: float  # epoch seconds: when the run asked for it
    waited: float  # seconds
    failures: int  # attempts that failed first (--max-retries)


class AckMissing(NamedTuple):
    """A channel connection was not acknowledged within the ack timeout."""

    connection: Connection
    others: tuple[Connection, ...]  # every other connection on the socket, to tell why


class Deadline(NamedTuple):
    """The caller's deadline passed."""


DEADLINE = Deadline()

Event = Frames | Readable | Reconnected | Connected | AckMissing | Deadline

@dataclass
class Counters:
    reconnects: int = 0
    connected_seconds: float = 0.0
