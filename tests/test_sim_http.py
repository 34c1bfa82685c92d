"""The simulator's HTTP API against the real server's answers (tests/fixtures/rest.jsonl), over loopback.

The honesty test replays the recording: the notes and notifications the real server answered
with are posted into a simulator (user ids mapped to the simulator's accounts), every recorded
request is sent again, and the simulator must answer the same ids in the same order, with the
same error objects. The other tests compare shapes (keys and nesting) and the knobs.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
from functools import cache
from typing import Any

import pytest
import websocket
from conftest import FIXTURES, shape

from misskey_cli.simulator import Simulator


@cache
def rest() -> tuple[dict[str, Any], ...]:
    with open(FIXTURES / "rest.jsonl", encoding="utf-8") as lines:
        return tuple(json.loads(line) for line in lines if line.strip())


def recorded(what: str) -> dict[str, Any]:
    return next(line for line in rest() if line["what"].startswith(what))


class Answer:
    def __init__(self, response: http.client.HTTPResponse) -> None:
        self.status = response.status
        self.headers = {k.lower(): v for k, v in response.getheaders()}
        self.raw = response.read()

    @property
    def json(self) -> Any:
        return json.loads(self.raw)


def request(sim: Simulator, method: str, path: str, body: bytes | None = None,
            headers: dict[str, str] | None = None, context: ssl.SSLContext | None = None) -> Answer:
    if context is not None:
        conn: http.client.HTTPConnection = http.client.HTTPSConnection("127.0.0.1", sim.port, timeout=10,
                                                                      context=context)
    else:
        conn = http.client.HTTPConnection("127.0.0.1", sim.port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        return Answer(conn.getresponse())
    finally:
        conn.close()


def post(sim: Simulator, endpoint: str, body: dict[str, Any] | None = None, token: str | None = None,
         bearer: str | None = None, **kwargs: Any) -> Answer:
    payload = dict(body or {})
    if token is not None:
        payload["i"] = token
    headers = {"Content-Type": "application/json"}
    if bearer is not None:
        headers["Authorization"] = f"Bearer {bearer}"
    return request(sim, "POST", f"/api/{endpoint}", json.dumps(payload).encode(), headers, **kwargs)


# ---------------------------------------------------------------------------------------------
# Replaying the recording

VIEWER_TOKENS = {"admin": "tok-admin", "anonymous": None, "bad-token": "not-a-token"}


def _notes_of(value: Any, found: dict[str, dict[str, Any]]) -> None:
    if isinstance(value, list):
        for item in value:
            _notes_of(item, found)
    elif isinstance(value, dict):
        if "renoteId" in value and "createdAt" in value:
            found.setdefault(value["id"], value)
        for key in ("note", "reply", "renote"):
            _notes_of(value.get(key), found)


def _remap(value: Any, ids: dict[str, str]) -> Any:
    if isinstance(value, dict):
        return {k: _remap(v, ids) for k, v in value.items()}
    if isinstance(value, list):
        return [_remap(v, ids) for v in value]
    return ids.get(value, value) if isinstance(value, str) else value


@pytest.fixture(scope="module")
def replay_sim():
    with Simulator(seed=1, history=0) as sim:  # only the recording's notes, for the ids to match
        users = {"admin": sim.traffic.account("admin").id, "alice": sim.traffic.account("alice").id}
        ids = {}
        for line in rest():
            for user in _users_of(line["response"]):
                ids[user["id"]] = users[user["username"]]
        notes: dict[str, dict[str, Any]] = {}
        for line in rest():
            if line.get("endpoint", "").startswith(("notes/", "i/")):
                _notes_of(line["response"], notes)
        for note_id in sorted(notes):
            sim.post_note(_remap(notes[note_id], ids))
        for notification in sorted(recorded("i/notifications")["response"], key=lambda n: n["id"]):
            sim.main_event("admin", "notification", _remap(notification, ids))
        yield sim
        assert sim.errors == []


def _users_of(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, list):
        return [u for item in value for u in _users_of(item)]
    if isinstance(value, dict):
        found = [value] if "username" in value and "avatarUrl" in value else []
        return found + [u for v in value.values() for u in _users_of(v)]
    return []


REPLAYED = [line for line in rest() if line.get("endpoint", "").startswith(("notes/", "i/"))]


@pytest.mark.parametrize("line", REPLAYED, ids=[line["what"] for line in REPLAYED])
def test_the_simulator_answers_the_recorded_requests_like_the_real_server(replay_sim, line):
    answer = post(replay_sim, line["endpoint"], line["body"], VIEWER_TOKENS[line["viewer"]])
    assert answer.status == line["status"]
    if isinstance(line["response"], list):
        assert [item["id"] for item in answer.json] == [item["id"] for item in line["response"]]
        assert [shape(item) for item in answer.json] == [shape(item) for item in line["response"]]
    else:
        assert answer.json == line["response"]  # the error objects, exactly


def test_the_recorded_errors_and_the_rejected_token(sim):
    for what, token in (("i:rejected token", "not-a-token"), ("notes/timeline:anonymous", None)):
        line = recorded(what)
        answer = post(sim, line["endpoint"], line["body"], token)
        assert (answer.status, answer.json) == (line["status"], line["response"])
        assert "www-authenticate" in answer.headers


# ---------------------------------------------------------------------------------------------
# Shapes

def test_i_has_the_real_shape_by_body_token_or_bearer(sim):
    real = recorded("i:who the token belongs to")["response"]
    by_body = post(sim, "i", {}, "tok-admin")
    by_bearer = post(sim, "i", {}, bearer="tok-admin")
    assert by_body.status == by_bearer.status == 200
    assert shape(by_body.json) == shape(real)
    assert by_body.json == by_bearer.json
    assert by_body.json["username"] == "admin" and by_body.json["isModerator"] is True
    assert post(sim, "i", {}, "tok-alice").json["isModerator"] is False


def test_a_suspended_token_is_forbidden_on_login_endpoints(sim):
    answer = post(sim, "i", {}, "tok-suspended")
    assert answer.status == 403
    assert answer.json["error"]["code"] == "YOUR_ACCOUNT_SUSPENDED"
    assert set(answer.json["error"]) == {"message", "code", "id", "kind"}
    assert post(sim, "i", {}).json["error"]["code"] == "CREDENTIAL_REQUIRED"


def test_meta_lite_has_the_real_shape_and_detail_adds_features(sim):
    real = recorded("meta:")["response"]
    lite = post(sim, "meta", {"detail": False}).json
    assert shape(lite) == shape(real) and list(lite) == list(real)
    detailed = post(sim, "meta").json
    assert detailed["features"]["miauth"] is True
    assert detailed["version"] == "2026.5.1"  # the release whose shapes the simulator follows


def test_nodeinfo_has_the_real_shape_and_names_the_configured_software():
    with Simulator(software_name="sharkey", software_version="2025.4.3") as sim:
        links = request(sim, "GET", "/.well-known/nodeinfo").json
        assert shape(links) == shape(recorded("nodeinfo:discovery")["response"])
        href = links["links"][0]["href"]
        assert href == f"http://{sim.host_port}/nodeinfo/2.1"
        info = request(sim, "GET", "/nodeinfo/2.1")
        assert info.status == 200 and info.headers["content-type"].startswith("application/json")
        assert shape(info.json) == shape(recorded("nodeinfo:2.1")["response"])
        assert info.json["software"]["name"] == "sharkey"
        assert info.json["software"]["version"] == post(sim, "meta").json["version"] == "2025.4.3"


def test_generated_notes_have_the_shape_of_the_real_answers(sim):
    real = recorded("notes/local-timeline:sinceId-only")["response"]
    sim.post_note(author="admin", text="ギャップ 🎉 #mkgap", reactionAcceptance=None)
    sim.post_note(author="admin", text="plain", reactionAcceptance=None)
    tagged, plain = post(sim, "notes/local-timeline", {"limit": 2}).json[::-1]
    assert shape(tagged) == shape(real[0])
    assert shape(plain) == shape(real[1])
    assert "reactionAndUserPairCache" not in tagged  # the stream's timelines carry it; the API does not


# ---------------------------------------------------------------------------------------------
# Ordering, limits, params

@pytest.fixture
def five():
    with Simulator(history=0) as sim:  # no notes of the past: the answers are exactly these five
        yield sim, [sim.post_note(author="admin", text=f"note {i}")["id"] for i in range(5)]
        assert sim.errors == []


@pytest.mark.parametrize(("body", "expected"), [
    ({}, [4, 3, 2, 1, 0]),
    ({"limit": 2}, [4, 3]),
    ({"sinceId": 1}, [2, 3, 4]),
    ({"sinceId": 1, "limit": 2}, [2, 3]),
    ({"untilId": 3}, [2, 1, 0]),
    ({"untilId": 3, "limit": 1}, [2]),
    ({"sinceId": 0, "untilId": 4}, [3, 2, 1]),
    ({"sinceId": 4}, []),
    ({"sinceId": "nope"}, []),
    ({"sinceDate": -1}, [0, 1, 2, 3, 4]),
    ({"untilDate": 2 ** 52}, [4, 3, 2, 1, 0]),
])
def test_ordering_and_paging(five, body, expected):
    sim, ids = five
    params = {k: ids[v] if isinstance(v, int) and k.endswith("Id") else v for k, v in body.items()}
    if params.get("sinceDate") == -1:
        params["sinceDate"] = 0
    answer = post(sim, "notes/local-timeline", params)
    assert answer.status == 200
    assert [n["id"] for n in answer.json] == [ids[i] for i in expected]


@pytest.mark.parametrize(("body", "param", "reason"), [
    ({"limit": 0}, "#/properties/limit/minimum", "must be >= 1"),
    ({"limit": 101}, "#/properties/limit/maximum", "must be <= 100"),
    ({"limit": "3"}, "#/properties/limit/type", "must be integer"),
    ({"sinceId": 3}, "#/properties/sinceId/type", "must be string"),
    ({"withRenotes": "no"}, "#/properties/withRenotes/type", "must be boolean"),
])
def test_invalid_params(sim, body, param, reason):
    answer = post(sim, "notes/local-timeline", body)
    assert answer.status == 400
    error = answer.json["error"]
    assert error["code"] == "INVALID_PARAM" and error["info"] == {"param": param, "reason": reason}


def test_limit_boundaries_are_accepted(sim):
    assert post(sim, "notes/local-timeline", {"limit": 1}).status == 200
    assert post(sim, "notes/local-timeline", {"limit": 100}).status == 200


def test_each_timeline_endpoint_mirrors_its_channel(sim):
    public = sim.post_note(author="alice", text="public #Tag")
    listed = sim.post_note(author="bob", text="in a list", list_ids=["L"], antenna_ids=["A"], role_ids=["R"])
    in_channel = sim.post_note(author="alice", text="in a channel", channelId="C")
    followers = sim.post_note(author="bob", text="followers", visibility="followers")

    def ids(endpoint: str, body: dict[str, Any], token: str | None = "tok-alice") -> list[str]:
        answer = post(sim, endpoint, body, token)
        assert answer.status == 200, answer.json
        return [n["id"] for n in answer.json]

    assert public["id"] in ids("notes/local-timeline", {}, None)
    assert in_channel["id"] not in ids("notes/local-timeline", {}, None)
    assert followers["id"] in ids("notes/timeline", {})
    assert followers["id"] not in ids("notes/global-timeline", {}, None)
    assert ids("notes/user-list-timeline", {"listId": "L"}) == [listed["id"]]
    assert ids("antennas/notes", {"antennaId": "A"}) == [listed["id"]]
    assert ids("roles/notes", {"roleId": "R"}, None) == [listed["id"]]
    assert ids("channels/timeline", {"channelId": "C"}, None) == [in_channel["id"]]
    assert ids("notes/search-by-tag", {"query": [["tag"]]}, None) == [public["id"]]
    assert ids("notes/search-by-tag", {"tag": "tag"}, None) == [public["id"]]
    for endpoint in ("notes/timeline", "notes/hybrid-timeline", "antennas/notes", "i/notifications"):
        assert post(sim, endpoint, {"antennaId": "A"}).json["error"]["code"] == "CREDENTIAL_REQUIRED"
    missing = post(sim, "channels/timeline", {})
    assert missing.status == 400 and missing.json["error"]["info"]["param"] == "#/required"


def test_notes_routed_on_the_stream_are_in_the_history_too(sim):
    ws = websocket.create_connection(sim.url, timeout=10)
    try:
        ws.send(json.dumps({"type": "connect", "body": {"channel": "localTimeline", "id": "l", "pong": True}}))
        assert json.loads(ws.recv())["type"] == "connected"
        note = sim.post_note(author="alice", text="seen live")
        assert json.loads(ws.recv())["body"]["body"]["id"] == note["id"]
    finally:
        ws.close()
    assert post(sim, "notes/local-timeline").json[0]["id"] == note["id"]  # the newest, before the history


def test_notes_show_and_users_show_answer_what_the_stream_carried(sim):
    note = sim.post_note(author="alice", text="shown by id")
    shown = post(sim, "notes/show", {"noteId": note["id"]})
    assert shown.status == 200 and shown.json["id"] == note["id"] and shown.json["text"] == "shown by id"
    assert "reactionAndUserPairCache" not in shown.json
    user = post(sim, "users/show", {"userId": note["userId"]})
    assert user.status == 200 and (user.json["id"], user.json["username"]) == (note["userId"], "alice")
    missing = post(sim, "notes/show", {"noteId": "0000000000000000"})
    assert missing.status == 400 and missing.json["error"]["code"] == "NO_SUCH_NOTE"
    nobody = post(sim, "users/show", {"userId": "nobody"})
    assert nobody.status == 400 and nobody.json["error"]["code"] == "NO_SUCH_USER"
    assert post(sim, "notes/show", {}).json["error"]["code"] == "INVALID_PARAM"


@pytest.fixture
def empty_sim():
    with Simulator(history=0) as sim:  # no notes or notifications of the past: answers are exactly the test's
        yield sim
        assert sim.errors == []


def test_notifications_are_kept_per_user_with_their_ids(empty_sim):
    sim = empty_sim
    first = sim.notify("alice", "app")
    second = sim.notify("alice", "achievementEarned", achievement="notes1")
    sim.notify("bob", "app")
    answer = post(sim, "i/notifications", {}, "tok-alice")
    assert [n["id"] for n in answer.json] == [second["id"], first["id"]]
    assert [n["id"] for n in post(sim, "i/notifications", {"sinceId": first["id"]}, "tok-alice").json] == \
        [second["id"]]
    assert [n["type"] for n in post(sim, "i/notifications", {"includeTypes": ["app"]}, "tok-alice").json] == ["app"]


def test_unknown_endpoints_and_bad_bodies(sim):
    answer = post(sim, "no/such/endpoint")
    assert answer.status == 404 and answer.json["error"]["code"] == "UNKNOWN_API_ENDPOINT"
    assert request(sim, "POST", "/api/meta", b"{not json", {"Content-Type": "application/json"}).status == 400
    assert request(sim, "POST", "/api/meta", b"[1]", {"Content-Type": "application/json"}).status == 400
    assert request(sim, "POST", "/api/meta", b"", {}).status == 200  # no body at all is {}


# ---------------------------------------------------------------------------------------------
# MiAuth

def test_miauth_hands_out_the_token_exactly_once_and_it_works_on_both_apis(sim):
    session = "7d29f986-5e07-423b-ab4f-06dc579472ec"
    page = request(sim, "GET", f"/miauth/{session}?name=mkstream&permission=read:account,read:notifications")
    assert page.status == 200 and b"mkstream" in page.raw and page.headers["content-type"].startswith("text/html")
    assert sim.miauth_requests() == [{"session": session, "name": "mkstream",
                                      "permission": "read:account,read:notifications"}]
    check = f"miauth/{session}/check"
    assert post(sim, check).json == recorded("miauth check:not yet approved")["response"]
    token = sim.approve_miauth(session)  # as admin, whose profile is like the recording's
    ok = post(sim, check).json
    assert shape(ok) == shape(recorded("miauth check:approved")["response"])
    assert ok["token"] == token and ok["user"]["username"] == "admin"
    assert post(sim, check).json == recorded("miauth check:asked again")["response"]
    assert post(sim, "i", {}, token).json["username"] == "admin"
    websocket.create_connection(f"{sim.url}?i={token}", timeout=10).close()
    assert token not in json.dumps(sim.http_requests())


def test_a_shell_user_can_approve_over_http(sim):
    assert post(sim, "_sim/miauth/s1/approve", {"username": "bob"}).json == {"ok": True}
    assert post(sim, "miauth/s1/check").json["user"]["username"] == "bob"


def test_a_server_without_miauth():
    with Simulator(miauth=False) as sim:
        assert post(sim, "meta").json["features"]["miauth"] is False
        # A server without MiAuth has no such endpoint: the generic unknown-endpoint 404.
        answer = post(sim, "miauth/s1/check")
        assert answer.status == 404 and answer.json["error"]["code"] == "UNKNOWN_API_ENDPOINT"
        assert request(sim, "GET", "/miauth/s1?name=x").status == 404


# ---------------------------------------------------------------------------------------------
# Faults, the clock, the record

def test_fail_next_answers_429_with_retry_after_then_recovers(sim):
    sim.fail_next("i", 429, count=2, retry_after=3)
    for _ in range(2):
        answer = post(sim, "i", {}, "tok-alice")
        assert answer.status == 429 and answer.headers["retry-after"] == "3"
        assert answer.json["error"]["code"] == "RATE_LIMIT_EXCEEDED"
        assert answer.json["error"]["id"] == "d5826d14-3982-4d2e-8011-b9e9f02499ef"
    assert post(sim, "i", {}, "tok-alice").status == 200
    assert post(sim, "meta").status == 200  # another endpoint was never affected


@pytest.mark.parametrize(("status", "json_body"), [(500, True), (502, False), (503, False)])
def test_fail_next_server_errors(sim, status, json_body):
    sim.fail_next("*", status)
    answer = post(sim, "meta")
    assert answer.status == status
    assert answer.headers["content-type"].startswith("application/json") is json_body
    if json_body:
        assert answer.json["error"]["code"] == "INTERNAL_ERROR" and answer.json["error"]["kind"] == "server"
    assert post(sim, "meta").status == 200


def test_fail_next_with_count_0_drops_the_faults_still_queued(sim):
    sim.fail_next("i", 503, count=5)
    assert post(sim, "i", {}, "tok-alice").status == 503
    sim.fail_next("i", 503, count=0)
    assert post(sim, "i", {}, "tok-alice").status == 200

def test_every_answer_has_a_date_that_a_clock_offset_skews():
    from email.utils import parsedate_to_datetime

    with Simulator(clock_offset=-3600) as sim:
        before = parsedate_to_datetime(post(sim, "meta").headers["date"])
        sim.set_clock_offset(0)
        after = parsedate_to_datetime(request(sim, "GET", "/nodeinfo/2.1").headers["date"])
        assert 3590 <= (after - before).total_seconds() <= 3610
        assert post(sim, "meta").headers["connection"] == "close"


def test_the_record_has_every_request_but_never_a_token(sim):
    post(sim, "i", {"detail": True}, "tok-alice")
    post(sim, "i", {}, bearer="tok-bob")
    post(sim, "meta")
    records = sim.wait_for_http_requests(3)
    assert [(r["endpoint"], r["auth"], r["token"], r["status"]) for r in records] == [
        ("i", "body", True, 200), ("i", "bearer", True, 200), ("meta", None, False, 200)]
    assert records[0]["body"] == {"detail": True}
    text = json.dumps(records)
    assert "tok-alice" not in text and "tok-bob" not in text


def test_the_websocket_side_is_unchanged(sim):
    raw = socket.create_connection(("127.0.0.1", sim.port), timeout=10)
    try:
        raw.sendall(b"GET /streaming HTTP/1.1\r\nHost: x\r\n\r\n")
        assert raw.recv(100).startswith(b"HTTP/1.1 503 ")
    finally:
        raw.close()
    post(sim, "meta")
    websocket.create_connection(sim.url, timeout=10).close()
    assert [h["status"] for h in sim.handshakes] == [503, 101]  # HTTP API calls are no handshakes


def test_the_api_answers_over_tls(certificate):
    cert, key = certificate
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert, key)
    client_context = ssl.create_default_context(cafile=str(cert))
    with Simulator(ssl_context=server_context) as sim:
        assert sim.api_url == f"https://{sim.host_port}"
        assert post(sim, "i", {}, "tok-alice", context=client_context).json["username"] == "alice"
        websocket.create_connection(sim.url, timeout=10, sslopt={"ca_certs": str(cert)}).close()
