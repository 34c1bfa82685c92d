"""The channel catalogue (docs/protocol.md §4) and everything derived from it.

One table drives validation of channel specs and params, ``mkstream channels``, the help text,
shell completion and the simulator's rules, so they cannot disagree. Pure: no I/O.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from misskey_cli.core.protocol import MAX_CHANNELS_PER_SOCKET

BOOL, STRING, TAGS = "bool", "string", "tags"


@dataclass(frozen=True)
class Param:
    name: str
    type: str
    summary: str
    required: bool = False
    default: Any = None


@dataclass(frozen=True)
class Channel:
    name: str
    summary: str
    needs_login: bool
    events: tuple[str, ...]
    params: tuple[Param, ...] = ()
    shareable: bool = False
    accepts: tuple[str, ...] = ()
    # Accepted client messages that change server state: `send` refuses them without --force.
    side_effects: tuple[str, ...] = ()
    moderator_only: bool = False
    example: str = ""
    # The permission an app (MiAuth) token must carry for the server to accept a connect (Misskey's
    # channel ``kind``); None: any token may connect. A native token has every permission.
    permission: str | None = None

    def param(self, name: str) -> Param | None:
        for p in self.params:
            if p.name == name:
                return p
        return None


def _with_renotes() -> Param:
    return Param("withRenotes", BOOL, "include renotes", default=True)


def _with_files() -> Param:
    return Param("withFiles", BOOL, "only notes with files", default=False)


def _with_replies() -> Param:
    return Param("withReplies", BOOL, "include replies to others", default=False)


_NOTE = ("note",)
# The permissions channels need (Misskey's ``kind``): every channel that needs a login needs one.
ACCOUNT, CHAT, ADMIN_STREAM = "read:account", "read:chat", "read:admin:stream"

CHANNELS: tuple[Channel, ...] = (
    Channel(
        "main", "your notifications, mentions, follows and account events", True,
        ("notification", "mention", "reply", "renote", "follow", "followed", "unfollow", "meUpdated",
         "pageEvent", "urlUploadFinished", "readAllNotifications", "unreadNotification",
         "notificationFlushed", "newChatMessage", "readAllAnnouncements", "myTokenRegenerated",
         "signin", "registryUpdated", "driveFileCreated", "receiveFollowRequest",
         "announcementCreated"),
        shareable=True, permission=ACCOUNT, example="mkstream connect main --token-file ~/.misskey-token",
    ),
    Channel(
        "homeTimeline", "notes from the accounts you follow", True, _NOTE,
        (_with_renotes(), _with_files()), permission=ACCOUNT,
        example="mkstream connect homeTimeline -p withRenotes=false",
    ),
    Channel(
        "localTimeline", "public notes from this server's users", False, _NOTE,
        (_with_renotes(), _with_replies(), _with_files()),
        example="mkstream connect localTimeline --ndjson | jq -r .body.body.text",
    ),
    Channel(
        "hybridTimeline", "home and local timelines together (social timeline)", True, _NOTE,
        (_with_renotes(), _with_replies(), _with_files()),
        permission=ACCOUNT, example="mkstream connect hybridTimeline -p withReplies=true",
    ),
    Channel(
        "globalTimeline", "public notes from every known server", False, _NOTE,
        (_with_renotes(), _with_files()), example="mkstream connect globalTimeline -p withFiles=true",
    ),
    Channel(
        "userList", "notes from the members of one of your lists", True,
        ("note", "userAdded", "userRemoved"),
        (Param("listId", STRING, "the list's id", required=True), _with_renotes(), _with_files()),
        permission=ACCOUNT, example="mkstream connect 'userList?listId=9abcdef012345678'",
    ),
    Channel(
        "hashtag", "notes carrying hashtags", False, _NOTE,
        (Param("q", TAGS, "tags: a list of lists, OR of ANDs; `misskey`, `a,b` (OR) and `a+b` (AND) "
               "are accepted as shorthands", required=True),),
        example="mkstream connect 'hashtag?q=misskey,fediverse'",
    ),
    Channel(
        "roleTimeline", "notes from the members of a public role", False, _NOTE,
        (Param("roleId", STRING, "the role's id", required=True),),
        example="mkstream connect roleTimeline -p roleId=9abcdef012345678",
    ),
    Channel(
        "antenna", "notes caught by one of your antennas", True, _NOTE,
        (Param("antennaId", STRING, "the antenna's id", required=True),),
        permission=ACCOUNT, example="mkstream connect antenna -p antennaId=9abcdef012345678",
    ),
    Channel(
        "channel", "notes posted in a Misskey channel", False, _NOTE,
        (Param("channelId", STRING, "the channel's id", required=True),),
        example="mkstream connect channel -p channelId=9abcdef012345678",
    ),
    Channel(
        "drive", "your drive: files and folders created, updated, deleted", True,
        ("fileCreated", "fileUpdated", "fileDeleted", "folderCreated", "folderUpdated", "folderDeleted"),
        shareable=True, permission=ACCOUNT, example="mkstream connect drive",
    ),
    Channel(
        "serverStats", "server CPU, memory and network every 2 s (if the server enables it)", False,
        ("stats", "statsLog"), shareable=True, accepts=("requestLog",),
        example="mkstream send serverStats requestLog '{\"id\":\"a\",\"length\":10}' -n 1",
    ),
    Channel(
        "queueStats", "job queue statistics every 10 s", False,
        ("stats", "statsLog"), shareable=True, accepts=("requestLog",),
        example="mkstream send queueStats requestLog '{\"id\":\"a\",\"length\":10}' -n 1",
    ),
    Channel(
        "admin", "moderation events (moderators only)", True, ("newAbuseUserReport",),
        shareable=True, moderator_only=True, permission=ADMIN_STREAM, example="mkstream connect admin",
    ),
    Channel(
        "chatUser", "a direct chat with one user", True, ("message", "deleted", "react", "unreact"),
        (Param("otherId", STRING, "the other user's id", required=True),),
        accepts=("read",), side_effects=("read",),
        permission=CHAT, example="mkstream connect chatUser -p otherId=9abcdef012345678",
    ),
    Channel(
        "chatRoom", "a chat room you are in", True, ("message", "deleted", "react", "unreact"),
        (Param("roomId", STRING, "the room's id", required=True),),
        accepts=("read",), side_effects=("read",),
        permission=CHAT, example="mkstream connect chatRoom -p roomId=9abcdef012345678",
    ),
    Channel(
        "reversi", "reversi invitations and matches", True, ("matched", "invited"),
        shareable=True, permission=ACCOUNT, example="mkstream connect reversi",
    ),
    Channel(
        "reversiGame", "one reversi game", False,
        ("started", "ended", "canceled", "changeReadyStates", "updateSettings", "log"),
        (Param("gameId", STRING, "the game's id", required=True),),
        accepts=("ready", "updateSettings", "cancel", "putStone", "claimTimeIsUp"),
        side_effects=("ready", "updateSettings", "cancel", "putStone", "claimTimeIsUp"),
        example="mkstream connect reversiGame -p gameId=9abcdef012345678",
    ),
)

CATALOGUE: dict[str, Channel] = {c.name: c for c in CHANNELS}

# Channels older servers had; a current server answers them with silence.
REMOVED = {
    "messaging": "removed from Misskey (chat is chatUser/chatRoom now)",
    "messagingIndex": "removed from Misskey (chat is chatUser/chatRoom now)",
    "gamesReversi": "renamed to reversi",
    "gamesReversiGame": "renamed to reversiGame",
}


class SpecError(ValueError):
    """A channel spec or param the user typed is wrong; the message shows the right form."""


@dataclass(frozen=True)
class ChannelSpec:
    """One channel connection the user asked for."""

    channel: str
    connection_id: str | None
    params: dict[str, Any]


_SPEC_RE = re.compile(r"^(?P<name>[A-Za-z][A-Za-z0-9_]*)(?::(?P<id>[^?]+))?(?:\?(?P<query>.*))?$")


def parse_channel_spec(text: str) -> ChannelSpec:
    """Parse ``CHANNEL[:ID][?key=value&...]`` (values typed by the catalogue)."""
    match = _SPEC_RE.match(text.strip())
    if not match:
        raise SpecError(f"bad channel spec {text!r}: expected CHANNEL[:ID][?key=value&...], "
                        "e.g. 'hashtag?q=misskey' or 'localTimeline:ltl'")
    name = match["name"]
    params: dict[str, Any] = {}
    query = match["query"]
    if query:
        for pair in query.split("&"):
            if not pair:
                continue
            key, sep, value = pair.partition("=")
            if not sep:
                raise SpecError(f"bad param {pair!r} in {text!r}: expected key=value")
            params[unquote(key)] = parse_param_value(name, unquote(key), unquote(value))
    return ChannelSpec(name, match["id"], params)


def parse_param_assignment(text: str) -> tuple[str, str]:
    """Split ``KEY=VALUE`` (typing waits until the channel is known)."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise SpecError(f"bad param {text!r}: expected KEY=VALUE, e.g. withFiles=true")
    return key, value


