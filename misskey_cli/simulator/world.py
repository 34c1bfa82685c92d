"""What the write endpoints change in the simulated world: reactions, poll votes, deletions.

Pure state over the note dicts the history holds (the same objects, so a change shows in every
later answer): who reacted with what (seeded from a note's ``reactionAndUserPairCache`` the first
time it is touched, so notes that arrived with reactions stay consistent), who voted for which
choice, and the per-viewer parts of a note (``myReaction``, ``poll.choices[].isVoted``). It knows
no HTTP and no sockets: the API layer turns its answers into errors, ``noteUpdated`` events and
notifications.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from misskey_cli.simulator.corpus import aidx_ms, iso, strip_pair_cache
from misskey_cli.simulator.history import NoteHistory
from misskey_cli.simulator.traffic import Traffic

PAIR_CACHE_MAX = 16  # Misskey keeps the newest 16 (user, reaction) pairs on the note


@dataclass
class Reaction:
    id: str
    user_id: str
    reaction: str  # as the note's ``reactions`` keys spell it: "👍", ":blobcat@.:"


@dataclass
class _NoteState:
    reactions: dict[str, Reaction] = field(default_factory=dict)  # user id -> reaction, oldest first
    votes: dict[str, set[int]] = field(default_factory=dict)  # user id -> choices


def pair_spelling(reaction: str) -> str:
    """How ``reactionAndUserPairCache`` spells a reaction: a local custom emoji without ``@.``."""
    return reaction.replace("@.:", ":") if reaction.endswith("@.:") else reaction


def key_spelling(pair: str) -> str:
    """The inverse: ``:blobcat:`` (local) is ``:blobcat@.:`` in ``reactions``."""
    if pair.startswith(":") and pair.endswith(":") and "@" not in pair:
        return pair[:-1] + "@.:"
    return pair


class World:
    """Reactions, votes and deletions over the simulator's notes."""

    def __init__(self, traffic: Traffic, history: NoteHistory) -> None:
        self.traffic = traffic
        self.history = history
        self._state: dict[str, _NoteState] = {}

    def find(self, note_id: Any) -> dict[str, Any] | None:
        """A note the server knows: in the history, or one the generator made (a reply's or renote's target)."""
        if not isinstance(note_id, str):
            return None
        entry = self.history.get(note_id)
        if entry is not None:
            return entry.note
        return self.traffic.known(note_id)

    def _state_of(self, note: dict[str, Any]) -> _NoteState:
        state = self._state.get(note["id"])
        if state is None:
            state = self._state[note["id"]] = _NoteState()
            created = aidx_ms(note["id"])
            for pair in reversed(note.get("reactionAndUserPairCache") or []):
                user_id, _, reaction = pair.partition("/")
                if user_id not in state.reactions:
                    state.reactions[user_id] = Reaction(self.traffic.ids.at(created + 1000), user_id,
                                                        key_spelling(reaction))
        return state

    # -- reactions ----------------------------------------------------------------------------

    def reaction_of(self, note: dict[str, Any], user_id: str) -> Reaction | None:
        return self._state_of(note).reactions.get(user_id)

    def react(self, note: dict[str, Any], user_id: str, reaction: str) -> Reaction:
        """Add ``user_id``'s reaction (the caller checked there was none)."""
        state = self._state_of(note)
        made = Reaction(self.traffic.ids.next()[0], user_id, reaction)
        state.reactions[user_id] = made
        counts = note.setdefault("reactions", {})
        counts[reaction] = counts.get(reaction, 0) + 1
        note["reactionCount"] = note.get("reactionCount", 0) + 1
        if "reactionAndUserPairCache" in note:
            pairs = [f"{user_id}/{pair_spelling(reaction)}", *note["reactionAndUserPairCache"]]
            note["reactionAndUserPairCache"] = pairs[:PAIR_CACHE_MAX]
        return made

    def unreact(self, note: dict[str, Any], user_id: str) -> Reaction | None:
        """Remove ``user_id``'s reaction; None when there was none."""
        removed = self._state_of(note).reactions.pop(user_id, None)
        if removed is None:
            return None
        counts = note.setdefault("reactions", {})
        left = counts.get(removed.reaction, 0) - 1
        if left > 0:
            counts[removed.reaction] = left
        else:
            counts.pop(removed.reaction, None)
        note["reactionCount"] = max(0, note.get("reactionCount", 0) - 1)
        if "reactionAndUserPairCache" in note:
            mine = f"{user_id}/{pair_spelling(removed.reaction)}"
            note["reactionAndUserPairCache"] = [p for p in note["reactionAndUserPairCache"] if p != mine]
        return removed

    def reactions(self, note: dict[str, Any]) -> list[Reaction]:
        """Every reaction to the note, oldest first."""
        return list(self._state_of(note).reactions.values())

    # -- polls --------------------------------------------------------------------------------

    def votes_of(self, note: dict[str, Any], user_id: str) -> set[int]:
        return set(self._state_of(note).votes.get(user_id, set()))

    def vote(self, note: dict[str, Any], user_id: str, choice: int) -> None:
        self._state_of(note).votes.setdefault(user_id, set()).add(choice)
        note["poll"]["choices"][choice]["votes"] += 1

    # -- deletion -----------------------------------------------------------------------------

    def delete(self, note: dict[str, Any]) -> str:
        """Forget the note; returns ``deletedAt``."""
        self.history.remove(note["id"])
        self.traffic.forget(note["id"])
        self._state.pop(note["id"], None)
        return iso(self.traffic.ids.now_ms())

    # -- what one viewer sees -----------------------------------------------------------------

    def view(self, note: dict[str, Any], viewer_id: str | None) -> dict[str, Any]:
        """The note as ``notes/show`` packs it for the viewer: ``myReaction`` and ``isVoted`` are theirs, and
        no ``reactionAndUserPairCache`` (only the streaming timelines carry it)."""
        out = copy.deepcopy(strip_pair_cache(note))
        if viewer_id is None:
            return out
        mine = self.reaction_of(note, viewer_id)
        out["myReaction"] = mine.reaction if mine is not None else None
        poll = out.get("poll")
        if isinstance(poll, dict):
            voted = self.votes_of(note, viewer_id)
            for index, choice in enumerate(poll.get("choices") or []):
                choice["isVoted"] = index in voted
        return out
