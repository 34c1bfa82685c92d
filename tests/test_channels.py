"""The channel catalogue: spec parsing, param typing and validation (pure, table-driven)."""

from __future__ import annotations

import pytest

from misskey_cli.core.channels import (
    CATALOGUE,
    SpecError,
    app_token_may_connect,
    channel_permission,
    check_connection,
    check_send,
    parse_channel_spec,
    parse_param_value,
    parse_tags,
    unacked_reason,
)
from misskey_cli.profiles.login import DEFAULT_PERMISSIONS


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


# The permission an app token needs per channel: Misskey's channel classes (``kind``, with
# ``requireCredential``), packages/backend/src/server/api/stream/channels/*.ts on develop as of
# the 2025.x releases (the chat channels came in 2025.4). None: the class declares no kind and
# needs no credential, so any token may connect.
MISSKEY_KINDS = {
    "main": "read:account", "homeTimeline": "read:account", "localTimeline": None,
    "hybridTimeline": "read:account", "globalTimeline": None, "userList": "read:account", "hashtag": None,
    "roleTimeline": None, "antenna": "read:account", "channel": None, "drive": "read:account",
    "serverStats": None, "queueStats": None, "admin": "read:admin:stream", "chatUser": "read:chat",
    "chatRoom": "read:chat", "reversi": "read:account", "reversiGame": None,
}


@pytest.mark.parametrize("name", sorted(CATALOGUE))
def test_each_channel_needs_the_permission_misskey_declares(name):
    assert CATALOGUE[name].permission == MISSKEY_KINDS[name]
    assert channel_permission(name) == MISSKEY_KINDS[name]


def test_every_channel_that_needs_a_login_needs_a_permission():
    """Misskey refuses an app token on a credential channel without a kind, so none may lack one."""
    assert [name for name, c in CATALOGUE.items() if c.needs_login and c.permission is None] == []


def test_login_asks_for_what_every_channel_but_the_moderators_needs():
    needed = {c.permission for c in CATALOGUE.values() if c.permission and not c.moderator_only}
    assert needed == {"read:account", "read:chat"}
    assert needed <= set(DEFAULT_PERMISSIONS)
    assert "read:admin:stream" not in DEFAULT_PERMISSIONS  # asked for only with --permission


@pytest.mark.parametrize(("name", "granted", "may"), [
    ("chatUser", {"read:account"}, False),
    ("chatUser", {"read:account", "read:chat"}, True),
    ("chatRoom", {"read:account", "read:notifications"}, False),
    ("admin", {"read:account"}, False),
    ("admin", {"read:account", "read:admin:stream"}, True),
    ("main", {"read:account"}, True),  # read:notifications is the HTTP backfill's, not the channel's
    ("main", set(), False),
    ("localTimeline", set(), True),
    ("reversiGame", set(), True),
    ("someForkChannel", set(), True),  # unknown: nothing known to refuse it for
])
def test_app_token_may_connect(name, granted, may):
    assert app_token_may_connect(name, frozenset(granted)) is may


@pytest.mark.parametrize(("name", "words"), [
    ("chatUser", "may lack the permission read:chat,"),
    ("antenna", "may lack the permission read:account,"),
    ("channel", "the channel may not exist or not be open to you"),  # it needs none: only the id can be wrong
])
def test_the_unacked_reason_names_the_permission(name, words):
    reason = unacked_reason(name, [], logged_in=True)
    assert words in reason
    assert ("permission" in reason) is (name != "channel")  # a channel that needs none is never blamed on one


def test_the_protocol_documents_app_token_column_is_the_catalogues():
    from pathlib import Path

    text = (Path(__file__).parent.parent / "docs" / "protocol.md").read_text(encoding="utf-8")
    section = text[text.index("## 4. Channels"):text.index("## 5.")]
    documented = {}
    for row in section.splitlines():
        cells = [c.strip() for c in row.strip("|").split("|")]
        if row.startswith("| `") and len(cells) == 6:
            documented[cells[0].split("`")[1]] = None if cells[2] == "-" else cells[2].strip("`")
    assert documented == {name: c.permission for name, c in CATALOGUE.items()}