_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def parse_param_value(channel_name: str, key: str, text: str) -> Any:
    """Type a param value by the catalogue; unknown params are JSON if they parse, else strings."""
    channel = CATALOGUE.get(channel_name)
    param = channel.param(key) if channel else None
    if param is None:
        try:
            return json.loads(text)
        except ValueError:
            return text
    if param.type == BOOL:
        low = text.lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise SpecError(f"{channel_name} param {key} is a boolean: use {key}=true or {key}=false, not {text!r}")
    if param.type == TAGS:
        return parse_tags(key, text)
    return text


def parse_tags(key: str, text: str) -> list[list[str]]:
    """The hashtag ``q``: JSON list of lists, or the shorthand ``a,b`` (OR) / ``a+b`` (AND)."""
    stripped = text.strip()
    if stripped.startswith("["):
        try:
            value = json.loads(stripped)
        except ValueError:
            value = None
        if (isinstance(value, list) and value
                and all(isinstance(group, list) and group and all(isinstance(t, str) and t for t in group)
                        for group in value)):
            return value
        raise SpecError(f"hashtag param {key} must be a list of lists of tags, e.g. {key}='[[\"misskey\"]]' "
                        f"or {key}=misskey,fediverse, not {text!r}")
    groups = []
    for alternative in stripped.split(","):
        tags = [t.lstrip("#") for t in re.split(r"[+\s]+", alternative) if t.lstrip("#")]
        if tags:
            groups.append(tags)
    if not groups:
        raise SpecError(f"hashtag param {key} needs at least one tag, e.g. {key}=misskey")
    return groups


