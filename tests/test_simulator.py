"""The simulator against a real WebSocket client (websocket-client) over loopback sockets.

Every expectation about the server's behaviour comes from docs/protocol.md and the real-server
recording in tests/fixtures/frames.jsonl. Absence of a frame is shown by ordering, not by
waiting: the server handles one socket's frames in order, so when the ack of a later ``connect``
(a "barrier") arrives, anything an earlier frame would have caused has arrived before it.
"""

from __future__ import annotations

import itertools
import json
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import websocket
from conftest import fixture_frames, shape

from misskey_cli.simulator import (
    DEMO_TOKEN,
    WWW_AUTHENTICATE,
    Simulator,
    hashtag_matches,
    hashtag_q_valid,
    js_truthy,
    reply_shown,
)
from misskey_cli.simulator.corpus import NOTE_KEYS, aidx_ms, iso, strip_pair_cache

_barrier_ids = itertools.count(1)
_clients: list[websocket.WebSocket] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _clients:
        _clients.pop().shutdown()


def client(sim: Simulator, token: str | None = None, bearer: str | None = None, query: str = "",
           **options: Any) -> websocket.WebSocket:
    url = sim.url + (f"?i={token}" if token is not None else "") + query
    header = [f"Authorization: Bearer {bearer}"] if bearer is not None else None
    # As mkstream does: recv() still decodes each text frame as UTF-8 (and fails on a bad one), but
    # websocket-client's own check is pure Python, about a second per 5 MB.
    options.setdefault("skip_utf8_validation", True)
    ws = websocket.create_connection(url, header=header, timeout=10, **options)
    _clients.append(ws)
    return ws


def recv(ws: websocket.WebSocket) -> Any:
    return json.loads(ws.recv())


def send(ws: websocket.WebSocket, kind: str, body: Any) -> None:
    ws.send(json.dumps({"type": kind, "body": body}, ensure_ascii=False))


def connect(ws: websocket.WebSocket, channel: str, connection_id: Any, params: Any = None, pong: bool = True,
            **extra: Any) -> None:
    body: dict[str, Any] = {"channel": channel, "id": connection_id, **extra}
    if params is not None:
        body["params"] = params
    if pong:
        body["pong"] = True
    send(ws, "connect", body)


def subscribe(ws: websocket.WebSocket, channel: str, connection_id: str, params: Any = None) -> None:
    connect(ws, channel, connection_id, params)
    assert recv(ws) == {"type": "connected", "body": {"id": connection_id}}


def until_barrier(ws: websocket.WebSocket) -> list[Any]:
    """Everything the socket receives before the ack of a fresh connect (then disconnected)."""
    barrier = f"barrier-{next(_barrier_ids)}"
    connect(ws, "reversiGame", barrier, {"gameId": "no-such-game"})  # a channel nothing is sent on
    frames = []
    while (frame := recv(ws)) != {"type": "connected", "body": {"id": barrier}}:
        frames.append(frame)
    send(ws, "disconnect", {"id": barrier})
    return frames


def fixture_result(what: str) -> dict[str, Any]:
    [line] = fixture_frames(f"result:{what}")
    return line["result"]


# ---------------------------------------------------------------------------------------------
# Pure rules

@pytest.mark.parametrize(("value", "truthy"), [
    (True, True), (False, False), (None, False), (0, False), (1, True), ("", False), ("no", True),
    ([], True), ({}, True), (0.0, False),
])
def test_js_truthy(value, truthy):
    assert js_truthy(value) is truthy


@pytest.mark.parametrize(("q", "valid"), [
    ([["misskey"]], True), ([["a", "b"], ["c"]], True), ([], True), ("misskey", False), ([["a", 1]], False),
    (["misskey"], False), (None, False), ({"q": 1}, False),
])
def test_hashtag_q_validity(q, valid):
    assert hashtag_q_valid(q) is valid


@pytest.mark.parametrize(("q", "tags", "matches"), [
    ([["misskey"]], ["misskey"], True),
    ([["misskey"]], ["fediverse"], False),
    ([["Misskey"]], ["misskey"], True),  # q tags are normalised like note tags
    ([["ＭＩＳＳＫＥＹ"]], ["misskey"], True),  # NFKC
    ([["fediverse", "python"]], ["fediverse"], False),  # AND
    ([["fediverse", "python"]], ["python", "fediverse", "x"], True),
    ([["misskey"], ["fediverse", "python"]], ["python", "fediverse"], True),  # OR
    ([], ["misskey"], False),
    ([[]], ["anything"], True),  # an empty AND matches everything, as in the server
])
def test_hashtag_matching(q, tags, matches):
    assert hashtag_matches(q, tags) is matches


