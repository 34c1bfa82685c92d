"""Frames of the Misskey streaming protocol (docs/protocol.md §3): builders, decoding, classes.

Pure functions, shared by the client and the simulator. A frame is one JSON text
``{"type": ..., "body": ...}``; builders return the text to send, ``decode`` turns what arrived
into a ``Frame`` or a ``Bad`` with the reason, in one place for every consumer.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from misskey_cli.core.jsoncodec import dumps_text, loads

# Aliases a server accepts for client message types (docs/protocol.md §3.1).
CLIENT_TYPE_ALIASES = {"ch": "channel", "s": "subNote", "sr": "subNote", "un": "unsubNote"}

MAX_CHANNELS_PER_SOCKET = 32

def encode(frame: dict[str, Any]) -> str:
    """Compact JSON, non-ASCII left as is (what Misskey itself sends)."""
    return dumps_text(frame)


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
    # The server drops a channel message without a body: send {} for "nothing" (docs/protocol.md §3.1).
    return encode({"type": "channel", "body": {"id": connection_id, "type": message_type, "body": body}})


def sub_note_frame(note_id: str) -> str:
    return encode({"type": "subNote", "body": {"id": note_id}})


def unsub_note_frame(note_id: str) -> str:
    return encode({"type": "unsubNote", "body": {"id": note_id}})


# Note ids: aidx/aid/meid/ulid/objectid are all short runs of letters and digits.
_NOTE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def check_note_id(text: str) -> str:
    """``text`` when it can be a note id; raises ValueError saying what one looks like."""
    if not _NOTE_ID.fullmatch(text):
        shown = text if len(text) <= 40 else text[:40] + "..."
        raise ValueError(f"bad note id {shown!r}: expected letters and digits, e.g. 9xyzabcdef012345")
    return text


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
        cid = body.get("id") if isinstance(body, dict) else None
        if isinstance(cid, str):
            return cid
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


# ----- decoding what the server sent ------------------------------------------------------------


@dataclass(slots=True)  # not frozen: a frozen dataclass takes 3x as long to make, once per frame
class Frame:
    """A decoded server frame: a JSON object with a string ``type`` (read-only by convention)."""

    value: dict[str, Any]
    kind: str
    data: bytes  # the text as received
    # False when the text holds what orjson refuses but JSON allows (an escaped lone surrogate,
    # as JavaScript makes of a string cut mid-emoji): such a value needs care to re-encode.
    clean: bool = True


@dataclass(frozen=True, slots=True)
class Bad:
    """A frame that is not a protocol frame; ``label`` is how ``--stats`` counts it."""

    reason: str
    label: str
    data: bytes


def decode(data: bytes, binary: bool = False) -> Frame | Bad:
    if binary:
        return Bad(f"binary frame of {len(data)} bytes", "(binary)", data)
    try:
        value, clean = loads(data)
    except ValueError as exc:
        return Bad(str(exc), "(not JSON)", data)
    kind = value.get("type") if type(value) is dict else None
    if type(kind) is not str:
        return Bad(describe_shape_problem(value) or "unexpected shape", "(bad shape)", data)
    return Frame(value, kind, data, clean)


_SURROGATE = re.compile("[\ud800-\udfff]")


def without_surrogates(text: str) -> str:
    """Lone surrogates replaced by U+FFFD, as jq does with text it cannot decode."""
    return _SURROGATE.sub("\ufffd", text)
