"""The server's pure rules: who may connect, which connects are accepted, who gets which note.

Everything here is a function of plain data (dicts, strings, small frozen dataclasses), so the
rules are table-tested without sockets (tests/test_sim_rules.py): the handshake (token, suspended
token, app token without read:account, anonymous), the ``connect`` admission (32-connection cap,
credentials, shareable channels, moderator-only and inert connections, the ``pong`` ack), the
timelines' note filters (visibility, locality, channel notes, renotes, files, reply rules, hashtag
matching), the ``main`` events a note causes, ``requestLog`` answers, and the few places where the
HTTP API's timelines differ from the stream's (docs/protocol.md §9, tests/fixtures/rest.jsonl).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeGuard

from misskey_cli.core.channels import CATALOGUE, STRING, app_token_may_connect
from misskey_cli.core.notes import is_pure_renote
from misskey_cli.core.protocol import MAX_CHANNELS_PER_SOCKET
from misskey_cli.simulator.corpus import normalize_tag, strip_pair_cache

DEMO_TOKEN = "demo-token"
DEFAULT_TOKENS: dict[str, str] = {"tok-alice": "alice", "tok-bob": "bob", "tok-admin": "admin", DEMO_TOKEN: "demo"}
DEFAULT_SUSPENDED_TOKENS = ("tok-suspended",)
DEFAULT_MODERATORS = ("admin",)

# The exact header a real server sends with its 401 (tests/fixtures/frames.jsonl, result:handshake_*).
WWW_AUTHENTICATE = 'Bearer realm="Misskey", error="invalid_token", error_description="Failed to authenticate"'

NOTE_CHANNELS = frozenset(name for name, spec in CATALOGUE.items() if "note" in spec.events)


# ---------------------------------------------------------------------------------------------
# Values as the server reads them

def js_truthy(value: Any) -> bool:
    """JavaScript truthiness, which is how the server reads ``pong`` and boolean params."""
    if value is None or value is False:
        return False
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value != 0
    if isinstance(value, str):
        return value != ""
    return True


def bool_param(params: Mapping[str, Any], name: str, default: bool) -> bool:
    value = params.get(name)
    return default if value is None else js_truthy(value)


def hashtag_q_valid(q: Any) -> TypeGuard[list[list[str]]]:
    """A hashtag ``q`` the server can evaluate: a list of lists of strings."""
    return isinstance(q, list) and all(isinstance(g, list) and all(isinstance(t, str) for t in g) for g in q)


def hashtag_matches(q: list[list[str]], tags: Iterable[str]) -> bool:
    """OR of ANDs, tags compared the way the server normalises them."""
    note_tags = {t.lower() for t in tags}
    return any(all(normalize_tag(tag) in note_tags for tag in group) for group in q)


# ---------------------------------------------------------------------------------------------
# The handshake

@dataclass(frozen=True)
class HandshakeDecision:
    """``status`` None: upgrade (as ``username``, or anonymous when that is None too)."""

    status: int | None = None
    username: str | None = None
    permissions: frozenset[str] | None = None  # an app token's grant; None: a native token (or none)

    @property
    def headers(self) -> list[tuple[str, str]]:
        return [("WWW-Authenticate", WWW_AUTHENTICATE)] if self.status == 401 else []


def token_from(headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
    """The token of a request: ``Authorization: Bearer`` first, else the ``i`` query parameter."""
    authorization = headers.get("authorization")
    if authorization and authorization.startswith("Bearer "):
        return authorization[7:]
    return query.get("i")


def admit_handshake(headers: Mapping[str, str], query: Mapping[str, str], tokens: Mapping[str, str],
                    suspended: Iterable[str],
                    app_permissions: Mapping[str, frozenset[str]] | None = None) -> HandshakeDecision:
    """What Misskey answers a request on /streaming (docs/protocol.md §1, fixtures result:handshake_*)."""
    if headers.get("upgrade", "").lower() != "websocket":
        return HandshakeDecision(503)  # what Misskey answers a plain GET on /streaming
    token = token_from(headers, query)
    if token is None:
        return HandshakeDecision()
    if token in suspended:
        return HandshakeDecision(403)
    username = tokens.get(token)
    if username is None:
        return HandshakeDecision(401)
    granted = (app_permissions or {}).get(token)
    if granted is not None and "read:account" not in granted:
        return HandshakeDecision(401)  # an app token the stream may not read with (docs/protocol.md §1)
    return HandshakeDecision(None, username, granted)


# ---------------------------------------------------------------------------------------------
# Connecting to channels

@dataclass(frozen=True)
class Admission:
    """An accepted ``connect``: the connection to keep, whether it is inert, whether to ack it."""

    channel: str
    id: str
    params: dict[str, Any]
    inert: bool  # acknowledged, delivers nothing (like the real server in those cases)
    ack: bool


def _connect_fields(body: Mapping[str, Any]) -> tuple[str, str, dict[str, Any]] | None:
    channel, connection_id, params = body.get("channel"), body.get("id"), body.get("params")
    if not isinstance(channel, str) or not isinstance(connection_id, str) or channel not in CATALOGUE:
        return None
    if params is None:
        params = {}
    if not isinstance(params, dict):
        return None
    return channel, connection_id, params


def _missing_required(channel: str, params: Mapping[str, Any]) -> bool:
    """No such list/antenna/channel/game: the channel's own check fails and it is dropped."""
    return any(p.required and p.type == STRING and not isinstance(params.get(p.name), str)
               for p in CATALOGUE[channel].params)


