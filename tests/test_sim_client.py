"""The simulator as the official client sees it: a bot's own client drives it over real HTTP and WebSocket.

Every answer and event is checked against tests/fixtures/misskey_js_types.json, our table of the fields
and types misskey-js 2026.5.1 declares (``required_fields.problems``), and the endpoints must act on the
simulated world: a posted note reaches the timelines whose rules accept it and the history; reactions,
votes and deletions reach captures as ``noteUpdated`` and change ``notes/show``; following changes
homeTimeline. Errors are compared with Misskey's own error objects (code and id).
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import websocket
from conftest import FIXTURES, fixture_frames
from required_fields import problems, table

from misskey_cli.simulator import Simulator
from misskey_cli.simulator.corpus import AIDX_EPOCH_MS, CAST, aidx_ms
from misskey_cli.simulator.traffic import NoteRequest, Traffic

# ---------------------------------------------------------------------------------------------
# A client of our own


class Api:
    """POST /api/<endpoint> with a JSON body and the token in it, as misskey-js does."""

    def __init__(self, sim: Simulator, token: str | None = None) -> None:
        self.sim, self.token = sim, token

    def raw(self, endpoint: str, body: bytes, content_type: str) -> tuple[int, Any]:
        conn = http.client.HTTPConnection("127.0.0.1", self.sim.port, timeout=10)
        try:
            conn.request("POST", f"/api/{endpoint}", body=body, headers={"Content-Type": content_type})
            response = conn.getresponse()
            data = response.read()
        finally:
            conn.close()
        return response.status, json.loads(data) if data else None

    def call(self, endpoint: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        payload = dict(body or {})
        if self.token is not None:
            payload["i"] = self.token
        return self.raw(endpoint, json.dumps(payload).encode(), "application/json")

    def ok(self, endpoint: str, body: dict[str, Any] | None = None) -> Any:
        status, answer = self.call(endpoint, body)
        assert status in (200, 204), (endpoint, status, answer)
        if status == 200:
            assert problems(answer, f"endpoint:{endpoint}") == [], endpoint
        return answer

    def error(self, endpoint: str, body: dict[str, Any] | None = None) -> tuple[int, str, str]:
        status, answer = self.call(endpoint, body)
        assert problems(answer, "Error") == []
        return status, answer["error"]["code"], answer["error"]["id"]


class Stream:
    """A streaming connection with channels connected (acknowledged) and a reader of its frames."""

    def __init__(self, sim: Simulator, token: str | None) -> None:
        query = f"?i={token}" if token else ""
        self.ws = websocket.create_connection(sim.url + query, timeout=10)
        self.pending: list[dict[str, Any]] = []  # received, not taken by a ``next`` yet

    def connect(self, channel: str, connection_id: str, **params: Any) -> None:
        self.ws.send(json.dumps({"type": "connect", "body": {"channel": channel, "id": connection_id,
                                                              "params": params, "pong": True}}))
        self.next(lambda f: f["type"] == "connected" and f["body"]["id"] == connection_id)

    def send(self, type: str, body: Any) -> None:
        self.ws.send(json.dumps({"type": type, "body": body}))

    def next(self, match: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        """The first frame not taken yet that matches (others wait for their own ``next``); at most 200 more."""
        for index, frame in enumerate(self.pending):
            if match(frame):
                return self.pending.pop(index)
        for _ in range(200):
            frame = json.loads(self.ws.recv())
            if match(frame):
                return frame
            self.pending.append(frame)
        raise AssertionError("no matching frame in 200")

    def event(self, connection_id: str) -> dict[str, Any]:
        """The next ``channel`` event of that connection: {type, body}."""
        frame = self.next(lambda f: f["type"] == "channel" and f["body"]["id"] == connection_id)
        return {"type": frame["body"]["type"], "body": frame["body"]["body"]}

    def note_updated(self, note_id: str) -> dict[str, Any]:
        return self.next(lambda f: f["type"] == "noteUpdated" and f["body"]["id"] == note_id)["body"]

    def close(self) -> None:
        self.ws.close()


@pytest.fixture(scope="module")
def world() -> Iterator[Simulator]:
    """One simulator with its default history for the whole module (the tests act on different notes)."""
    with Simulator(seed=20) as sim:
        yield sim
        assert sim.errors == []


@pytest.fixture
def streams() -> Iterator[Callable[..., Stream]]:
    opened: list[Stream] = []

    def open_stream(sim: Simulator, token: str | None = None) -> Stream:
        opened.append(Stream(sim, token))
        return opened[-1]

    yield open_stream
    for stream in opened:
        stream.close()


def user_id(sim: Simulator, username: str) -> str:
    return next(u.id for u in sim.traffic.authors() if u.username == username)


# ---------------------------------------------------------------------------------------------
# The table itself


def test_the_table_names_its_release_and_covers_the_entities_a_bot_sees():
    data = table()
    assert data["misskey_js"] == data["misskey"] == "2026.5.1"
    for entity in ("Note", "UserLite", "MeDetailed", "MetaDetailed", "Notification", "DriveFile", "ChatMessage",
                   "ReversiGameDetailed", "EmojiSimple", "NoteReaction", "RolePolicies"):
        assert entity in data["schemas"]
    assert "canChat" in data["schemas"]["UserDetailedNotMeOnly"]["object"]
    assert set(data["stream"]) >= {"drive", "chatUser", "chatRoom", "reversi", "admin", "main"}


def test_the_checker_finds_a_missing_field_a_wrong_type_and_a_wrong_union_member():
    sim_note = Traffic(seed=1).note(NoteRequest(kind="poll"))
    assert problems(sim_note, "Note") == []
    broken = dict(sim_note, visibility="everyone", reactionCount="3")
    del broken["user"]
    assert sorted(problems(broken, "Note")) == ["$.reactionCount: string, declared number", "$.user: missing",
                                                "$.visibility: 'everyone', declared one of "
                                                "['public', 'home', 'followers', 'specified']"]
    assert problems({"id": "x", "createdAt": "t", "type": "follow", "user": 1, "userId": "u"}, "Notification") \
        == ["$.user: number, declared an object"]


def test_the_table_accepts_what_real_servers_sent():
    """The recordings (a 2025.12.2 server's frames, a 2025.3.1 server's answers refreshed for 2026) pass,
    except two notifications the simulator never sends: ``roleAssigned`` (misskey-js types a role's
    policy values as numbers, and its condFormula stricter than the server fills it) and ``pollEnded``
    (the 2026 types add the poll author's ``user``/``userId``, which 2025.12.2 did not send)."""
    data = table()
    failing = set()
    for line in fixture_frames():
        frame = line.get("frame")
        if not frame:
            continue
        kind = None
        if frame["type"] == "channel":
            channel, event = line["what"].split(".")[0], frame["body"]["type"]
            if event in data["stream"].get(channel, {}):
                kind, body = f"stream:{channel}/{event}", frame["body"]["body"]
        elif frame["type"] == "noteUpdated" and frame["body"]["type"] in data["noteUpdated"]:
            kind, body = f"noteUpdated:{frame['body']['type']}", frame["body"]["body"]
        elif frame["type"] in data["broadcast"]:
            kind, body = f"broadcast:{frame['type']}", frame["body"]
        if kind is not None and problems(body, kind):
            failing.add(line["what"])
    assert failing == {"main.notification:roleAssigned", "main.notification:pollEnded"}
    with open(FIXTURES / "rest.jsonl", encoding="utf-8") as lines:
        for line in map(json.loads, lines):
            if line["status"] == 200 and line.get("endpoint") in data["endpoints"]:
                assert problems(line["response"], f"endpoint:{line['endpoint']}") == [], line["what"]
            elif line["status"] >= 400:
                assert problems(line["response"], "Error") == [], line["what"]


# ---------------------------------------------------------------------------------------------
# A history from the start


def test_a_fresh_simulator_holds_hours_of_notes_ordered_and_dated_like_a_real_server(world):
    notes = world.history.notes()
    assert len(notes) >= 200
    ids = [n["id"] for n in notes]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)  # aidx ids sort by time
    now = aidx_ms(world.traffic.ids.next()[0])
    times = [aidx_ms(i) for i in ids]
    assert all(t < now for t in times) and now - times[0] > 3 * 3_600_000  # hours of the past
    for note in notes:
        assert note["createdAt"][:19] == _iso_seconds(aidx_ms(note["id"]))
        assert problems(note, "Note") == [], note["id"]


