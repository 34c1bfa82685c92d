"""``mkstream channels``: the catalogue as a table, a detail page, or JSON. Pure text building."""

from __future__ import annotations

import json
import textwrap
from dataclasses import asdict

from misskey_cli.core.channels import Channel

WIDTH = 100


def channel_table(channels: list[Channel]) -> str:
    rows = [("CHANNEL", "LOGIN", "PARAMS", "WHAT")]
    for c in channels:
        params = ",".join(p.name + ("*" if p.required else "") for p in c.params) or "-"
        login = "moderator" if c.moderator_only else ("yes" if c.needs_login else "no")
        rows.append((c.name, login, params, c.summary))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row[:3], widths, strict=True)) + "  " + row[3] for row in rows]
    lines.append("")
    lines.append("* = required param. 'mkstream channels NAME' shows params, events and an example.")
    return "\n".join(lines)


def channel_detail(c: Channel) -> str:
    lines = [f"{c.name}: {c.summary}", ""]
    login = "a moderator's token" if c.moderator_only else ("a token (logged-in user)" if c.needs_login
                                                          else "nothing (works anonymously)")
    grant = f"; an app token needs the permission {c.permission}" if c.permission else ""
    lines.append(f"needs:     {login}{grant}")
    if c.shareable:
        lines.append("shareable: connected at most once per socket (a second connect is ignored)")
    lines.append("params:" + ("    none" if not c.params else ""))
    for p in c.params:
        flags = "required" if p.required else f"default {json.dumps(p.default)}" if p.default is not None else ""
        text = f"{p.summary}{' (' + flags + ')' if flags else ''}"
        lines += textwrap.wrap(text, WIDTH, initial_indent=f"  {p.name:<12} {p.type:<7} ",
                               subsequent_indent=" " * 23)
    lines += textwrap.wrap(", ".join(c.events), WIDTH, initial_indent="events:    ", subsequent_indent=" " * 11)
    if c.accepts:
        accepts = ", ".join(t + ("*" if t in c.side_effects else "") for t in c.accepts)
        note = "; * changes state: needs --force" if c.side_effects else ""
        lines += textwrap.wrap(f"{accepts} (mkstream send{note})", WIDTH, initial_indent="accepts:   ",
                               subsequent_indent=" " * 11)
    if c.example:
        lines.append("")
        lines.append("example:   " + c.example)
        lines.append("           (add --host HOST or --profile NAME; --demo tries it on the built-in simulator)")
    return "\n".join(lines)


def catalogue_json(channels: list[Channel]) -> str:
    return json.dumps([asdict(c) for c in channels], ensure_ascii=False, indent=2)
