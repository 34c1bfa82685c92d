"""Live notes through the real CLI against the simulator (issue 25): --capture-seen captures what the
channels deliver, the line view names the note and the reactor of a noteUpdated, ``capture`` shows
the note first."""

from __future__ import annotations

import json
import subprocess

from helpers import SAFETY, finish, in_background, join_ok, records, run_cli, spawn
from test_reliability import LineReader

FAST = ("--reconnect-delay", "0.05")


def host(sim):
    return ("--host", f"http://{sim.host_port}")


def sub(note_id):
    return lambda f: f == {"type": "subNote", "body": {"id": note_id}}


def unsub(note_id):
    return lambda f: f == {"type": "unsubNote", "body": {"id": note_id}}


def capture_frames(sim, socket=None):
    frames = sim.client_frames() if socket is None else sim.client_frames_of(socket)
    return [(f["type"], f["body"]["id"]) for f in frames if f.get("type") in ("subNote", "unsubNote", "sr", "s")]


def reacted(user_id, reaction="👍"):
    return {"reaction": reaction, "emoji": None, "userId": user_id}


def user_id(sim, username):
    return sim.traffic.find_user(username).id


def test_seen_notes_are_captured_without_being_named_and_their_reactions_arrive(sim):
    def feed():
        sim.wait_for_subscription("localTimeline")
        note = sim.post_note(author="sora", text="first")
        sim.wait_for_client_frame(sub(note["id"]))
        renote = sim.post_note(author="sora", kind="pure_renote")
        sim.wait_for_client_frame(sub(renote["renote"]["id"]))  # the renoted note is shown, so captured
        assert sim.note_updated(note["id"], "reacted", reacted("u1")) == 1
        assert sim.note_updated(renote["renote"]["id"], "deleted", {"deletedAt": "2026-12-05T03:00:00.000Z"}) == 1
        notes.extend([note, renote])

    notes: list = []
    feeder = in_background(feed)
    result = run_cli("connect", "localTimeline", "--capture-seen", "10", *host(sim), "-n", "4", "--ndjson",
                     "--stats", *SAFETY)
    join_ok(feeder)
    assert result.exit_code == 0, result.stderr
    note, renote = notes
    got = [(r["type"], r["body"]["type"], r["body"]["id"] if r["type"] == "noteUpdated" else r["body"]["body"]["id"])
           for r in records(result)]
    assert got == [("channel", "note", note["id"]), ("channel", "note", renote["id"]),
                   ("noteUpdated", "reacted", note["id"]), ("noteUpdated", "deleted", renote["renote"]["id"])]
    sim.wait_for_client_frame(unsub(note["id"]))  # released on the way out, like named captures
    assert capture_frames(sim)[:4] == [("subNote", note["id"]), ("subNote", renote["id"]),
                                       ("subNote", renote["renote"]["id"]),
                                       ("unsubNote", renote["renote"]["id"])]  # deleted: nothing more to come
    assert "seen notes captured 3, released 1" in result.stderr


def test_the_budget_releases_the_note_seen_longest_ago_and_its_reactions_stop(sim):
    proc = spawn("connect", "localTimeline", "--capture", "named1", "--capture-seen", "2", *host(sim), "--ndjson",
                 "--jq", 'select(.type == "noteUpdated") | .body.id', "-r", "--stats", *SAFETY)
    try:
        reader = LineReader(proc)
        sim.wait_for_subscription("localTimeline")
        a, b, c = (sim.post_note(author="sora", text=t)["id"] for t in ("a", "b", "c"))
        sim.wait_for_client_frame(sub(c))
        sim.wait_for_captures(a, count=0)
        assert sim.note_updated(a, "reacted", reacted("u1")) == 0  # released: the server no longer sends it
        assert sim.note_updated("named1", "reacted", reacted("u1")) == 1  # named: never released
        assert sim.note_updated(c, "reacted", reacted("u1")) == 1
        reader.until(lambda line: line == c)
    finally:
        proc.terminate()
        code, _, err = finish(proc)
    assert code == 143
    assert reader.lines == ["named1", c]
    assert capture_frames(sim)[:5] == [("subNote", "named1"), ("subNote", a), ("subNote", b), ("unsubNote", a),
                                       ("subNote", c)]
    assert "seen notes captured 3, released 1" in err