def _iso_seconds(ms: int) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")


@pytest.mark.parametrize("endpoint", ["notes/local-timeline", "notes/global-timeline", "notes/timeline",
                                      "notes/hybrid-timeline"])
def test_every_timeline_answers_at_once_newest_first(world, endpoint):
    answer = Api(world, "tok-alice").ok(endpoint, {"limit": 20})
    assert len(answer) == 20
    assert [n["id"] for n in answer] == sorted((n["id"] for n in answer), reverse=True)


def test_every_account_has_notifications_of_the_past_hours_too(world):
    for token in ("tok-alice", "tok-bob", "tok-admin"):
        answer = Api(world, token).ok("i/notifications", {"limit": 100})
        assert len(answer) >= 10
        assert [n["id"] for n in answer] == sorted((n["id"] for n in answer), reverse=True)
        assert all(aidx_ms(n["id"]) < aidx_ms(world.traffic.ids.next()[0]) for n in answer)


def test_an_empty_history_is_a_knob():
    with Simulator(history=0) as sim:
        assert Api(sim).ok("notes/global-timeline") == []
        assert Api(sim, "tok-alice").ok("i/notifications") == []


# ---------------------------------------------------------------------------------------------
# Shapes of what a client reads first


def test_i_meta_and_the_miauth_user_have_every_field_the_official_client_requires(world):
    assert problems(Api(world, "tok-alice").ok("i"), "MeDetailed") == []
    assert problems(Api(world).ok("meta"), "MetaDetailed") == []
    assert problems(Api(world).ok("meta", {"detail": False}), "MetaLite") == []
    world.approve_miauth("table-check")
    status, check = Api(world).call("miauth/table-check/check")
    assert status == 200 and problems(check["user"], "UserDetailedNotMe") == []


