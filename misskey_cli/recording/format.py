"""The recording format (``--record FILE[.gz]``): what a recording is, line by line, and the
encoding of one frame. ``writer`` writes recordings, ``tee`` records a live source, ``reader``
reads them back; all three take their vocabulary from here.

A recording is NDJSON (gzip when the name ends in ``.gz``) that jq reads as it is:

- a header line, ``{"mkstream":"recording","version":1,"t":..,"started":..,"host":..,
  "channels":[{"id":..,"channel":..,"params":{..}}],"captures":[..]}``, saying what was subscribed
  (the host without the token; never the token);
- one line per frame received, with its receive time in epoch seconds: ``{"t":..,"frame":FRAME}``
  with the frame's JSON text spliced in byte for byte (not re-encoded), or, for a frame that is
  not one line of strict JSON, ``{"t":..,"text":".."}`` (UTF-8 text), ``{"t":..,"bytes":"BASE64"}``
  (a text frame that is not UTF-8), ``{"t":..,"binary":"BASE64"}`` (a binary frame);
- from ``mkstream proxy``, one line per relayed frame or API call, with its connection number and
  side: ``{"t":..,"conn":N,"from":"client"|"server","frame":FRAME}`` (or ``text``, ``bytes``,
  ``binary``, ``ping``, ``pong``, ``close``, ``api`` in place of ``frame``); without ``conn`` a line
  is a frame the recording run received, as above;
- a line whenever the subscriptions change, ``{"t":..,"event":"subscriptions","channels":[..],
  "captures":[..]}``, and after a reconnect, ``{"t":..,"event":"reconnected",..}``.

Recordings are appended to (a file may hold several, each from its header on) and flushed after
every batch of frames, gzip ones with ``Z_SYNC_FLUSH``, so a killed run keeps all it received.
Pure: no I/O here.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any, TypeGuard

from misskey_cli.core import jsoncodec

FORMAT_NAME = "recording"
VERSION = 1


# ----- what was subscribed --------------------------------------------------------------------


@dataclass(frozen=True)
class RecordedChannel:
    """A channel connection as a recording names it."""

    id: str
    channel: str
    params: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "channel": self.channel, "params": self.params}


@dataclass(frozen=True)
class Subscriptions:
    channels: tuple[RecordedChannel, ...] = ()
    captures: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"channels": [c.to_json() for c in self.channels], "captures": list(self.captures)}

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> Subscriptions:
        channels = []
        for item in value.get("channels") or ():
            if isinstance(item, dict) and isinstance(item.get("id"), str) and isinstance(item.get("channel"), str):
                params = item.get("params")
                params = params if isinstance(params, dict) else {}
                channels.append(RecordedChannel(item["id"], item["channel"], params))
        captures = tuple(c for c in value.get("captures") or () if isinstance(c, str))
        return cls(tuple(channels), captures)


def subscriptions_of(source: Any) -> Subscriptions:
    """What a frame source (a ``Session``, a replay) is subscribed to: its ``connections`` and ``captures``."""
    return Subscriptions(tuple(RecordedChannel(c.id, c.channel, dict(c.params)) for c in source.connections.values()),
                         named_captures(source))


def named_captures(source: Any) -> tuple[str, ...]:
    """The captures a user named: not those of ``--capture-seen`` (the frames say which notes they are),
    which would make a line of up to 500 ids for every note."""
    return tuple(note_id for note_id, seen in source.captures.items() if not seen)


# ----- one frame --------------------------------------------------------------------------------


def frame_line(data: bytes, binary: bool, at: float) -> bytes:
    """The recording line of one received frame."""
    if not binary and b"\n" not in data and jsoncodec.is_strict(data):
        return b'{"t":%.6f,"frame":%s}\n' % (at, data)
    if binary:
        key, value = "binary", base64.b64encode(data).decode("ascii")
    else:
        try:
            key, value = "text", data.decode("utf-8")
        except UnicodeDecodeError:
            key, value = "bytes", base64.b64encode(data).decode("ascii")
    return b'{"t":%.6f,"%s":%s}\n' % (at, key.encode(), jsoncodec.dumps(value))


def relayed_line(at: float, conn: int, side: str, key: str, value: bytes) -> bytes:
    """The recording line of a relayed frame or API call: ``value`` is the JSON text of ``key``'s value."""
    return b'{"t":%.6f,"conn":%d,"from":"%s","%s":%s}\n' % (at, conn, side.encode(), key.encode(), value)


def is_time(value: Any) -> TypeGuard[float]:
    """A plausible ``t``: epoch seconds as a JSON number (not a boolean), within about 3000 years of 1970."""
    return type(value) in (int, float) and -1e11 < value < 1e11
