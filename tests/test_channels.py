"""The channel catalogue: spec parsing, param typing and validation (pure, table-driven)."""

from __future__ import annotations

import pytest

from misskey_cli.core.channels import (
    CATALOGUE,
    SpecError,
    check_connection,
    check_send,
    parse_channel_spec,
    parse_param_value,
    parse_tags,
)


@pytest.mark.parametrize(("text", "channel", "cid", "params"), [
    ("localTimeline", "localTimeline", None, {}),
    ("localTimeline:ltl", "localTimeline", "ltl", {}),
    ("userList?listId=9abc&withFiles=true", "userList", None, {"listId": "9abc", "withFiles": True}),
    ("userList:work?listId=1234", "userList", "work", {"listId": "1234"}),
    ('hashtag?q=[["misskey"]]', "hashtag", None, {"q": [["misskey"]]}),
    ("hashtag?q=misskey,fediverse+python", "hashtag", None, {"q": [["misskey"], ["fediverse", "python"]]}),
    ("hashtag?q=%23misskey", "hashtag", None, {"q": [["misskey"]]}),
    ("bubbleTimeline?withBots=false&limit=5", "bubbleTimeline", None, {"withBots": False, "limit": 5}),
    ("someFork?name=alice", "someFork", None, {"name": "alice"}),
])
def test_parse_channel_spec(text, channel, cid, params):
    spec = parse_channel_spec(text)
    assert (spec.channel, spec.connection_id, spec.params) == (channel, cid, params)


@pytest.mark.parametrize(("text", "message"), [
    ("", "expected CHANNEL"),
    ("local timeline", "expected CHANNEL"),
    ("localTimeline?withFiles", "expected key=value"),
    ("localTimeline?withFiles=maybe", "withFiles=true or withFiles=false"),
    ("hashtag?q=[1,2]", "list of lists"),
    ("hashtag?q=[[]]", "list of lists"),
    ("hashtag?q=,", "at least one tag"),
])
def test_bad_channel_specs_say_the_right_form(text, message):
    with pytest.raises(SpecError, match=message.replace("[", r"\[").replace("?", r"\?")):
        parse_channel_spec(text)


@pytest.mark.parametrize(("channel", "key", "text", "value"), [
    ("userList", "listId", "1234", "1234"),  # ids stay strings even when they look like numbers
    ("localTimeline", "withFiles", "TRUE", True),
    ("localTimeline", "withRenotes", "no", False),
    ("localTimeline", "unknownThing", "12", 12),
    ("localTimeline", "unknownThing", "abc", "abc"),
    ("hashtag", "q", "#a b", [["a", "b"]]),
])
def test_param_values_are_typed_by_the_catalogue(channel, key, text, value):
    assert parse_param_value(channel, key, text) == value


def test_parse_tags_shorthands():
    assert parse_tags("q", "misskey") == [["misskey"]]
    assert parse_tags("q", "a,b") == [["a"], ["b"]]
    assert parse_tags("q", "a+b,c") == [["a", "b"], ["c"]]


def test_missing_required_param_is_an_error_with_an_example():
    with pytest.raises(SpecError, match="needs param q"):
        check_connection("hashtag", {}, logged_in=False)
    with pytest.raises(SpecError, match="listId"):
        check_connection("userList", {"withFiles": True}, logged_in=True)


def test_unknown_param_warns_with_close_matches():
    [warning] = check_connection("localTimeline", {"withReply": True}, logged_in=False)
    assert "did you mean withReplies" in warning and "sending it anyway" in warning


def test_unknown_and_removed_channels_warn():
    [warning] = check_connection("locaTimeline", {}, logged_in=False)
    assert "did you mean localTimeline" in warning
    [warning] = check_connection("messaging", {}, logged_in=True)
    assert "removed" in warning


def test_credential_channel_without_token_warns():
    [warning] = check_connection("homeTimeline", {}, logged_in=False)
    assert "needs a logged-in user" in warning
    assert check_connection("homeTimeline", {}, logged_in=True) == []


def test_send_checks_message_types_and_side_effects():
    assert check_send("queueStats", "requestLog", force=False) == []
    [warning] = check_send("queueStats", "requestLogs", force=False)
    assert "did you mean requestLog" in warning
    with pytest.raises(SpecError, match="--force"):
        check_send("chatUser", "read", force=False)
    assert check_send("chatUser", "read", force=True) == []


def test_catalogue_matches_protocol_shareable_channels():
    shareable = {name for name, c in CATALOGUE.items() if c.shareable}
    assert shareable == {"main", "drive", "admin", "serverStats", "queueStats", "reversi"}
