"""The line view's memory of notes and users (output/notecontext.py): what it looks up, once, and when it waits."""

from __future__ import annotations

import pytest

from misskey_cli.errors import ConnectFailed
from misskey_cli.net.api import ApiError
from misskey_cli.output import notecontext
from misskey_cli.output.lineformat import LineFormatter
from misskey_cli.output.notecontext import PAUSE, NoteContext, summary


class Api:
    """An API answering from a table; an exception in the table is raised. Records every call."""

    def __init__(self, answers):
        self.answers = answers
        self.calls = []

    def __call__(self, endpoint, body):
        self.calls.append((endpoint, *body.values()))
        answer = self.answers[(endpoint, *body.values())]
        if isinstance(answer, Exception):
            raise answer
        return answer


def updated(note_id, user_id=None, kind="reacted"):
    return {"type": "noteUpdated", "body": {"id": note_id, "type": kind, "body": {"reaction": "👍", "userId": user_id}}}


SORA = {"id": "u1", "username": "sora", "host": None}
NOTE = {"id": "n1", "userId": "u1", "user": SORA, "text": "hello", "cw": None}


def test_what_the_stream_showed_needs_no_lookup():
    api = Api({})
    context = NoteContext(api)
    context.saw(NOTE)
    context.look_up(updated("n1", "u1"))
    assert api.calls == []
    assert context.known_note("n1") == {"user": {"username": "sora", "host": None}, "text": "hello", "cw": None}
    assert context.known_user("u1") == {"username": "sora", "host": None}


def test_each_note_and_user_is_looked_up_once_and_a_no_is_kept():
    api = Api({("notes/show", "n2"): {**NOTE, "id": "n2", "text": "x" * 1000},
               ("users/show", "u2"): {"username": "kuma", "host": "remote.example"},
               ("users/show", "u3"): ApiError(400, "NO_SUCH_USER", "No such user."),
               ("notes/show", "n3"): [1, 2],  # not a note
               ("users/show", "u4"): {"username": 5}})  # not a user
    context = NoteContext(api)
    for _ in range(2):
        for note_id, user_id in (("n2", "u2"), ("n2", "u3"), ("n3", "u4")):
            context.look_up(updated(note_id, user_id))
    assert api.calls == [("notes/show", "n2"), ("users/show", "u2"), ("users/show", "u3"), ("notes/show", "n3"),
                         ("users/show", "u4")]
    assert len(context.known_note("n2")["text"]) == notecontext.TEXT_KEPT
    assert context.known_user("u2") == {"username": "kuma", "host": "remote.example"}
    assert [context.known_user("u3"), context.known_note("n3"), context.known_user("u4")] == [None, None, None]


@pytest.mark.parametrize("failure", [ConnectFailed("no answer within 3s"), ApiError(503, None, "down"),
                                     ApiError(429, "RATE_LIMIT_EXCEEDED", "slow down")])
def test_a_server_away_is_not_asked_again_until_the_pause_is_over(failure):
    now = [100.0]
    api = Api({("users/show", "u2"): failure, ("users/show", "u3"): SORA})
    context = NoteContext(api, clock=lambda: now[0])
    context.saw(NOTE)
    context.look_up(updated("n1", "u2"))
    context.look_up(updated("n1", "u3"))
    now[0] += PAUSE - 1
    context.look_up(updated("n1", "u2"))
    assert api.calls == [("users/show", "u2")]
    now[0] += 1
    context.look_up(updated("n1", "u3"))
    assert api.calls == [("users/show", "u2"), ("users/show", "u3")] and context.known_user("u3") is not None
    context.look_up(updated("n1", "u2"))  # not remembered as a "no": asked again once the pause is over
    assert api.calls[-1] == ("users/show", "u2")


@pytest.mark.parametrize("frame", [None, [], {"body": None}, {"body": {"id": ["x"], "body": {"userId": {}}}},
                                   {"body": {"id": "n9", "body": "text"}}, {"body": {"id": 7, "body": None}}])
def test_odd_frames_ask_nothing_they_cannot_name(frame):
    api = Api({("notes/show", "n9"): NOTE})
    context = NoteContext(api)
    context.look_up(frame)
    assert api.calls in ([], [("notes/show", "n9")])
    assert context.known_note(["x"]) is None and context.known_user({}) is None


def test_no_api_means_no_lookups_and_memory_is_bounded(monkeypatch):
    monkeypatch.setattr(notecontext, "MAX_NOTES", 3)
    context = NoteContext()
    context.look_up(updated("n1", "u1"))
    for i in range(5):
        context.saw({**NOTE, "id": f"n{i}"})
    assert list(context.notes) == ["n2", "n3", "n4"]


def test_the_summary_of_a_note():
    note = {"user": {"username": "sora", "host": "remote.example"}, "text": "a\n\nb $[x2 big]" + "y" * 200,
            "reactions": {"👍": 2, ":blobcat@.:": 1, "bad": "x"}}
    line = summary(note)
    assert line.startswith("@sora@remote.example: a ⏎ b bigyyy") and line.endswith("… (reactions 👍 2, :blobcat: 1)")
    assert summary({"cw": "spoiler", "text": "hidden"}) == "@?: CW: spoiler"


def test_an_updated_note_keeps_its_new_text_and_a_deleted_one_is_not_looked_up():
    api = Api({})
    context = NoteContext(api)
    context.saw(NOTE)
    context.look_up({"type": "noteUpdated", "body": {"id": "n1", "type": "updated", "body": {"cw": None, "text": "fixed"}}})
    assert context.known_note("n1") == {"user": {"username": "sora", "host": None}, "text": "fixed", "cw": None}
    context.look_up({"type": "noteUpdated", "body": {"id": "n5", "type": "deleted", "body": {"deletedAt": "x"}}})
    assert api.calls == []


def test_server_text_in_a_looked_up_name_cannot_drive_the_terminal():
    api = Api({("users/show", "u9"): {"username": "evil\x1b]52;c;aGk=\x07", "host": "h\x1b[2J"}})
    context = NoteContext(api)
    context.saw({**NOTE, "text": "hi\x1b[31m"})
    frame = updated("n1", "u9")
    context.look_up(frame)
    line = LineFormatter(width=None, color=False, context=context).format(frame, 0.0)
    assert "\x1b" not in line and "by @evil\\x1b]52;c;aGk=\\x07@h\\x1b[2J on @sora: hi\\x1b[31m" in line
