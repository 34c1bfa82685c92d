"""simulator/rules.py and history.py: the server's admission, routing and pagination rules, from tables."""

from __future__ import annotations

from typing import Any

import pytest

from misskey_cli.core.channels import CATALOGUE, TAGS
from misskey_cli.simulator.history import NoteHistory, Page, paginate
from misskey_cli.simulator.rules import (
    ANONYMOUS,
    Targets,
    Viewer,
    accepts,
    admit_connect,
    admit_handshake,
    main_events_for,
    rest_accepts,
    stats_log_slice,
    token_from,
    visible,
)

TOKENS = {"tok-alice": "alice"}
UPGRADE = {"upgrade": "websocket"}


@pytest.mark.parametrize(("headers", "query", "status", "username"), [
    ({}, {}, 503, None),  # a plain GET on /streaming
    (UPGRADE, {}, None, None),  # anonymous
    (UPGRADE, {"i": "tok-alice"}, None, "alice"),
    ({**UPGRADE, "authorization": "Bearer tok-alice"}, {}, None, "alice"),
    ({**UPGRADE, "authorization": "Bearer nope"}, {"i": "tok-alice"}, 401, None),  # the header wins
    (UPGRADE, {"i": ""}, 401, None),
    (UPGRADE, {"i": "nope"}, 401, None),
    (UPGRADE, {"i": "tok-suspended"}, 403, None),
])
def test_handshake(headers, query, status, username):
    decision = admit_handshake(headers, query, TOKENS, {"tok-suspended"})
    assert (decision.status, decision.username) == (status, username)
    assert bool(decision.headers) == (status == 401)


@pytest.mark.parametrize(("granted", "status"), [
    (None, None),  # a native token
    (frozenset({"read:account", "write:notes"}), None),
    (frozenset({"write:notes"}), 401),  # an app token without read:account may not stream
])
def test_an_app_token_needs_read_account_to_stream(granted, status):
    permissions = {} if granted is None else {"tok-alice": granted}
    decision = admit_handshake(UPGRADE, {"i": "tok-alice"}, TOKENS, (), permissions)
    assert decision.status == status and bool(decision.headers) == (status == 401)


def test_the_handshake_carries_an_app_tokens_grant_to_the_socket():
    granted = frozenset({"read:account"})
    assert admit_handshake(UPGRADE, {"i": "tok-alice"}, TOKENS, (), {"tok-alice": granted}).permissions == granted
    assert admit_handshake(UPGRADE, {"i": "tok-alice"}, TOKENS, ()).permissions is None  # native: everything


def test_token_from_prefers_the_bearer_header():
    assert token_from({"authorization": "Bearer a"}, {"i": "b"}) == "a"
    assert token_from({"authorization": "Basic a"}, {"i": "b"}) == "b"
    assert token_from({}, {}) is None


def conn(channel: str, cid: str = "c1", params: Any = None, pong: Any = None) -> dict[str, Any]:
    body: dict[str, Any] = {"channel": channel, "id": cid}
    if params is not None:
        body["params"] = params
    if pong is not None:
        body["pong"] = pong
    return body


FULL = [("localTimeline", f"x{i}") for i in range(32)]


@pytest.mark.parametrize(("body", "existing", "logged_in", "moderator", "expected"), [
    (conn("localTimeline", pong=True), [], False, False, ("localTimeline", False, True)),
    (conn("localTimeline", pong=0), [], False, False, ("localTimeline", False, False)),
    (conn("localTimeline", pong="yes"), [], False, False, ("localTimeline", False, True)),
    (conn("noSuchChannel"), [], True, True, None),
    ({"channel": "localTimeline"}, [], True, True, None),  # no id
    (conn("localTimeline", params=[1]), [], True, True, None),  # params not an object
    (conn("main"), [], False, False, None),  # needs a login
    (conn("userList", params={"listId": "l"}), [], False, False, ("userList", True, False)),  # acked, silent
    (conn("main"), [("main", "m0")], True, False, None),  # shareable: once per socket
    (conn("main", "m0"), [("main", "m0")], True, False, ("main", False, False)),  # same id replaces
    (conn("admin"), [], True, False, ("admin", True, False)),  # moderator only: inert
    (conn("admin"), [], True, True, ("admin", False, False)),
    (conn("userList"), [], True, False, None),  # required listId missing
    (conn("hashtag", params={"q": "notalist"}), [], False, False, ("hashtag", True, False)),
    (conn("hashtag", params={"q": [["a"]]}), [], False, False, ("hashtag", False, False)),
    (conn("localTimeline", "new"), FULL, False, False, None),  # the 33rd
    (conn("localTimeline", "x0"), FULL, False, False, ("localTimeline", False, False)),  # a reused id is no 33rd
])
def test_connect_admission(body, existing, logged_in, moderator, expected):
    admission = admit_connect(body, existing, logged_in, moderator)
    got = None if admission is None else (admission.channel, admission.inert, admission.ack)
    assert got == expected


