"""The Misskey HTTP API beside the stream (PROTOCOL.md 9), answered from the simulator's state.

Owns the endpoints and the exact shapes of their answers and errors, copied from a real server
(tests/fixtures/rest.jsonl): ``meta``, ``i``, the timelines that mirror the streaming channels
(over ``history.py``, filtered by the same rules as the stream in ``rules.rest_accepts``, with
Misskey's params, ``limit`` checks and pagination), ``i/notifications``, nodeinfo, MiAuth
(``/miauth/{session}`` page, ``miauth/{session}/check``, and ``_sim/miauth/{session}/approve``
for a shell user standing in for the browser), plus the fault knobs tests set (answer the next
calls of an endpoint with 429/5xx) and a record of every request, kept without its token.

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

from misskey_cli.simulator import history as hist
from misskey_cli.simulator import rules
from misskey_cli.simulator.httpwire import HttpRequest, HttpResponse
from misskey_cli.simulator.traffic import Traffic, User, iso, strip_pair_cache

MISSKEY_REPOSITORY = "https://github.com/misskey-dev/misskey"


def _error(message: str, code: str, error_id: str, kind: str = "client") -> dict[str, Any]:
    return {"message": message, "code": code, "id": error_id, "kind": kind}


# The real error objects (rest.jsonl; the rest from Misskey's ApiCallService and ApiServerService).
CREDENTIAL_REQUIRED = _error("Credential required.", "CREDENTIAL_REQUIRED", "1384574d-a912-4b81-8601-c7b1c4085df1")
AUTHENTICATION_FAILED = _error("Authentication failed. Please ensure your token is correct.", "AUTHENTICATION_FAILED",
                               "b0a7f5f8-dc2f-4171-b91f-de88ad238e14")
YOUR_ACCOUNT_SUSPENDED = _error("Your account has been suspended.", "YOUR_ACCOUNT_SUSPENDED",
                                "a8c724b3-6e9c-4b46-b1a8-bc3ed6258370", "permission")
INVALID_PARAM = _error("Invalid param.", "INVALID_PARAM", "3d81ceae-475f-4600-b2a8-2bc116157532")
RATE_LIMIT_EXCEEDED = _error("Rate limit exceeded. Please try again later.", "RATE_LIMIT_EXCEEDED",
                             "d5826d14-3982-4d2e-8011-b9e9f02499ef")
INTERNAL_ERROR = _error("Internal error occurred. Please contact us if the error persists.", "INTERNAL_ERROR",
                        "5d37dbcb-891e-41ca-a3d6-e690c97775ac", "server")
NO_SUCH_NOTE = _error("No such note.", "NO_SUCH_NOTE", "24fcbfc6-2e37-42b6-8388-c29b3861a08d")
NO_SUCH_USER = _error("No such user.", "NO_SUCH_USER", "4362f8dc-731f-4ad8-a694-be5a88922a24")
UNKNOWN_API_ENDPOINT = _error("Unknown API endpoint.", "UNKNOWN_API_ENDPOINT", "2ca3b769-540a-4f08-9dd5-b5a825b6d0f1")

_WWW_CREDENTIAL = 'Bearer realm="Misskey"'


class ApiFailure(Exception):
    """An error answer: HTTP status and the ``error`` object."""

    def __init__(self, status: int, error: dict[str, Any], info: dict[str, Any] | None = None,
                 headers: list[tuple[str, str]] | None = None) -> None:
        super().__init__(error["code"])
        self.status = status
        self.error = dict(error, info=info) if info is not None else dict(error)
        self.headers = headers or []

    def response(self) -> HttpResponse:
        return HttpResponse.json(self.status, {"error": self.error}, self.headers)


def invalid_param(param: str, reason: str) -> ApiFailure:
    return ApiFailure(400, INVALID_PARAM, {"param": param, "reason": reason})


# ---------------------------------------------------------------------------------------------
# Answer shapes (rest.jsonl)

_POLICIES: dict[str, Any] = {
    "gtlAvailable": True, "ltlAvailable": True, "canPublicNote": True, "mentionLimit": 20, "canInvite": False,
    "inviteLimit": 0, "inviteLimitCycle": 10080, "inviteExpirationTime": 0, "canManageCustomEmojis": False,
    "canManageAvatarDecorations": False, "canSearchNotes": False, "canUseTranslator": True, "canHideAds": False,
    "driveCapacityMb": 100, "alwaysMarkNsfw": False, "canUpdateBioMedia": True, "pinLimit": 5, "antennaLimit": 5,
    "wordMuteLimit": 200, "webhookLimit": 3, "clipLimit": 10, "noteEachClipsLimit": 200, "userListLimit": 10,
    "userEachUserListsLimit": 50, "rateLimitFactor": 1, "avatarDecorationLimit": 1, "canImportAntennas": True,
    "canImportBlocking": True, "canImportFollowing": True, "canImportMuting": True, "canImportUserLists": True,
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
        "followersVisibility": "public", "followingVisibility": "public", "roles": [], "memo": None,
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
        "hasUnreadNotification": False, "hasPendingReceivedFollowRequest": False, "unreadNotificationsCount": 0,
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


# ---------------------------------------------------------------------------------------------
# Params

def _int_param(body: dict[str, Any], name: str, default: int | None, low: int | None = None,
               high: int | None = None) -> int | None:
    value = body.get(name, default)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise invalid_param(f"#/properties/{name}/type", "must be integer")
    if low is not None and value < low:
        raise invalid_param(f"#/properties/{name}/minimum", f"must be >= {low}")
    if high is not None and value > high:
        raise invalid_param(f"#/properties/{name}/maximum", f"must be <= {high}")
    return value


def _str_param(body: dict[str, Any], name: str, required: bool = False) -> str | None:
    value = body.get(name)
    if value is None:
        if required:
            raise invalid_param("#/required", f"must have required property '{name}'")
        return None
    if not isinstance(value, str):
        raise invalid_param(f"#/properties/{name}/type", "must be string")
    return value


def _bool_params(body: dict[str, Any], names: tuple[str, ...]) -> dict[str, bool]:
    out: dict[str, bool] = {}
    for name in names:
        value = body.get(name)
        if value is None:
            continue
        if not isinstance(value, bool):
            raise invalid_param(f"#/properties/{name}/type", "must be boolean")
        out[name] = value
    return out


def page_of(body: dict[str, Any]) -> hist.Page:
    """``limit`` (1..100, default 10), ``sinceId``, ``untilId``, ``sinceDate``, ``untilDate``."""
    limit = _int_param(body, "limit", 10, 1, 100)
    assert limit is not None
    return hist.Page(limit, _str_param(body, "sinceId"), _str_param(body, "untilId"),
                     _int_param(body, "sinceDate", None), _int_param(body, "untilDate", None))


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


_TOKEN_ALPHABET = string.ascii_letters + string.digits


class ApiServer:
    """The HTTP API over the simulator's state. ``handle`` runs on the simulator's loop."""

    def __init__(self, *, tokens: dict[str, str], suspended: frozenset[str], traffic: Traffic,
                 history: hist.NoteHistory, notifications: hist.NotificationHistory,
                 viewer: Callable[[User | None], rules.Viewer], moderators: frozenset[str],
                 software_name: str = "misskey", software_version: str = "2025.12.2", miauth: bool = True,
                 record: Callable[[dict[str, Any]], None] = lambda _: None) -> None:
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
        self.faults: dict[str, deque[Fault]] = {}
        self.miauth_sessions: dict[str, MiAuthSession] = {}
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
        body, token, auth = self._read_body(request)
        record["body"] = {k: v for k, v in body.items() if k != "i"}
        record["auth"] = auth  # how a token came ("body", "bearer") or None: never the token itself
        record["token"] = token is not None
        fault = self._take_fault(endpoint)
        if fault is not None:
            return fault
        return HttpResponse.json(200, self._call(endpoint, body, token))

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
        return Caller(self.traffic.account(username))

    def _call(self, endpoint: str, body: dict[str, Any], token: str | None) -> Any:
        caller = self._caller(token)
        timeline = TIMELINES.get(endpoint)
        if timeline is not None:
            self._require(caller, timeline.login)
            return self._timeline(timeline, body, caller.user)
        handler = self._ENDPOINTS.get(endpoint)
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
    def _require(caller: Caller, login: bool) -> User | None:
        if not login:
            return caller.user
        if caller.suspended:
            raise ApiFailure(403, YOUR_ACCOUNT_SUSPENDED)
        if caller.user is None:
            raise ApiFailure(401, CREDENTIAL_REQUIRED, headers=[("WWW-Authenticate", _WWW_CREDENTIAL)])
        return caller.user

    # -- endpoints ----------------------------------------------------------------------------

    def _meta(self, body: dict[str, Any], caller: Caller) -> Any:
        detail = body.get("detail", True)
        if not isinstance(detail, bool):
            raise invalid_param("#/properties/detail/type", "must be boolean")
        base = self.traffic.base_url
        return meta_detailed(self.software_version, base, self.miauth) if detail else meta_lite(
            self.software_version, base)

    def _i(self, body: dict[str, Any], caller: Caller) -> Any:
        user = self._require(caller, True)
        assert user is not None
        return user_detailed(user, self.traffic.base_url, me=True, moderator=user.username in self.moderators)

    def _notifications(self, body: dict[str, Any], caller: Caller) -> Any:
        user = self._require(caller, True)
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
        flags = _bool_params(body, ("withRenotes", "withFiles", "reply", "renote", "poll"))
        return self._notes("hashtag", {"q": query, **flags}, page_of(body), caller.user)

    def _notes_show(self, body: dict[str, Any], caller: Caller) -> Any:
        """A note the simulator made or was given (minimal: issue 20 brings the full one)."""
        note_id = _str_param(body, "noteId", required=True)
        entry = self.history.get(str(note_id))
        note = entry.note if entry is not None else self.traffic.known(str(note_id))
        if note is None or not rules.visible(note, self.viewer(caller.user)):
            raise ApiFailure(400, NO_SUCH_NOTE)
        return strip_pair_cache(note)

    def _users_show(self, body: dict[str, Any], caller: Caller) -> Any:
        """A user by ``userId`` (minimal: issue 20 brings the full one)."""
        user_id = _str_param(body, "userId", required=True)
        user = next((u for u in self.traffic.authors() if u.id == user_id), None)
        if user is None:
            raise ApiFailure(400, NO_SUCH_USER)
        return user_detailed(user, self.traffic.base_url, me=caller.user is not None and caller.user.id == user.id,
                             moderator=False)

    _ENDPOINTS: ClassVar[dict[str, Callable[[ApiServer, dict[str, Any], Caller], Any]]] = {
        "meta": _meta,
        "i": _i,
        "i/notifications": _notifications,
        "notes/search-by-tag": _search_by_tag,
        "notes/show": _notes_show,
        "users/show": _users_show,
    }

    def _timeline(self, timeline: Timeline, body: dict[str, Any], user: User | None) -> Any:
        params: dict[str, Any] = dict(_bool_params(body, timeline.flags))
        if timeline.required is not None:
            params[timeline.required] = _str_param(body, timeline.required, required=True)
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
