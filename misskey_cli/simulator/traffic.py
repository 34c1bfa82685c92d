"""Realistic Misskey content for the simulator: notes, notifications, note events, stats.

Owns the shapes of everything the simulator sends that carries content: note objects (same keys
in the same order as a real Misskey server packs them, see tests/fixtures/frames.jsonl),
``main`` channel events, ``noteUpdated`` payloads, ``serverStats``/``queueStats`` samples,
broadcasts, the ``drive``, chat, reversi and ``admin`` channels' events, custom emojis and how a
requested reaction is stored, and who follows whom. Its raw material (ids, users, texts) is
``corpus.py``. Pure: no I/O; randomness comes from one seeded ``random.Random`` and time from an
injected clock, so a seed and a fake clock reproduce a run exactly.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import quote

from misskey_cli.simulator.corpus import (
    ACHIEVEMENTS,
    CAST,
    CW_PAIRS,
    ENGLISH,
    FILE_COMMENTS,
    HASHTAGS,
    JAPANESE,
    KIND_WEIGHTS,
    KNOWN_ACCOUNTS,
    LOCAL_CUSTOM_EMOJIS,
    MENTION_RE,
    MFM,
    MIXED,
    NOTE_KINDS,
    ORDINARY_KINDS,
    ORDINARY_OPENING,
    POLLS,
    QUOTES,
    REMOTE_CUSTOM_EMOJIS,
    REPLIES,
    UNICODE_REACTIONS,
    IdGenerator,
    User,
    extract_tags,
    iso,
    make_user,
    order_note,
    strip_pair_cache,
)

# ---------------------------------------------------------------------------------------------
# The generator

@dataclass
class _CaptureState:
    reactions: dict[str, str] = field(default_factory=dict)  # userId -> reaction
    choices: int = 0
    deleted: bool = False


@dataclass
class _Content:
    """The parts of a fresh note that depend on its kind."""

    text: str | None
    cw: str | None = None
    files: list[dict[str, Any]] | None = None
    reply: dict[str, Any] | None = None
    renote: dict[str, Any] | None = None
    poll: dict[str, Any] | None = None


def _remote_links(author: User, note_id: str, created_ms: int) -> dict[str, str]:
    """``uri`` and ``url`` of a remote note, in the form its server's software uses."""
    assert author.host is not None
    if author.host.startswith(("mastodon", "pleroma")):
        status = str(110_000_000_000_000_000 + created_ms)
        return {"uri": f"https://{author.host}/users/{author.username}/statuses/{status}",
                "url": f"https://{author.host}/@{author.username}/{status}"}
    return {"uri": f"https://{author.host}/notes/{note_id}", "url": f"https://{author.host}/notes/{note_id}"}


@dataclass
class NoteRequest:
    """What a note should look like to be delivered on a given connection."""

    kind: str | None = None
    author: User | None = None
    remote: bool | None = None  # None: sometimes remote (globalTimeline-style)
    visibility: str = "public"
    channel_id: str | None = None
    tags: tuple[str, ...] = ()
    with_files: bool = False
    no_pure_renote: bool = False