READ = frozenset({"read:account", "read:notifications"})


@pytest.mark.parametrize(("body", "moderator", "permissions", "expected"), [
    (conn("chatUser", params={"otherId": "u"}, pong=True), False, READ, None),  # no read:chat: silence
    (conn("chatUser", params={"otherId": "u"}, pong=True), False, READ | {"read:chat"}, ("chatUser", False, True)),
    (conn("chatUser", params={"otherId": "u"}, pong=True), False, None, ("chatUser", False, True)),  # native
    (conn("chatRoom", params={"roomId": "r"}), False, READ, None),
    (conn("admin", pong=True), True, READ, None),  # a moderator's app token without read:admin:stream
    (conn("admin", pong=True), True, READ | {"read:admin:stream"}, ("admin", False, True)),
    (conn("admin", pong=True), False, READ | {"read:admin:stream"}, ("admin", True, True)),  # not a moderator
    (conn("main", pong=True), False, frozenset({"read:account"}), ("main", False, True)),
    (conn("localTimeline", pong=True), False, frozenset({"read:account"}), ("localTimeline", False, True)),
])
def test_an_app_token_connects_only_channels_it_has_the_permission_for(body, moderator, permissions, expected):
    admission = admit_connect(body, [], True, moderator, permissions)
    got = None if admission is None else (admission.channel, admission.inert, admission.ack)
    assert got == expected


@pytest.mark.parametrize("channel", sorted(CATALOGUE))
def test_an_app_token_granted_nothing_connects_only_the_channels_that_need_no_permission(channel):
    params = {p.name: ([["a"]] if p.type == TAGS else "x") for p in CATALOGUE[channel].params if p.required}
    admitted = admit_connect(conn(channel, params=params), [], True, True, frozenset()) is not None
    assert admitted is (CATALOGUE[channel].permission is None)


@pytest.mark.parametrize(("request_body", "expected"), [
    ({}, 3), ({"length": 2}, 2), ({"length": 0}, 0), ({"length": "2"}, 0), ({"length": True}, 0),
])
def test_request_log_slices(request_body, expected):
    assert len(stats_log_slice([{}, {}, {}], request_body) or []) == expected
    assert stats_log_slice([{}], "not an object") is None


ALICE, BOB, CAROL = "alice-id", "bob-id", "carol-id"
ALICE_VIEW = Viewer(ALICE, frozenset({BOB}))


def note(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"id": "n", "userId": BOB, "user": {"host": None}, "text": "hi", "visibility": "public",
                            "fileIds": [], "files": [], "renoteId": None, "replyId": None}
    base.update(fields)
    return base


REMOTE = note(user={"host": "far.example"})
RENOTE = note(text=None, renoteId="r", renote={"userId": CAROL})
WITH_FILE = note(files=[{"id": "f"}], fileIds=["f"])
REPLY_TO_CAROL = note(replyId="r", reply={"userId": CAROL})
REPLY_TO_ALICE = note(replyId="r", reply={"userId": ALICE})
FOLLOWERS = note(visibility="followers")
SPECIFIED = note(visibility="specified", visibleUserIds=[ALICE])
HOME = note(visibility="home")
BY_CAROL = note(userId=CAROL)
IN_CHANNEL = note(channelId="ch1")
TAGGED = note(tags=["misskey"])


@pytest.mark.parametrize(("channel", "params", "the_note", "viewer", "stream", "rest"), [
    ("localTimeline", {}, note(), ANONYMOUS, True, True),
    ("localTimeline", {}, REMOTE, ANONYMOUS, False, False),
    ("localTimeline", {}, HOME, ANONYMOUS, False, False),
    ("localTimeline", {}, IN_CHANNEL, ANONYMOUS, False, False),
    ("localTimeline", {"withRenotes": False}, RENOTE, ANONYMOUS, False, True),  # rest.jsonl: REST kept it
    ("localTimeline", {"withFiles": True}, note(), ANONYMOUS, False, False),
    ("localTimeline", {"withFiles": True}, WITH_FILE, ANONYMOUS, True, True),
    ("localTimeline", {}, REPLY_TO_CAROL, ANONYMOUS, True, False),  # rest.jsonl: REST hides replies
    ("localTimeline", {"withReplies": True}, REPLY_TO_CAROL, ANONYMOUS, True, True),
    ("localTimeline", {}, REPLY_TO_CAROL, ALICE_VIEW, False, False),
    ("localTimeline", {}, REPLY_TO_ALICE, ALICE_VIEW, True, False),
    ("globalTimeline", {}, REMOTE, ANONYMOUS, True, True),
    ("globalTimeline", {}, REPLY_TO_CAROL, ANONYMOUS, True, True),
    ("globalTimeline", {}, FOLLOWERS, ALICE_VIEW, False, False),
    ("homeTimeline", {}, note(), ANONYMOUS, False, False),
    ("homeTimeline", {}, FOLLOWERS, ALICE_VIEW, True, True),
    ("homeTimeline", {}, BY_CAROL, ALICE_VIEW, False, False),
    ("homeTimeline", {}, SPECIFIED, ALICE_VIEW, True, True),
    ("homeTimeline", {}, REPLY_TO_ALICE, ALICE_VIEW, True, False),  # rest.jsonl: REST leaves it out
    ("hybridTimeline", {}, BY_CAROL, ALICE_VIEW, True, True),  # local public
    ("hybridTimeline", {}, SPECIFIED, ALICE_VIEW, False, False),
    ("hybridTimeline", {}, note(user={"host": "far"}, userId=CAROL), ALICE_VIEW, False, False),
    ("hashtag", {"q": [["misskey"]]}, TAGGED, ANONYMOUS, True, True),
    ("hashtag", {"q": [["MISSKEY"], ["x"]]}, TAGGED, ANONYMOUS, True, True),
    ("hashtag", {"q": [["misskey", "x"]]}, TAGGED, ANONYMOUS, False, False),
    ("hashtag", {"q": "misskey"}, TAGGED, ANONYMOUS, False, False),
    ("channel", {"channelId": "ch1"}, IN_CHANNEL, ANONYMOUS, True, True),
    ("channel", {"channelId": "ch2"}, IN_CHANNEL, ANONYMOUS, False, False),
    ("main", {}, note(), ALICE_VIEW, False, False),
])
def test_routing(channel, params, the_note, viewer, stream, rest):
    assert accepts(channel, params, the_note, viewer) is stream
    assert rest_accepts(channel, params, the_note, viewer) is rest