@pytest.mark.parametrize(("author", "reply_author", "viewer", "with_replies", "shown"), [
    ("a", "b", None, False, True),  # anonymous viewers see every reply (fixture reply_to_reply_unrelated)
    ("a", "b", "v", False, False),  # unrelated to the viewer
    ("a", "b", "v", True, True),
    ("a", "a", "v", False, True),  # a self-reply
    ("a", "v", "v", False, True),  # a reply to the viewer
    ("v", "b", "v", False, True),  # the viewer's own reply
])
def test_reply_filter(author, reply_author, viewer, with_replies, shown):
    note = {"userId": author, "reply": {"userId": reply_author}}
    assert reply_shown(note, viewer, with_replies) is shown


# ---------------------------------------------------------------------------------------------
# Handshake

@pytest.mark.parametrize(("query", "bearer", "fixture"), [
    ("?i=thisIsNotAValidToken", None, "handshake_invalid_token_query"),
    ("", "thisIsNotAValidToken", "handshake_invalid_token_bearer"),
    ("?i=", None, "handshake_empty_i"),
])
def test_bad_token_is_401_with_the_real_header(sim, query, bearer, fixture):
    header = [f"Authorization: Bearer {bearer}"] if bearer else None
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        websocket.create_connection(sim.url + query, header=header, timeout=10)
    real = fixture_result(fixture)
    assert refused.value.status_code == real["status"] == 401
    assert refused.value.resp_headers == {k.lower(): v for k, v in real["headers"].items()}
    assert refused.value.resp_headers["www-authenticate"] == WWW_AUTHENTICATE
    assert sim.sockets_opened == 0 and sim.handshakes[-1]["status"] == 401


def raw_handshake(sim: Simulator, path: str, upgrade: bool = True) -> bytes:
    request = f"GET {path} HTTP/1.1\r\nHost: {sim.host_port}\r\n"
    if upgrade:
        request += ("Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n")
    with socket.create_connection(("127.0.0.1", sim.port), timeout=10) as raw:
        raw.sendall((request + "\r\n").encode())
        data = b""
        while b"\r\n\r\n" not in data or not upgrade:
            chunk = raw.recv(4096)
            if not chunk:
                break
            data += chunk
    return data


def test_refusals_are_byte_for_byte_the_real_ones(sim):
    assert raw_handshake(sim, "/streaming?i=nope").decode() == fixture_result("handshake_empty_i")["raw_response"]
    assert raw_handshake(sim, "/streaming?i=tok-suspended").decode() == \
        fixture_result("handshake_suspended_user")["raw_response"]
    accepted = raw_handshake(sim, "/streaming").decode()
    names = [line.split(":")[0] for line in accepted.split("\r\n")[1:] if line]
    assert accepted.startswith("HTTP/1.1 101 ")
    assert names == list(fixture_result("handshake_anonymous")["headers"])
    assert raw_handshake(sim, "/streaming", upgrade=False).startswith(b"HTTP/1.1 503 ")


def test_suspended_anonymous_and_header_auth(sim):
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        client(sim, "tok-suspended")
    assert refused.value.status_code == 403
    anonymous = client(sim, query="?_t=1700000000000")
    subscribe(anonymous, "localTimeline", "l")
    connect(anonymous, "main", "m")  # needs a login: silently refused
    assert until_barrier(anonymous) == []
    # The header wins over the query, and logs in.
    alice = client(sim, "nope", bearer="tok-alice")
    subscribe(alice, "main", "m")
    demo = client(sim, DEMO_TOKEN)
    subscribe(demo, "main", "m")
    records = sim.handshakes
    assert [h["status"] for h in records] == [403, 101, 101, 101]
    assert records[1]["query"] == {"_t": "1700000000000"} and records[1]["path"] == "/streaming"
    assert records[2]["headers"]["authorization"] == "Bearer tok-alice"
    assert records[2]["query"] == {"i": "nope"}
    assert sim.sockets_opened == 3 and sim.open_sockets == 3
    for ws in (anonymous, alice, demo):
        ws.close()
    assert sim.wait_for_closed() == [(1000, ""), (1000, ""), (1000, "")]
    assert sim.open_sockets == 0


def test_a_busy_port_fails_start(sim):
    with pytest.raises(OSError):
        Simulator(port=sim.port).start()
    with pytest.raises(RuntimeError):
        sim.start()  # already running
    with pytest.raises(ValueError, match="unknown note kind"):
        sim.post_note(kind="nonsense")


