"""The Misskey HTTP API beside the stream (docs/protocol.md §9), answered from the simulator's state.

Owns the endpoints and the exact shapes of their answers and errors, copied from a real server
(tests/fixtures/rest.jsonl): ``meta``, ``i``, the timelines that mirror the streaming channels
(over ``history.py``, filtered by the same rules as the stream in ``rules.rest_accepts``, with
Misskey's params, ``limit`` checks and pagination), ``i/notifications``, nodeinfo, MiAuth
(``/miauth/{session}`` page, ``miauth/{session}/check``, and ``_sim/miauth/{session}/approve``
for a shell user standing in for the browser), plus the fault knobs tests set (answer the next
calls of an endpoint with 429/5xx) and a record of every request, kept without its token. The
endpoints that act on the world are ``bot_api``'s; an app token's permissions are checked here
against ``bot_api.KINDS``, and an unknown endpoint is 404 before its body is read.

No sockets: ``ApiServer.handle`` takes a parsed request and returns a response, on the
simulator's loop (the engine reads and writes the bytes).
"""

from __future__ import annotations

import json
import secrets
import string
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from misskey_cli.simulator import bot_api, rules
from misskey_cli.simulator import history as hist
from misskey_cli.simulator.api_params import (
    AUTHENTICATION_FAILED,
    CREDENTIAL_REQUIRED,
    INTERNAL_ERROR,
    PERMISSION_DENIED,
    RATE_LIMIT_EXCEEDED,
    UNKNOWN_API_ENDPOINT,
    YOUR_ACCOUNT_SUSPENDED,
    ApiFailure,
    bool_params,
    invalid_param,
    page_of,
    str_param,
)
from misskey_cli.simulator.bot_api import Effects
from misskey_cli.simulator.corpus import User, iso, strip_pair_cache
from misskey_cli.simulator.httpwire import HttpRequest, HttpResponse
from misskey_cli.simulator.traffic import Traffic
from misskey_cli.simulator.world import World

MISSKEY_REPOSITORY = "https://github.com/misskey-dev/misskey"
_WWW_CREDENTIAL = 'Bearer realm="Misskey"'


# ---------------------------------------------------------------------------------------------
# Answer shapes: rest.jsonl's keys and order (a 2025.3.1 server), plus the fields misskey-js 2026.5.1
# declares required that 2025.3.1 did not send yet (canChat, chatScope, hasUnreadChatMessages, the
# chat/draft/upload policies, meta's clientOptions and sentryForFrontend).

_POLICIES: dict[str, Any] = {
    "gtlAvailable": True, "ltlAvailable": True, "canPublicNote": True, "mentionLimit": 20, "canInvite": False,
    "inviteLimit": 0, "inviteLimitCycle": 10080, "inviteExpirationTime": 0, "canManageCustomEmojis": False,
    "canManageAvatarDecorations": False, "canSearchNotes": False, "canSearchUsers": True, "canUseTranslator": True,
    "canHideAds": False, "canCreateChannel": True, "driveCapacityMb": 100, "maxFileSizeMb": 30,
    "uploadableFileTypes": ["text/plain", "application/json", "image/*", "video/*", "audio/*"],
    "alwaysMarkNsfw": False, "canUpdateBioMedia": True, "pinLimit": 5, "antennaLimit": 5,
    "wordMuteLimit": 200, "webhookLimit": 3, "clipLimit": 10, "noteEachClipsLimit": 200, "userListLimit": 10,
    "userEachUserListsLimit": 50, "rateLimitFactor": 1, "avatarDecorationLimit": 1, "canImportAntennas": True,
    "canImportBlocking": True, "canImportFollowing": True, "canImportMuting": True, "canImportUserLists": True,
    "chatAvailability": "available", "noteDraftLimit": 10, "scheduledNoteLimit": 1, "watermarkAvailable": True,
}