def admit_connect(body: Mapping[str, Any], existing: Sequence[tuple[str, str]], logged_in: bool,
                  moderator: bool, permissions: frozenset[str] | None = None) -> Admission | None:
    """The server's answer to a ``connect`` body, given the socket's (channel, id) connections.

    ``permissions`` are an app token's (None: a native token, which has every permission, or
    none). None means silence: the connect is dropped without a word, as Misskey does.
    """
    fields = _connect_fields(body)
    if fields is None:
        return None
    channel, connection_id, params = fields
    spec = CATALOGUE[channel]
    # A reused id replaces its connection (2026 servers), so it does not count against the rules.
    others = [name for name, cid in existing if cid != connection_id]
    if len(others) >= MAX_CHANNELS_PER_SOCKET:
        return None
    inert = False
    if spec.needs_login and not logged_in:
        if channel != "userList":  # userList does not require credentials server-side: acked, silent
            return None
        inert = True
    if permissions is not None and not app_token_may_connect(channel, permissions):
        return None  # checked before sharing, as Misskey does
    if spec.shareable and channel in others:
        return None
    if spec.moderator_only and not moderator:
        inert = True
    if not inert and _missing_required(channel, params):
        return None
    if channel == "hashtag" and not hashtag_q_valid(params.get("q")):
        inert = True
    return Admission(channel, connection_id, params, inert, js_truthy(body.get("pong")))


def stats_log_slice(log: Sequence[dict[str, Any]], request: Any) -> list[dict[str, Any]] | None:
    """The ``statsLog`` a ``requestLog`` gets (None: no answer): ``log.slice(0, length)``."""
    if not isinstance(request, dict):
        return None
    length = request.get("length")
    if length is None:
        return list(log)
    if isinstance(length, (int, float)) and not isinstance(length, bool):
        return list(log[:int(length)])
    return []


# ---------------------------------------------------------------------------------------------
# Routing notes

@dataclass(frozen=True)
class Viewer:
    """Who looks: a user id (None: anonymous) and the ids of the users they follow."""

    id: str | None = None
    following: frozenset[str] = frozenset()

    def follows(self, user_id: Any) -> bool:
        return self.id is not None and (user_id == self.id or user_id in self.following)


ANONYMOUS = Viewer()


@dataclass(frozen=True)
class Targets:
    """The lists, antennas and roles a note belongs to (the server's own bookkeeping)."""

    lists: tuple[str, ...] = ()
    antennas: tuple[str, ...] = ()
    roles: tuple[str, ...] = ()


