"""``mkstream login`` and ``mkstream logout``: a token through MiAuth (docs/protocol.md §9), kept in a profile.

Login asks the server for a token the way a command-line app can: it picks a random session,
sends the user to the server's approval page, and polls ``miauth/{session}/check`` until the
token comes (it is handed out exactly once, so the first answer with it is kept). The token is
checked with ``i``, written to a file of its own (0600) in the config directory, and a
``[profiles.NAME]`` table pointing at it is added to ``config.toml`` with the rest of the file
left as it was (``config_edit.py``). Nothing is written before the token is verified, nor when
the user presses Ctrl-C. Logout removes the table and the token file; only the server can revoke
the token itself.

The permissions asked for are what the stream needs to read, never to write: ``read:account``
(every channel that needs a login, and the handshake itself), ``read:notifications`` (the
``main`` backfill through ``i/notifications``) and ``read:chat`` (chatUser, chatRoom).
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TextIO
from urllib.parse import quote

from misskey_cli.core.channels import ACCOUNT, CHAT
from misskey_cli.errors import ConnectFailed, ExitCode, Forbidden, MkstreamError, TokenRejected, UsageError
from misskey_cli.net.api import ApiClient, ApiError
from misskey_cli.net.endpoint import Endpoint, Proxy, Redactor, parse_host
from misskey_cli.net.transport import effective_proxy
from misskey_cli.output.notices import LiveLine, Notices
from misskey_cli.profiles.config_edit import (
    ConfigEdit,
    check_toml,
    ensure_private_dir,
    remove_file,
    write_secret,
)
from misskey_cli.profiles.config_file import default_config_path, load_config, parse_config

APP_NAME = "mkstream"
# What every channel but admin needs (the catalogue's permissions), and the main backfill's
# i/notifications.
DEFAULT_PERMISSIONS = (ACCOUNT, "read:notifications", CHAT)
POLL_INTERVAL = 2.0
DEFAULT_TIMEOUT = 300.0

_PERMISSION = re.compile(r"^(read|write):[a-z0-9][a-z0-9:-]*$")
_SPINNER = "|/-\\"
# Profile keys that describe the server and the credentials: a login replaces them, and keeps
# the profile's output preferences (format, color, style, timestamps) and auth mode.
SERVER_KEYS = ("host", "token", "token_file", "ca_file", "proxy")


class LoginFailed(ConnectFailed):
    """The server cannot or did not give a token (no MiAuth, not approved in time): exit 3."""


def choose_permissions(extra: Iterable[str], defaults: bool = True) -> tuple[str, ...]:
    """The permissions to ask for: the defaults (unless ``defaults`` is False) plus ``extra``, in order, once.

    Raises UsageError for a name that is not ``read:...``/``write:...``, and when the set lacks
    ``read:account``: the streaming handshake refuses app tokens without it (401).
    """
    chosen: dict[str, None] = dict.fromkeys(DEFAULT_PERMISSIONS if defaults else ())
    for item in extra:
        for name in (part.strip() for part in item.split(",")):
            if not name:
                continue
            if not _PERMISSION.match(name):
                raise UsageError(f"bad permission {name!r}: Misskey's permissions look like read:account, "
                                 "read:notifications, read:admin:stream")
            chosen[name] = None
    if ACCOUNT not in chosen:
        raise UsageError(f"the permissions must include {ACCOUNT}: the streaming API refuses a token without it")
    return tuple(chosen)


def write_permissions(permissions: Iterable[str]) -> list[str]:
    return [p for p in permissions if p.startswith("write:")]


def approval_url(http_base: str, session: str, permissions: Iterable[str], name: str = APP_NAME) -> str:
    """The server's MiAuth page for ``session``: ``https://HOST/miauth/SESSION?name=...&permission=a,b``."""
    return (f"{http_base}/miauth/{quote(session, safe='')}?name={quote(name, safe='')}"
            f"&permission={quote(','.join(permissions), safe=':,')}")