def user_detailed(user: User, base_url: str, *, me: bool, moderator: bool) -> dict[str, Any]:
    """UserDetailed (the MiAuth check's ``user``), or MeDetailed (``i``) when ``me``."""
    created = iso(int(user.id[:8], 36) + 946684800000)
    out = user.lite(base_url)
    out.update({
        "url": None, "uri": None, "movedTo": None, "alsoKnownAs": None, "createdAt": created, "updatedAt": created,
        "lastFetchedAt": None, "bannerUrl": None, "bannerBlurhash": None, "isLocked": False, "isSilenced": False,
        "isSuspended": False, "description": None, "location": None, "birthday": None, "lang": None, "fields": [],
        "verifiedLinks": [], "followersCount": 1, "followingCount": 1, "notesCount": 15, "pinnedNoteIds": [],
        "pinnedNotes": [], "pinnedPageId": None, "pinnedPage": None, "publicReactions": True,
        "followersVisibility": "public", "followingVisibility": "public", "chatScope": "mutual", "canChat": True,
        "roles": [], "memo": None,
    })
    if not me:
        return out
    out.update({
        "moderationNote": "", "twoFactorEnabled": False, "usePasswordLessLogin": False, "securityKeys": False,
        "avatarId": None, "bannerId": None, "followedMessage": None, "isModerator": moderator, "isAdmin": moderator,
        "injectFeaturedNote": True, "receiveAnnouncementEmail": True, "alwaysMarkNsfw": False, "autoSensitive": False,
        "carefulBot": False, "autoAcceptFollowed": True, "noCrawle": False, "preventAiLearning": True,
        "isExplorable": True, "isDeleted": False, "twoFactorBackupCodesStock": "none", "hideOnlineStatus": False,
        "hasUnreadSpecifiedNotes": False, "hasUnreadMentions": False, "hasUnreadAnnouncement": False,
        "unreadAnnouncements": [], "hasUnreadAntenna": False, "hasUnreadChannel": False,
        "hasUnreadChatMessages": False, "hasUnreadNotification": False, "hasPendingReceivedFollowRequest": False,
        "unreadNotificationsCount": 0,
        "mutedWords": [], "hardMutedWords": [], "mutedInstances": [], "mutingNotificationTypes": [],
        "notificationRecieveConfig": {}, "emailNotificationTypes": ["follow", "receiveFollowRequest"],
        "achievements": [], "loggedInDays": 1, "policies": dict(_POLICIES), "email": None, "emailVerified": False,
        "securityKeysList": [],
    })
    return out


def meta_lite(version: str, base_url: str) -> dict[str, Any]:
    """``meta`` with ``detail: false`` (rest.jsonl)."""
    return {
        "maintainerName": None, "maintainerEmail": None, "version": version, "providesTarball": False, "name": None,
        "shortName": None, "uri": base_url, "description": None, "langs": [], "tosUrl": None,
        "repositoryUrl": MISSKEY_REPOSITORY, "feedbackUrl": f"{MISSKEY_REPOSITORY}/issues/new",
        "impressumUrl": None, "privacyPolicyUrl": None, "inquiryUrl": None, "disableRegistration": True,
        "emailRequiredForSignup": False, "enableHcaptcha": False, "hcaptchaSiteKey": None, "enableMcaptcha": False,
        "mcaptchaSiteKey": None, "mcaptchaInstanceUrl": None, "enableRecaptcha": False, "recaptchaSiteKey": None,
        "enableTurnstile": False, "turnstileSiteKey": None, "enableTestcaptcha": False,
        "googleAnalyticsMeasurementId": None, "swPublickey": None, "themeColor": None,
        "mascotImageUrl": "/assets/ai.png", "bannerUrl": None, "infoImageUrl": None, "serverErrorImageUrl": None,
        "notFoundImageUrl": None, "iconUrl": None, "backgroundImageUrl": None, "logoImageUrl": None,
        "maxNoteTextLength": 3000, "defaultLightTheme": None, "defaultDarkTheme": None, "ads": [],
        "notesPerOneAd": 0, "enableEmail": False, "enableServiceWorker": False, "translatorAvailable": False,
        "serverRules": [], "policies": dict(_POLICIES), "mediaProxy": f"{base_url}/proxy", "enableUrlPreview": True,
        "noteSearchableScope": "global", "maxFileSize": 262144000, "federation": "all",
        "clientOptions": {"entrancePageStyle": "classic", "showTimelineForVisitor": True,
                          "showActivitiesForVisitor": True},
        "sentryForFrontend": None,
    }