def test_path_is_not_checked(sim):
    ws = websocket.create_connection(f"ws://{sim.host_port}/anything/else?i=tok-bob", timeout=10)
    _clients.append(ws)
    subscribe(ws, "main", "m")
    assert sim.handshakes[0]["path"] == "/anything/else"


# ---------------------------------------------------------------------------------------------
# Channel connections

def test_connected_is_sent_only_for_pong(sim):
    ws = client(sim)
    connect(ws, "localTimeline", "quiet", pong=False)
    connect(ws, "globalTimeline", "loud", pong=False, extra="ignored")
    connect(ws, "serverStats", "ss")
    real = next(f["raw"] for f in fixture_frames("connected") if f["frame"]["body"]["id"] == "ss")
    assert ws.recv() == real  # the first frame: nothing for the other two
    assert sim.wait_for_subscription("localTimeline") == "quiet"
    assert sim.wait_for_subscription("globalTimeline") == "loud"


@pytest.mark.parametrize(("token", "body"), [
    (None, {"channel": "main", "id": "am"}),  # credential channel, anonymous (fixture)
    (None, {"channel": "homeTimeline", "id": "ah"}),
    (None, {"channel": "drive", "id": "ad"}),
    (None, {"channel": "admin", "id": "aa"}),
    ("tok-alice", {"channel": "noSuchChannel", "id": "x1"}),  # unknown channel (fixture)
    ("tok-alice", {"channel": "messaging", "id": "x2"}),  # removed long ago
    ("tok-alice", {"channel": "localTimeline", "id": 5}),  # a number id is dropped
    ("tok-alice", {"channel": "localTimeline", "id": "p", "params": "withFiles"}),  # params not an object
    ("tok-alice", {"channel": "userList", "id": "ul"}),  # no listId: no such list
    ("tok-alice", {"channel": "channel", "id": "c", "params": {"channelId": 7}}),
    ("tok-alice", {"channel": 3, "id": "n"}),
])
def test_silent_refusals(sim, token, body):
    ws = client(sim, token)
    send(ws, "connect", {**body, "pong": True})
    assert until_barrier(ws) == []
    assert [c for c in sim.connections() if not c[2].startswith("barrier")] == []
    ws.send("still open?")
    assert until_barrier(ws) == []


def test_shareable_channel_once_per_socket_first_id_keeps_it(sim):
    ws = client(sim, "tok-alice")
    subscribe(ws, "main", "m")
    connect(ws, "main", "m2")  # fixture duplicate_connect_shareable_main
    subscribe(ws, "localTimeline", "l1")
    subscribe(ws, "localTimeline", "l2")  # not shareable: twice is fine
    assert sorted(c[2] for c in sim.connections()) == ["l1", "l2", "m"]
    sim.main_event("alice", "readAllAnnouncements", None)
    assert recv(ws) == {"type": "channel", "body": {"id": "m", "type": "readAllAnnouncements", "body": None}}
    other = client(sim, "tok-alice")  # another socket may have its own
    subscribe(other, "main", "m")


def test_the_33rd_connection_is_refused_and_a_disconnect_frees_a_slot(sim):
    ws = client(sim)
    for n in range(1, 34):
        connect(ws, "localTimeline", f"c{n}")
    send(ws, "disconnect", {"id": "c1"})
    connect(ws, "localTimeline", "c34")
    acks = [recv(ws)["body"]["id"] for _ in range(33)]
    assert acks == [f"c{n}" for n in range(1, 33)] + ["c34"]  # fixture 33_channels_on_one_socket
    assert len(sim.connections()) == 32


@pytest.mark.parametrize(("token", "channel", "params"), [
    (None, "userList", {"listId": "L1"}),  # fixture anonymous_connect_userList
    (None, "hashtag", {"q": "misskey"}),  # fixture hashtag_malformed_q
    ("tok-alice", "admin", None),  # fixture non_admin_native_token_connect_admin_channel
])
def test_acknowledged_but_silent(sim, token, channel, params):
    ws = client(sim, token)
    subscribe(ws, channel, "x", params)
    sim.post_note(text="#misskey note", list_ids=["L1"])
    assert sim.channel_event(channel, "newAbuseUserReport", {"id": "r"}) == 0
    assert until_barrier(ws) == []