NO_TARGETS = Targets()


def user_id_of(obj: Any) -> Any:
    return obj.get("userId") if isinstance(obj, dict) else None


def is_local(note: Mapping[str, Any]) -> bool:
    user = note.get("user")
    return not isinstance(user, dict) or user.get("host") is None


def reply_shown(note: Mapping[str, Any], viewer_id: str | None, with_replies: bool) -> bool:
    """The timelines' reply filter: a logged-in viewer sees only replies that concern them."""
    reply = note.get("reply")
    if not isinstance(reply, dict) or with_replies or viewer_id is None:
        return True
    author = note.get("userId")
    return reply.get("userId") in (viewer_id, author) or author == viewer_id


def passes_note_filters(note: Mapping[str, Any], params: Mapping[str, Any]) -> bool:
    """``withRenotes: false`` drops pure renotes; ``withFiles: true`` drops notes without files."""
    if not bool_param(params, "withRenotes", True) and is_pure_renote(dict(note)):
        return False
    return not (bool_param(params, "withFiles", False) and not note.get("files"))


def visible(note: Mapping[str, Any], viewer: Viewer) -> bool:
    """Visibility: public and home for all, followers for followers, specified for the named."""
    visibility = note.get("visibility", "public")
    author = note.get("userId")
    if visibility in ("public", "home"):
        return True
    if viewer.id is None:
        return False
    if author == viewer.id:
        return True
    if visibility == "followers":
        return viewer.follows(author)
    if visibility == "specified":
        return viewer.id in (note.get("visibleUserIds") or [])
    return False


@dataclass(frozen=True)
class _Look:
    """One routing question: does this connection (channel, params, viewer) get this note."""

    note: Mapping[str, Any]
    params: Mapping[str, Any]
    viewer: Viewer
    targets: Targets

    @property
    def public(self) -> bool:
        return bool(self.note.get("visibility", "public") == "public")

    @property
    def in_channel(self) -> bool:
        return self.note.get("channelId") is not None

    def replies(self, default: bool) -> bool:
        return reply_shown(self.note, self.viewer.id, bool_param(self.params, "withReplies", default))


def _local_timeline(look: _Look) -> bool:
    return (not look.in_channel and look.public and is_local(look.note) and passes_note_filters(look.note, look.params)
            and look.replies(False))


def _global_timeline(look: _Look) -> bool:
    return (not look.in_channel and look.public and passes_note_filters(look.note, look.params)
            and reply_shown(look.note, look.viewer.id, False))


def _home_timeline(look: _Look) -> bool:
    return (look.viewer.id is not None and not look.in_channel and look.viewer.follows(look.note.get("userId"))
            and passes_note_filters(look.note, look.params) and reply_shown(look.note, look.viewer.id, False))


def _hybrid_timeline(look: _Look) -> bool:
    followed = look.viewer.follows(look.note.get("userId"))
    local_public = look.public and is_local(look.note)
    # Direct (specified) notes reach homeTimeline only (fixtures: visibility_specified).
    return (not look.in_channel and look.note.get("visibility") != "specified" and (followed or local_public)
            and passes_note_filters(look.note, look.params) and look.replies(False))


def _hashtag(look: _Look) -> bool:
    q = look.params.get("q")
    return hashtag_q_valid(q) and hashtag_matches(q, look.note.get("tags") or [])


def _channel(look: _Look) -> bool:
    return look.in_channel and look.note.get("channelId") == look.params.get("channelId")


def _user_list(look: _Look) -> bool:
    return look.params.get("listId") in look.targets.lists and passes_note_filters(look.note, look.params)


def _antenna(look: _Look) -> bool:
    return look.params.get("antennaId") in look.targets.antennas


def _role_timeline(look: _Look) -> bool:
    return look.params.get("roleId") in look.targets.roles and look.public