def meta_detailed(version: str, base_url: str, miauth: bool) -> dict[str, Any]:
    """``meta`` as it answers by default (MetaDetailed: MetaLite plus ``features`` and a few more)."""
    out = meta_lite(version, base_url)
    out.update({
        "cacheRemoteFiles": False, "cacheRemoteSensitiveFiles": False, "requireSetup": False,
        "proxyAccountName": "system.proxy",
        "features": {
            "registration": False, "emailRequiredForSignup": False, "localTimeline": True, "globalTimeline": True,
            "hcaptcha": False, "turnstile": False, "recaptcha": False, "objectStorage": False,
            "serviceWorker": False, "miauth": miauth,
        },
    })
    return out


def nodeinfo(software_name: str, software_version: str, schema: str, local_posts: int) -> dict[str, Any]:
    """``/nodeinfo/2.1`` (or 2.0, which has no ``software.repository``)."""
    software: dict[str, Any] = {"name": software_name, "version": software_version, "homepage": MISSKEY_REPOSITORY}
    if schema == "2.1":
        software["repository"] = MISSKEY_REPOSITORY
    return {
        "version": schema, "software": software, "protocols": ["activitypub"],
        "services": {"inbound": [], "outbound": ["atom1.0", "rss2.0"]}, "openRegistrations": False,
        "usage": {"users": {"total": 3, "activeHalfyear": None, "activeMonth": None}, "localPosts": local_posts,
                  "localComments": 0},
        "metadata": {
            "nodeName": None, "nodeDescription": None, "nodeAdmins": [{"name": None, "email": None}],
            "maintainer": {"name": None, "email": None}, "langs": [], "tosUrl": None, "privacyPolicyUrl": None,
            "inquiryUrl": None, "impressumUrl": None, "repositoryUrl": MISSKEY_REPOSITORY,
            "feedbackUrl": f"{MISSKEY_REPOSITORY}/issues/new", "disableRegistration": True,
            "disableLocalTimeline": False, "disableGlobalTimeline": False, "emailRequiredForSignup": False,
            "enableHcaptcha": False, "enableRecaptcha": False, "enableMcaptcha": False, "enableTurnstile": False,
            "maxNoteTextLength": 3000, "enableEmail": False, "enableServiceWorker": False,
            "proxyAccountName": "system.proxy", "themeColor": "#86b300",
        },
    }