def can_open_browser(stdout_isatty: bool, environ: Mapping[str, str], platform: str = sys.platform) -> bool:
    """A browser is worth starting on a terminal with a desktop: a display on Linux and the BSDs,
    macOS or Windows unless over ssh (the browser would open on the far machine's screen)."""
    if not stdout_isatty:
        return False
    if platform == "darwin" or platform.startswith("win"):
        return not (environ.get("SSH_CONNECTION") or environ.get("SSH_TTY"))
    return bool(environ.get("DISPLAY") or environ.get("WAYLAND_DISPLAY"))


def default_profile_name(endpoint: Endpoint) -> str:
    """A profile is named after its server by default: ``misskey.example``, ``localhost:3000``."""
    return endpoint.netloc


def host_value(endpoint: Endpoint) -> str:
    """The profile's ``host``, in the shortest form that ``--host`` reads back to the same endpoint."""
    http = f"{'https' if endpoint.scheme == 'wss' else 'http'}://{endpoint.netloc}"
    if endpoint.path != "/streaming":
        return http + endpoint.path
    return endpoint.netloc if endpoint.scheme == "wss" else http


def token_file_name(profile: str) -> str:
    """``<profile>.token`` with anything but letters, digits, ``.``, ``_``, ``-`` made ``_``."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", profile).strip("._") or "profile"
    return f"{safe}.token"


def proxy_value(proxy: Proxy) -> str | None:
    """The proxy as a profile value; None when it carries a password, which a config should not hold."""
    if proxy.auth is not None:
        return None
    host = f"[{proxy.host}]" if ":" in proxy.host else proxy.host
    return f"{proxy.kind}://{host}:{proxy.port}"


# ----- login --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoginSettings:
    endpoint: Endpoint
    profile: str | None = None  # None: named after the host
    permissions: tuple[str, ...] = DEFAULT_PERMISSIONS
    open_browser: bool = True  # False: --no-browser
    timeout: float = DEFAULT_TIMEOUT
    force: bool = False
    config_path: str | None = None  # None: $XDG_CONFIG_HOME/mkstream/config.toml
    poll_interval: float = POLL_INTERVAL
    ca_file: str | None = None
    insecure: bool = False
    proxy: Proxy | None = None


@dataclass(frozen=True)
class LoginTerminal:
    """The terminal facts login needs, decided once by the entry point."""

    stderr: TextIO | None
    stdout_isatty: bool
    stderr_isatty: bool
    environ: Mapping[str, str]


@dataclass
class Approval:
    token: str
    username: str | None


class _Waiting:
    """The countdown on a terminal's stderr while the user approves (a ``LiveLine``); nothing anywhere else."""

    def __init__(self, stream: TextIO | None, enabled: bool) -> None:
        self.line = LiveLine(stream if enabled else None)
        self.turn = 0

    def draw(self, remaining: float) -> None:
        left = max(0, int(remaining + 0.999))
        self.turn += 1
        self.line.show(f"mkstream: {_SPINNER[self.turn % len(_SPINNER)]} waiting for the approval, "
                       f"{left // 60}:{left % 60:02d} left (Ctrl-C to cancel)")

    def clear(self) -> None:
        self.line.clear()