def test_admin_channel_delivers_to_moderators(sim):
    admin, alice = client(sim, "tok-admin"), client(sim, "tok-alice")
    subscribe(admin, "admin", "adm")
    subscribe(alice, "admin", "adm")
    [real] = fixture_frames("admin.newAbuseUserReport")
    report = real["frame"]["body"]["body"]
    assert sim.channel_event("admin", "newAbuseUserReport", report) == 1
    assert admin.recv() == real["raw"]
    assert until_barrier(alice) == []


def test_reusing_an_id_replaces_the_connection(sim):
    ws = client(sim, "tok-alice")
    subscribe(ws, "localTimeline", "x")
    subscribe(ws, "globalTimeline", "x")
    assert sim.connections() == [(0, "globalTimeline", "x", {})]
    note = sim.post_note(text="local and public")
    assert until_barrier(ws) == [{"type": "channel", "body": {"id": "x", "type": "note", "body": note}}]


def test_bad_input_is_ignored_and_recorded(sim):
    ws = client(sim, "tok-alice")
    subscribe(ws, "main", "m")
    for text in ("h", "ping", "{broken", "[1, 2]", '{"type": "nope", "body": {}}', '{"type": "connect", "body": "x"}',
                 '{"type": "channel", "body": {"id": "m", "type": "x"}}', '{"body": {}}'):
        ws.send(text)
    ws.send_binary(b"\x00\x01")
    assert until_barrier(ws) == []
    frames = sim.client_frames()
    assert frames[1:10] == [
        {"_raw": "h"}, {"_raw": "ping"}, {"_raw": "{broken"}, {"_raw": "[1, 2]"}, {"type": "nope", "body": {}},
        {"type": "connect", "body": "x"}, {"type": "channel", "body": {"id": "m", "type": "x"}}, {"body": {}},
        {"_binary": b"\x00\x01"},
    ]
    assert sim.client_frames_of(0) == frames and sim.client_frames_of(1) == []
    assert sim.open_sockets == 1


def test_wait_for_client_frame(sim):
    first, second = client(sim), client(sim)
    send(first, "subNote", {"id": "n1"})
    send(second, "subNote", {"id": "n1"})
    assert sim.wait_for_client_frame(lambda f: f["body"]["id"] == "n1") == {"type": "subNote", "body": {"id": "n1"}}
    sim.wait_for_captures("n1", 2)
    assert [i for i, f in enumerate(sim.client_frames()) if f["type"] == "subNote"] == [0, 1]
    assert sim.wait_for_client_frame(lambda f: f["type"] == "subNote", after=1)
    with pytest.raises(TimeoutError, match="subNote"):
        sim.wait_for_client_frame(lambda f: f["type"] == "nothing", timeout=0.05)


# ---------------------------------------------------------------------------------------------
# Note routing

VIEWER_CONNECTIONS = [
    ("localTimeline", "l", {}), ("localTimeline", "lf", {"withFiles": True}),
    ("localTimeline", "lr", {"withReplies": True}), ("globalTimeline", "g", {}),
    ("globalTimeline", "gnr", {"withRenotes": False}), ("homeTimeline", "h", {}), ("hybridTimeline", "y", {}),
]


def delivered_ids(sim: Simulator, ws: websocket.WebSocket, **post: Any) -> set[str]:
    note = sim.post_note(**post)
    frames = until_barrier(ws)
    for frame in frames:
        if frame["type"] == "channel" and frame["body"]["type"] == "note":
            expected = strip_pair_cache(note) if frame["body"]["id"] == "an" else note
            assert frame["body"]["body"] == expected
    return {f["body"]["id"] for f in frames}


def note_of(sim: Simulator, username: str, **fields: Any) -> dict[str, Any]:
    user = sim.traffic.find_user(username, fields.pop("host", None)) or sim.traffic.account(username)
    return sim.traffic.older_note(user, detail=False) | fields


EVERYWHERE = {"l", "lr", "g", "gnr", "h", "y"}