def test_users_emojis_and_notifications_have_the_declared_shapes(world):
    api = Api(world, "tok-alice")
    me = api.ok("users/show", {"userId": user_id(world, "alice")})
    assert problems(me, "MeDetailed") == []
    remote = api.ok("users/show", {"username": "alex", "host": "mastodon.example.social"})
    assert remote["isFollowing"] is True and problems(remote, "UserDetailedNotMe") == []
    assert api.ok("users/show", {"userIds": [remote["id"], me["id"]]})[0]["id"] == remote["id"]
    authors = {n["userId"] for n in world.history.notes()}
    busy = next(u for u in CAST if u.id in authors)
    notes = Api(world).ok("users/notes", {"userId": busy.id, "withReplies": True, "limit": 100})
    assert notes and {n["userId"] for n in notes} == {busy.id}
    assert [n["id"] for n in notes] == sorted((n["id"] for n in notes), reverse=True)
    emojis = Api(world).ok("emojis")["emojis"]
    assert {e["name"] for e in emojis} >= {"blobcat"}
    world.notify("alice", "app")
    assert api.ok("i/notifications")


# ---------------------------------------------------------------------------------------------
# Acting on the world


def test_a_posted_note_reaches_the_accepting_timelines_and_the_history(world, streams):
    stream = streams(world, "tok-bob")
    stream.connect("localTimeline", "ltl")
    stream.connect("homeTimeline", "home")
    created = Api(world, "tok-alice").ok("notes/create", {"text": "ボットから #mkbot", "visibility": "public"})
    note = created["createdNote"]
    assert note["text"] == "ボットから #mkbot" and note["tags"] == ["mkbot"] and note["user"]["username"] == "alice"
    received = {stream.event("ltl")["body"]["id"], stream.event("home")["body"]["id"]}
    assert received == {note["id"]}
    assert Api(world).ok("notes/show", {"noteId": note["id"]})["id"] == note["id"]
    assert Api(world).ok("notes/local-timeline", {"limit": 1})[0]["id"] == note["id"]
    home_only = Api(world, "tok-alice").ok("notes/create", {"text": "home only", "visibility": "home"})
    assert stream.event("home")["body"]["id"] == home_only["createdNote"]["id"]  # the LTL skipped it
    assert Api(world).ok("notes/local-timeline", {"limit": 1})[0]["id"] == note["id"]


