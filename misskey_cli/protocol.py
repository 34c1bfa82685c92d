"""Frames of the Misskey streaming protocol (PROTOCOL.md section 3): builders and parsers.

Pure functions, shared by the client (``session.py``) and the simulator. A frame is one JSON text
``{"type": ..., "body": ...}``; builders return the text to send, parsers take the text received.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

# Aliases a server accepts for client message types (PROTOCOL.md 3.1).
CLIENT_TYPE_ALIASES = {"ch": "channel", "s": "subNote", "sr": "subNote", "un": "unsubNote"}

MAX_CHANNELS_PER_SOCKET = 32


def encode(frame: dict[str, Any]) -> str:
    """Compact JSON, non-ASCII left as is (what Misskey itself sends)."""
    return json.dumps(frame, ensure_ascii=False, separators=(",", ":"))


def connect_frame(channel: str, connection_id: str, params: dict[str, Any] | None, pong: bool = True) -> str:
    body: dict[str, Any] = {"channel": channel, "id": connection_id}
    if params:
        body["params"] = params
    if pong:
        body["pong"] = True
    return encode({"type": "connect", "body": body})


def disconnect_frame(connection_id: str) -> str:
    return encode({"type": "disconnect", "body": {"id": connection_id}})


def channel_message_frame(connection_id: str, message_type: str, body: Any) -> str:
    # The server drops a channel message without a body: send {} for "nothing" (PROTOCOL.md 3.1).
    return encode({"type": "channel", "body": {"id": connection_id, "type": message_type, "body": body}})


def sub_note_frame(note_id: str) -> str:
    return encode({"type": "subNote", "body": {"id": note_id}})


def unsub_note_frame(note_id: str) -> str:
    return encode({"type": "unsubNote", "body": {"id": note_id}})


class BadFrame(ValueError):
    """A received frame that is not a JSON object with a string ``type``."""


@dataclass(frozen=True)
class ClientMessage:
    """A client frame as the server understands it, aliases resolved."""

    type: str
    body: Any


def parse_client_frame(text: str) -> ClientMessage:
    """Parse what a client sent; raises BadFrame where a server would silently ignore it."""
    try:
        frame = json.loads(text)
    except ValueError as exc:
        raise BadFrame(f"not JSON ({exc.args[0]})") from None
    problem = describe_shape_problem(frame)
    if problem is not None:
        raise BadFrame(problem)
    kind = CLIENT_TYPE_ALIASES.get(frame["type"]) or frame["type"]
    return ClientMessage(kind, frame.get("body"))


def ack_id(frame: Any) -> str | None:
    """The connection id a ``connected`` frame acknowledges, or None for any other frame."""
    if isinstance(frame, dict) and frame.get("type") == "connected":
        body = frame.get("body")
        if isinstance(body, dict) and isinstance(body.get("id"), str):
            return body["id"]
    return None


def describe_shape_problem(frame: Any) -> str | None:
    """Why a decoded frame is not a protocol frame, or None when it is one.

    Unknown top-level types are fine (forks add their own); a frame must be an object with a
    string ``type``.
    """
    if not isinstance(frame, dict):
        return f"a JSON {type_name(frame)}, not an object"
    if not isinstance(frame.get("type"), str):
        return "an object without a string \"type\""
    return None


def type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"