@pytest.mark.parametrize(("case", "post", "expected"), [
    ("local public by a followed user", {"author": "mikan", "text": "x"}, EVERYWHERE),
    ("files", {"author": "mikan", "kind": "files"}, EVERYWHERE | {"lf"}),
    ("remote, followed", {"author": "alex", "text": "hi"}, {"g", "gnr", "h", "y"}),
    ("remote, not followed", {"author": "riko", "text": "hi"}, {"g", "gnr"}),
    ("local, not followed", {"author": "kuma", "text": "hi"}, {"l", "lr", "g", "gnr", "y"}),
    ("visibility home", {"author": "mikan", "visibility": "home"}, {"h", "y"}),
    ("followers of a followed user", {"author": "mikan", "visibility": "followers"}, {"h", "y"}),
    ("followers of someone else", {"author": "kuma", "visibility": "followers"}, set()),
    ("local only", {"author": "mikan", "localOnly": True}, EVERYWHERE),
    ("pure renote", {"author": "mikan", "kind": "pure_renote"}, EVERYWHERE - {"gnr"}),
    ("quote renote", {"author": "mikan", "kind": "quote"}, EVERYWHERE),
    ("channel note", {"author": "mikan", "channelId": "ch1"}, set()),
    ("specified, not to alice", {"author": "mikan", "visibility": "specified", "visibleUserIds": ["zzz"]}, set()),
    ("specified to alice", {"author": "mikan", "visibility": "specified", "visibleUserIds": ["ALICE"]}, {"h"}),
])
def test_timeline_routing(sim, case, post, expected):
    ws = client(sim, "tok-alice")
    for channel, connection_id, params in VIEWER_CONNECTIONS:
        subscribe(ws, channel, connection_id, params)
    if post.get("visibleUserIds") == ["ALICE"]:
        post["visibleUserIds"] = [sim.traffic.account("alice").id]
    assert delivered_ids(sim, ws, **post) == expected, case


def test_reply_routing_by_viewer(sim):
    alice, anonymous = client(sim, "tok-alice"), client(sim)
    for channel, connection_id, params in VIEWER_CONNECTIONS:
        subscribe(alice, channel, connection_id, params)
    subscribe(anonymous, "localTimeline", "l")
    subscribe(alice, "main", "m")
    unrelated = note_of(sim, "kuma")
    assert delivered_ids(sim, alice, author="mikan", text="@kuma yes", reply=unrelated) == {"lr"}
    assert {f["body"]["id"] for f in until_barrier(anonymous)} == {"l"}  # anonymous: every reply
    own = note_of(sim, "mikan")
    assert delivered_ids(sim, alice, author="mikan", text="self", reply=own) == EVERYWHERE
    mine = note_of(sim, "alice")
    note = sim.post_note(author="kuma", text="@alice yes", reply=mine)
    frames = until_barrier(alice)
    assert {f["body"]["id"] for f in frames} == {"l", "lr", "g", "gnr", "y", "m"}
    main = [f["body"] for f in frames if f["body"]["id"] == "m"]
    assert [(m["type"], m["body"]["id"]) for m in main] == [("reply", note["id"]), ("mention", note["id"])]
    assert "reactionAndUserPairCache" not in main[1]["body"]  # as the fixture's main.mention


def test_hashtag_channel_or_of_ands(sim):
    ws = client(sim)
    subscribe(ws, "hashtag", "ht", {"q": [["misskey"], ["fediverse", "python"]]})
    assert delivered_ids(sim, ws, text="#Misskey は楽しい") == {"ht"}
    assert delivered_ids(sim, ws, text="#fediverse only") == set()
    assert delivered_ids(sim, ws, text="#python and #fediverse") == {"ht"}
    assert delivered_ids(sim, ws, text="plain", tags=["misskey"]) == {"ht"}
    assert delivered_ids(sim, ws, text="no tags at all") == set()


def test_lists_antennas_roles_and_channels_get_flagged_notes(sim):
    alice, anonymous = client(sim, "tok-alice"), client(sim)
    subscribe(alice, "userList", "ul", {"listId": "L1"})
    subscribe(alice, "userList", "ul2", {"listId": "L2", "withFiles": True})
    subscribe(alice, "antenna", "an", {"antennaId": "A1"})
    subscribe(anonymous, "roleTimeline", "rt", {"roleId": "R1"})
    subscribe(anonymous, "channel", "ch", {"channelId": "C1"})
    assert delivered_ids(sim, alice, text="a", list_ids=["L1", "L2"], antenna_ids=["A1"]) == {"ul", "an"}
    assert delivered_ids(sim, alice, text="b", list_ids=["L3"]) == set()
    sim.post_note(text="c", role_ids=["R1"])
    sim.post_note(text="d", channelId="C1")
    frames = until_barrier(anonymous)
    assert [(f["body"]["id"], f["body"]["body"]["text"]) for f in frames] == [("rt", "c"), ("ch", "d")]
    assert frames[1]["body"]["body"]["channel"]["id"] == "C1"
    antenna_note = sim.post_note(text="e", antenna_ids=["A1"])
    [frame] = until_barrier(alice)
    assert "reactionAndUserPairCache" not in frame["body"]["body"]  # like the fixture's antenna.note
    assert frame["body"]["body"]["id"] == antenna_note["id"]