def run_login(settings: LoginSettings, terminal: LoginTerminal, *,
              open_url: Callable[[str], object] | None = None,
              sleep: Callable[[float], None] = time.sleep,
              clock: Callable[[], float] = time.monotonic,
              new_session: Callable[[], str] = lambda: str(uuid.uuid4())) -> int:
    """Log in; returns the exit status. Messages go to ``terminal.stderr``; the token never does."""
    notices = Notices(terminal.stderr)
    waiting = _Waiting(terminal.stderr, terminal.stderr_isatty)
    approval: Approval | None = None
    try:
        config_path = settings.config_path or default_config_path(terminal.environ)
        name = settings.profile or default_profile_name(settings.endpoint)
        edit = _open_config(config_path, name, settings.force)
        # The proxy the stream would take (--proxy, else the environment's, unless no_proxy names the host).
        proxy, _ = effective_proxy(settings.endpoint, settings.proxy, terminal.environ)
        _check_miauth(_client(settings, proxy, None), settings.endpoint)
        session = new_session()
        _tell_where_to_approve(settings, terminal, notices, session, open_url)
        # No retries inside one check: the next poll is the retry, and it keeps the countdown honest.
        poller = _client(settings, proxy, None, retries=0)
        approval = _wait_for_approval(poller, session, settings, waiting, notices, sleep, clock)
        notices.redact = Redactor(approval.token)
        username = _verify(_client(settings, proxy, approval.token))
        token_path, default_set = _store(edit, config_path, name, settings, approval.token)
    except KeyboardInterrupt:
        waiting.clear()
        issued = " (a token was already issued: revoke it in the web settings, Settings > Apps)" if approval else ""
        notices.error(f"login cancelled; nothing was written{issued}")
        return ExitCode.SIGINT
    except MkstreamError as exc:
        waiting.clear()
        notices.error(exc.message)
        return exc.exit_code
    shown_host = settings.endpoint.netloc
    notices.info(f"logged in as @{username} on {shown_host}; profile {name}")
    notices.info(f"token saved in {token_path} (readable by you only); profile [profiles.{_toml_key(name)}] "
                 f"in {config_path}")
    if default_set:
        notices.info(f"{name} is the default profile: 'mkstream connect homeTimeline' needs no other option")
    else:
        notices.info(f"use it with --profile {name} (or MKSTREAM_PROFILE={name})")
    return ExitCode.OK


def _toml_key(name: str) -> str:
    return name if re.fullmatch(r"[A-Za-z0-9_-]+", name) else '"' + name.replace('"', '\\"') + '"'


def _client(settings: LoginSettings, proxy: Proxy | None, token: str | None, retries: int = 2) -> ApiClient:
    return ApiClient(settings.endpoint.http_base, token, ca_file=settings.ca_file, insecure=settings.insecure,
                     proxy=proxy, retries=retries)


def _open_config(config_path: str, name: str, force: bool) -> ConfigEdit:
    """The config must be sound, and the profile free (or --force), before anything is sent."""
    if os.path.exists(config_path):
        load_config(config_path)  # the same checks as every other command, with line numbers
    edit = ConfigEdit.open(config_path)
    if edit.profile(name) is not None and not force:
        raise UsageError(f"config file {config_path} already has a profile {name!r}: add --force to replace it, "
                         "or pick another name with --profile NAME")
    return edit


def _check_miauth(api: ApiClient, endpoint: Endpoint) -> None:
    try:
        meta = api.call("meta", {"detail": True})
    except ApiError as exc:
        raise LoginFailed(f"{endpoint.netloc} does not answer like a Misskey server ({exc.message})") from None
    features = meta.get("features") if isinstance(meta, dict) else None
    if isinstance(features, dict) and features.get("miauth") is False:
        raise LoginFailed(_no_miauth(endpoint, "its meta says features.miauth is false"))


def _no_miauth(endpoint: Endpoint, why: str) -> str:
    return (f"{endpoint.netloc} does not offer MiAuth ({why}): make a token in its web settings "
            f"({endpoint.http_base}/settings/api, 'Generate access token', with read:account), save it in a file "
            "and use --token-file FILE")


def _tell_where_to_approve(settings: LoginSettings, terminal: LoginTerminal, notices: Notices, session: str,
                           open_url: Callable[[str], object] | None) -> None:
    url = approval_url(settings.endpoint.http_base, session, settings.permissions)
    opened = False
    if settings.open_browser and can_open_browser(terminal.stdout_isatty, terminal.environ):
        if open_url is None:
            import webbrowser

            open_url = webbrowser.open
        try:
            opened = bool(open_url(url))
        except Exception:  # noqa: BLE001 - no browser is not an error: the URL is printed anyway
            opened = False
    where = "your browser shows" if opened else "open"
    notices.info(f"to log in to {settings.endpoint.netloc}, {where} this page, sign in if asked, and approve "
                 f"mkstream (asks for {', '.join(settings.permissions)}):")
    notices.info(f"  {url}")
    writes = write_permissions(settings.permissions)
    if writes:
        notices.warn(f"you asked for {', '.join(writes)}: the token will be able to change your account; "
                     "mkstream itself only reads")
    notices.info(f"waiting up to {_duration(settings.timeout)} for the approval (Ctrl-C to cancel)")


