"""``--format line`` for what ``mkstream proxy`` relays: who sent it, on which connection, to which channel.

A relayed record (``{"conn": N, "from": "client"|"server", "frame": ...}``, or ``text``, ``binary``,
``ping``, ``pong``, ``close``, ``api`` in place of ``frame``) becomes ``#N -> ...`` (from the client)
or ``#N <- ...`` (from the server). The client's messages are written here (``connect
localTimeline (id 5a2) {withFiles}``, ``subNote 9xyz``); the server's frames are
``LineFormatter``'s lines with the connection id replaced by the channel's name, which this view
learns from the client's connects on each connection. Any other value is ``LineFormatter``'s.
Pure apart from that memory; every string from the wire is escaped.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from misskey_cli.core.protocol import CLIENT_TYPE_ALIASES
from misskey_cli.core.safetext import escape_controls
from misskey_cli.output.cells import fit
from misskey_cli.output.lineformat import LineFormatter
from misskey_cli.output.notecontext import NoteContext

ARROWS = {"client": "->", "server": "<-"}
MAX_REMEMBERED = 4096
MAX_NARROWER = 16


def _json(value: Any) -> str:
    return escape_controls(json.dumps(value, ensure_ascii=False, separators=(",", ":")))


def _params(params: Any) -> str:
    """``{withFiles, listId=9abc}``: a true flag by its name, anything else as key=JSON."""
    if not isinstance(params, dict) or not params:
        return ""
    parts = [escape_controls(str(k)) if v is True else f"{escape_controls(str(k))}={_json(v)}"
             for k, v in params.items()]
    return " {" + ", ".join(parts) + "}"


def is_relayed(value: Any) -> bool:
    return type(value) is dict and "conn" in value and type(value.get("from")) is str and value["from"] in ARROWS


class RelayLines:
    """Lines for relayed records; ``format(value, received_at)`` like ``LineFormatter.format``."""

    def __init__(self, *, width: int | None, color: bool, show_cw: bool = False, timestamps: bool = False,
                 context: NoteContext | None = None) -> None:
        # One memory of notes and users for every inner formatter (whose noteUpdated lines name them).
        self.make = functools.partial(LineFormatter, color=color, show_cw=show_cw, timestamps=timestamps,
                                      context=context or NoteContext())
        # The time stamps, the server's lines when nothing is cut, and anything that is not a relayed record
        # (a replayed recording of mkstream's own), which gets the whole width, as it would elsewhere.
        self.inner = self.plain = self.make(width=width)
        self.narrower: dict[int, LineFormatter] = {}  # the server's lines, by the columns "#N <- " takes
        self.channels: dict[tuple[str, str], str] = {}  # (conn, connection id) -> channel
        self.width = width

    def resize(self, width: int | None) -> None:
        """Fit later lines to ``width`` columns (a resize): the narrower inner formatters are made again."""
        self.width = width
        self.plain.resize(width)
        self.narrower.clear()

    def format(self, value: Any, received_at: float) -> str:
        if not is_relayed(value):
            return self.plain.format(value, received_at)
        conn = _json(value["conn"])  # the key of its connection ids: any JSON a hand-made file holds
        lead = f"#{conn} {ARROWS[value['from']]} "
        if "frame" in value:
            if value["from"] == "client":
                stamp = self.inner._stamp(received_at)  # the inner lines' own time form
                return self._fit(f"{stamp} {lead}{self._client(conn, value['frame'])}")
            return self._prefixed(lead, self._server(conn, value["frame"]), received_at)
        stamp = self.inner._stamp(received_at)  # the inner lines' own time form
        return self._fit(f"{stamp} {lead}{self._other(value)}")

    def _fit(self, line: str) -> str:
        """A line of this view's own (no colours in it) cut to the width, as the inner lines are."""
        return line if self.width is None else fit(line, self.width)

    def _prefixed(self, lead: str, frame: Any, received_at: float) -> str:
        inner = self.inner
        if self.width is not None:
            if len(self.narrower) > MAX_NARROWER:  # a hand-made file with connection "numbers" of every length
                self.narrower.clear()
            inner = self.narrower.get(len(lead)) or self.narrower.setdefault(
                len(lead), self.make(width=max(1, self.width - len(lead))))
        stamp, _, rest = inner.format(frame, received_at).partition(" ")
        return f"{stamp} {lead}{rest}"

    def _name(self, conn: str, cid: Any) -> str:
        channel = self.channels.get((conn, str(cid)))
        return f"{escape_controls(channel)} (id {escape_controls(str(cid))})" if channel else f"id {_json(cid)}"

    def _client(self, conn: str, frame: Any) -> str:
        body = frame.get("body") if type(frame) is dict else None
        kind = frame.get("type") if type(frame) is dict else None
        if not isinstance(kind, str) or not isinstance(body, dict):
            return _json(frame)
        kind_text = escape_controls(kind)
        canonical = CLIENT_TYPE_ALIASES.get(kind, kind)
        if canonical == "connect":
            channel, cid = body.get("channel"), body.get("id")
            if isinstance(channel, str) and isinstance(cid, str):
                if len(self.channels) >= MAX_REMEMBERED:
                    self.channels.clear()
                self.channels[(conn, cid)] = channel
            return f"connect {self._name(conn, cid)}{_params(body.get('params'))}{' pong' if body.get('pong') else ''}"
        if canonical == "disconnect":
            return f"disconnect {self._name(conn, body.get('id'))}"
        if canonical == "channel":
            inner = body.get("body")
            return (f"{kind_text} {self._name(conn, body.get('id'))} {escape_controls(str(body.get('type')))}"
                    f"{'' if inner in (None, {}) else ' ' + _json(inner)}")
        if canonical in ("subNote", "unsubNote"):
            return f"{kind_text} {escape_controls(str(body.get('id')))}"
        return _json(frame)

    def _server(self, conn: str, frame: Any) -> Any:
        """The frame with its connection id replaced by the channel's name, for the inner line."""
        if type(frame) is not dict or frame.get("type") not in ("channel", "connected"):
            return frame
        body = frame.get("body")
        if not isinstance(body, dict):
            return frame
        channel = self.channels.get((conn, str(body.get("id"))))
        if channel is None:
            return frame
        return {**frame, "body": {**body, "id": channel}}

    def _other(self, value: dict[str, Any]) -> str:
        if "close" in value:
            close = value["close"]
            if isinstance(close, dict):
                reason = close.get("reason")
                return f"close {_json(close.get('code'))}{' ' + _json(reason) if reason else ''}"
        if "api" in value and isinstance(value["api"], dict):
            api = value["api"]
            return (f"{escape_controls(str(api.get('method')))} {escape_controls(str(api.get('endpoint')))} "
                    f"{_json(api.get('status'))} ({_json(api.get('ms'))} ms)")
        for key in ("ping", "pong"):
            if key in value:
                return key if not value[key] else f"{key} {_json(value[key])}"
        for key in ("text", "bytes", "binary"):
            if key in value:
                return f"{key} {_json(value[key])}"
        return _json({k: v for k, v in value.items() if k not in ("conn", "from")})
