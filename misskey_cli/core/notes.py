"""What kind of note a note object is, by the server's own rule (one definition for the client and the simulator).

Misskey calls a renote *pure* when it adds nothing of its own: no text, no CW, not a reply, no poll,
no files (``isPureRenote`` in the backend); any other renote is a quote. Timelines' ``withRenotes:
false`` drops pure renotes only, and the line view shows them as ``renote @who: <the renoted note>``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def is_pure_renote(note: Mapping[str, Any]) -> bool:
    """A renote with nothing of its own. Works on packed notes (``files``/``fileIds``, ``poll``)."""
    return (note.get("renoteId") is not None and note.get("text") is None and note.get("cw") is None
            and note.get("replyId") is None and not note.get("fileIds") and not note.get("files")
            and not isinstance(note.get("poll"), dict))


# Channel events whose body is a note (a timeline's ``note``; ``main``'s ``mention``, ``reply``, ``renote``).
NOTE_EVENTS = frozenset(("note", "mention", "reply", "renote"))


def notes_in(frame: Any) -> list[dict[str, Any]]:
    """The notes a channel frame delivers, each with a string ``id``: the note, then the note it renotes
    or quotes (which a client shows, and so captures, too). Any other frame or shape: none."""
    if type(frame) is not dict or frame.get("type") != "channel":
        return []
    body = frame.get("body")
    if type(body) is not dict:
        return []
    kind = body.get("type")
    if type(kind) is not str or kind not in NOTE_EVENTS:
        return []
    note = body.get("body")
    if type(note) is not dict or type(note.get("id")) is not str:
        return []
    inner = note.get("renote")
    if type(inner) is dict and type(inner.get("id")) is str:
        return [note, inner]
    return [note]