def test_a_reply_reaches_the_replied_users_main_channel_and_counts(world, streams):
    target = Api(world, "tok-bob").ok("notes/create", {"text": "question?"})["createdNote"]
    stream = streams(world, "tok-bob")
    stream.connect("main", "main")
    reply = Api(world, "tok-alice").ok("notes/create", {"text": "answer", "replyId": target["id"]})["createdNote"]
    event = stream.event("main")
    assert event["type"] == "reply" and event["body"]["id"] == reply["id"]
    assert problems(event["body"], "Note") == []
    assert reply["reply"]["id"] == target["id"]
    assert Api(world).ok("notes/show", {"noteId": target["id"]})["repliesCount"] == 1


def test_a_renote_reaches_the_renoted_user_and_the_timelines_that_take_renotes(world, streams):
    target = Api(world, "tok-bob").ok("notes/create", {"text": "renote me"})["createdNote"]
    stream = streams(world, "tok-bob")
    stream.connect("main", "main")
    stream.connect("localTimeline", "plain", withRenotes=False)
    stream.connect("localTimeline", "all")
    alice = Api(world, "tok-alice")
    renote = alice.ok("notes/create", {"renoteId": target["id"]})["createdNote"]
    assert renote["text"] is None and renote["renote"]["id"] == target["id"]
    event = stream.event("main")
    assert event["type"] == "renote" and event["body"]["id"] == renote["id"]
    assert stream.event("all")["body"]["id"] == renote["id"]
    quote = alice.ok("notes/create", {"renoteId": target["id"], "text": "a quote"})["createdNote"]
    assert stream.event("plain")["body"]["id"] == quote["id"]  # withRenotes: false skipped the pure renote
    assert Api(world).ok("notes/show", {"noteId": target["id"]})["renoteCount"] == 2
    assert alice.error("notes/create", {"renoteId": renote["id"]})[1] == "CANNOT_RENOTE_TO_A_PURE_RENOTE"
    assert alice.error("notes/create", {"replyId": renote["id"], "text": "x"})[1] == "CANNOT_REPLY_TO_A_PURE_RENOTE"


def test_reactions_votes_and_deletion_reach_captures_and_notes_show(world, streams):
    alice, bob = Api(world, "tok-alice"), Api(world, "tok-bob")
    note = alice.ok("notes/create", {"text": "投票してね", "poll": {"choices": ["a", "b", "c"]}})["createdNote"]
    watcher = streams(world, "tok-alice")
    watcher.connect("main", "main")
    watcher.send("subNote", {"id": note["id"]})
    world.wait_for_captures(note["id"])

    bob.ok("notes/reactions/create", {"noteId": note["id"], "reaction": ":blobcat:"})
    event = watcher.note_updated(note["id"])
    assert event["type"] == "reacted" and problems(event["body"], "noteUpdated:reacted") == []
    assert event["body"] == {"reaction": ":blobcat@.:", "emoji": event["body"]["emoji"],
                             "userId": user_id(world, "bob")}
    notification = watcher.event("main")
    assert notification["body"]["type"] == "reaction" and problems(notification["body"], "Notification") == []
    shown = bob.ok("notes/show", {"noteId": note["id"]})
    assert shown["reactions"] == {":blobcat@.:": 1} and shown["reactionCount"] == 1
    assert shown["myReaction"] == ":blobcat@.:"
    listed = Api(world).ok("notes/reactions", {"noteId": note["id"]})
    assert [(r["user"]["username"], r["type"]) for r in listed] == [("bob", ":blobcat@.:")]

    bob.ok("notes/reactions/delete", {"noteId": note["id"]})
    event = watcher.note_updated(note["id"])
    assert event["type"] == "unreacted" and problems(event["body"], "noteUpdated:unreacted") == []
    assert bob.ok("notes/show", {"noteId": note["id"]})["reactions"] == {}

    bob.ok("notes/polls/vote", {"noteId": note["id"], "choice": 2})
    event = watcher.note_updated(note["id"])
    assert event == {"id": note["id"], "type": "pollVoted", "body": {"choice": 2, "userId": user_id(world, "bob")}}
    choices = bob.ok("notes/show", {"noteId": note["id"]})["poll"]["choices"]
    assert [(c["votes"], c["isVoted"]) for c in choices] == [(0, False), (0, False), (1, True)]
    assert [c["isVoted"] for c in alice.ok("notes/show", {"noteId": note["id"]})["poll"]["choices"]] == [False] * 3

    alice.ok("notes/delete", {"noteId": note["id"]})
    event = watcher.note_updated(note["id"])
    assert event["type"] == "deleted" and problems(event["body"], "noteUpdated:deleted") == []
    assert alice.error("notes/show", {"noteId": note["id"]})[1] == "NO_SUCH_NOTE"