def _wait_for_approval(api: ApiClient, session: str, settings: LoginSettings, waiting: _Waiting, notices: Notices,
                       sleep: Callable[[float], None], clock: Callable[[], float]) -> Approval:
    """Poll ``miauth/{session}/check`` until it hands out the token or the time is up."""
    deadline = clock() + settings.timeout
    warned = False
    while True:
        try:
            answer = api.call(f"miauth/{session}/check")
        except ApiError as exc:
            if exc.status == 404:
                raise LoginFailed(_no_miauth(settings.endpoint, "miauth/.../check answers HTTP 404")) from None
            if not exc.retryable:
                raise
            answer, warned = None, _warn_once(notices, waiting, warned, exc.message)
        except ConnectFailed as exc:
            answer, warned = None, _warn_once(notices, waiting, warned, exc.message)
        if isinstance(answer, dict) and answer.get("ok") is True and isinstance(answer.get("token"), str):
            waiting.clear()
            user = answer.get("user")
            username = user.get("username") if isinstance(user, dict) else None
            return Approval(answer["token"], username if isinstance(username, str) else None)
        next_poll = clock() + settings.poll_interval
        while True:
            now = clock()
            if now >= deadline:
                waiting.clear()
                raise LoginFailed(f"not approved within {_duration(settings.timeout)} (the page was not approved, "
                                  "or was denied): run mkstream login again, or give more time with --timeout")
            if now >= next_poll:
                break
            waiting.draw(deadline - now)
            step = min(next_poll, deadline) - now
            sleep(min(step, 1.0) if waiting.line.stream is not None else step)  # a countdown ticks every second


def _warn_once(notices: Notices, waiting: _Waiting, warned: bool, message: str) -> bool:
    if not warned:
        waiting.clear()
        notices.warn(f"{message}; still waiting")
    return True


def _verify(api: ApiClient) -> str:
    """The new token's user, by ``i``: a token that does not work is not worth keeping."""
    try:
        me = api.call("i")
    except ApiError as exc:
        if exc.status == 401:
            raise TokenRejected(f"the server gave a token that it then rejects ({exc.message})") from None
        if exc.status == 403:
            raise Forbidden(f"the account cannot use the new token ({exc.message}): is it suspended?") from None
        raise
    username = me.get("username") if isinstance(me, dict) else None
    if not isinstance(username, str):
        raise LoginFailed("the server's answer to i names no user")
    host = me.get("host")
    return username if not isinstance(host, str) else f"{username}@{host}"


def _store(edit: ConfigEdit, config_path: str, name: str, settings: LoginSettings, token: str) -> tuple[str, bool]:
    """Write the token file, then the profile (default_profile too, when the file has none)."""
    directory = os.path.dirname(os.path.abspath(config_path))
    ensure_private_dir(directory)
    token_path = _free_token_path(edit, directory, name)
    values = {"host": host_value(settings.endpoint), "token_file": os.path.basename(token_path)}
    if settings.ca_file:
        values["ca_file"] = os.path.abspath(settings.ca_file)
    if settings.proxy is not None:
        proxy = proxy_value(settings.proxy)
        if proxy is not None:
            values["proxy"] = proxy
    edit.set_profile(name, values, SERVER_KEYS)
    default_set = edit.default_profile is None
    if default_set:
        edit.set_default_profile(name)
    text = edit.text()
    parse_config(config_path, check_toml(text, config_path), text)  # what is written must load
    write_secret(token_path, token)
    edit.save()
    return token_path, default_set


