"""A check's verdict, and a channel's, as pure judgement: what was found, how bad, what to do.

``Check`` is one line of the doctor's report; ``judge_channel`` turns a channel's answer (acknowledged
or not, what else the socket holds, what the earlier checks found) into one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from misskey_cli.core.channels import CATALOGUE, channel_permission, unacked_reason
from misskey_cli.doctor.forks import ServerKind
from misskey_cli.errors import ExitCode
from misskey_cli.run.settings import ConnectionRequest

OK, WARN, FAIL, SKIP = "ok", "warn", "fail", "skip"


@dataclass
class Check:
    """One line of the report."""

    name: str  # stable, for --json: proxy, dns, tcp, tunnel, tls, http, clock, nodeinfo, meta, token, stream, channel
    title: str  # what was checked, for people
    status: str  # ok, warn, fail, skip
    found: str
    fix: str | None = None
    exit_code: int = 0  # the failure's kind, when status is fail
    details: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"check": self.name, "title": self.title, "status": self.status, "found": self.found}
        if self.fix:
            out["fix"] = self.fix
        if self.status == FAIL:
            out["exit_code"] = self.exit_code
        out.update((key, value) for key, value in self.details.items() if key not in out)  # "status" is the check's
        return out


@dataclass(frozen=True)
class ChannelContext:
    """What the earlier checks found that bears on a channel's answer."""

    logged_in: bool
    server: ServerKind = ServerKind()  # noqa: RUF009 - frozen: one shared default is safe
    username: str | None = None
    moderator: bool | None = None  # None: not known (no token, or i failed)
    policies: Mapping[str, Any] = field(default_factory=dict)
    ack_timeout: float = 5.0
    host: str = "HOST"


def judge_channel(connection: ConnectionRequest, acked: bool, others: list[str], ctx: ChannelContext) -> Check:
    """The line for one channel connection, from whether it was acknowledged and what is known."""
    channel = connection.channel
    cid = connection.connection_id or channel
    title = f"channel {cid}" if cid == channel else f"channel {cid} ({channel})"
    details: dict[str, Any] = {"channel": channel, "id": cid, "acknowledged": acked}
    lacks = ctx.server.lacks(channel)
    if acked:
        status, found, fix = _acked_caveat(channel, lacks, ctx)
        return Check("channel", title, status, found, fix, details=details)
    if lacks:
        reason = lacks
        fix = "this server cannot stream it: use another channel"
    elif channel not in CATALOGUE and ctx.server.adds(channel):
        reason = f"{ctx.server.label} is known to have it, so it may need a token or a param"
        fix = "check the fork's documentation for its params"
    else:
        reason = unacked_reason(channel, others, ctx.logged_in)
        fix = _unacked_fix(channel, reason, ctx)
    details["reason"] = reason
    found = f"not acknowledged within {ctx.ack_timeout:g}s: likely {reason}"
    return Check("channel", title, FAIL, found, fix, ExitCode.NOT_ACKNOWLEDGED, details)


def _acked_caveat(channel: str, lacks: str | None, ctx: ChannelContext) -> tuple[str, str, str | None]:
    """Acknowledged: ok, unless what is known says it will still deliver nothing."""
    if lacks:
        return WARN, f"acknowledged, although {lacks.replace(' has no ', ' is not known to have ')}", None
    if channel == "admin" and ctx.moderator is False:
        return WARN, (f"acknowledged, but it delivers nothing: @{ctx.username} is not a moderator"), \
            "use a moderator's token"
    if channel == "userList" and not ctx.logged_in:
        return WARN, "acknowledged, but a list delivers nothing without a token", \
            f"log in: mkstream login {ctx.host}"
    policy = {"localTimeline": "ltlAvailable", "hybridTimeline": "ltlAvailable",
              "globalTimeline": "gtlAvailable"}.get(channel)
    if policy and ctx.policies.get(policy) is False:
        who = f"@{ctx.username}" if ctx.username else "anonymous users"
        return WARN, f"acknowledged, but the server's roles switch this timeline off for {who} ({policy}: " \
                     "false): nothing will arrive", "ask the server's admin, or use another timeline"
    if channel not in CATALOGUE:
        known = " (a channel of this fork)" if ctx.server.adds(channel) else " (not in mkstream's catalogue)"
        return OK, f"acknowledged{known}", None
    return OK, "acknowledged", None


def _unacked_fix(channel: str, reason: str, ctx: ChannelContext) -> str | None:
    if "needs a token" in reason:
        return f"log in: mkstream login {ctx.host} (or give --token-file FILE)"
    if "moderator" in reason:
        return f"use a moderator's token (with {channel_permission(channel)})"
    known = CATALOGUE.get(channel)
    owned = next((p.name for p in known.params if p.required and p.name.endswith("Id")), None) if known else None
    check_id = f"check that {owned} is right and open to you" if owned else None
    if "may lack the permission" in reason:
        permission = channel_permission(channel)
        fix = f"the token needs {permission}: mkstream login {ctx.host} --permission {permission} --force"
        return f"{fix}; or {check_id}" if check_id else fix
    if "not be open to you" in reason:
        return check_id
    if "turned this channel off" in reason:
        return "ask the server's admin, or use another channel"
    if "already is" in reason:
        return "connect it once per socket"
    if "does not know" in reason:
        return "check the name: mkstream channels"
    return None