def test_post_note_takes_a_real_note_as_is(sim):
    ws = client(sim)
    subscribe(ws, "localTimeline", "l")
    [real] = [f for f in fixture_frames("localTimeline.note:plain") if f["viewer"] == "anonymous"]
    sim.post_note(real["frame"]["body"]["body"])
    assert ws.recv() == real["raw"]


# ---------------------------------------------------------------------------------------------
# Captures

def test_captures_are_reference_counted_per_socket(sim):
    ws, other = client(sim), client(sim)
    send(ws, "sr", {"id": "n2"})
    send(ws, "subNote", {"id": "n1"})
    send(ws, "s", {"id": "n1"})
    send(other, "subNote", {"id": "n1"})
    sim.wait_for_captures("n1", 3)
    assert sim.captures(0) == {"n1": 2, "n2": 1}
    [real] = [f for f in fixture_frames("noteUpdated.reacted:custom_emoji") if f["viewer"] == "admin"]
    update = real["frame"]["body"]
    assert sim.note_updated("n1", update["type"], update["body"]) == 2
    assert recv(ws) == {"type": "noteUpdated", "body": {**update, "id": "n1"}}
    send(ws, "unsubNote", {"id": "n1"})
    sim.wait_for_captures("n1", 2)
    assert sim.note_updated("n1", "pollVoted", {"choice": 1, "userId": "u"}) == 2  # one reference left
    assert recv(ws)["body"]["type"] == "pollVoted"
    send(ws, "un", {"id": "n1"})
    send(ws, "unsubNote", {"id": "n1"})  # one too many: ignored
    sim.wait_for_captures("n1", 1)
    assert sim.note_updated("n1", "deleted", {"deletedAt": iso(0)}) == 1
    assert until_barrier(ws) == []
    assert recv(other)["body"]["type"] == "reacted"


# ---------------------------------------------------------------------------------------------
# Channel messages

def test_request_log_answers_a_stats_log_like_the_real_one(sim):
    ws = client(sim)
    subscribe(ws, "queueStats", "qs")
    subscribe(ws, "serverStats", "ss")
    send(ws, "channel", {"id": "qs", "type": "requestLog", "body": {"id": "z", "length": 100}})
    send(ws, "ch", {"id": "ss", "type": "requestLog", "body": {"id": "x", "length": 3}})
    queue, server = recv(ws), recv(ws)
    [real_queue] = fixture_frames("queueStats.statsLog:length_100")
    [real_server] = fixture_frames("serverStats.statsLog")
    assert queue["body"]["id"] == "qs" and server["body"]["id"] == "ss"
    assert 0 < len(queue["body"]["body"]) <= 100 and len(server["body"]["body"]) == 3
    for got, real in ((queue, real_queue["frame"]), (server, real_server["frame"])):
        assert shape(got) == shape(real)  # the same keys, nesting and kinds, entries included
        assert all(shape(entry) == shape(real["body"]["body"][0]) for entry in got["body"]["body"])
        assert got["body"]["type"] == "statsLog"
    # No body, another channel, or another message type: nothing.
    send(ws, "channel", {"id": "qs", "type": "requestLog"})
    send(ws, "channel", {"id": "qs", "type": "requestLog", "body": None})
    send(ws, "channel", {"id": "qs", "type": "somethingElse", "body": {}})
    assert until_barrier(ws) == []


def test_read_notification_marks_everything_read_on_main(sim):
    alice, alice_again = client(sim, "tok-alice"), client(sim, bearer="tok-alice")
    subscribe(alice_again, "main", "m")
    send(alice, "readNotification", {})
    [real] = [f for f in fixture_frames("main.readAllNotifications") if f["viewer"] == "alice"]
    assert sim.wait_for_client_frame(lambda f: f["type"] == "readNotification") == {"type": "readNotification",
                                                                                      "body": {}}
    assert alice_again.recv() == real["raw"]


def test_broadcasts_reach_every_socket(sim):
    anonymous, alice = client(sim), client(sim, "tok-alice")
    real = next(f for f in fixture_frames("emojiAdded") if f["viewer"] == "anonymous")
    assert sim.broadcast("emojiAdded", real["frame"]["body"]) == 2
    assert anonymous.recv() == real["raw"] == alice.recv()


# ---------------------------------------------------------------------------------------------
# Faults and knobs