@pytest.mark.parametrize(("channel", "params", "targets", "expected"), [
    ("userList", {"listId": "l1"}, Targets(lists=("l1",)), True),
    ("userList", {"listId": "l1"}, Targets(lists=("l2",)), False),
    ("antenna", {"antennaId": "a"}, Targets(antennas=("a",)), True),
    ("roleTimeline", {"roleId": "r"}, Targets(roles=("r",)), True),
    ("roleTimeline", {"roleId": "r"}, Targets(), False),
])
def test_targeted_channels(channel, params, targets, expected):
    assert accepts(channel, params, note(), ALICE_VIEW, targets) is expected


@pytest.mark.parametrize(("the_note", "viewer", "expected"), [
    (note(), ANONYMOUS, True),
    (HOME, ANONYMOUS, True),
    (FOLLOWERS, ANONYMOUS, False),
    (FOLLOWERS, ALICE_VIEW, True),
    (FOLLOWERS, Viewer(CAROL), False),
    (SPECIFIED, ALICE_VIEW, True),
    (SPECIFIED, Viewer(CAROL), False),
    (SPECIFIED, Viewer(BOB), True),  # the author
])
def test_visibility(the_note, viewer, expected):
    assert visible(the_note, viewer) is expected


@pytest.mark.parametrize(("the_note", "events"), [
    (note(), []),
    (REPLY_TO_ALICE, ["reply"]),
    (note(text=None, renoteId="r", renote={"userId": ALICE}), ["renote"]),
    (note(mentions=[ALICE]), ["mention"]),
    (note(replyId="r", reply={"userId": ALICE}, mentions=[ALICE]), ["reply", "mention"]),
    (note(userId=ALICE, mentions=[ALICE]), []),  # one's own note
    (note(visibility="specified", visibleUserIds=[], mentions=[ALICE]), []),  # not visible
])
def test_main_events(the_note, events):
    assert [event for event, _ in main_events_for(the_note, ALICE_VIEW)] == events
    assert main_events_for(the_note, ANONYMOUS) == []


IDS = ["a00000000000000" + c for c in "12345"]


@pytest.mark.parametrize(("page", "expected"), [
    (Page(), IDS[::-1]),  # neither: newest first
    (Page(limit=2), IDS[:2:-1][:2]),
    (Page(since_id=IDS[1]), IDS[2:]),  # sinceId alone: oldest first, exclusive
    (Page(since_id=IDS[1], limit=2), IDS[2:4]),
    (Page(until_id=IDS[3]), IDS[:3][::-1]),  # untilId: newest first
    (Page(since_id=IDS[0], until_id=IDS[4]), IDS[1:4][::-1]),  # both: newest first
    (Page(since_id=IDS[0], until_id=IDS[4], limit=1), [IDS[3]]),
    (Page(since_id="nope"), []),  # rest.jsonl: a malformed sinceId sorts after every id
    (Page(since_id=IDS[4]), []),
])
def test_pagination(page, expected):
    assert paginate(reversed(IDS), page, lambda _: True) == expected


def test_history_is_bounded_and_keeps_order():
    history = NoteHistory(size=3)
    for item_id in IDS:
        history.add({"id": item_id})
    assert len(history) == 3
    assert [e.note["id"] for e in history.query(Page(), lambda _: True)] == IDS[:1:-1]
    assert history.get(IDS[0]) is None and history.get(IDS[4]) is not None