def test_a_history_note_keeps_its_reactions_when_one_is_added(world):
    note = next(n for n in reversed(world.history.notes()) if n["reactionCount"] >= 2 and n["visibility"] == "public")
    before = dict(note["reactions"])
    Api(world, "tok-admin").ok("notes/reactions/create", {"noteId": note["id"], "reaction": "🍮"})
    shown = Api(world).ok("notes/show", {"noteId": note["id"]})
    assert shown["reactions"] == {**before, "🍮": before.get("🍮", 0) + 1}
    assert len(Api(world).ok("notes/reactions", {"noteId": note["id"], "limit": 100})) >= 2


def test_following_changes_what_home_timeline_carries(world, streams):
    api = Api(world, "tok-alice")
    mikan, kuma = (next(u for u in CAST if u.username == name) for name in ("mikan", "kuma"))
    stream = streams(world, "tok-alice")
    stream.connect("homeTimeline", "home")
    unfollowed = api.ok("following/delete", {"userId": mikan.id})
    assert unfollowed["id"] == mikan.id and problems(unfollowed, "UserLite") == []
    world.post_note(author="mikan", text="not for alice any more")
    followed = world.post_note(author="sora", text="still followed")
    assert stream.event("home")["body"]["id"] == followed["id"]

    api.ok("following/create", {"userId": kuma.id})
    kumas = world.post_note(author="kuma", text="now followed")
    assert stream.event("home")["body"]["id"] == kumas["id"]
    timeline = {n["userId"] for n in api.ok("notes/timeline", {"limit": 100})}
    assert kuma.id in timeline and mikan.id not in timeline
    assert api.ok("users/show", {"userId": kuma.id})["isFollowing"] is True
    api.ok("following/create", {"userId": mikan.id})  # as it was, for the other tests


# ---------------------------------------------------------------------------------------------
# Errors and permissions


@pytest.fixture(scope="module")
def app_token(world) -> str:
    """A MiAuth token that may read but not write."""
    return world.approve_miauth("read-only-app", "alice", ["read:account", "read:notifications"])