_MIAUTH_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>MiAuth: {name}</title></head>
<body><h1>{name} wants to use your account</h1>
<p>Permissions: {permission}</p>
<form method="post" action="/api/_sim/miauth/{session}/approve"><button>Approve as admin</button></form>
<p>(mkstream simulator: <code>curl -X POST {base}/api/_sim/miauth/{session}/approve</code> does the same.)</p>
</body></html>
"""


@dataclass(frozen=True)
class Timeline:
    """A timeline endpoint: the channel it mirrors, its boolean params, its required id param."""

    channel: str
    flags: tuple[str, ...] = ()
    required: str | None = None
    login: bool = False


TIMELINES = {
    "notes/local-timeline": Timeline("localTimeline", ("withRenotes", "withReplies", "withFiles")),
    "notes/global-timeline": Timeline("globalTimeline", ("withRenotes", "withFiles")),
    "notes/timeline": Timeline("homeTimeline", ("withRenotes", "withFiles", "includeMyRenotes",
                                                "includeRenotedMyNotes", "includeLocalRenotes"), login=True),
    "notes/hybrid-timeline": Timeline("hybridTimeline", ("withRenotes", "withReplies", "withFiles",
                                                         "includeMyRenotes", "includeRenotedMyNotes",
                                                         "includeLocalRenotes"), login=True),
    "notes/user-list-timeline": Timeline("userList", ("withRenotes", "withFiles"), "listId", login=True),
    "antennas/notes": Timeline("antenna", (), "antennaId", login=True),
    "channels/timeline": Timeline("channel", (), "channelId"),
    "roles/notes": Timeline("roleTimeline", (), "roleId"),
}


# ---------------------------------------------------------------------------------------------
# The server

@dataclass
class Fault:
    status: int
    retry_after: float | None = None


@dataclass
class MiAuthSession:
    session: str
    query: dict[str, str] = field(default_factory=dict)
    token: str | None = None
    username: str | None = None
    permissions: list[str] | None = None
    delivered: bool = False


@dataclass
class Caller:
    """Who calls: the token's user (None: anonymous) and whether it was a suspended user's token."""

    user: User | None
    suspended: bool = False
    permissions: frozenset[str] | None = None  # an app token's; None: a native token, which may do anything


_TOKEN_ALPHABET = string.ascii_letters + string.digits


class ApiServer:
    """The HTTP API over the simulator's state. ``handle`` runs on the simulator's loop."""

    def __init__(self, *, tokens: dict[str, str], permissions: dict[str, frozenset[str]], suspended: frozenset[str],
                 traffic: Traffic, history: hist.NoteHistory, notifications: hist.NotificationHistory,
                 viewer: Callable[[User | None], rules.Viewer], moderators: frozenset[str],
                 effects: Effects, software_name: str = "misskey", software_version: str = "2026.5.1",
                 miauth: bool = True, record: Callable[[dict[str, Any]], None] = lambda _: None) -> None:
        self.tokens = tokens  # shared with the socket's handshake: a MiAuth token works on both
        self.suspended = suspended
        self.traffic = traffic
        self.history = history
        self.notifications = notifications
        self.viewer = viewer
        self.moderators = moderators
        self.software_name = software_name
        self.software_version = software_version
        self.miauth = miauth
        self.effects = effects
        self.world = World(traffic, history)
        self.faults: dict[str, deque[Fault]] = {}
        self.miauth_sessions: dict[str, MiAuthSession] = {}
        self.permissions = permissions  # app tokens (MiAuth) -> what they were granted; shared with the socket
        self._record = record

    # -- dispatch -----------------------------------------------------------------------------

    def handle(self, request: HttpRequest) -> HttpResponse:
        record: dict[str, Any] = {"method": request.method, "path": request.path}
        try:
            response = self._route(request, record)
        except ApiFailure as failure:
            response = failure.response()
        record["status"] = response.status
        self._record(record)
        return response

    def _route(self, request: HttpRequest, record: dict[str, Any]) -> HttpResponse:
        path = request.path
        if request.method == "GET":
            record["query"] = {k: v for k, v in request.query.items() if k != "i"}
            return self._get(path, request)
        if not path.startswith("/api/"):
            return HttpResponse(404, b"Not Found\n", "text/plain; charset=utf-8")
        endpoint = path[len("/api/"):].strip("/")
        record["endpoint"] = endpoint
        if not self._exists(endpoint):  # looked up before the body is read, whatever the body is
            raise ApiFailure(404, UNKNOWN_API_ENDPOINT)
        body, token, auth = self._read_body(request)
        record["body"] = {k: v for k, v in body.items() if k != "i"}
        record["auth"] = auth  # how a token came ("body", "bearer") or None: never the token itself
        record["token"] = token is not None
        fault = self._take_fault(endpoint)
        if fault is not None:
            return fault
        answer = self._call(endpoint, body, token)
        if answer is None:
            return HttpResponse(204, b"", None)
        return HttpResponse.json(200, answer)

    def _exists(self, endpoint: str) -> bool:
        if endpoint in TIMELINES or endpoint in self._ENDPOINTS or endpoint in bot_api.ENDPOINTS:
            return True
        if self.miauth and endpoint.startswith("miauth/") and endpoint.endswith("/check"):
            return True
        return endpoint.startswith("_sim/miauth/") and endpoint.endswith("/approve")

    def _get(self, path: str, request: HttpRequest) -> HttpResponse:
        base = self.traffic.base_url
        if path == "/.well-known/nodeinfo":
            return HttpResponse.json(200, {"links": [
                {"rel": "http://nodeinfo.diaspora.software/ns/schema/2.1", "href": f"{base}/nodeinfo/2.1"},
                {"rel": "http://nodeinfo.diaspora.software/ns/schema/2.0", "href": f"{base}/nodeinfo/2.0"},
            ]})
        if path in ("/nodeinfo/2.1", "/nodeinfo/2.0"):
            posts = len(self.history)
            return HttpResponse.json(200, nodeinfo(self.software_name, self.software_version, path[-3:], posts))
        session = path[len("/miauth/"):]
        if not self.miauth or not session or "/" in session:
            return HttpResponse(404, b"Not Found\n", "text/plain; charset=utf-8")
        entry = self.miauth_sessions.setdefault(session, MiAuthSession(session))
        entry.query = dict(request.query)
        page = _MIAUTH_PAGE.format(name=_html(entry.query.get("name", "an app")), session=_html(session),
                                   permission=_html(entry.query.get("permission", "")), base=_html(base))
        return HttpResponse(200, page.encode(), "text/html; charset=utf-8")

    @staticmethod
    def _read_body(request: HttpRequest) -> tuple[dict[str, Any], str | None, str | None]:
        body: Any = {}
        if request.body.strip():
            try:
                body = json.loads(request.body)
            except ValueError:
                raise ApiFailure(400, {"message": "Body is not valid JSON", "code": "FST_ERR_CTP_INVALID_JSON_BODY",
                                       "id": "", "kind": "client"}) from None
        if not isinstance(body, dict):
            raise invalid_param("#/type", "must be object")
        authorization = request.headers.get("authorization", "")
        if authorization.startswith("Bearer "):
            return body, authorization[7:], "bearer"
        token = body.get("i")
        if token is not None and not isinstance(token, str):
            raise ApiFailure(401, AUTHENTICATION_FAILED)
        return body, token, "body" if token is not None else None

    def _take_fault(self, endpoint: str) -> HttpResponse | None:
        for key in (endpoint, "*"):
            queue = self.faults.get(key)
            if queue:
                return fault_response(queue.popleft())
        return None

    def _caller(self, token: str | None) -> Caller:
        if token is None:
            return Caller(None)
        if token in self.suspended:
            return Caller(None, suspended=True)
        username = self.tokens.get(token)
        if username is None:
            raise ApiFailure(401, AUTHENTICATION_FAILED, headers=[("WWW-Authenticate", rules.WWW_AUTHENTICATE)])
        return Caller(self.traffic.account(username), permissions=self.permissions.get(token))

    def _call(self, endpoint: str, body: dict[str, Any], token: str | None) -> Any:
        caller = self._caller(token)
        kind = bot_api.KINDS.get(endpoint)
        if kind is not None and caller.permissions is not None and kind not in caller.permissions:
            raise ApiFailure(403, PERMISSION_DENIED)
        timeline = TIMELINES.get(endpoint)
        if timeline is not None:
            self.require(caller, timeline.login)
            return self._timeline(timeline, body, caller.user)
        handler = self._ENDPOINTS.get(endpoint) or bot_api.ENDPOINTS.get(endpoint)
        if handler is not None:
            return handler(self, body, caller)
        if self.miauth and endpoint.startswith("miauth/") and endpoint.endswith("/check"):
            return self._miauth_check(endpoint[len("miauth/"):-len("/check")])
        if endpoint.startswith("_sim/miauth/") and endpoint.endswith("/approve"):
            session = endpoint[len("_sim/miauth/"):-len("/approve")]
            username = body.get("username") if isinstance(body.get("username"), str) else "admin"
            permissions = body.get("permissions") if isinstance(body.get("permissions"), list) else None
            self.approve_miauth(session, str(username), permissions)
            return {"ok": True}
        raise ApiFailure(404, UNKNOWN_API_ENDPOINT)

    @staticmethod
    def require(caller: Caller, login: bool) -> User | None:
        """The caller's user; an anonymous or suspended caller gets Misskey's error where login is needed."""
        if not login:
            return caller.user
        if caller.suspended:
            raise ApiFailure(403, YOUR_ACCOUNT_SUSPENDED)
        if caller.user is None:
            raise ApiFailure(401, CREDENTIAL_REQUIRED, headers=[("WWW-Authenticate", _WWW_CREDENTIAL)])
        return caller.user

    # -- endpoints ----------------------------------------------------------------------------

    def detailed(self, user: User, viewer: User | None) -> dict[str, Any]:
        """``users/show``'s answer: MeDetailed for the viewer themself, else UserDetailedNotMe (with the
        viewer's relation to the user when there is a viewer)."""
        if viewer is not None and viewer.id == user.id:
            return user_detailed(user, self.traffic.base_url, me=True, moderator=user.username in self.moderators)
        out = user_detailed(user, self.traffic.base_url, me=False, moderator=False)
        if user.host is not None:
            out["url"] = out["uri"] = f"https://{user.host}/@{user.username}"
        out["notesCount"] = sum(1 for note in self.history.notes() if note.get("userId") == user.id)
        if viewer is not None:
            out.update({
                "isFollowing": self.traffic.follows(viewer, user.id),
                "isFollowed": self.traffic.follows(user, viewer.id),
                "hasPendingFollowRequestFromYou": False, "hasPendingFollowRequestToYou": False,
                "isBlocking": False, "isBlocked": False, "isMuted": False, "isRenoteMuted": False,
                "notify": "none", "withReplies": False,
            })
        return out

    def _meta(self, body: dict[str, Any], caller: Caller) -> Any:
        detail = body.get("detail", True)
        if not isinstance(detail, bool):
            raise invalid_param("#/properties/detail/type", "must be boolean")
        base = self.traffic.base_url
        return meta_detailed(self.software_version, base, self.miauth) if detail else meta_lite(
            self.software_version, base)

    def _i(self, body: dict[str, Any], caller: Caller) -> Any:
        user = self.require(caller, True)
        assert user is not None
        return user_detailed(user, self.traffic.base_url, me=True, moderator=user.username in self.moderators)

    def _notifications(self, body: dict[str, Any], caller: Caller) -> Any:
        user = self.require(caller, True)
        assert user is not None
        page = page_of(body)
        include, exclude = body.get("includeTypes"), body.get("excludeTypes")
        for name, value in (("includeTypes", include), ("excludeTypes", exclude)):
            if value is not None and not isinstance(value, list):
                raise invalid_param(f"#/properties/{name}/type", "must be array")

        def keep(item: dict[str, Any]) -> bool:
            kind = item.get("type")
            return (include is None or kind in include) and (exclude is None or kind not in exclude)

        return self.notifications.query(user.id, page, keep)

    def _search_by_tag(self, body: dict[str, Any], caller: Caller) -> Any:
        query, tag = body.get("query"), body.get("tag")
        if query is None and tag is None:
            raise invalid_param("#/anyOf", "must match a schema in anyOf")
        if query is None:
            if not isinstance(tag, str):
                raise invalid_param("#/properties/tag/type", "must be string")
            query = [[tag]]
        if not rules.hashtag_q_valid(query):
            raise invalid_param("#/properties/query/type", "must be array")
        flags = bool_params(body, ("withRenotes", "withFiles", "reply", "renote", "poll"))
        return self._notes("hashtag", {"q": query, **flags}, page_of(body), caller.user)

    _ENDPOINTS: ClassVar[dict[str, Callable[[ApiServer, dict[str, Any], Caller], Any]]] = {
        "meta": _meta,
        "i": _i,
        "i/notifications": _notifications,
        "notes/search-by-tag": _search_by_tag,
    }

    def _timeline(self, timeline: Timeline, body: dict[str, Any], user: User | None) -> Any:
        params: dict[str, Any] = dict(bool_params(body, timeline.flags))
        if timeline.required is not None:
            params[timeline.required] = str_param(body, timeline.required, required=True)
        return self._notes(timeline.channel, params, page_of(body), user)

    def _notes(self, channel: str, params: dict[str, Any], page: hist.Page, user: User | None) -> list[Any]:
        viewer = self.viewer(user)

        def keep(entry: hist.Entry) -> bool:
            return rules.rest_accepts(channel, params, entry.note, viewer, entry.targets)

        return [strip_pair_cache(entry.note) for entry in self.history.query(page, keep)]

    # -- MiAuth -------------------------------------------------------------------------------

    def _miauth_check(self, session: str) -> Any:
        entry = self.miauth_sessions.get(session)
        if entry is None or entry.token is None or entry.delivered:
            return {"ok": False}
        entry.delivered = True  # the token is shown exactly once
        user = self.traffic.account(entry.username or "admin")
        return {"ok": True, "token": entry.token,
                "user": user_detailed(user, self.traffic.base_url, me=False, moderator=False)}

    def approve_miauth(self, session: str, username: str = "admin", permissions: list[str] | None = None) -> str:
        """What the user's click on the approval page does: mint a token for ``username``."""
        entry = self.miauth_sessions.setdefault(session, MiAuthSession(session))
        if entry.token is not None:
            return entry.token
        token = "".join(secrets.choice(_TOKEN_ALPHABET) for _ in range(16))
        self.tokens[token] = username
        entry.token, entry.username = token, username
        entry.permissions = permissions if permissions is not None else _split(entry.query.get("permission"))
        if entry.permissions:  # an approval that named no permission at all stands for a full-access token
            self.permissions[token] = frozenset(entry.permissions)
        return token


