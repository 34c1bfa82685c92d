"""What a Misskey server makes of one relayed socket's traffic: the proxy's warnings. Pure.

A ``SocketWatch`` follows one client's socket frame by frame, both ways, and says in words what
the server will do with it that the client probably does not expect: a connect past the 32 a
socket holds (the server ignores it without a word), a channel the catalogue does not know,
params of the wrong type, a channel that needs a login on an anonymous socket, a message or a
disconnect for an id never connected, a note captured twice or still captured when its timeline
is disconnected, ``sr`` (which marks the note as read), a connect that asked for ``pong`` and was
never acknowledged, a server ping the client did not answer. Time is given, never read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from misskey_cli.core.channels import CATALOGUE, SpecError, check_connection, check_param_json
from misskey_cli.core.protocol import CLIENT_TYPE_ALIASES, MAX_CHANNELS_PER_SOCKET


@dataclass
class SocketWatch:
    """One socket's state as the server sees it; each method returns the warnings the step earns."""

    logged_in: bool
    ack_timeout: float = 5.0
    connections: dict[str, str] = field(default_factory=dict)  # connection id -> channel
    accepted: set[str] = field(default_factory=set)  # the ids the server holds (the 32 count these)
    captures: set[str] = field(default_factory=set)
    awaiting_ack: dict[str, tuple[str, float]] = field(default_factory=dict)  # id -> (channel, sent at)
    ping_since: float | None = None  # a server ping the client has not answered yet, since then

    def channel_of(self, connection_id: str) -> str | None:
        return self.connections.get(connection_id)

    # ----- what the client sends --------------------------------------------------------------

    def client_frame(self, frame: Any, at: float) -> list[str]:
        if type(frame) is not dict or not isinstance(frame.get("type"), str):
            return ["the client sent a frame that is not a {\"type\", \"body\"} object: the server ignores it"]
        kind, body = frame["type"], frame.get("body")
        if kind == "sr":
            warnings = ["the client sent sr: the server marks the note as read for the user as well as capturing it"]
        else:
            warnings = []
        kind = CLIENT_TYPE_ALIASES.get(kind, kind)
        if not isinstance(body, dict):
            return [*warnings, f"the client sent {frame['type']} without a body object: the server ignores it"]
        if kind == "connect":
            warnings += self._connect(body, at)
        elif kind == "disconnect":
            warnings += self._disconnect(body)
        elif kind == "channel":
            cid = body.get("id")
            if not isinstance(cid, str) or cid not in self.connections:
                warnings.append(f"a channel message for id {cid!r}, which was never connected on this socket: "
                                "the server drops it")
        elif kind == "subNote":
            note = body.get("id")
            if isinstance(note, str):
                if note in self.captures:
                    warnings.append(f"note {note} is captured twice on this socket: the server sends its events once")
                self.captures.add(note)
        elif kind == "unsubNote":
            self.captures.discard(str(body.get("id")))
        return warnings

    def _connect(self, body: dict[str, Any], at: float) -> list[str]:
        channel, cid, params = body.get("channel"), body.get("id"), body.get("params")
        if not isinstance(channel, str) or not isinstance(cid, str):
            return ["a connect without a channel name and an id (strings): the server ignores it"]
        params = params if isinstance(params, dict) else {}
        warnings = []
        known = CATALOGUE.get(channel)
        held = [self.connections[c] for c in self.accepted if c != cid]
        if known is not None and known.shareable and channel in held:
            warnings.append(f"connect {channel} (id {cid}): {channel} can be connected once per socket and already "
                            "is: the server ignores this one")
        elif known is not None and (self.logged_in or not known.needs_login):
            if len(held) >= MAX_CHANNELS_PER_SOCKET:
                warnings.append(f"connect {channel} (id {cid}) would be channel {len(held) + 1} on this socket: "
                                f"the server ignores connects past {MAX_CHANNELS_PER_SOCKET}, without a word")
            else:
                self.accepted.add(cid)
        for key, value in params.items():
            try:
                check_param_json(channel, key, value)
            except SpecError as exc:
                warnings.append(f"connect {channel} (id {cid}): {exc}")
        try:
            found = check_connection(channel, params, self.logged_in)
        except SpecError as exc:
            found = [str(exc)]
        warnings += [f"connect {channel} (id {cid}): {w.replace('no token is set', 'this socket has no token')}"
                     for w in found]
        if cid in self.connections:
            warnings.append(f"connect {channel} reuses id {cid}, already connected to {self.connections[cid]}")
        self.connections[cid] = channel
        if body.get("pong") is True:
            self.awaiting_ack[cid] = (channel, at)
        return warnings

    def _disconnect(self, body: dict[str, Any]) -> list[str]:
        cid = body.get("id")
        if not isinstance(cid, str) or cid not in self.connections:
            return [f"disconnect of id {cid!r}, which was never connected on this socket: the server ignores it"]
        channel = self.connections.pop(cid)
        self.accepted.discard(cid)
        self.awaiting_ack.pop(cid, None)
        warnings = []
        if self.captures and CATALOGUE.get(channel) is not None and "note" in CATALOGUE[channel].events \
                and not any("note" in CATALOGUE[c].events for c in self.connections.values() if c in CATALOGUE):
            held = ", ".join(sorted(self.captures))
            warnings.append(f"{channel} (id {cid}) disconnected with note(s) still captured: {held} "
                            "(never released with unsubNote)")
        return warnings

    def client_pong(self) -> None:
        self.ping_since = None

    # ----- what the server sends --------------------------------------------------------------

    def server_frame(self, frame: Any) -> None:
        if type(frame) is dict and frame.get("type") == "connected":
            body = frame.get("body")
            if isinstance(body, dict):
                self.awaiting_ack.pop(str(body.get("id")), None)

    def server_ping(self, at: float) -> list[str]:
        """A ping from the server; the previous one, if still unanswered, is a warning."""
        warnings = self._unanswered()
        self.ping_since = at
        return warnings

    def _unanswered(self) -> list[str]:
        if self.ping_since is None:
            return []
        self.ping_since = None
        return ["the client did not answer the server's ping: Misskey closes sockets that stop answering"]

    # ----- time -------------------------------------------------------------------------------

    def tick(self, now: float) -> list[str]:
        """Warnings that time brings: connects unacknowledged, a ping unanswered, for ``ack_timeout``."""
        warnings = []
        for cid, (channel, sent) in list(self.awaiting_ack.items()):
            if now - sent >= self.ack_timeout:
                del self.awaiting_ack[cid]
                warnings.append(f"connect {channel} (id {cid}) asked for pong and was not acknowledged within "
                                f"{self.ack_timeout:g}s: the server ignored it")
        if self.ping_since is not None and now - self.ping_since >= self.ack_timeout:
            warnings += self._unanswered()
        return warnings

    def closed(self) -> list[str]:
        """What is left unexplained when the socket ends."""
        return [f"connect {channel} (id {cid}) asked for pong and was never acknowledged: the server ignored it"
                for cid, (channel, _) in self.awaiting_ack.items()]