def test_misskeys_errors_with_their_codes_ids_and_statuses(world):
    alice, bob, anonymous = Api(world, "tok-alice"), Api(world, "tok-bob"), Api(world)
    mine = alice.ok("notes/create", {"text": "mine"})["createdNote"]["id"]
    plain = alice.ok("notes/create", {"text": "no poll"})["createdNote"]["id"]
    poll = alice.ok("notes/create", {"poll": {"choices": ["x", "y"]}})["createdNote"]["id"]
    alice.ok("notes/reactions/create", {"noteId": mine, "reaction": "👍"})
    bob.ok("notes/polls/vote", {"noteId": poll, "choice": 0})
    alice_id = user_id(world, "alice")
    cases = [
        (anonymous, "notes/show", {"noteId": "0000000000000000"}, 400, "NO_SUCH_NOTE",
         "24fcbfc6-2e37-42b6-8388-c29b3861a08d"),
        (alice, "notes/create", {"visibility": "public"}, 400, "INVALID_PARAM", "3d81ceae-475f-4600-b2a8-2bc116157532"),
        (alice, "notes/create", {"text": ""}, 400, "INVALID_PARAM", "3d81ceae-475f-4600-b2a8-2bc116157532"),
        (alice, "notes/create", {"text": "x", "replyId": "nope"}, 400, "NO_SUCH_REPLY_TARGET",
         "749ee0f6-d3da-459a-bf02-282e2da4292c"),
        (alice, "notes/create", {"text": "x", "fileIds": ["nope"]}, 400, "NO_SUCH_FILE",
         "b6992544-63e7-67f0-fa7f-32444b1b5306"),
        (anonymous, "notes/create", {"text": "x"}, 401, "CREDENTIAL_REQUIRED", "1384574d-a912-4b81-8601-c7b1c4085df1"),
        (alice, "notes/reactions/create", {"noteId": mine, "reaction": "👍"}, 400, "ALREADY_REACTED",
         "71efcf98-86d6-4e2b-b2ad-9d032369366b"),
        (bob, "notes/reactions/delete", {"noteId": mine}, 400, "NOT_REACTED", "92f4426d-4196-4125-aa5b-02943e2ec8fc"),
        (bob, "notes/polls/vote", {"noteId": poll, "choice": 1}, 400, "ALREADY_VOTED",
         "0963fc77-efac-419b-9424-b391608dc6d8"),
        (alice, "notes/polls/vote", {"noteId": poll, "choice": 5}, 400, "INVALID_CHOICE",
         "e0cc9a04-f2e8-41e4-a5f1-4127293260cc"),
        (alice, "notes/polls/vote", {"noteId": plain, "choice": 0}, 400, "NO_POLL",
         "5f979967-52d9-4314-a911-1c673727f92f"),
        (bob, "notes/delete", {"noteId": mine}, 400, "ACCESS_DENIED", "fe8d7103-0ea8-4ec3-814d-f8b401dc69e9"),
        (alice, "following/create", {"userId": alice_id}, 400, "FOLLOWEE_IS_YOURSELF",
         "26fbe7bb-a331-4857-af17-205b426669a9"),
        (alice, "following/create", {"userId": user_id(world, "sora")}, 400, "ALREADY_FOLLOWING",
         "35387507-38c7-4cb9-9197-300b93783fa0"),
        (alice, "following/delete", {"userId": user_id(world, "kuma") + "x"}, 400, "NO_SUCH_USER",
         "5b12c78d-2b28-4dca-99d2-f56139b42ff8"),
        (alice, "following/delete", {"userId": user_id(world, "taro")}, 400, "NOT_FOLLOWING",
         "5dbf82f5-c92b-40b1-87d1-6c8c0741fd09"),
        (anonymous, "users/show", {"username": "nobody"}, 400, "NO_SUCH_USER", "4362f8dc-731f-4ad8-a694-be5a88922a24"),
        (anonymous, "users/notes", {"userId": "nobody"}, 400, "NO_SUCH_USER", "27e494ba-2ac2-48e8-893b-10d4d8c2387b"),
    ]
    for client, endpoint, body, status, code, error_id in cases:
        assert client.error(endpoint, body) == (status, code, error_id), (endpoint, body)
    Api(world, "tok-admin").ok("notes/delete", {"noteId": mine})  # a moderator may delete anyone's note


def test_an_app_token_without_the_permission_gets_permission_denied(world, app_token):
    app = Api(world, app_token)
    assert app.ok("i")["username"] == "alice"
    note = next(n for n in reversed(world.history.notes()) if n["visibility"] == "public")
    for endpoint, body in (("notes/create", {"text": "x"}), ("notes/reactions/create", {"noteId": note["id"],
                                                                                         "reaction": "👍"}),
                           ("following/delete", {"userId": user_id(world, "sora")})):
        assert app.error(endpoint, body) == (403, "PERMISSION_DENIED", "1370e5b7-d4eb-4566-bb1d-7748ee6a1838")
    assert app.ok("notes/show", {"noteId": note["id"]})["id"] == note["id"]  # reading needs no permission
    websocket.create_connection(world.url + f"?i={app_token}", timeout=10).close()  # read:account: it may stream
    writer = world.approve_miauth("write-only-app", "alice", ["write:notes"])
    assert Api(world, writer).ok("notes/create", {"text": "from a write-only app"})["createdNote"]
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        websocket.create_connection(world.url + f"?i={writer}", timeout=10)
    assert refused.value.status_code == 401  # no read:account: the stream refuses it before the upgrade