def test_inject_text_binary_json_and_to_one_socket(sim):
    first, second = client(sim, skip_utf8_validation=True), client(sim)
    assert sim.inject("not json") == 2
    assert sim.inject(b"\x00binary") == 2
    assert sim.inject([1, "二"]) == 2
    assert sim.inject({"type": "fork", "body": None}, socket=1) == 1
    assert sim.inject_invalid_utf8(socket=0) == 1
    assert first.recv_data() == (websocket.ABNF.OPCODE_TEXT, b"not json")
    assert first.recv_data() == (websocket.ABNF.OPCODE_BINARY, b"\x00binary")
    assert first.recv_data() == (websocket.ABNF.OPCODE_TEXT, '[1,"二"]'.encode())
    opcode, data = first.recv_data()
    assert opcode == websocket.ABNF.OPCODE_TEXT
    with pytest.raises(UnicodeDecodeError):
        data.decode()
    assert [second.recv() for _ in range(3)][2] == '[1,"二"]'
    assert second.recv() == '{"type":"fork","body":null}'
    with pytest.raises(IndexError):
        sim.inject("x", socket=5)


def test_inject_huge_is_one_valid_frame(sim):
    ws = client(sim)
    subscribe(ws, "localTimeline", "l")
    assert sim.inject_huge(5 * 1024 * 1024) == 1
    text = ws.recv()
    assert 4.5 * 1024 * 1024 < len(text.encode()) < 5.5 * 1024 * 1024
    frame = json.loads(text)
    assert frame["type"] == "channel" and frame["body"]["id"] == "l" and frame["body"]["type"] == "note"


def test_drop_all_is_an_eof_without_close_frame(sim):
    ws = client(sim)
    subscribe(ws, "localTimeline", "l")
    assert sim.drop_all() == 1
    with pytest.raises((websocket.WebSocketConnectionClosedException, OSError)):
        ws.recv_data_frame(control_frame=True)
    assert sim.wait_for_closed() == [None]


@pytest.mark.parametrize(("code", "reason"), [(1000, ""), (1001, "going away"), (4000, "custom")])
def test_close_all_sends_a_close_frame(sim, code, reason):
    ws = client(sim)
    assert sim.close_all(code, reason) == 1
    opcode, frame = ws.recv_data_frame(control_frame=True)  # answers the close
    assert opcode == websocket.ABNF.OPCODE_CLOSE
    assert int.from_bytes(frame.data[:2], "big") == code and frame.data[2:].decode() == reason
    ws.shutdown()  # the server closed its side after our answer; a client then closes its socket
    assert sim.wait_for_closed() == [(code, reason)]


def test_freeze_all_stops_pongs_and_frames_but_not_new_sockets(sim):
    frozen = client(sim)
    subscribe(frozen, "localTimeline", "l")
    frozen.ping(b"before")
    assert frozen.recv_data_frame(control_frame=True)[1].data == b"before"
    assert sim.freeze_all() == 1
    fresh = client(sim)
    subscribe(fresh, "localTimeline", "l")
    frozen.ping(b"after")
    note = sim.post_note(text="only the fresh socket")
    assert recv(fresh)["body"]["body"] == note
    fresh.ping(b"fresh")
    assert fresh.recv_data_frame(control_frame=True)[1].data == b"fresh"
    frozen.settimeout(0.2)
    with pytest.raises(websocket.WebSocketTimeoutException):
        frozen.recv_data_frame(control_frame=True)
    assert sim.open_sockets == 2
    frozen.sock.close()  # the client gives up: the simulator notices the EOF
    assert sim.wait_for_closed(count=1) == [None]


def test_refuse_next(sim):
    sim.refuse_next(2, status=503)
    for _ in range(2):
        with pytest.raises(websocket.WebSocketBadStatusException) as refused:
            client(sim, "tok-alice")
        assert refused.value.status_code == 503
    client(sim, "tok-alice")
    sim.refuse_next(1, status=401)
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        client(sim, "tok-alice")
    assert refused.value.resp_headers["www-authenticate"] == WWW_AUTHENTICATE
    assert [h["status"] for h in sim.handshakes] == [503, 503, 101, 401]
    assert sim.sockets_opened == 1


def test_restart_listens_on_the_same_port(sim):
    ws = client(sim)
    subscribe(ws, "localTimeline", "l")
    port = sim.port
    sim.stop()
    with pytest.raises((websocket.WebSocketConnectionClosedException, OSError)):
        ws.recv_data_frame(control_frame=True)  # a shutdown drops the TCP connection
    assert sim.closed() == [None]
    with pytest.raises(RuntimeError):
        sim.post_note()
    sim.start()
    assert sim.port == port
    again = client(sim)
    subscribe(again, "localTimeline", "l")
    note = sim.post_note(text="after restart")
    assert recv(again)["body"]["body"] == note
    assert sim.sockets_opened == 2 and sim.open_sockets == 1