_STREAM_FILTERS: dict[str, Callable[[_Look], bool]] = {
    "localTimeline": _local_timeline,
    "globalTimeline": _global_timeline,
    "homeTimeline": _home_timeline,
    "hybridTimeline": _hybrid_timeline,
    "hashtag": _hashtag,
    "channel": _channel,
    "userList": _user_list,
    "antenna": _antenna,
    "roleTimeline": _role_timeline,
}


def accepts(channel: str, params: Mapping[str, Any], note: Mapping[str, Any], viewer: Viewer = ANONYMOUS,
            targets: Targets = NO_TARGETS) -> bool:
    """Does a ``channel`` connection with ``params``, on ``viewer``'s socket, get ``note``?"""
    rule = _STREAM_FILTERS.get(channel)
    return rule is not None and visible(note, viewer) and rule(_Look(note, params, viewer, targets))


def stream_body(channel: str, note: dict[str, Any]) -> dict[str, Any]:
    """The note as a channel carries it: antenna notes lack reactionAndUserPairCache (fixtures)."""
    return strip_pair_cache(note) if channel == "antenna" else note


def main_events_for(note: Mapping[str, Any], viewer: Viewer) -> list[tuple[str, Any]]:
    """The ``main`` events a note causes for a logged-in viewer, in the order the fixtures show."""
    if viewer.id is None or note.get("userId") == viewer.id or not visible(note, viewer):
        return []
    events: list[tuple[str, Any]] = []
    if user_id_of(note.get("reply")) == viewer.id:
        events.append(("reply", note))
    if user_id_of(note.get("renote")) == viewer.id:
        events.append(("renote", note))
    if viewer.id in (note.get("mentions") or []):
        events.append(("mention", strip_pair_cache(dict(note))))
    return events


# ---------------------------------------------------------------------------------------------
# The HTTP API's timelines: the same rules, except where a real server was seen to differ

def _rest_local_timeline(look: _Look) -> bool:
    # rest.jsonl (2025.3.1): the REST local timeline leaves out replies to others unless
    # withReplies, even for anonymous viewers (the stream shows them to anonymous sockets), and
    # kept a pure renote despite withRenotes: false.
    note = look.note
    reply = note.get("reply")
    reply_ok = (not isinstance(reply, dict) or bool_param(look.params, "withReplies", False)
                or reply.get("userId") == note.get("userId") or note.get("userId") == look.viewer.id)
    return (not look.in_channel and look.public and is_local(note) and reply_ok
            and not (bool_param(look.params, "withFiles", False) and not note.get("files")))


def _rest_home_timeline(look: _Look) -> bool:
    # rest.jsonl: a followed user's reply to the viewer's note stayed out of notes/timeline and
    # notes/hybrid-timeline (replies reach a home timeline only through the follow's withReplies).
    reply = look.note.get("reply")
    return _home_timeline(look) and (not isinstance(reply, dict) or reply.get("userId") == look.note.get("userId")
                                     or look.note.get("userId") == look.viewer.id)


def _rest_hybrid_timeline(look: _Look) -> bool:
    reply = look.note.get("reply")
    replies_ok = (not isinstance(reply, dict) or bool_param(look.params, "withReplies", False)
                  or reply.get("userId") == look.note.get("userId") or look.note.get("userId") == look.viewer.id)
    return _hybrid_timeline(look) and replies_ok


_REST_FILTERS: dict[str, Callable[[_Look], bool]] = {
    **_STREAM_FILTERS,
    "localTimeline": _rest_local_timeline,
    "homeTimeline": _rest_home_timeline,
    "hybridTimeline": _rest_hybrid_timeline,
}


def rest_accepts(channel: str, params: Mapping[str, Any], note: Mapping[str, Any], viewer: Viewer = ANONYMOUS,
                 targets: Targets = NO_TARGETS) -> bool:
    """Does the HTTP timeline that mirrors ``channel`` hold ``note`` for ``viewer``?"""
    rule = _REST_FILTERS.get(channel)
    return rule is not None and visible(note, viewer) and rule(_Look(note, params, viewer, targets))
