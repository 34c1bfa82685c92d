"""--capture-seen's policy (run/live_notes.py): which seen notes are captured and released, no sockets."""

from __future__ import annotations

import random

import pytest

from misskey_cli.core.notes import notes_in
from misskey_cli.run.live_notes import MAX_CAPTURE_SEEN, LiveNotes


@pytest.mark.parametrize(("budget", "named", "batches", "expected"), [
    # each batch: (ids seen) -> (captured, released)
    (2, (), [["a"], ["b"], ["c"]], [(["a"], []), (["b"], []), (["c"], ["a"])]),
    (2, (), [["a", "b"], ["a"], ["c"]], [(["a", "b"], []), ([], []), (["c"], ["b"])]),  # seen again: newest
    (2, ("n",), [["n", "a", "b", "c"]], [(["b", "c"], [])]),  # named: skipped; a was never sent
    (1, (), [["a"], ["b", "c"]], [(["a"], []), (["c"], ["a"])]),  # b comes and goes in one batch
    (3, (), [["a", "a", "b"], ["b", "c", "d", "e"]], [(["a", "b"], []), (["c", "d", "e"], ["a", "b"])]),
])
def test_budget_releases_the_note_seen_longest_ago(budget, named, batches, expected):
    live = LiveNotes(budget, named)
    assert [live.seen(batch) for batch in batches] == [tuple(e) for e in expected]


def test_a_named_note_is_never_released_and_a_seen_one_can_become_named():
    live = LiveNotes(1, ["n"])
    assert live.seen(["a"]) == (["a"], [])
    live.name("a")
    assert live.seen(["b", "c"]) == (["c"], [])  # a is named now: not in the budget, not released
    live.name("z")
    live.forget("c")
    assert live.seen(["d"]) == (["d"], [])  # c was released by the user: nothing to release
    assert live.seen(["n", "a", "z"]) == ([], [])


def test_counts_say_what_was_sent():
    live = LiveNotes(2)
    live.seen(["a", "b", "c", "d"])
    assert (live.captured, live.released) == (2, 0)  # a and b came and went within the batch
    live.seen(["e"])
    assert (live.captured, live.released) == (3, 1)


def test_a_deleted_seen_note_is_released_at_once_a_named_one_is_not():
    live = LiveNotes(2, ["n"])
    live.seen(["a", "b"])

    def deleted(note_id, kind="deleted"):
        return live.deleted({"type": "noteUpdated", "body": {"id": note_id, "type": kind, "body": {}}})

    assert [deleted("a", "reacted"), deleted("n"), deleted("zz"), deleted("a"), deleted("a")] == [
        None, None, None, "a", None]
    assert live.deleted({"body": []}) is None and live.deleted(None) is None
    assert live.seen(["c"]) == (["c"], [])  # a's place was freed
    assert (live.captured, live.released) == (3, 1)


@pytest.mark.parametrize("budget", [0, MAX_CAPTURE_SEEN + 1])
def test_the_budget_is_bounded(budget):
    with pytest.raises(ValueError):
        LiveNotes(budget)


@pytest.mark.parametrize("seed", range(40))
def test_what_is_subscribed_is_always_the_newest_seen_notes(seed):
    """Against a model: after each batch the subscribed set (built only from the answers) is exactly
    the ``budget`` distinct unnamed notes seen most recently."""
    rng = random.Random(seed)
    budget = rng.randint(1, 6)
    named = {f"n{i}" for i in range(rng.randint(0, 2))}
    live = LiveNotes(budget, named)
    subscribed: set[str] = set()
    history: list[str] = []
    for _ in range(60):
        batch = [rng.choice(["n0", "n1", *(f"x{i}" for i in range(15))]) for _ in range(rng.randint(0, 8))]
        capture, release = live.seen(batch)
        assert not set(capture) & subscribed and set(release) <= subscribed and not set(release) & named
        assert len(capture) == len(set(capture)) and len(release) == len(set(release))
        subscribed = (subscribed | set(capture)) - set(release)
        history.extend(batch)
        newest: list[str] = []
        for note_id in reversed(history):
            if note_id not in named and note_id not in newest:
                newest.append(note_id)
        assert subscribed == set(newest[:budget])
        assert live.captured - live.released == len(subscribed)


def _channel(kind, body):
    return {"type": "channel", "body": {"id": "c", "type": kind, "body": body}}


@pytest.mark.parametrize(("frame", "ids"), [
    (_channel("note", {"id": "a"}), ["a"]),
    (_channel("note", {"id": "a", "renote": {"id": "b"}}), ["a", "b"]),  # renote or quote: both shown
    (_channel("mention", {"id": "a"}), ["a"]),
    (_channel("note", {"id": "a", "renote": {"id": 5}}), ["a"]),
    (_channel("note", {"id": 1}), []),
    (_channel("note", "a"), []),
    (_channel(["note"], {"id": "a"}), []),  # an unhashable type is no note
    (_channel("notification", {"id": "a"}), []),
    ({"type": "noteUpdated", "body": {"id": "a"}}, []),
    ({"type": "channel", "body": None}, []),
    ([1], []),
])
def test_notes_in_a_frame(frame, ids):
    assert [n["id"] for n in notes_in(frame)] == ids