@pytest.mark.parametrize(("body", "content_type"), [
    (b"--x\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\n\r\n\x89PNG\r\n--x--\r\n",
     "multipart/form-data; boundary=x"),
    (b"{not json", "application/json"),
    (b"", "application/json"),
    (b"[1, 2]", "application/json"),
])
def test_an_unknown_endpoint_is_404_whatever_the_body(world, body, content_type):
    status, answer = Api(world).raw("drive/files/create", body, content_type)
    assert status == 404 and answer["error"]["code"] == "UNKNOWN_API_ENDPOINT"
    status, answer = Api(world).raw("meta", b"{not json", "application/json")
    assert status == 400  # a known endpoint still reads its body


# ---------------------------------------------------------------------------------------------
# Channels that are about the user's own things


@pytest.mark.parametrize(("channel", "params", "token", "events"), [
    ("drive", {}, "tok-alice", {"fileCreated"}),
    ("chatUser", {"otherId": "9xyz0000000000ab"}, "tok-alice", {"message"}),
    ("chatRoom", {"roomId": "room1"}, "tok-alice", {"message"}),
    ("reversi", {}, "tok-alice", {"invited", "matched"}),
    ("reversiGame", {"gameId": "game1"}, None, {"updateSettings", "changeReadyStates", "started", "log", "ended"}),
    ("admin", {}, "tok-admin", {"newAbuseUserReport"}),
])
def test_drive_chat_reversi_and_admin_channels_get_events_of_the_real_shapes(world, streams, channel, params, token,
                                                                           events):
    stream = streams(world, token)
    stream.connect(channel, "side", **params)
    seen = set()
    for _ in range(30):
        assert world.channel_activity(channel) == 1
        event = stream.event("side")
        assert problems(event["body"], f"stream:{channel}/{event['type']}") == [], event
        recorded = RECORDED.get(f"{channel}.{event['type']}")
        if recorded is not None:  # the keys, in order, of what a real server sent (tests/fixtures/frames.jsonl)
            assert keys(event["body"]) == keys(recorded), event["type"]
        seen.add(event["type"])
    assert events <= seen


def keys(value: Any) -> Any:
    """The key lists of a JSON value and of the objects directly inside it."""
    if not isinstance(value, dict):
        return type(value).__name__
    return [(k, list(v) if isinstance(v, dict) else None) for k, v in value.items()]


RECORDED = {line["what"]: json.loads(line["raw"])["body"]["body"] for line in reversed(fixture_frames())
            if line["raw"] and ":" not in line["what"] and line["what"].split(".")[0] in
            ("drive", "chatUser", "chatRoom", "reversi", "reversiGame", "admin", "main")}


def test_a_direct_message_is_also_announced_on_main_like_the_recording(world, streams):
    stream = streams(world, "tok-alice")
    stream.connect("chatUser", "chat", otherId=user_id(world, "bob"))
    stream.connect("main", "main")
    for _ in range(40):
        world.channel_activity("chatUser")
        message = stream.event("chat")
        if message["type"] == "message":
            announced = stream.event("main")
            assert announced["type"] == "newChatMessage" and announced["body"]["id"] == message["body"]["id"]
            assert problems(announced["body"], "ChatMessage") == []
            assert keys(announced["body"]) == keys(RECORDED["main.newChatMessage"])
            assert announced["body"]["fromUser"]["username"] == "bob"
            return
    raise AssertionError("no message in 40 chat events")


def test_a_drive_upload_is_also_announced_on_main(world, streams):
    stream = streams(world, "tok-bob")
    stream.connect("drive", "drive")
    stream.connect("main", "main")
    for _ in range(40):
        world.channel_activity("drive")
        if stream.event("drive")["type"] == "fileCreated":
            announced = stream.event("main")
            assert announced["type"] == "driveFileCreated" and problems(announced["body"], "DriveFile") == []
            return
    raise AssertionError("no upload in 40 drive events")