def fault_response(fault: Fault) -> HttpResponse:
    """What a real deployment answers with that status: Misskey's JSON, or a proxy's page for 502-504."""
    if fault.status == 429:
        wait = fault.retry_after if fault.retry_after is not None else 1.0
        ms = int(wait * 1000)
        info = {"resetMs": ms, "resetSec": int(wait + 0.999), "fullResetMs": ms, "fullResetSec": int(wait + 0.999)}
        return ApiFailure(429, RATE_LIMIT_EXCEEDED, info, [("Retry-After", _seconds(wait))]).response()
    headers = [("Retry-After", _seconds(fault.retry_after))] if fault.retry_after is not None else []
    if fault.status in (502, 503, 504):
        phrase = {502: "Bad Gateway", 503: "Service Temporarily Unavailable", 504: "Gateway Time-out"}[fault.status]
        page = f"<html>\r\n<head><title>{fault.status} {phrase}</title></head>\r\n<body>\r\n<center><h1>" \
               f"{fault.status} {phrase}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
        return HttpResponse(fault.status, page.encode(), "text/html", headers)
    cause = {"e": {"message": "simulated failure", "code": "Error", "id": "simulated"}}
    return ApiFailure(fault.status, INTERNAL_ERROR, cause, headers).response()


def _seconds(value: float | None) -> str:
    return str(max(0, int(value + 0.999))) if value is not None else "0"


def _split(permission: str | None) -> list[str]:
    return [p for p in (permission or "").split(",") if p]


def _html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
