"""traffic.py: pure, seeded generation of notes, note events, main events and stats (table-driven)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from conftest import fixture_frames, shape

from misskey_cli.core.notes import is_pure_renote
from misskey_cli.simulator.corpus import (
    AIDX_EPOCH_MS,
    CAST,
    NOTE_KEYS,
    ORDINARY_OPENING,
    IdGenerator,
    aidx,
    aidx_ms,
    base36,
    extract_tags,
    iso,
    order_note,
    strip_pair_cache,
)
from misskey_cli.simulator.traffic import NoteRequest, Traffic


class FakeClock:
    def __init__(self, start: float = 1_795_807_722.184) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


def traffic(seed: int = 1, clock: FakeClock | None = None) -> Traffic:
    return Traffic(seed=seed, clock=clock or FakeClock())


def real(what: str) -> dict[str, Any]:
    return next(f["frame"] for f in fixture_frames(what) if f["what"] == what)


BASE_NOTE_KEYS = set(real("localTimeline.note:plain")["body"]["body"]) - {"reactionAndUserPairCache"}


def in_server_order(note: dict[str, Any]) -> bool:
    return set(note) <= set(NOTE_KEYS) and list(note) == sorted(note, key=NOTE_KEYS.index)


# ---------------------------------------------------------------------------------------------
# Ids and times

@pytest.mark.parametrize(("value", "width", "text"), [
    (0, 4, "0000"), (35, 2, "0z"), (36, 2, "10"), (36 ** 4 - 1, 4, "zzzz"), (36 ** 4, 4, "0000"),
])
def test_base36(value, width, text):
    assert base36(value, width) == text


@pytest.mark.parametrize(("real_id", "created_at"), [
    ("au2xv3yg4uqb0006", "2026-11-27T19:28:42.184Z"),  # fixture localTimeline.note:plain
    ("au2xvatg4uqb001a", "2026-11-27T19:28:51.076Z"),  # fixture localTimeline.note:reply
])
def test_aidx_round_trips_real_ids(real_id, created_at):
    ms = aidx_ms(real_id)
    assert iso(ms) == created_at
    assert aidx(ms, real_id[8:12], int(real_id[12:], 36)) == real_id


@pytest.mark.parametrize(("ms", "text"), [
    (AIDX_EPOCH_MS, "2000-01-01T00:00:00.000Z"),
    (AIDX_EPOCH_MS + 1, "2000-01-01T00:00:00.001Z"),
    (1_795_807_722_999, "2026-11-27T19:28:42.999Z"),
])
def test_iso(ms, text):
    assert iso(ms) == text


@pytest.mark.parametrize("steps", [
    [0, 0, 0, 0],  # same millisecond: the counter orders them
    [0, 1, 1, 5],
    [5, 3, 3, 6],  # a clock going backwards does not reorder ids
])
def test_ids_increase_with_time(steps):
    clock = FakeClock(1_800_000_000.0)
    ids = IdGenerator(traffic().rng, clock)
    made = []
    for step in steps:
        clock.now = 1_800_000_000.0 + step / 1000
        made.append(ids.next()[0])
    assert made == sorted(made) and len(set(made)) == len(made)
    assert all(len(i) == 16 for i in made)


def test_counter_overflow_moves_to_the_next_millisecond():
    ids = IdGenerator(traffic().rng, FakeClock())
    ids._counter = 36 ** 4 - 2  # white-box: the edge of the 4-character counter
    ids._last_ms = ids.now_ms()
    first, _ = ids.next()
    second, _ = ids.next()
    assert first < second and aidx_ms(second) == aidx_ms(first) + 1


# ---------------------------------------------------------------------------------------------
# Helpers

@pytest.mark.parametrize(("text", "tags"), [
    ("@alice さん、こんにちは！ #misskey #テスト #Misskey_dev https://misskey-hub.net/ 🔗",
     ["misskey", "テスト", "misskey_dev"]),  # fixture mentions_hashtags
    ("引用です 💬 #misskey", ["misskey"]),
    ("no tags", []),
    (None, []),
    ("#a #A #ａ", ["a"]),  # normalised (NFKC, lower case) and deduplicated
    ("#今日のごはん。おいしい", ["今日のごはん"]),
])
def test_extract_tags(text, tags):
    assert extract_tags(text) == tags


def test_order_note_and_strip_pair_cache():
    shuffled = {"files": [], "id": "x", "custom": 1, "text": "t", "reactionAndUserPairCache": [],
                "renote": {"reactionAndUserPairCache": ["a/👍"], "id": "y"}}
    ordered = order_note(shuffled)
    assert list(ordered) == ["id", "text", "reactionAndUserPairCache", "files", "renote", "custom"]
    assert strip_pair_cache(ordered) == {"id": "x", "text": "t", "files": [], "renote": {"id": "y"}, "custom": 1}
    assert "reactionAndUserPairCache" in ordered["renote"]  # the original is untouched


# ---------------------------------------------------------------------------------------------
# Notes

def test_a_plain_note_is_shaped_like_the_real_one():
    plain = real("localTimeline.note:plain")["body"]["body"]
    note = traffic().note(NoteRequest(kind="plain", remote=False))
    assert list(note) == list(plain) or set(plain) < set(note)
    assert in_server_order(note)
    assert shape(note["user"]) == shape(plain["user"]) | {"badgeRoles": shape(note["user"]["badgeRoles"]),
                                                         "avatarBlurhash": shape(note["user"]["avatarBlurhash"]),
                                                         "name": shape(note["user"]["name"])}


@pytest.mark.parametrize(("kind", "check"), [
    ("plain", lambda n: isinstance(n["text"], str) and n["renoteId"] is None and n["replyId"] is None),
    ("cw", lambda n: isinstance(n["cw"], str) and isinstance(n["text"], str)),
    ("mfm", lambda n: any(mark in n["text"] for mark in ("$[", "**", "<center>", "```", "<plain>"))),
    ("hashtags", lambda n: n["tags"] and all(f"#{t}" in n["text"].lower() for t in n["tags"])),
    ("mention", lambda n: n["text"].startswith("@") and len(n["mentions"]) == 1),
    ("reply", lambda n: n["replyId"] == n["reply"]["id"] and "clippedCount" not in n["reply"]
     and n["reply"]["userId"] != n["userId"]),
    ("self_reply", lambda n: n["reply"]["userId"] == n["userId"]),
    ("pure_renote", lambda n: n["text"] is None and n["renote"]["id"] == n["renoteId"] and is_pure_renote(n)
     and n["renote"]["renoteCount"] >= 1 and "clippedCount" in n["renote"]),
    ("quote", lambda n: isinstance(n["text"], str) and n["renoteId"] == n["renote"]["id"] and not is_pure_renote(n)),
    ("files", lambda n: 1 <= len(n["files"]) <= 4 and n["fileIds"] == [f["id"] for f in n["files"]]
     and n["text"] is not None),
    ("file_only", lambda n: n["text"] is None and n["files"] and n["renoteId"] is None),
    ("poll", lambda n: n["hasPoll"] is True and 2 <= len(n["poll"]["choices"]) <= 4 and n["text"]
     and list(n["poll"]) == ["multiple", "expiresAt", "choices"]),
    ("long", lambda n: len(n["text"]) > 200),
])
def test_note_kinds(kind, check):
    made = traffic(seed=5)
    made.notes_made = ORDINARY_OPENING  # past the opening, where every kind may appear
    for _ in range(5):
        note = made.note(NoteRequest(kind=kind))
        assert check(note), note
        assert in_server_order(note)
        for nested in (note.get("reply"), note.get("renote")):
            assert nested is None or in_server_order(nested)


def test_remote_notes_carry_uri_url_instance_and_emojis():
    made = traffic(seed=2)
    for _ in range(10):
        note = made.note(NoteRequest(kind="plain", remote=True))
        host = note["user"]["host"]
        assert host and note["uri"].startswith(f"https://{host}/") and note["url"].startswith(f"https://{host}/")
        assert note["emojis"] == {} and note["user"]["onlineStatus"] == "unknown"
        assert list(note["user"]["instance"]) == ["name", "softwareName", "softwareVersion", "iconUrl",
                                                  "faviconUrl", "themeColor"]
        assert in_server_order(note)


def test_reactions_are_spelled_like_the_server():
    made = traffic(seed=4)
    reacted = [made.older_note() for _ in range(40)]
    reactions = {key for n in reacted for key in n["reactions"]}
    pairs = [p for n in reacted for p in n["reactionAndUserPairCache"]]
    assert any(key.endswith("@.:") for key in reactions)  # local custom emoji: :blobcat@.:
    assert all(n["reactionCount"] == sum(n["reactions"].values()) for n in reacted)
    assert all(len(n["reactionAndUserPairCache"]) <= 16 for n in reacted)
    assert not any(p.endswith("@.:") for p in pairs)  # userId/:blobcat: in the pair cache
    assert all(n["reactionEmojis"] == {} or all("@" in k for k in n["reactionEmojis"]) for n in reacted)


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize(("channel", "params"), [
    ("localTimeline", {}), ("globalTimeline", {"withFiles": True}), ("hashtag", {"q": [["misskey"]]}),
    ("homeTimeline", {"withRenotes": False}), ("channel", {"channelId": "c1"}), ("userList", {"listId": "L"}),
])
def test_a_run_opens_with_ordinary_notes_that_have_text(seed, channel, params):
    made = traffic(seed)
    viewer = made.account("demo")
    notes = [made.note_for(channel, params, viewer) for _ in range(ORDINARY_OPENING)]
    assert all(isinstance(n["text"], str) and n["text"] and not is_pure_renote(n) for n in notes)
    assert all(n["replyId"] is None for n in notes)


@pytest.mark.parametrize(("channel", "params", "check"), [
    ("localTimeline", {}, lambda n, t: n["user"]["host"] is None and n["visibility"] == "public"),
    ("localTimeline", {"withFiles": True}, lambda n, t: n["files"]),
    ("globalTimeline", {"withRenotes": False}, lambda n, t: not is_pure_renote(n)),
    ("hashtag", {"q": [["misskey", "python"]]}, lambda n, t: {"misskey", "python"} <= set(n["tags"])),
    ("channel", {"channelId": "c9"}, lambda n, t: n["channelId"] == n["channel"]["id"] == "c9" and n["localOnly"]),
    ("homeTimeline", {}, lambda n, t: t.follows(t.account("demo"), n["userId"])),
])
def test_notes_fit_the_connection_they_are_made_for(channel, params, check):
    made = traffic(seed=11)
    made.notes_made = ORDINARY_OPENING
    for _ in range(15):
        assert check(made.note_for(channel, params, made.account("demo")), made)


def test_a_seed_and_a_clock_reproduce_a_run():
    def run(seed: int) -> str:
        made = traffic(seed)
        return json.dumps([made.note() for _ in range(20)] + [made.main_events(made.account("alice"))],
                          ensure_ascii=False)

    assert run(3) == run(3)
    assert run(3) != run(4)


def test_typical_sizes_are_like_the_recording():
    made = traffic(seed=9)
    sizes = sorted(len(json.dumps(made.note(), ensure_ascii=False).encode()) for _ in range(300))
    assert 700 < sizes[len(sizes) // 2] < 2000  # the recording's median note is 946 B
    assert sizes[-1] > 2000


def test_huge_note_is_about_the_size_asked():
    note = traffic().huge_note(1_000_000)
    size = len(json.dumps(note, ensure_ascii=False).encode())
    assert 950_000 < size < 1_050_000 and in_server_order(note)


def test_follows():
    made = traffic()
    alice, bob = made.account("alice"), made.account("bob")
    followed = {u.username for u in CAST if u.followed}
    assert made.follows(alice, alice.id) and made.follows(alice, bob.id)
    assert {u.username for u in CAST if made.follows(alice, u.id)} == followed
    assert alice.id == traffic(seed=99).account("alice").id  # stable across runs


# ---------------------------------------------------------------------------------------------
# Note events, main events, stats, broadcasts

def test_note_events_follow_a_plausible_story():
    made = traffic(seed=6)
    made.notes_made = ORDINARY_OPENING
    poll_note = made.note(NoteRequest(kind="poll"))
    reacted: dict[str, str] = {}
    kinds = []
    for _ in range(200):
        event = made.note_event(poll_note["id"])
        if event is None:
            break
        kind, body = event
        kinds.append(kind)
        if kind == "reacted":
            assert list(body) == ["reaction", "emoji", "userId"] and body["userId"] not in reacted
            if body["emoji"] is None:
                assert not body["reaction"].startswith(":")
            else:
                assert body["reaction"] == f":{body['emoji']['name']}:" and body["reaction"].endswith("@.:")
            reacted[body["userId"]] = body["reaction"]
        elif kind == "unreacted":
            assert reacted.pop(body["userId"]) == body["reaction"]
        elif kind == "pollVoted":
            assert 0 <= body["choice"] < len(poll_note["poll"]["choices"])
        else:
            assert kind == "deleted" and body["deletedAt"].endswith("Z")
    assert {"reacted", "unreacted", "pollVoted"} <= set(kinds)
    if kinds[-1] == "deleted":
        assert made.note_event(poll_note["id"]) is None


@pytest.mark.parametrize(("what", "kind"), [
    ("noteUpdated.reacted:unicode", "reacted"),
    ("noteUpdated.reacted:custom_emoji", "reacted"),
    ("noteUpdated.unreacted:unicode", "unreacted"),
    ("noteUpdated.pollVoted", "pollVoted"),
    ("noteUpdated.deleted", "deleted"),
])
def test_note_event_bodies_match_the_recording(what, kind):
    target = real(what)["body"]["body"]
    made = traffic(seed=8)
    made.notes_made = ORDINARY_OPENING
    note = made.note(NoteRequest(kind="poll"))
    for _ in range(500):
        event = made.note_event(note["id"])
        if event is None:
            made = traffic(seed=made.rng.randrange(1000))
            note = made.note(NoteRequest(kind="poll"))
            continue
        if event[0] == kind and (event[1].get("emoji") is None) == (target.get("emoji") is None):
            assert shape(event[1]) == shape(target)
            return
    pytest.fail(f"no {kind} event like {target}")


@pytest.mark.parametrize("what", [
    "main.notification:reaction", "main.notification:follow", "main.notification:mention",
    "main.notification:reply", "main.notification:renote", "main.notification:quote", "main.notification:app",
    "main.notification:achievementEarned", "main.followed", "main.mention", "main.reply", "main.renote",
])
def test_main_events_are_shaped_like_the_recording(what):
    channel_event = real(what)["body"]
    event_type = channel_event["type"]
    notification_type = what.split(":")[1] if ":" in what else None
    made = traffic(seed=12)
    viewer = made.account("alice")
    for _ in range(400):
        for kind, body in made.main_events(viewer):
            if kind != event_type or (notification_type and body["type"] != notification_type):
                continue
            expected = channel_event["body"]
            if event_type in ("mention", "reply", "renote"):  # the body is a note
                assert in_server_order(body) and set(body) >= BASE_NOTE_KEYS
                assert ("reactionAndUserPairCache" in body) == ("reactionAndUserPairCache" in expected)
                return
            assert list(body) == list(expected)
            if "user" in expected:
                assert list(body["user"])[:4] == list(expected["user"])[:4]
            if "note" in expected:
                assert in_server_order(body["note"]) and set(body["note"]) >= BASE_NOTE_KEYS
                assert "reactionAndUserPairCache" not in json.dumps(body["note"])
            return
    pytest.fail(f"no {what} generated")


@pytest.mark.parametrize(("what", "make"), [
    ("serverStats.stats", Traffic.server_stats),
    ("queueStats.stats", Traffic.queue_stats),
])
def test_stats_match_the_recording(what, make):
    made = traffic()
    expected = real(what)["body"]["body"]
    for _ in range(20):
        assert shape(make(made)) == shape(expected)


@pytest.mark.parametrize("kind", ["emojiAdded", "announcementCreated"])
def test_broadcasts_match_the_recording(kind):
    expected = real(kind)["body"]
    made = traffic(seed=1)
    for _ in range(50):
        got_kind, body = made.broadcast()
        if got_kind == kind:
            assert shape(body) == shape(expected)
            return
    pytest.fail(f"no {kind}")