# ---------------------------------------------------------------------------------------------
# Generated traffic, over many seeds


@pytest.mark.parametrize("seed", range(8))
def test_generated_notes_main_events_and_note_events_have_the_declared_types(seed):
    traffic = Traffic(seed=seed, clock=lambda: (AIDX_EPOCH_MS + 10 ** 12) / 1000)
    viewer = traffic.account("alice")
    for channel, params in (("globalTimeline", {}), ("homeTimeline", {}), ("hashtag", {"q": [["misskey"]]}),
                            ("channel", {"channelId": "c1"}), ("localTimeline", {"withFiles": True})):
        for _ in range(15):
            note = traffic.note_for(channel, params, viewer)
            assert problems(note, "Note") == [], note
            kind, body = traffic.note_event(note["id"]) or ("deleted", {"deletedAt": "x"})
            assert problems(body, f"noteUpdated:{kind}") == []
    for _ in range(30):
        for event, body in traffic.main_events(viewer):
            assert problems(body, f"stream:main/{event}") == [], (event, body)
        kind, body = traffic.broadcast()
        assert problems(body, f"broadcast:{kind}") == [], (kind, body)


# ---------------------------------------------------------------------------------------------
# Hostile bodies: every endpoint answers Misskey's error, never a crash

HOSTILE_VALUES = (None, 0, -1, 1.5, True, "", "x", "0" * 5000, [], [1], ["a", "a"], {}, {"choices": "ab"},
                  {"choices": ["a", 1]}, {"choices": ["a", "b"], "expiresAt": "soon"}, {"choices": ["a", "b"],
                                                                                        "expiredAfter": 0})
PARAMS = {
    "notes/show": ("noteId",),
    "notes/create": ("text", "cw", "visibility", "visibleUserIds", "replyId", "renoteId", "channelId", "poll",
                     "fileIds", "localOnly", "reactionAcceptance", "noExtractHashtags"),
    "notes/delete": ("noteId",),
    "notes/reactions": ("noteId", "type", "limit", "sinceId", "untilId"),
    "notes/reactions/create": ("noteId", "reaction"),
    "notes/reactions/delete": ("noteId",),
    "notes/polls/vote": ("noteId", "choice"),
    "users/show": ("userId", "userIds", "username", "host"),
    "users/notes": ("userId", "limit", "withReplies", "withRenotes", "withFiles", "sinceDate"),
    "following/create": ("userId", "withReplies"),
    "following/delete": ("userId",),
    "emojis": ("limit",),
    "notes/local-timeline": ("limit", "sinceId", "untilId", "sinceDate", "untilDate", "withRenotes", "withFiles"),
    "notes/timeline": ("limit", "sinceId", "withRenotes"),
    "notes/user-list-timeline": ("listId", "limit"),
    "notes/search-by-tag": ("query", "tag", "limit"),
    "i/notifications": ("limit", "includeTypes", "excludeTypes", "untilId"),
    "meta": ("detail",),
}


@pytest.mark.parametrize("endpoint", sorted(PARAMS))
def test_every_endpoint_answers_any_body_with_an_answer_or_misskeys_error(endpoint):
    with Simulator(seed=3) as sim:
        poll = sim.post_note(author="alice", kind="poll")
        valid = {"noteId": poll["id"], "userId": user_id(sim, "kuma"), "text": "ok", "reaction": "👍", "choice": 0}
        api = Api(sim, "tok-alice")
        for name in PARAMS[endpoint]:
            for value in HOSTILE_VALUES:
                body = {k: v for k, v in valid.items() if k in PARAMS[endpoint]}
                body[name] = value
                status, answer = api.call(endpoint, body)
                assert status in (200, 204, 400), (endpoint, name, value, status, answer)
                if status == 400:
                    assert problems(answer, "Error") == [], answer
                elif status == 200:
                    assert problems(answer, f"endpoint:{endpoint}") == [], (endpoint, name, value)
        assert sim.errors == []
