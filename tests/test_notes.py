"""The one pure-renote rule (Misskey's isPureRenote), shared by the line view and the simulator's routing."""

from __future__ import annotations

import pytest

from misskey_cli.core.notes import is_pure_renote


@pytest.mark.parametrize(("note", "pure"), [
    ({"text": None, "renoteId": "x", "fileIds": [], "poll": None}, True),
    ({"renoteId": "x"}, True),  # keys a packed note omits count as empty
    ({"text": "quote", "renoteId": "x", "fileIds": []}, False),
    ({"text": None, "cw": "spoiler", "renoteId": "x"}, False),  # a CW makes it a quote
    ({"text": None, "renoteId": "x", "replyId": "r"}, False),  # so does being a reply
    ({"text": None, "renoteId": "x", "fileIds": ["f"]}, False),
    ({"text": None, "renoteId": "x", "files": [{"id": "f"}]}, False),
    ({"text": None, "renoteId": "x", "poll": {"choices": []}}, False),
    ({"text": "", "renoteId": "x"}, False),  # an empty text is still text to the server
    ({"text": None, "renoteId": None, "fileIds": ["f"]}, False),
    ({"text": "plain", "renoteId": None}, False),
])
def test_pure_renote_follows_the_servers_rule(note, pure):
    assert is_pure_renote(note) is pure