def test_a_reconnect_restores_the_seen_captures_and_never_sends_sr(sim):
    proc = spawn("connect", "localTimeline", "--capture-seen", "5", *host(sim), *FAST, "--ndjson",
                 "--jq", 'select(.type == "noteUpdated") | .body.id', "-r", *SAFETY)
    try:
        reader = LineReader(proc)
        sim.wait_for_subscription("localTimeline")
        a, b = (sim.post_note(author="sora", text=t)["id"] for t in ("a", "b"))
        sim.wait_for_client_frame(sub(b))
        sim.drop_all()
        sim.wait_for_sockets(2)
        sim.wait_for_client_frame(sub(b), after=1)
        assert sim.note_updated(a, "reacted", reacted("u1")) == 1
        reader.until(lambda line: line == a)
    finally:
        proc.terminate()
        finish(proc)
    assert capture_frames(sim, 1)[:2] == [("subNote", a), ("subNote", b)]
    assert not [f for f in sim.client_frames() if f.get("type") == "sr"]


def test_a_recording_lists_the_named_captures_not_the_seen_ones(sim, tmp_path):
    def feed():
        sim.wait_for_subscription("localTimeline")
        for text in ("a", "b", "c"):
            sim.wait_for_client_frame(sub(sim.post_note(author="sora", text=text)["id"]))

    feeder = in_background(feed)
    recording = tmp_path / "rec.ndjson"
    result = run_cli("connect", "localTimeline", "--capture", "n1", "--capture-seen", "2", "--record", str(recording),
                     *host(sim), "-n", "3", "--ndjson", *SAFETY)
    join_ok(feeder)
    assert result.exit_code == 0, result.stderr
    lines = [json.loads(line) for line in recording.read_text().splitlines()]
    assert lines[0]["captures"] == ["n1"]
    assert not [line for line in lines if line.get("event") == "subscriptions"]  # not one per note seen
    assert len([line for line in lines if "frame" in line]) == 3


def test_stdin_sub_of_a_seen_note_keeps_it_and_unsub_releases_it(sim):
    proc = spawn("connect", "localTimeline", "--capture-seen", "1", "--stdin", *host(sim), "--ndjson",
                 stdin=subprocess.PIPE)
    try:
        sim.wait_for_subscription("localTimeline")
        a = sim.post_note(author="sora", text="a")["id"]
        sim.wait_for_client_frame(sub(a))
        proc.stdin.write(f"sub {a}\nsub marker\n".encode())  # the marker's subNote says both are applied
        proc.stdin.flush()
        sim.wait_for_client_frame(sub("marker"))
        b = sim.post_note(author="sora", text="b")["id"]
        sim.wait_for_client_frame(sub(b))
        c = sim.post_note(author="sora", text="c")["id"]
        sim.wait_for_client_frame(sub(c))
        proc.stdin.write(f"unsub {a}\n".encode())
        proc.stdin.flush()
        sim.wait_for_client_frame(unsub(a))
    finally:
        proc.terminate()
        finish(proc)
    assert capture_frames(sim)[:6] == [("subNote", a), ("subNote", "marker"), ("subNote", b), ("unsubNote", b),
                                       ("subNote", c), ("unsubNote", a)]


def test_the_line_view_names_reactor_author_and_text(sim):
    hanako = user_id(sim, "hanako")

    def feed():
        sim.wait_for_subscription("localTimeline")
        note = sim.post_note(author="sora", text="hello\nworld")
        sim.wait_for_client_frame(sub(note["id"]))
        sim.note_updated(note["id"], "reacted", reacted(hanako))
        sim.note_updated(note["id"], "unreacted", {"reaction": "👍", "userId": hanako})
        sim.note_updated(note["id"], "reacted", reacted("nobody", ":blobcat@.:"))  # users/show fails: the id
        sim.note_updated(note["id"], "pollVoted", {"choice": 0, "userId": note["userId"]})  # the author: no lookup
        sim.note_updated(note["id"], "updated", {"cw": None, "text": "hello again"})  # forks with editing
        sim.note_updated(note["id"], "deleted", {"deletedAt": "2026-12-05T03:00:00.000Z"})
        ids.append(note["id"])

    ids: list = []
    feeder = in_background(feed)
    result = run_cli("connect", "localTimeline", "--capture-seen", "5", *host(sim), "-n", "7", "--format", "line",
                     *SAFETY)
    join_ok(feeder)
    assert result.exit_code == 0, result.stderr
    [note_id] = ids
    lines = [line.split(" ", 1)[1] for line in result.stdout.splitlines()]
    assert lines == [
        "localTimeline @sora: hello ⏎ world",
        f"noteUpdated {note_id} reacted 👍 by @hanako on @sora: hello ⏎ world",
        f"noteUpdated {note_id} unreacted 👍 by @hanako on @sora: hello ⏎ world",
        f"noteUpdated {note_id} reacted :blobcat: by nobody on @sora: hello ⏎ world",
        f"noteUpdated {note_id} pollVoted choice 0 by @sora on @sora: hello ⏎ world",
        f"noteUpdated {note_id} updated @sora: hello again",
        f"noteUpdated {note_id} deleted on @sora: hello again",
    ]
    lookups = [(r["endpoint"], r["body"]) for r in sim.http_requests() if r.get("endpoint")]
    assert lookups == [("users/show", {"userId": hanako}), ("users/show", {"userId": "nobody"})]  # once per user


