"""Which seen notes to capture (``--capture-seen N``): a pure policy, no sockets, no clock.

A timeline client captures the notes it shows, so that their reactions, votes and deletion
reach it live. The stream loop tells a ``LiveNotes`` every note a channel delivered (the renoted
or quoted note inside one too) and applies its answer to the session: the ids to ``subNote``
and the ids to ``unsubNote``. At most ``budget`` seen notes are held; a new one releases the one
seen longest ago (a note seen again counts as new: it is on screen again); a deleted one is released
at once. Notes named by the
user (``--capture``, or ``sub`` on ``--stdin``) are *named*: never released here, never counted
in the budget. The session keeps the desired state, so a reconnect restores every capture.

Never ``sr``: on older servers it also marks the note read.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

# The most --capture-seen may ask for. Sharkey refuses subscriptions past 512 on one socket
# (channels and named captures count too); Misskey has no cap, but each capture costs the server
# a listener. 500 leaves room for the channels and a few named notes.
MAX_CAPTURE_SEEN = 500


class LiveNotes:
    """The seen notes held (oldest first) and the named ones; counts of captures and releases."""

    def __init__(self, budget: int, named: Iterable[str] = ()) -> None:
        if not 1 <= budget <= MAX_CAPTURE_SEEN:
            raise ValueError(f"budget {budget} out of 1..{MAX_CAPTURE_SEEN}")
        self.budget = budget
        self.named: set[str] = set(named)
        self.held: OrderedDict[str, None] = OrderedDict()
        self.captured = 0  # subNote sent for a seen note
        self.released = 0  # unsubNote sent for a seen note (the budget, not the user)

    def seen(self, note_ids: Iterable[str]) -> tuple[list[str], list[str]]:
        """Notes delivered, in order: (ids to capture, ids to release), each id at most once.

        A note that would be captured and released by the same call (more new notes than the
        budget) is neither: nothing is sent for it.
        """
        held, named, budget = self.held, self.named, self.budget
        added: list[str] = []
        gone: list[str] = []  # held before this call, released by it (perhaps seen again after)
        lost_fresh = False  # a note added by this call was released by it too (more new notes than the budget)
        for note_id in note_ids:
            if note_id in named:
                continue
            if note_id in held:
                held.move_to_end(note_id)
                continue
            held[note_id] = None
            added.append(note_id)
            if len(held) > budget:
                oldest = held.popitem(last=False)[0]
                if oldest in added:
                    lost_fresh = True
                else:
                    gone.append(oldest)
        if lost_fresh or not set(gone).isdisjoint(added):
            # The rare case: sort out what changed from before the call to after it.
            was_held = set(gone)
            added = [n for n in dict.fromkeys(added) if n in held and n not in was_held]
            gone = [n for n in gone if n not in held]
        self.captured += len(added)
        self.released += len(gone)
        return added, gone

    def deleted(self, frame: Any) -> str | None:
        """A ``noteUpdated`` frame: the id of a seen note it says was deleted (nothing more will come of
        it: release it now, and free its place), else None."""
        body = frame.get("body") if type(frame) is dict else None
        note_id = body.get("id") if type(body) is dict and body.get("type") == "deleted" else None
        if type(note_id) is not str or note_id not in self.held:
            return None
        del self.held[note_id]
        self.released += 1
        return note_id

    def name(self, note_id: str) -> None:
        """The user captures ``note_id``: it is never released here (a seen note stays captured)."""
        self.named.add(note_id)
        self.held.pop(note_id, None)

    def forget(self, note_id: str) -> None:
        """The user released ``note_id`` (``unsub``): it is no longer captured, named or seen."""
        self.named.discard(note_id)
        self.held.pop(note_id, None)
