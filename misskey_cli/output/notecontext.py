"""What the line view knows beyond the frame it writes: the note and the user behind a ``noteUpdated``.

A ``noteUpdated`` event carries a note id and, for reactions and votes, a user id, nothing more.
To write ``reacted 👍 by @bob on @alice: hello…`` the line view reads a ``NoteContext``
(``known_note``, ``known_user``: no I/O), which remembers the author and the start of the text of
every note seen on the stream (``saw``) and the account of every author seen. The stream loop
feeds it, and before it writes a ``noteUpdated`` asks it to ``look_up`` what it does not know:
the note with ``notes/show``, the user with ``users/show``, once per id (an answer, or a "no
such", is kept). Both memories are bounded; the oldest entries are forgotten first.

Lookups run in the stream loop, synchronously, each bounded to a few seconds in all and never
retried (``app.py`` gives the call: ``ApiClient.call_within``). Not answered in a worker thread
while the loop goes on: the line must be written in its place with the name in it, and the loop
would have to hold every later record back until the answer came, or write the id instead. Each
user and each captured note costs one request a run, usually milliseconds; frames wait in the
socket meanwhile (nothing is lost; pings are far apart). A server that does not answer costs one
timeout, after which no lookup is made for ``PAUSE`` seconds and ids are shown. "No such note or
user" (HTTP 4xx) is an answer, kept like one, not an outage.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from misskey_cli.errors import MkstreamError
from misskey_cli.output.plaintext import fold_lines, reduce_mfm

# Notes and users remembered (a few hundred bytes each).
MAX_NOTES = 4096
MAX_USERS = 4096
# Characters of a note's text (or CW) kept: more than a line shows.
TEXT_KEPT = 240
# Characters of text in a note's summary (``capture`` shows it on stderr).
SUMMARY_TEXT = 120
# Seconds without lookups after one failed for lack of an answer.
PAUSE = 60.0

Call = Callable[[str, dict[str, Any]], Any]
_FAILED: dict[str, Any] = {}  # a lookup that found nothing: remembered, so it is not made again


class NoteContext:
    """Bounded memories of notes (id -> a slim note: user, text, cw) and users (id -> username, host)."""

    def __init__(self, call: Call | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.call = call  # the HTTP API (endpoint, body) -> answer; None: no lookups
        self.clock = clock
        self.notes: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.users: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.lookups = 0
        self._paused_until = -1.0

    def saw(self, note: dict[str, Any]) -> None:
        """A note delivered on the stream (its id is a string)."""
        slim = _slim(note)
        _keep(self.notes, note["id"], slim, MAX_NOTES)
        user_id = note.get("userId")
        if type(user_id) is str and slim["user"] is not None:
            _keep(self.users, user_id, slim["user"], MAX_USERS)

    def known_note(self, note_id: Any) -> dict[str, Any] | None:
        """The slim note (``user``, ``text``, ``cw``) of ``note_id``, or None when it is not known."""
        known = self.notes.get(note_id) if type(note_id) is str else None
        return known if known is not _FAILED else None

    def known_user(self, user_id: Any) -> dict[str, Any] | None:
        """``{username, host}`` of ``user_id``, or None when it is not known."""
        known = self.users.get(user_id) if type(user_id) is str else None
        return known if known is not _FAILED else None

    def look_up(self, frame: Any) -> None:
        """Before a ``noteUpdated`` frame is written: look up its note and its user if they are not known
        (not the note of a ``deleted``: the server would say there is no such note). An ``updated``
        note's new text replaces the one kept."""
        body = frame.get("body") if type(frame) is dict else None
        if type(body) is not dict:
            return
        note_id, kind, payload = body.get("id"), body.get("type"), body.get("body")
        if type(note_id) is str and note_id not in self.notes and kind != "deleted":
            answer = self._look_up("notes/show", {"noteId": note_id})
            if answer is not None:
                _keep(self.notes, note_id, _FAILED if answer is _FAILED else _slim(answer), MAX_NOTES)
        if type(payload) is not dict:
            return
        known = self.known_note(note_id)
        if kind == "updated" and known is not None and type(note_id) is str:
            self.notes[note_id] = {**_slim(payload), "user": known["user"]}
        user_id = payload.get("userId")
        if type(user_id) is str and user_id not in self.users:
            answer = self._look_up("users/show", {"userId": user_id})
            if answer is not None:
                _keep(self.users, user_id, (None if answer is _FAILED else _account(answer)) or _FAILED, MAX_USERS)

    def _look_up(self, endpoint: str, body: dict[str, Any]) -> dict[str, Any] | None:
        """The answer (a dict), ``_FAILED`` for a definite "no", None when no answer could be had now."""
        if self.call is None or self.clock() < self._paused_until:
            return None
        self.lookups += 1
        try:
            answer = self.call(endpoint, body)
        except MkstreamError as exc:
            status = getattr(exc, "status", None)  # an ApiError's HTTP status
            if type(status) is int and 400 <= status < 500 and status != 429:
                return _FAILED  # no such note or user, or not for this token: an answer
            self._paused_until = self.clock() + PAUSE  # no connection, a timeout, 5xx, 429: away for now
            return None
        return answer if type(answer) is dict else _FAILED


def _keep(memory: OrderedDict[str, dict[str, Any]], key: str, value: dict[str, Any], size: int) -> None:
    memory[key] = value
    memory.move_to_end(key)
    if len(memory) > size:
        memory.popitem(last=False)


def _account(user: Any) -> dict[str, Any] | None:
    if type(user) is not dict or type(user.get("username")) is not str:
        return None
    host = user.get("host")
    return {"username": user["username"], "host": host if type(host) is str else None}


def _slim(note: dict[str, Any]) -> dict[str, Any]:
    text, cw = note.get("text"), note.get("cw")
    return {"user": _account(note.get("user")),
            "text": text[:TEXT_KEPT] if type(text) is str else None,
            "cw": cw[:TEXT_KEPT] if type(cw) is str else None}


def summary(note: dict[str, Any]) -> str:
    """One line naming a note for a person: ``@alice: the start of its text (reactions 👍 2)``.

    Server text: the caller's notices escape its control characters; newlines are folded here."""
    slim = _slim(note)
    user = slim["user"]
    acct = "@?" if user is None else f"@{user['username']}" + (f"@{user['host']}" if user["host"] else "")
    text = fold_lines(reduce_mfm(f"CW: {slim['cw']}" if slim["cw"] is not None else slim["text"] or ""))
    if len(text) > SUMMARY_TEXT:
        text = text[:SUMMARY_TEXT] + "…"
    reactions = note.get("reactions")
    counted = ", ".join(f"{k.replace('@.:', ':')} {v}" for k, v in list(reactions.items())[:8]
                        if type(k) is str and type(v) is int) if type(reactions) is dict else ""
    return f"{acct}: {text}" + (f" (reactions {counted})" if counted else "")