def _free_token_path(edit: ConfigEdit, directory: str, name: str) -> str:
    """Where the profile's token goes: ``token_file_name`` beside the config, or ``NAME-2.token`` and
    on when that file belongs to another profile or to nobody the config knows (``a/b`` and ``a_b``
    both make ``a_b``). The profile's own file, on a ``--force`` login, is reused."""
    own, taken = None, set()
    for other in edit.profile_names():
        file = (edit.profile(other) or {}).get("token_file")
        if isinstance(file, str):
            path = os.path.realpath(os.path.join(directory, os.path.expanduser(file)))
            if other == name:
                own = path
            else:
                taken.add(path)
    stem = token_file_name(name).removesuffix(".token")
    number = 1
    while True:
        candidate = os.path.join(directory, f"{stem}.token" if number == 1 else f"{stem}-{number}.token")
        real = os.path.realpath(candidate)
        if real not in taken and (real == own or not os.path.lexists(candidate)):
            return candidate
        number += 1


def _duration(seconds: float) -> str:
    if seconds >= 60 and seconds % 60 == 0:
        return f"{int(seconds // 60)}m"
    return f"{seconds:g}s"


# ----- logout -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LogoutSettings:
    profile: str | None = None  # None: the default profile
    config_path: str | None = None


def run_logout(settings: LogoutSettings, stderr: TextIO | None, environ: Mapping[str, str]) -> int:
    notices = Notices(stderr)
    try:
        lines = logout(settings, environ)
    except MkstreamError as exc:
        notices.error(exc.message)
        return exc.exit_code
    for line in lines:
        notices.info(line)
    return ExitCode.OK


def logout(settings: LogoutSettings, environ: Mapping[str, str]) -> list[str]:
    """Remove the profile and its token file; the lines to tell the user."""
    config_path = settings.config_path or default_config_path(environ)
    if not os.path.exists(config_path):
        raise UsageError(f"no config file at {config_path}: no profile to log out of")
    config = load_config(config_path)
    name = settings.profile or config.default_profile
    if name is None:
        known = ", ".join(config.profiles) or "none"
        raise UsageError(f"which profile? {config_path} has no default_profile: give --profile NAME (it has: {known})")
    profile = config.select(name)
    assert profile is not None
    edit = ConfigEdit.open(config_path)
    edit.remove_profile(name)
    lines = [f"removed profile {name} from {config_path}"]
    if edit.default_profile == name:
        edit.set_default_profile(None)
        lines.append(f"{name} was the default profile: the config has no default_profile now")
    edit.save()
    token_file = profile.values.get("token_file")
    if isinstance(token_file, str):
        sharing = [other.name for other in config.profiles.values() if other.name != name
                   and isinstance(other.values.get("token_file"), str)
                   and os.path.realpath(str(other.values["token_file"])) == os.path.realpath(token_file)]
        if sharing:  # two profiles on one file (older logins named a/b and a_b alike): it stays theirs
            lines.append(f"token file {token_file} is also the token file of profile {sharing[0]}: left in place")
        else:
            lines.append(_remove_token_file(token_file, config_path))
    host = profile.values.get("host")
    where = "in the server's web settings"
    if isinstance(host, str):
        with contextlib.suppress(UsageError):
            where = f"at {parse_host(host).http_base}/settings/apps"
    lines.append(f"the token itself still works until it is revoked {where} (Settings > Apps; "
                 "tokens made by hand are under Settings > API)")
    return lines


def _remove_token_file(token_file: str, config_path: str) -> str:
    """Delete a token file that lives beside the config (where login puts them); leave others alone."""
    config_dir = os.path.dirname(os.path.realpath(config_path))
    if os.path.dirname(os.path.realpath(token_file)) != config_dir:
        return (f"token file {token_file} is outside {config_dir}, so login did not make it: "
                "left in place (delete it yourself if nothing else uses it)")
    if remove_file(token_file):
        return f"deleted the token file {token_file}"
    return f"the token file {token_file} was already gone"