def test_a_named_note_is_looked_up_once_for_the_line_view(sim):
    note = sim.post_note(author="sora", text="named")
    mikan = user_id(sim, "mikan")

    def feed():
        sim.wait_for_client_frame(sub(note["id"]))
        sim.note_updated(note["id"], "reacted", reacted(mikan))
        sim.note_updated(note["id"], "reacted", reacted(mikan, "🎉"))

    feeder = in_background(feed)
    result = run_cli("connect", "--capture", note["id"], *host(sim), "-n", "2", "--format", "line", *SAFETY)
    join_ok(feeder)
    assert result.exit_code == 0, result.stderr
    assert [line.split(" ", 1)[1] for line in result.stdout.splitlines()] == [
        f"noteUpdated {note['id']} reacted 👍 by @mikan on @sora: named",
        f"noteUpdated {note['id']} reacted 🎉 by @mikan on @sora: named",
    ]
    assert [r["endpoint"] for r in sim.http_requests() if r.get("endpoint")] == ["notes/show", "users/show"]


def test_an_api_that_does_not_answer_leaves_the_ids_and_is_not_asked_again(sim):
    sim.fail_next("*", 503, count=10)

    def feed():
        sim.wait_for_client_frame(sub("n1"))
        sim.note_updated("n1", "reacted", reacted("u1"))
        sim.note_updated("n1", "reacted", reacted("u2"))

    feeder = in_background(feed)
    result = run_cli("connect", "--capture", "n1", *host(sim), "-n", "2", "--format", "line", *SAFETY)
    join_ok(feeder)
    assert result.exit_code == 0, result.stderr
    assert [line.split(" ", 1)[1] for line in result.stdout.splitlines()] == [
        "noteUpdated n1 reacted 👍 by u1", "noteUpdated n1 reacted 👍 by u2"]
    assert len([r for r in sim.http_requests() if r.get("endpoint")]) == 1  # paused after the first failure


def test_capture_shows_the_note_first(sim):
    note = sim.post_note(author="sora", text="watch\nme", reactions={"👍": 2, ":blobcat@.:": 1})

    def feed():
        sim.wait_for_client_frame(sub(note["id"]))
        sim.note_updated(note["id"], "reacted", reacted(user_id(sim, "emma")))

    feeder = in_background(feed)
    result = run_cli("capture", note["id"], "missing0000000000", *host(sim), "-n", "1", "--format", "line", *SAFETY)
    join_ok(feeder)
    assert result.exit_code == 0, result.stderr
    err = result.stderr.splitlines()
    assert f"mkstream: capturing {note['id']}: @sora: watch ⏎ me (reactions 👍 2, :blobcat: 1)" in err
    assert any(line.startswith("mkstream: warning: cannot show note missing0000000000: notes/show: HTTP 400 "
                               "NO_SUCH_NOTE") for line in err)
    assert result.stdout.split(" ", 1)[1] == f"noteUpdated {note['id']} reacted 👍 by @emma on @sora: watch ⏎ me\n"
    endpoints = [r["endpoint"] for r in sim.http_requests() if r.get("endpoint")]
    assert endpoints == ["notes/show", "notes/show", "users/show"]  # the shown note is not looked up again


def test_capture_seen_needs_a_channel_and_a_sane_budget(sim):
    for args, message in ((("--capture-seen", "5", "--capture", "n1"), "name at least one CHANNEL"),
                          (("localTimeline", "--capture-seen", "0"), "0 is not in the range 1<=x<=500"),
                          (("localTimeline", "--capture-seen", "501"), "501 is not in the range 1<=x<=500")):
        result = run_cli("connect", *args, *host(sim), *SAFETY)
        assert result.exit_code == 2 and message in result.stderr, result.stderr
    assert sim.sockets_opened == 0