def test_server_pings_and_terminates_a_socket_that_does_not_answer(sim):
    sim.set_ping_interval(0.05, timeout=0.5)
    answering, silent = client(sim), client(sim)
    answering.settimeout(0.2)
    pings = []
    done = threading.Event()

    def read() -> None:  # websocket-client answers each ping while it reads
        while not done.is_set():
            try:
                opcode, _ = answering.recv_data_frame(control_frame=True)
            except websocket.WebSocketTimeoutException:
                continue
            pings.append(opcode)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert sim.wait_for_closed(count=1) == [None]  # the silent one, aborted
        sim.wait_for_pongs(3)
    finally:
        done.set()
        reader.join()
    assert sim.open_sockets == 1 and sim.closed() == [None]
    assert set(pings) == {websocket.ABNF.OPCODE_PING} and len(pings) >= 3
    seen = []
    with pytest.raises((websocket.WebSocketConnectionClosedException, OSError)):
        while True:
            seen.append(silent.recv_data_frame(control_frame=True)[0])
    assert websocket.ABNF.OPCODE_CLOSE not in seen  # terminated: no close frame


# ---------------------------------------------------------------------------------------------
# Generated traffic

def fixture_notes() -> list[dict[str, Any]]:
    """Every note object in the recording, nested reply/renote included."""
    notes = []
    for line in fixture_frames():
        frame = line.get("frame")
        if frame and frame["type"] == "channel" and frame["body"]["type"] == "note":
            note = frame["body"]["body"]
            notes += [note] + [note[k] for k in ("reply", "renote") if k in note]
    return notes


def test_traffic_key_order_is_the_recorded_order():
    for note in fixture_notes():
        assert set(note) <= set(NOTE_KEYS)
        assert list(note) == sorted(note, key=NOTE_KEYS.index)


def test_generated_notes_look_real_and_open_with_text():
    real_order = [k for k in NOTE_KEYS]
    always = set(json.loads(fixture_frames("localTimeline.note:plain")[0]["raw"])["body"]["body"])
    with Simulator(rate=50, seed=7) as sim:
        ws = client(sim, DEMO_TOKEN)
        assert until_barrier(ws) == [] and sim.traffic.notes_made == 0  # nothing without a timeline
        subscribe(ws, "localTimeline", "localTimeline")
        notes = [recv(ws)["body"]["body"] for _ in range(12)]
        ws.close()
        sim.wait_for_closed()
        assert sim.errors == []
    assert all(isinstance(n["text"], str) and n["text"] for n in notes[:5])
    ids = [n["id"] for n in notes]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    for note in notes:
        assert always <= set(note)
        keys = [k for k in note if k in real_order]
        assert keys == list(note) and keys == sorted(keys, key=real_order.index)
        assert note["createdAt"] == iso(aidx_ms(note["id"])) and len(note["id"]) == 16
        assert note["user"]["host"] is None and note["visibility"] == "public"


def test_ticks_send_stats_note_events_and_main_notifications():
    with Simulator(rate=50, ticks=True, seed=3) as sim:
        ws = client(sim, "tok-alice")
        subscribe(ws, "main", "m")
        send(ws, "subNote", {"id": "captured"})
        seen: set[str] = set()
        while not {"noteUpdated", "main"} <= seen:
            frame = recv(ws)
            if frame["type"] == "noteUpdated":
                assert frame["body"]["id"] == "captured"
                assert frame["body"]["type"] in ("reacted", "unreacted", "pollVoted", "deleted")
                seen.add("noteUpdated")
            elif frame["type"] == "channel":
                assert frame["body"]["id"] == "m"
                seen.add("main")
        ws.close()
        sim.wait_for_closed()
        assert sim.errors == []


def test_inject_many_sends_frames_back_to_back(sim):
    ws = websocket.create_connection(sim.url)
    try:
        sim.wait_for_sockets(1)
        frames = [{"type": "channel", "body": {"id": "x", "type": "note", "seq": n}} for n in range(50)]
        assert sim.inject_many(frames) == 1
        assert [json.loads(ws.recv())["body"]["seq"] for _ in range(50)] == list(range(50))
    finally:
        ws.close()
