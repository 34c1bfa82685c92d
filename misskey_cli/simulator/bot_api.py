"""The endpoints a bot or client calls beyond reading timelines, acting on the simulated world.

``notes/show``, ``notes/create``, ``notes/delete``, ``notes/reactions`` (+ ``/create``,
``/delete``), ``notes/polls/vote``, ``users/show``, ``users/notes``, ``following/create``,
``following/delete`` and ``emojis``, with Misskey's parameters, errors (``api_params``) and
permissions (``KINDS``: the permission an app token needs, Misskey's ``meta.kind``). A posted note is
routed like any other (the timelines whose rules accept it deliver it, and the history keeps it);
reactions, unreactions, votes and deletions reach sockets capturing the note as ``noteUpdated``
and change what ``notes/show`` answers (``world.py``); a follow changes what homeTimeline carries.

Each handler takes the ``ApiServer``, the request body and the caller, runs on the simulator's
loop, and returns the answer (None: 204 No Content).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from misskey_cli.core.notes import is_pure_renote
from misskey_cli.simulator import api_params as ap
from misskey_cli.simulator import rules
from misskey_cli.simulator.corpus import User, aidx_ms, iso, order_note, strip_pair_cache
from misskey_cli.simulator.history import Entry, paginate
from misskey_cli.simulator.rules import NO_TARGETS, Targets

if TYPE_CHECKING:
    from misskey_cli.simulator.api_server import ApiServer, Caller

MAX_NOTE_TEXT = 3000
MAX_CW = 100
VISIBILITIES = ("public", "home", "followers", "specified")
REACTION_ACCEPTANCES = (None, "likeOnly", "likeOnlyForRemote", "nonSensitiveOnly",
                        "nonSensitiveOnlyForLocalLikeOnlyForRemote")

# The permission an app token needs for each endpoint (Misskey's ``kind``); native tokens have all.
KINDS = {
    "i": "read:account",
    "i/notifications": "read:notifications",
    "notes/create": "write:notes",
    "notes/delete": "write:notes",
    "notes/reactions/create": "write:reactions",
    "notes/reactions/delete": "write:reactions",
    "notes/polls/vote": "write:votes",
    "following/create": "write:following",
    "following/delete": "write:following",
}


@dataclass(frozen=True)
class Effects:
    """What the endpoints make happen on the sockets (the engine's sending primitives)."""

    route_note: Callable[[dict[str, Any], Targets], int]
    note_updated: Callable[[str, str, Any], int]
    main_event: Callable[[str, str, Any], int]


def _me(server: ApiServer, caller: Caller) -> User:
    user = server.require(caller, True)
    assert user is not None
    return user


def _note_param(server: ApiServer, body: dict[str, Any], missing: dict[str, Any]) -> dict[str, Any]:
    note_id = ap.str_param(body, "noteId", required=True)
    note = server.world.find(note_id)
    if note is None:
        raise ap.ApiFailure(400, missing)
    return note


def _visible_note(server: ApiServer, body: dict[str, Any], caller: Caller, missing: dict[str, Any]) -> dict[str, Any]:
    """The ``noteId`` note, if the caller may see it (a note they may not see does not exist for them)."""
    note = _note_param(server, body, missing)
    if not rules.visible(note, server.viewer(caller.user)):
        raise ap.ApiFailure(400, missing)
    return note


def _user_param(server: ApiServer, body: dict[str, Any], missing: dict[str, Any]) -> User:
    user_id = ap.str_param(body, "userId", required=True)
    assert user_id is not None
    user = server.traffic.user_by_id(user_id)
    if user is None:
        raise ap.ApiFailure(400, missing)
    return user


# -- notes ------------------------------------------------------------------------------------

def notes_show(server: ApiServer, body: dict[str, Any], caller: Caller) -> Any:
    note = _visible_note(server, body, caller, ap.NO_SUCH_NOTE_SHOW)
    return server.world.view(note, caller.user.id if caller.user else None)


def _text_params(body: dict[str, Any]) -> tuple[str | None, str | None]:
    text = body.get("text")
    if "text" in body and not isinstance(text, str):
        raise ap.invalid_param("#/properties/text/type", "must be string")
    if isinstance(text, str) and not 1 <= len(text) <= MAX_NOTE_TEXT:
        limit = ("minLength", "must NOT have fewer than 1 characters") if not text else (
            "maxLength", f"must NOT have more than {MAX_NOTE_TEXT} characters")
        raise ap.invalid_param(f"#/properties/text/{limit[0]}", limit[1])
    cw = body.get("cw")
    if cw is not None and not isinstance(cw, str):
        raise ap.invalid_param("#/properties/cw/type", "must be string")
    if isinstance(cw, str) and len(cw) > MAX_CW:
        raise ap.invalid_param("#/properties/cw/maxLength", f"must NOT have more than {MAX_CW} characters")
    return text, cw


def _enum_param(body: dict[str, Any], name: str, allowed: tuple[str | None, ...], default: str | None) -> str | None:
    value = body.get(name, default)
    if value not in allowed:
        raise ap.invalid_param(f"#/properties/{name}/enum", "must be equal to one of the allowed values")
    return value


def _id_list(body: dict[str, Any], name: str, low: int = 0, high: int | None = None) -> list[str] | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ap.invalid_param(f"#/properties/{name}/type", "must be array")
    if len(value) < low:
        raise ap.invalid_param(f"#/properties/{name}/minItems", f"must NOT have fewer than {low} items")
    if high is not None and len(value) > high:
        raise ap.invalid_param(f"#/properties/{name}/maxItems", f"must NOT have more than {high} items")
    return list(value)


def _poll_param(server: ApiServer, body: dict[str, Any]) -> dict[str, Any] | None:
    poll = body.get("poll")
    if poll is None:
        return None
    if not isinstance(poll, dict):
        raise ap.invalid_param("#/properties/poll/type", "must be object")
    choices = poll.get("choices")
    if not isinstance(choices, list) or not all(isinstance(c, str) and 1 <= len(c) <= 50 for c in choices):
        raise ap.invalid_param("#/properties/poll/properties/choices", "must be array of 1-50 character strings")
    if not 2 <= len(choices) <= 10 or len(set(choices)) != len(choices):
        raise ap.invalid_param("#/properties/poll/properties/choices", "must have 2 to 10 unique items")
    multiple = poll.get("multiple", False)
    if not isinstance(multiple, bool):
        raise ap.invalid_param("#/properties/poll/properties/multiple/type", "must be boolean")
    now = server.traffic.ids.now_ms()
    expires_at = ap.int_param(poll, "expiresAt", None, at="#/properties/poll")
    expired_after = ap.int_param(poll, "expiredAfter", None, 1, at="#/properties/poll")
    if expires_at is not None and expires_at < now:
        raise ap.ApiFailure(400, ap.CANNOT_CREATE_EXPIRED_POLL)
    if expires_at is None and expired_after is not None:
        expires_at = now + expired_after
    return {"multiple": multiple, "expiresAt": iso(expires_at) if expires_at else None,
            "choices": [{"text": c, "votes": 0, "isVoted": False} for c in choices]}


def _target(server: ApiServer, note_id: Any, name: str, missing: dict[str, Any],
            pure_renote: dict[str, Any]) -> dict[str, Any] | None:
    if note_id is None:
        return None
    if not isinstance(note_id, str):
        raise ap.invalid_param(f"#/properties/{name}/type", "must be string")
    target = server.world.find(note_id)
    if target is None:
        raise ap.ApiFailure(400, missing)
    if is_pure_renote(target):
        raise ap.ApiFailure(400, pure_renote)
    return target


def _undetailed(note: dict[str, Any]) -> dict[str, Any]:
    """A note as it is nested in another (no clippedCount, reply, renote or poll; no pair cache)."""
    return {k: v for k, v in strip_pair_cache(note).items() if k not in ("clippedCount", "reply", "renote", "poll")}


def notes_create(server: ApiServer, body: dict[str, Any], caller: Caller) -> Any:
    me = _me(server, caller)
    text, cw = _text_params(body)
    visibility = _enum_param(body, "visibility", VISIBILITIES, "public")
    acceptance = _enum_param(body, "reactionAcceptance", REACTION_ACCEPTANCES, None)
    flags = ap.bool_params(body, ("localOnly", "noExtractMentions", "noExtractHashtags", "noExtractEmojis"))
    visible_user_ids = _id_list(body, "visibleUserIds") or []
    file_ids = _id_list(body, "fileIds", 1, 16) or _id_list(body, "mediaIds", 1, 16)
    channel_id = body.get("channelId")
    if channel_id is not None and not isinstance(channel_id, str):
        raise ap.invalid_param("#/properties/channelId/type", "must be string")
    if not any(body.get(k) is not None for k in ("text", "renoteId", "fileIds", "mediaIds", "poll")):
        raise ap.invalid_param("#/anyOf", "must match a schema in anyOf")
    if file_ids:
        raise ap.ApiFailure(400, ap.NO_SUCH_FILE)  # the simulator's drives hold no files a note could attach
    renote = _target(server, body.get("renoteId"), "renoteId", ap.NO_SUCH_RENOTE_TARGET, ap.CANNOT_RENOTE_PURE_RENOTE)
    reply = _target(server, body.get("replyId"), "replyId", ap.NO_SUCH_REPLY_TARGET, ap.CANNOT_REPLY_PURE_RENOTE)
    poll = _poll_param(server, body)
    traffic = server.traffic
    note_id, created = traffic.ids.next()
    channel = traffic.channel_object(channel_id) if channel_id is not None else None
    note = traffic.pack(
        note_id=note_id, created_ms=created, author=me, text=text, cw=cw, visibility=str(visibility),
        local_only=flags.get("localOnly", False) or channel is not None, reaction_acceptance=acceptance,
        visible_user_ids=visible_user_ids if visibility == "specified" else None,
        reply=_undetailed(reply) if reply is not None else None,
        renote=strip_pair_cache(renote) if renote is not None else None, channel=channel, poll=poll)
    if flags.get("noExtractHashtags"):
        note.pop("tags", None)
    if flags.get("noExtractMentions") and visibility != "specified":
        note.pop("mentions", None)
    note = order_note(note)
    for target, counter in ((reply, "repliesCount"), (renote, "renoteCount")):
        if target is not None:
            target[counter] = target.get(counter, 0) + 1
    traffic.remember(note)
    server.effects.route_note(note, NO_TARGETS)
    return {"createdNote": note}


def notes_delete(server: ApiServer, body: dict[str, Any], caller: Caller) -> Any:
    me = _me(server, caller)
    note = _note_param(server, body, ap.NO_SUCH_NOTE_DELETE)
    if note.get("userId") != me.id and me.username not in server.moderators:
        raise ap.ApiFailure(400, ap.ACCESS_DENIED_DELETE)
    deleted_at = server.world.delete(note)
    server.effects.note_updated(note["id"], "deleted", {"deletedAt": deleted_at})
    return None


def reactions_create(server: ApiServer, body: dict[str, Any], caller: Caller) -> Any:
    me = _me(server, caller)
    note = _visible_note(server, body, caller, ap.NO_SUCH_NOTE_REACT)
    requested = ap.str_param(body, "reaction", required=True)
    assert requested is not None
    if server.world.reaction_of(note, me.id) is not None:
        raise ap.ApiFailure(400, ap.ALREADY_REACTED)
    reaction, emoji = server.traffic.reaction_of(requested, note.get("reactionAcceptance"))
    server.world.react(note, me.id, reaction)
    server.effects.note_updated(note["id"], "reacted", {"reaction": reaction, "emoji": emoji, "userId": me.id})
    author = server.traffic.user_by_id(note.get("userId", ""))
    if author is not None and author.id != me.id and author.host is None:
        server.effects.main_event(author.id, "notification", server.traffic.notification(
            "reaction", userId=me.id, user=me.lite(server.traffic.base_url), note=strip_pair_cache(note),
            reaction=reaction.replace("@.:", ":")))
    return None


def reactions_delete(server: ApiServer, body: dict[str, Any], caller: Caller) -> Any:
    me = _me(server, caller)
    note = _visible_note(server, body, caller, ap.NO_SUCH_NOTE_UNREACT)
    removed = server.world.unreact(note, me.id)
    if removed is None:
        raise ap.ApiFailure(400, ap.NOT_REACTED)
    server.effects.note_updated(note["id"], "unreacted", {"reaction": removed.reaction, "userId": me.id})
    return None


def reactions_list(server: ApiServer, body: dict[str, Any], caller: Caller) -> Any:
    note_id = ap.str_param(body, "noteId", required=True)
    kind = ap.str_param(body, "type")
    page = ap.page_of(body)
    note = server.world.find(note_id)
    if note is None:
        return []
    made = {r.id: r for r in server.world.reactions(note) if kind is None or r.reaction == kind}
    base = server.traffic.base_url
    out = []
    for reaction_id in paginate(made, page, lambda _: True):
        reaction = made[reaction_id]
        user = server.traffic.user_by_id(reaction.user_id)
        if user is None:
            continue
        out.append({"id": reaction.id, "createdAt": _iso_of(reaction.id), "user": user.lite(base),
                    "type": reaction.reaction})
    return out


def polls_vote(server: ApiServer, body: dict[str, Any], caller: Caller) -> Any:
    me = _me(server, caller)
    note = _visible_note(server, body, caller, ap.NO_SUCH_NOTE_VOTE)
    choice = ap.int_param(body, "choice", None)
    if choice is None:
        raise ap.invalid_param("#/required", "must have required property 'choice'")
    poll = note.get("poll")
    if not isinstance(poll, dict):
        raise ap.ApiFailure(400, ap.NO_POLL)
    expires = poll.get("expiresAt")
    if isinstance(expires, str) and expires < _iso_now(server):
        raise ap.ApiFailure(400, ap.ALREADY_EXPIRED)
    if not 0 <= choice < len(poll.get("choices") or []):
        raise ap.ApiFailure(400, ap.INVALID_CHOICE)
    voted = server.world.votes_of(note, me.id)
    if voted and (not poll.get("multiple") or choice in voted):
        raise ap.ApiFailure(400, ap.ALREADY_VOTED)
    server.world.vote(note, me.id, choice)
    server.effects.note_updated(note["id"], "pollVoted", {"choice": choice, "userId": me.id})
    return None


def _iso_now(server: ApiServer) -> str:
    return iso(server.traffic.ids.now_ms())


def _iso_of(item_id: str) -> str:
    return iso(aidx_ms(item_id))


# -- users ------------------------------------------------------------------------------------

def users_show(server: ApiServer, body: dict[str, Any], caller: Caller) -> Any:
    user_ids = body.get("userIds")
    if user_ids is not None:
        if not isinstance(user_ids, list) or not all(isinstance(u, str) for u in user_ids):
            raise ap.invalid_param("#/properties/userIds/type", "must be array")
        found = [server.traffic.user_by_id(u) for u in user_ids]
        return [server.detailed(u, caller.user) for u in found if u is not None]
    user: User | None
    if body.get("userId") is not None:
        user = server.traffic.user_by_id(str(ap.str_param(body, "userId")))
    elif body.get("username") is not None:
        username = ap.str_param(body, "username")
        host = ap.str_param(body, "host")
        user = next((u for u in server.traffic.authors() if u.username.lower() == str(username).lower()
                     and u.host == host), None)
    else:
        raise ap.invalid_param("#/anyOf", "must match a schema in anyOf")
    if user is None:
        raise ap.ApiFailure(400, ap.NO_SUCH_USER_SHOW)
    return server.detailed(user, caller.user)


def users_notes(server: ApiServer, body: dict[str, Any], caller: Caller) -> Any:
    user = _user_param(server, body, ap.NO_SUCH_USER_NOTES)
    flags = ap.bool_params(body, ("withReplies", "withRenotes", "withChannelNotes", "withFiles", "allowPartial"))
    page = ap.page_of(body)
    viewer = server.viewer(caller.user)

    def keep(entry: Entry) -> bool:
        note = entry.note
        if note.get("userId") != user.id or not rules.visible(note, viewer):
            return False
        if note.get("channelId") is not None and not flags.get("withChannelNotes", False):
            return False
        if not flags.get("withRenotes", True) and is_pure_renote(note):
            return False
        if flags.get("withFiles", False) and not note.get("files"):
            return False
        reply = note.get("reply")
        return not (isinstance(reply, dict) and reply.get("userId") != user.id and not flags.get("withReplies"))

    return [strip_pair_cache(entry.note) for entry in server.history.query(page, keep)]


def following_create(server: ApiServer, body: dict[str, Any], caller: Caller) -> Any:
    me = _me(server, caller)
    if body.get("userId") == me.id:
        raise ap.ApiFailure(400, ap.FOLLOWEE_IS_YOURSELF_FOLLOW)
    ap.bool_params(body, ("withReplies",))
    followee = _user_param(server, body, ap.NO_SUCH_USER_FOLLOW)
    if server.traffic.follows(me, followee.id):
        raise ap.ApiFailure(400, ap.ALREADY_FOLLOWING)
    server.traffic.set_follow(me, followee.id, True)
    server.effects.main_event(me.id, "follow", server.detailed(followee, None))
    if followee.host is None:
        server.effects.main_event(followee.id, "followed", me.lite(server.traffic.base_url))
    return followee.lite(server.traffic.base_url)


def following_delete(server: ApiServer, body: dict[str, Any], caller: Caller) -> Any:
    me = _me(server, caller)
    if body.get("userId") == me.id:
        raise ap.ApiFailure(400, ap.FOLLOWEE_IS_YOURSELF_UNFOLLOW)
    followee = _user_param(server, body, ap.NO_SUCH_USER_UNFOLLOW)
    if not server.traffic.follows(me, followee.id):
        raise ap.ApiFailure(400, ap.NOT_FOLLOWING)
    server.traffic.set_follow(me, followee.id, False)
    server.effects.main_event(me.id, "unfollow", server.detailed(followee, None))
    return followee.lite(server.traffic.base_url)


def emojis(server: ApiServer, body: dict[str, Any], caller: Caller) -> Any:
    return {"emojis": server.traffic.emojis()}


ENDPOINTS: dict[str, Callable[[ApiServer, dict[str, Any], Caller], Any]] = {
    "notes/show": notes_show,
    "notes/create": notes_create,
    "notes/delete": notes_delete,
    "notes/reactions": reactions_list,
    "notes/reactions/create": reactions_create,
    "notes/reactions/delete": reactions_delete,
    "notes/polls/vote": polls_vote,
    "users/show": users_show,
    "users/notes": users_notes,
    "following/create": following_create,
    "following/delete": following_delete,
    "emojis": emojis,
}