def close_matches(word: str, choices: list[str] | tuple[str, ...]) -> list[str]:
    lowered = {c.lower(): c for c in choices}
    found = difflib.get_close_matches(word.lower(), list(lowered), n=3, cutoff=0.6)
    return [lowered[f] for f in found]


def did_you_mean(word: str, choices: list[str] | tuple[str, ...]) -> str:
    matches = close_matches(word, choices)
    if not matches:
        return ""
    return " (did you mean " + " or ".join(matches) + "?)"


def check_connection(channel_name: str, params: dict[str, Any], logged_in: bool) -> list[str]:
    """Warnings for a connection the server will probably ignore; raises SpecError for sure misses.

    A missing required param is an error (the server would silently deliver nothing). Unknown
    channels and params are only warned about: forks add their own and they are sent as given.
    """
    channel = CATALOGUE.get(channel_name)
    if channel is None:
        if channel_name in REMOVED:
            return [f"channel {channel_name} was {REMOVED[channel_name]}: a current server ignores it"]
        return [(f"unknown channel {channel_name}{did_you_mean(channel_name, list(CATALOGUE))}; "
                "sending it anyway (forks add channels)")]
    missing = [p.name for p in channel.params if p.required and p.name not in params]
    if missing:
        needed = missing[0]
        raise SpecError(f"channel {channel_name} needs param {needed} ({channel.param(needed).summary}"  # type: ignore[union-attr]
                        f"), e.g. {channel.example or channel_name + '?' + needed + '=...'}")
    warnings = []
    known = [p.name for p in channel.params]
    for key in params:
        if key not in known:
            hint = did_you_mean(key, known) or (f" (it takes {', '.join(known)})" if known else " (it takes none)")
            warnings.append(f"channel {channel_name} has no param {key}{hint}; sending it anyway")
    if channel.needs_login and not logged_in:
        warnings.append(f"channel {channel_name} needs a logged-in user and no token is set: "
                        "the server will ignore it (use --token or --token-file)")
    return warnings