class Traffic:
    """Seeded generator of everything with content the simulator sends."""

    def __init__(self, seed: int | None = None, base_url: str = "http://127.0.0.1:3000",
                 clock: Callable[[], float] = time.time) -> None:
        self.rng = random.Random(seed)
        self.base_url = base_url
        self.ids = IdGenerator(self.rng, clock)
        self.notes_made = 0
        self._accounts: dict[str, User] = {}
        self._known: dict[str, dict[str, Any]] = {}
        self._captures: dict[str, _CaptureState] = {}
        self._server_log_state = {"cpu": 0.05, "mem": 900_000_000}
        self._queue_state = {"deliver": 0, "inbox": 0}
        self.cast = CAST
        self._follow_changes: dict[tuple[str, str], bool] = {}  # (follower id, followee id) -> follows
        self._chat: dict[str, list[str]] = {}  # chat connection key -> ids of messages sent on it
        self._games: dict[str, dict[str, Any]] = {}  # reversi game id -> its state

    # -- accounts ---------------------------------------------------------------------------

    def account(self, username: str) -> User:
        """The local account a token logs in as (stable id, profile from KNOWN_ACCOUNTS)."""
        user = self._accounts.get(username)
        if user is None:
            profile = dict(KNOWN_ACCOUNTS.get(username, {"name": username}))
            name = profile.pop("name", username)
            user = make_user(username, name, **profile)
            self._accounts[username] = user
        return user

    def authors(self) -> list[User]:
        return list(self.cast) + list(self._accounts.values())

    def find_user(self, username: str, host: str | None = None) -> User | None:
        for user in self.authors():
            if user.username == username and user.host == host:
                return user
        return None

    def follows(self, viewer: User, author_id: str) -> bool:
        """Every account follows itself, every other account and the cast members marked followed,
        unless ``following/create`` or ``following/delete`` changed that."""
        if author_id == viewer.id:
            return True
        changed = self._follow_changes.get((viewer.id, author_id))
        if changed is not None:
            return changed
        if any(a.id == author_id for a in self._accounts.values()):
            return True
        return any(u.id == author_id and u.followed for u in self.cast)

    def set_follow(self, viewer: User, author_id: str, follows: bool) -> None:
        """``viewer`` now follows ``author_id`` (or not): what homeTimeline and the timelines route by."""
        self._follow_changes[(viewer.id, author_id)] = follows

    def user_by_id(self, user_id: str) -> User | None:
        return next((u for u in self.authors() if u.id == user_id), None)

    # -- pieces -----------------------------------------------------------------------------

    def _uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def _custom_emoji_url(self, name: str, host: str | None = None) -> str:
        digest = uuid.UUID(bytes=hashlib.md5(f"{name}@{host}".encode()).digest(), version=4)
        if host is None:
            return f"{self.base_url}/files/{digest}"
        return f"https://{host}/files/{digest}.webp"

    def _blurhash(self) -> str:
        alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz#$%*+,-.:;=?@[]^_{|}~"
        return "e" + "".join(self.rng.choice(alphabet) for _ in range(53))

    def _pick_author(self, remote: bool | None, exclude: str | None = None) -> User:
        pool = [u for u in self.authors() if u.id != exclude]
        if remote is True:
            pool = [u for u in pool if u.host is not None]
        elif remote is False or self.rng.random() < 0.6:
            pool = [u for u in pool if u.host is None]
        return self.rng.choice(pool)

    def _text(self, author: User) -> str:
        corpus: tuple[str, ...]
        if author.host is not None and author.host.startswith("mastodon"):
            corpus = ENGLISH
        else:
            corpus = self.rng.choice((JAPANESE, JAPANESE, ENGLISH, MIXED))
        text = self.rng.choice(corpus)
        if "{mention}" in text:
            other = self._pick_author(None, exclude=author.id)
            text = text.replace("{mention}", other.acct)
        if self.rng.random() < 0.15:
            text += " :" + self.rng.choice(LOCAL_CUSTOM_EMOJIS) + ":"
        return text

    def mentions_in(self, text: str | None) -> list[str]:
        """Ids of the known users ``@name`` or ``@name@host`` in the text mentions."""
        ids: list[str] = []
        for match in MENTION_RE.finditer(text or ""):
            user = self.find_user(match.group(1), match.group(2))
            if user is not None and user.id not in ids:
                ids.append(user.id)
        return ids

    def _files(self, author: User, created_ms: int, count: int) -> list[dict[str, Any]]:
        files = []
        for index in range(count):
            width, height = self.rng.choice(((1920, 1080), (1080, 1350), (800, 600), (4032, 3024), (512, 512)))
            kind, ext = self.rng.choice((("image/jpeg", "jpg"), ("image/png", "png"), ("image/webp", "webp")))
            file_ms = created_ms - self.rng.randrange(500, 60_000)
            url = (f"{self.base_url}/files/{self._uuid()}" if author.host is None
                   else f"https://{author.host}/files/{self._uuid()}.{ext}")
            files.append({
                "id": self.ids.at(file_ms),
                "createdAt": iso(file_ms),
                "name": f"{self.rng.choice(('IMG', 'photo', 'screenshot', 'neko'))}_{index + 1:04d}.{ext}",
                "type": kind,
                "md5": f"{self.rng.getrandbits(128):032x}",
                "size": self.rng.randrange(40_000, 3_000_000),
                "isSensitive": self.rng.random() < 0.1,
                "blurhash": self._blurhash(),
                "properties": {"width": width, "height": height},
                "url": url,
                "thumbnailUrl": (f"{self.base_url}/files/thumbnail-{self._uuid()}" if author.host is None
                                 else f"{self.base_url}/proxy/static.webp?url={quote(url, safe='')}&static=1"),
                "comment": self.rng.choice(FILE_COMMENTS),
                "folderId": None,
                "folder": None,
                "userId": author.id,
                "user": None,
            })
        return files

    def _reactions(self, count: int) -> tuple[dict[str, int], dict[str, str], list[str]]:
        """(reactions, reactionEmojis, reactionAndUserPairCache) for a note with reactions."""
        reactions: dict[str, int] = {}
        emojis: dict[str, str] = {}
        pairs: list[str] = []
        users = self.authors()
        for _ in range(count):
            roll = self.rng.random()
            if roll < 0.65:
                key = pair = self.rng.choice(UNICODE_REACTIONS)
            elif roll < 0.9:
                name = self.rng.choice(LOCAL_CUSTOM_EMOJIS)
                key, pair = f":{name}@.:", f":{name}:"
            else:
                name, host = self.rng.choice(REMOTE_CUSTOM_EMOJIS)
                key = pair = f":{name}@{host}:"
                emojis[f"{name}@{host}"] = self._custom_emoji_url(name, host)
            reactions[key] = reactions.get(key, 0) + 1
            if len(pairs) < 16:
                pairs.append(f"{self.rng.choice(users).id}/{pair}")
        return reactions, emojis, pairs

    def add_reactions(self, note: dict[str, Any], count: int) -> None:
        """``count`` more reactions on the note (its counts, emojis and pair cache), as if made since."""
        reactions, emojis, pairs = self._reactions(count)
        for key, n in reactions.items():
            note["reactions"][key] = note["reactions"].get(key, 0) + n
        note["reactionEmojis"].update(emojis)
        note["reactionCount"] = sum(note["reactions"].values())
        if "reactionAndUserPairCache" in note:
            note["reactionAndUserPairCache"] = (pairs + note["reactionAndUserPairCache"])[:16]

    def _poll(self, created_ms: int) -> dict[str, Any]:
        question, choices = self.rng.choice(POLLS)
        expires = None if self.rng.random() < 0.5 else iso(created_ms + self.rng.choice((3_600_000, 86_400_000)))
        return {
            "question": question,
            "multiple": self.rng.random() < 0.3,
            "expiresAt": expires,
            "choices": [{"text": c, "votes": 0, "isVoted": False} for c in choices],
        }

    def channel_object(self, channel_id: str) -> dict[str, Any]:
        digest = hashlib.sha256(channel_id.encode()).digest()
        names = ("ねこ部", "Misskey開発", "今日のごはん", "photography", "雑談")
        colors = ("#86b300", "#e64980", "#1c7ed6", "#f59f00")
        return {
            "id": channel_id,
            "name": names[digest[0] % len(names)],
            "color": colors[digest[1] % len(colors)],
            "isSensitive": False,
            "allowRenoteToExternal": True,
            "userId": self.cast[digest[2] % len(self.cast)].id,
        }

    def pack(self, *, note_id: str, created_ms: int, author: User, text: str | None, cw: str | None = None,
             visibility: str = "public", local_only: bool = False, reaction_acceptance: str | None = None,
             visible_user_ids: list[str] | None = None, renote_count: int = 0, replies_count: int = 0,
             reaction_total: int = 0, files: list[dict[str, Any]] | None = None,
             reply: dict[str, Any] | None = None, renote: dict[str, Any] | None = None,
             channel: dict[str, Any] | None = None, poll: dict[str, Any] | None = None,
             detail: bool = True) -> dict[str, Any]:
        """A note object in the server's key order (``detail`` adds clippedCount, reply, renote, poll)."""
        reactions, reaction_emojis, pairs = self._reactions(reaction_total)
        files = files or []
        note: dict[str, Any] = {
            "id": note_id,
            "createdAt": iso(created_ms),
            "userId": author.id,
            "user": author.lite(self.base_url),
            "text": text,
            "cw": cw,
            "visibility": visibility,
            "localOnly": local_only,
            "reactionAcceptance": reaction_acceptance,
        }
        if visibility == "specified":
            note["visibleUserIds"] = list(visible_user_ids or [])
        note["renoteCount"] = renote_count
        note["repliesCount"] = replies_count
        note["reactionCount"] = sum(reactions.values())
        note["reactions"] = reactions
        note["reactionEmojis"] = reaction_emojis
        note["reactionAndUserPairCache"] = pairs
        if author.host is not None:
            note["emojis"] = {}
        tags = extract_tags(text)
        if tags:
            note["tags"] = tags
        note["fileIds"] = [f["id"] for f in files]
        note["files"] = files
        note["replyId"] = reply["id"] if reply else None
        note["renoteId"] = renote["id"] if renote else None
        self._pack_links(note, text, channel, visible_user_ids, poll)
        if author.host is not None:
            note.update(_remote_links(author, note_id, created_ms))
        if detail:
            note["clippedCount"] = 0
            if reply is not None:
                note["reply"] = reply
            if renote is not None:
                note["renote"] = renote
            if poll is not None:
                note["poll"] = {k: v for k, v in poll.items() if k != "question"}
        return note

    def _pack_links(self, note: dict[str, Any], text: str | None, channel: dict[str, Any] | None,
                    visible_user_ids: list[str] | None, poll: dict[str, Any] | None) -> None:
        """channelId/channel, mentions and hasPoll, in that order."""
        if channel is not None:
            note["channelId"] = channel["id"]
            note["channel"] = channel
        mentions = self.mentions_in(text)
        for user_id in visible_user_ids or []:
            if user_id not in mentions:
                mentions.append(user_id)
        if mentions:
            note["mentions"] = mentions
        if poll is not None:
            note["hasPoll"] = True

    def older_note(self, author: User | None = None, *, now_ms: int | None = None, detail: bool = True,
                   with_text: bool = True) -> dict[str, Any]:
        """A note posted a while ago (the target of a reply or renote), with some reactions."""
        author = author or self._pick_author(None)
        now = now_ms if now_ms is not None else self.ids.now_ms()
        created = now - self.rng.randrange(60_000, 3 * 86_400_000)
        kind = self.rng.choice(("plain", "plain", "plain", "cw", "files", "hashtags"))
        text: str | None = self._text(author) if with_text else None
        cw = None
        files = None
        if kind == "cw":
            cw, text = self.rng.choice(CW_PAIRS)
        elif kind == "files":
            files = self._files(author, created, self.rng.randint(1, 2))
        elif kind == "hashtags":
            text = f"{text} #{self.rng.choice(HASHTAGS)}"
        return self.pack(
            note_id=self.ids.at(created), created_ms=created, author=author, text=text, cw=cw, files=files,
            renote_count=self.rng.randrange(0, 6), replies_count=self.rng.randrange(0, 4),
            reaction_total=self.rng.choice((0, 1, 2, 3, 5, 8, 13)), detail=detail,
        )

    # -- notes ------------------------------------------------------------------------------

    def _choose_kind(self, req: NoteRequest) -> str:
        """The request's kind, or a random one fit for the request and the opening rule."""
        opening = self.notes_made < ORDINARY_OPENING
        kind = req.kind
        if kind is None:
            kind = self.rng.choice(ORDINARY_KINDS) if opening else self.rng.choices(NOTE_KINDS, weights=KIND_WEIGHTS)[0]
            if req.no_pure_renote and kind == "pure_renote":
                kind = "quote"
            if req.channel_id is not None and kind in ("pure_renote", "quote"):
                kind = "plain"
        if req.tags and kind not in ("hashtags", "files"):
            kind = "hashtags"
        if req.with_files and kind not in ("files", "file_only"):
            kind = "files"
        if opening and req.kind is None:
            kind = {"file_only": "files", "pure_renote": "plain"}.get(kind, kind)
        return kind

    def note(self, request: NoteRequest | None = None) -> dict[str, Any]:
        """A fresh note (id made now) shaped by the request; counts toward the opening rule."""
        req = request or NoteRequest()
        kind = self._choose_kind(req)
        self.notes_made += 1

        author = req.author or self._pick_author(req.remote)
        note_id, created = self.ids.next()
        content = _Content(text=self._text(author))
        reaction_acceptance = self.rng.choice((None, None, None, None, "likeOnlyForRemote", "nonSensitiveOnly"))
        tags = list(req.tags)
        if kind == "hashtags" and not tags:
            tags = self.rng.sample(HASHTAGS, self.rng.randint(1, 2))
        maker = self._CONTENT.get(kind)
        if maker is not None:
            maker(self, content, author, created)
        text = content.text
        if tags and text is not None:
            text = text + " " + " ".join(f"#{t}" for t in tags)
        elif tags:
            text = " ".join(f"#{t}" for t in tags)
        channel = self.channel_object(req.channel_id) if req.channel_id is not None else None
        visible_user_ids = None
        if req.visibility == "specified":
            visible_user_ids = [self._pick_author(False, exclude=author.id).id]
        note = self.pack(
            note_id=note_id, created_ms=created, author=author, text=text, cw=content.cw,
            visibility=req.visibility, local_only=channel is not None,
            reaction_acceptance=reaction_acceptance, visible_user_ids=visible_user_ids,
            files=content.files, reply=content.reply, renote=content.renote, channel=channel, poll=content.poll,
        )
        self.remember(note)
        return note

    # Each kind's content, made in the order the seeded generator has always drawn it.

    def _cw_content(self, content: _Content, author: User, created: int) -> None:
        content.cw, content.text = self.rng.choice(CW_PAIRS)

    def _mfm_content(self, content: _Content, author: User, created: int) -> None:
        content.text = self.rng.choice(MFM)

    def _mention_content(self, content: _Content, author: User, created: int) -> None:
        other = self._pick_author(None, exclude=author.id)
        content.text = f"@{other.acct} {self.rng.choice(REPLIES)}"

    def _reply_content(self, content: _Content, author: User, created: int, own: bool = False) -> None:
        target = author if own else self._pick_author(None, exclude=author.id)
        content.reply = self.older_note(target, now_ms=created, detail=False)
        reply_text = self.rng.choice(REPLIES)
        content.text = reply_text if own else f"@{target.acct} {reply_text}"

    def _self_reply_content(self, content: _Content, author: User, created: int) -> None:
        self._reply_content(content, author, created, own=True)

    def _pure_renote_content(self, content: _Content, author: User, created: int) -> None:
        content.text = None
        content.renote = self.older_note(self._pick_author(None, exclude=author.id), now_ms=created)
        content.renote["renoteCount"] += 1

    def _quote_content(self, content: _Content, author: User, created: int) -> None:
        content.text = self.rng.choice(QUOTES)
        content.renote = self.older_note(self._pick_author(None, exclude=author.id), now_ms=created)

    def _files_content(self, content: _Content, author: User, created: int) -> None:
        content.files = self._files(author, created, self.rng.randint(1, 4))

    def _file_only_content(self, content: _Content, author: User, created: int) -> None:
        self._files_content(content, author, created)
        content.text = None

    def _poll_content(self, content: _Content, author: User, created: int) -> None:
        content.poll = self._poll(created)
        content.text = content.poll["question"]

    def _long_content(self, content: _Content, author: User, created: int) -> None:
        content.text = "\n\n".join(self.rng.sample(JAPANESE + ENGLISH, 12))

    _CONTENT: ClassVar[dict[str, Callable[[Traffic, _Content, User, int], None]]] = {
        "cw": _cw_content,
        "mfm": _mfm_content,
        "mention": _mention_content,
        "reply": _reply_content,
        "self_reply": _self_reply_content,
        "pure_renote": _pure_renote_content,
        "quote": _quote_content,
        "files": _files_content,
        "file_only": _file_only_content,
        "poll": _poll_content,
        "long": _long_content,
    }

    def note_for(self, channel: str, params: dict[str, Any], viewer: User | None) -> dict[str, Any]:
        """A fresh note that a connection of ``channel`` with ``params`` would receive."""
        req = NoteRequest(with_files=params.get("withFiles") is True,
                          no_pure_renote=params.get("withRenotes") is False)
        if channel in ("localTimeline", "hybridTimeline"):
            req.remote = False
        elif channel == "homeTimeline":
            followed = [u for u in self.authors() if viewer is None or self.follows(viewer, u.id)]
            req.author = self.rng.choice(followed)
            req.visibility = self.rng.choice(("public", "public", "public", "home", "followers"))
        elif channel == "hashtag":
            q = params.get("q")
            if isinstance(q, list) and q:
                group = self.rng.choice(q)
                if isinstance(group, list):
                    req.tags = tuple(str(t) for t in group)
        elif channel == "channel":
            channel_id = params.get("channelId")
            if isinstance(channel_id, str):
                req.channel_id = channel_id
                req.remote = False
        return self.note(req)

    def remember(self, note: dict[str, Any]) -> None:
        """Keep a posted note so later note events can match it (poll votes need its poll)."""
        self._known[note["id"]] = note
        for key in ("reply", "renote"):  # a client may open the note a reply or renote points at
            nested = note.get(key)
            if isinstance(nested, dict) and isinstance(nested.get("id"), str):
                self._known.setdefault(nested["id"], nested)
        while len(self._known) > 2000:
            del self._known[next(iter(self._known))]

    def known(self, note_id: str) -> dict[str, Any] | None:
        """A note made or remembered lately (posted, or the target of a reply or renote: the nested notes of
        replies and renotes too), or None."""
        return self._known.get(note_id)

    def forget(self, note_id: str) -> None:
        """A deleted note: no more note events for it."""
        self._known.pop(note_id, None)
        self._captures[note_id] = _CaptureState(deleted=True)

    def huge_note(self, size_bytes: int) -> dict[str, Any]:
        """A valid note whose JSON is about ``size_bytes`` long (for frame-size tests)."""
        note = self.note(NoteRequest(kind="plain", remote=False))
        filler = "巨大なノート huge note 🐘 "
        base = len(json.dumps(note, ensure_ascii=False).encode())
        unit = len(filler.encode())
        note["text"] = filler * max(1, (size_bytes - base) // unit)
        return note

    # -- note events (noteUpdated) ----------------------------------------------------------

    def reacted_body(self, user_id: str, custom: bool) -> dict[str, Any]:
        if custom:
            name = self.rng.choice(LOCAL_CUSTOM_EMOJIS)
            return {"reaction": f":{name}@.:", "emoji": {"name": f"{name}@.", "url": self._custom_emoji_url(name)},
                    "userId": user_id}
        return {"reaction": self.rng.choice(UNICODE_REACTIONS), "emoji": None, "userId": user_id}

    def note_event(self, note_id: str) -> tuple[str, dict[str, Any]] | None:
        """The next plausible event on a captured note, or None once the note is deleted."""
        state = self._captures.setdefault(note_id, _CaptureState())
        if state.deleted:
            return None
        note = self._known.get(note_id)
        poll = note.get("poll") if note else None
        users = [u.id for u in self.authors()]
        roll = self.rng.random()
        if isinstance(poll, dict) and roll < 0.3:
            return "pollVoted", {"choice": self.rng.randrange(len(poll.get("choices") or [0, 1])),
                                 "userId": self.rng.choice(users)}
        fresh = [u for u in users if u not in state.reactions]
        if state.reactions and (roll < 0.45 or not fresh):
            user_id = self.rng.choice(sorted(state.reactions))
            reaction = state.reactions.pop(user_id)
            return "unreacted", {"reaction": reaction, "userId": user_id}
        if roll > 0.985:
            state.deleted = True
            return "deleted", {"deletedAt": iso(self.ids.now_ms())}
        user_id = self.rng.choice(fresh)
        body = self.reacted_body(user_id, custom=self.rng.random() < 0.3)
        state.reactions[user_id] = body["reaction"]
        return "reacted", body

    # -- main channel -----------------------------------------------------------------------

    def notification(self, kind: str, **rest: Any) -> dict[str, Any]:
        """A notification made now (``app`` ones get a body and header unless given)."""
        if kind == "app":
            rest = {"body": "mkstream simulator", "header": "simulator", "icon": None, **rest}
        return self._notification(kind, **rest)

    def _notification(self, kind: str, **rest: Any) -> dict[str, Any]:
        notification_id, ms = self.ids.next()
        return {"id": notification_id, "createdAt": iso(ms), "type": kind, **rest}

    def main_events(self, viewer: User) -> list[tuple[str, Any]]:
        """One burst of ``main`` events for ``viewer``: (event type, body) pairs, as a server sends them."""
        other = self._pick_author(None, exclude=viewer.id)
        other_lite = other.lite(self.base_url)
        kind = self.rng.choices(
            ("reaction", "follow", "mention", "reply", "renote", "quote", "app", "achievementEarned"),
            weights=(30, 10, 12, 12, 10, 5, 3, 2))[0]
        events: list[tuple[str, Any]] = []
        if kind == "reaction":
            mine = strip_pair_cache(self.older_note(viewer))
            body = self.reacted_body(other.id, custom=self.rng.random() < 0.3)
            reaction = body["reaction"].replace("@.:", ":")
            events.append(("notification", self._notification(
                "reaction", userId=other.id, user=other_lite, note=mine, reaction=reaction)))
        elif kind == "follow":
            events.append(("followed", other_lite))
            events.append(("notification", self._notification("follow", userId=other.id, user=other_lite)))
        elif kind in ("mention", "reply", "renote", "quote"):
            if kind == "mention":
                note = self.note(NoteRequest(kind="plain", author=other))
                note["text"] = f"@{viewer.username} {note['text']}"
                note["mentions"] = [viewer.id]
                note = order_note(note)
                events.append(("mention", strip_pair_cache(note)))
            else:
                target = self.older_note(viewer, detail=kind != "reply")
                note_id, created = self.ids.next()
                text = None if kind == "renote" else self.rng.choice(REPLIES if kind == "reply" else QUOTES)
                if kind == "reply":
                    text = f"@{viewer.username} {text}"
                note = self.pack(note_id=note_id, created_ms=created, author=other, text=text,
                                 reply=target if kind == "reply" else None,
                                 renote=target if kind != "reply" else None)
                self.remember(note)
                events.append(("reply" if kind == "reply" else "renote", note))
            events.append(("notification", self._notification(
                kind, userId=other.id, user=other_lite, note=strip_pair_cache(note))))
        elif kind == "app":
            events.append(("notification", self._notification(
                "app", body=self.rng.choice(("ビルドが完了しました ✅", "Your export is ready 📦")),
                header=self.rng.choice(("CI bot", "mkstream demo")), icon=None)))
        else:
            events.append(("notification", self._notification(
                "achievementEarned", achievement=self.rng.choice(ACHIEVEMENTS))))
        if self.rng.random() < 0.3:
            events.append(("unreadNotification", events[-1][1]))
        return events

    # -- stats and broadcasts ---------------------------------------------------------------

    def server_stats(self) -> dict[str, Any]:
        state = self._server_log_state
        state["cpu"] = min(1.0, max(0.0, state["cpu"] + self.rng.uniform(-0.03, 0.03)))
        state["mem"] = int(min(4e9, max(5e8, state["mem"] + self.rng.randrange(-20_000_000, 20_000_000))))
        mem = int(state["mem"])
        return {
            "cpu": round(state["cpu"], 2),
            "mem": {"used": mem, "active": mem - self.rng.randrange(0, 50_000_000)},
            "net": {"rx": round(self.rng.uniform(0, 20_000), 1), "tx": round(self.rng.uniform(0, 40_000), 1)},
            "fs": {"r": round(self.rng.uniform(0, 5), 1), "w": round(self.rng.uniform(0, 12), 1)},
        }

    def queue_stats(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for queue in ("deliver", "inbox"):
            level = max(0, self._queue_state[queue] + self.rng.randint(-3, 3))
            self._queue_state[queue] = level
            out[queue] = {"activeSincePrevTick": self.rng.randint(0, 12), "active": min(level, 4),
                          "waiting": level, "delayed": self.rng.choice((0, 0, 0, 1, 2))}
        return out

    def broadcast(self) -> tuple[str, dict[str, Any]]:
        """An occasional broadcast every socket receives (emojiAdded or announcementCreated)."""
        item_id, ms = self.ids.next()
        if self.rng.random() < 0.5:
            name = self.rng.choice(("blobcat_wave", "nekomimi_party", "misskey_logo", "ramen"))
            return "emojiAdded", {"emoji": {
                "id": item_id, "aliases": [name.split("_")[0]], "name": name, "category": "追加 new",
                "host": None, "url": self._custom_emoji_url(name), "license": "CC0", "isSensitive": False,
                "localOnly": False, "roleIdsThatCanBeUsedThisEmojiAsReaction": [],
            }}
        return "announcementCreated", {"announcement": {
            "id": item_id, "createdAt": iso(ms), "updatedAt": None,
            "title": self.rng.choice(("メンテナンスのお知らせ 🛠️", "New emoji pack 🎉")),
            "text": self.rng.choice(("明日の午前3時からメンテナンスを行います。", "Check out the new custom emoji!")),
            "imageUrl": None, "icon": self.rng.choice(("info", "warning")), "display": "normal",
            "forYou": False, "needConfirmationToRead": False, "silence": False,
        }}

    # -- custom emojis and reactions ----------------------------------------------------------

    def emojis(self) -> list[dict[str, Any]]:
        """The server's custom emojis as the ``emojis`` endpoint lists them (EmojiSimple), by category and name."""
        return [{"aliases": [name.split("_")[0]], "name": name, "category": "ねこ" if "cat" in name else None,
                 "url": self._custom_emoji_url(name), "localOnly": False, "isSensitive": False,
                 "roleIdsThatCanBeUsedThisEmojiAsReaction": []}
                for name in sorted(LOCAL_CUSTOM_EMOJIS)]

    def reaction_of(self, requested: str, acceptance: str | None) -> tuple[str, dict[str, str] | None]:
        """What a ``notes/reactions/create`` reaction becomes (Misskey's normalisation): a local custom
        emoji ``:name:`` is stored as ``:name@.:`` with its ``{name, url}``; Unicode stays; anything
        else, and everything on a like-only note, becomes the default like ``❤``."""
        if acceptance == "likeOnly":
            return "❤", None
        match = re.fullmatch(r":([\w+-]+)(?:@\.)?:", requested)
        if match is not None:
            name = match.group(1)
            if name in LOCAL_CUSTOM_EMOJIS:
                return f":{name}@.:", {"name": f"{name}@.", "url": self._custom_emoji_url(name)}
            return "❤", None
        if requested and len(requested) <= 16 and not any(c.isascii() for c in requested):
            return requested, None
        return "❤", None

    # -- drive, chat, reversi and admin channel events ---------------------------------------

    def drive_file(self, owner: User) -> dict[str, Any]:
        """A DriveFile just uploaded to ``owner``'s drive."""
        file_id, ms = self.ids.next()
        file = self._files(owner, ms, 1)[0]
        # A drive channel packs the file without its owner (tests/fixtures/frames.jsonl: drive.fileCreated).
        file.update(id=file_id, createdAt=iso(ms), userId=None, user=None)
        return file

    def drive_event(self, owner: User) -> tuple[str, Any]:
        """One ``drive`` channel event: mostly uploads, sometimes a folder, an update or a deletion."""
        roll = self.rng.random()
        if roll < 0.6:
            return "fileCreated", self.drive_file(owner)
        if roll < 0.75:
            file = self.drive_file(owner)
            file["isSensitive"] = not file["isSensitive"]
            return "fileUpdated", file
        if roll < 0.85:
            return "fileDeleted", self.ids.next()[0]
        folder_id, ms = self.ids.next()
        return "folderCreated", {"id": folder_id, "createdAt": iso(ms),
                                 "name": self.rng.choice(("写真", "screenshots", "memes", "仕事")), "parentId": None}

    def chat_event(self, key: str, sender: User, to_user_id: str | None, to_room_id: str | None) -> tuple[str, Any]:
        """One ``chatUser``/``chatRoom`` event on the conversation ``key``: a message (ChatMessageLite, keys
        in the order of tests/fixtures/frames.jsonl), or a reaction, unreaction or deletion of one sent before.
        Room events name the sender (``fromUser``, ``user``); direct ones do not, as the recording shows."""
        sent = self._chat.setdefault(key, [])
        roll = self.rng.random()
        if sent and roll < 0.2:
            reaction: dict[str, Any] = {"messageId": self.rng.choice(sent),
                                        "reaction": self.rng.choice(UNICODE_REACTIONS)}
            if to_room_id is not None:
                reaction["user"] = sender.lite(self.base_url)
            return ("react" if roll < 0.12 else "unreact"), reaction
        if sent and roll < 0.25:
            return "deleted", sent.pop(self.rng.randrange(len(sent)))
        message_id, ms = self.ids.next()
        sent.append(message_id)
        del sent[:-50]
        message: dict[str, Any] = {"id": message_id, "createdAt": iso(ms), "text": self._text(sender),
                                   "fromUserId": sender.id}
        if to_room_id is not None:
            message["fromUser"] = sender.lite(self.base_url)
            message["toRoomId"] = to_room_id
        else:
            message["toUserId"] = to_user_id
        message.update({"fileId": None, "file": None, "reactions": []})
        return "message", message

    def chat_message_for_main(self, message: dict[str, Any], sender: User, receiver: User) -> dict[str, Any]:
        """The ``main`` ``newChatMessage`` body (ChatMessage) of a direct message: both users packed."""
        return {"id": message["id"], "createdAt": message["createdAt"], "text": message["text"],
                "fromUserId": sender.id, "fromUser": sender.lite(self.base_url), "toUserId": receiver.id,
                "toUser": receiver.lite(self.base_url), "toRoomId": None, "fileId": None, "file": None,
                "reactions": []}

    def _game(self, game_id: str, created: str, user1: User, user2: User) -> dict[str, Any]:
        """A ReversiGameDetailed not started yet (keys in the recording's order)."""
        return {
            "id": game_id, "createdAt": created, "startedAt": None, "endedAt": None, "isStarted": False,
            "isEnded": False, "form1": None, "form2": None, "user1Ready": False, "user2Ready": False,
            "user1Id": user1.id, "user2Id": user2.id, "user1": user1.lite(self.base_url),
            "user2": user2.lite(self.base_url), "winnerId": None, "winner": None, "surrenderedUserId": None,
            "timeoutUserId": None, "black": None, "bw": "random", "isLlotheo": False, "canPutEverywhere": False,
            "loopedBoard": False, "timeLimitForEachTurn": 90, "noIrregularRules": False, "logs": [],
            "map": ["--------", "--------", "--------", "---wb---", "---bw---", "--------", "--------",
                    "--------"],
        }

    def reversi_event(self, viewer: User) -> tuple[str, Any]:
        """A ``reversi`` event for ``viewer``: an invitation (``{user}``) or a match (``{game}``)."""
        other = self._pick_author(False, exclude=viewer.id)
        if self.rng.random() < 0.6:
            return "invited", {"user": other.lite(self.base_url)}
        game_id, ms = self.ids.next()
        return "matched", {"game": self._game(game_id, iso(ms), other, viewer)}

    def reversi_game_event(self, game_id: str, viewer: User) -> tuple[str, Any]:
        """The next event of game ``game_id`` watched by ``viewer``: settings, ready states, the start, moves
        (``log``), the end; then a new game under the same id."""
        game = self._games.get(game_id)
        if game is None or game["isEnded"]:
            other = self._pick_author(False, exclude=viewer.id)
            game = self._games[game_id] = self._game(game_id, iso(self.ids.now_ms()), other, viewer)
            game["step"] = 0
        step = game["step"]
        game["step"] = step + 1
        public = {k: v for k, v in game.items() if k != "step"}
        if step == 0:
            key = self.rng.choice(("canPutEverywhere", "isLlotheo", "loopedBoard"))
            return "updateSettings", {"userId": game["user1Id"], "key": key, "value": False}
        if step in (1, 2):
            game["user1Ready"], game["user2Ready"] = True, step == 2
            return "changeReadyStates", {"user1": True, "user2": step == 2}
        if step == 3:
            game["isStarted"], game["startedAt"] = True, iso(self.ids.now_ms())
            game["black"] = self.rng.choice((1, 2))
            return "started", {"game": dict(public, isStarted=True, startedAt=game["startedAt"], black=game["black"],
                                            user1Ready=True, user2Ready=True)}
        if step < 12:
            now = self.ids.now_ms()
            move = [now, step % 2, 0, self.rng.randrange(64)]
            game["logs"].append(move)
            return "log", {"time": now, "player": step % 2 == 1, "operation": "put", "pos": move[3],
                           "id": f"mv{step - 3}"}
        game["isEnded"], game["endedAt"] = True, iso(self.ids.now_ms())
        winner = self.rng.choice(("user1", "user2"))
        game["winnerId"], game["winner"] = game[f"{winner}Id"], game[winner]
        return "ended", {"winnerId": game["winnerId"], "game": {k: v for k, v in game.items() if k != "step"}}

    def abuse_report(self) -> dict[str, Any]:
        """The body of an ``admin`` ``newAbuseUserReport`` event."""
        report_id, _ = self.ids.next()
        reporter = self._pick_author(False)
        target = self._pick_author(None, exclude=reporter.id)
        return {"id": report_id, "targetUserId": target.id, "reporterId": reporter.id,
                "comment": self.rng.choice(("スパムです", "Spam links in every reply", "荒らし行為",
                                            "Impersonating another account"))}