def check_send(channel_name: str, message_type: str, force: bool,
               override: str = "add --force to send it anyway") -> list[str]:
    """Validate a message for ``send``; raises SpecError for side effects without --force."""
    channel = CATALOGUE.get(channel_name)
    if channel is None:
        return []
    if message_type in channel.side_effects and not force:
        raise SpecError(f"{channel_name} message {message_type} changes state on the server; {override}")
    if message_type not in channel.accepts:
        takes = f"it accepts {', '.join(channel.accepts)}" if channel.accepts else "it accepts no messages"
        return [(f"channel {channel_name} does not handle {message_type}{did_you_mean(message_type, channel.accepts)}"
                f" ({takes}); sending it anyway")]
    return []


def unacked_reason(channel_name: str, others: list[str], logged_in: bool) -> str:
    """The likely reason a server silently refused a connect (docs/protocol.md §3.1).

    ``others`` are the channel names of the socket's other connections.
    """
    channel = CATALOGUE.get(channel_name)
    if channel is None:
        return "the server does not know this channel"
    if channel.shareable and channel_name in others:
        return f"{channel_name} can be connected once per socket and already is"
    if len(others) >= MAX_CHANNELS_PER_SOCKET:
        return f"a socket holds at most {MAX_CHANNELS_PER_SOCKET} channel connections"
    if channel.needs_login and not logged_in:
        return "it needs a token (none was given)"
    if channel.moderator_only:
        return "it needs a moderator's token"
    lacks = f"the token may lack the permission {channel.permission}" if channel.permission else None
    owned = [p.name.removesuffix("Id") for p in channel.params if p.required and p.name.endswith("Id")]
    if owned:  # listId, antennaId, roomId, otherId, ...: a thing the token must be allowed to see
        thing = "user" if owned[0] == "other" else owned[0]
        hidden = f"the {thing} may not exist or not be open to you"
        return f"{lacks}, or {hidden}" if lacks else hidden
    if logged_in:
        off = "the server has turned this channel off"
        return f"{lacks}, or {off}" if lacks else f"{off} (a role policy)"
    return "the server may have turned this channel off for visitors without a token (a role policy)"


def channel_permission(channel_name: str) -> str | None:
    """The permission an app token needs to connect ``channel_name`` (None: none, or not in the catalogue)."""
    channel = CATALOGUE.get(channel_name)
    return channel.permission if channel else None


def app_token_may_connect(channel_name: str, granted: Collection[str]) -> bool:
    """Whether the server accepts a connect from an app token granted ``granted`` (docs/protocol.md §3.1).

    Misskey refuses it in silence when the channel declares a permission the token lacks.
    """
    permission = channel_permission(channel_name)
    return permission is None or permission in granted


def check_param_json(channel_name: str, key: str, value: Any) -> Any:
    """A param given as JSON (``--params``): the catalogue's type is checked like ``-p`` checks it.

    Misskey reads a string "false" as true and a string ``q`` as no tags at all, so a wrong JSON
    type is an error, not something to send.
    """
    channel = CATALOGUE.get(channel_name)
    param = channel.param(key) if channel else None
    if param is None:
        return value
    if param.type == BOOL and type(value) is not bool:
        raise SpecError(f"{channel_name} param {key} is a boolean: give true or false, not {json.dumps(value)}")
    if param.type == STRING and not isinstance(value, str):
        raise SpecError(f"{channel_name} param {key} is a string: give \"...\", not {json.dumps(value)}")
    if param.type == TAGS:
        if not isinstance(value, list):
            raise SpecError(f"hashtag param {key} must be a list of lists of tags, e.g. {{\"{key}\": [[\"misskey\"]]}}"
                            f", not {json.dumps(value)}")
        return parse_tags(key, json.dumps(value))
    return value
