"""The command line's parameter types: every string the user types is parsed here.

Each ``click.ParamType``'s ``convert`` calls a pure function of the library and turns its error into
``self.fail()``, so bad input exits 2 before any connection. The library is imported inside the
functions that use it, so that ``mkstream --help`` and ``--version`` load little more than click.
"""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING, Any, ClassVar

import click

from misskey_cli.errors import UsageError

if TYPE_CHECKING:
    from misskey_cli.core.channels import ChannelSpec

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


# ----- parameter types ------------------------------------------------------------------------


class DurationType(click.ParamType):
    """A positive, bounded duration: ``30s``, ``5m``, ``1h30m``, ``500ms`` or seconds."""

    name = "duration"
    MAX = 366 * 86400.0  # a year: longer is a typo, and would overflow the clocks it is added to

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        from misskey_cli.core.timefmt import parse_duration

        try:
            seconds = float(value) if isinstance(value, (int, float)) else parse_duration(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)
        if not 0 < seconds <= self.MAX:
            self.fail(f"{value!r} is out of range: give a duration above 0 and at most 366d", param, ctx)
        return seconds


class ChannelSpecType(click.ParamType):
    name = "channel"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> ChannelSpec:
        from misskey_cli.core.channels import ChannelSpec, SpecError, parse_channel_spec

        if isinstance(value, ChannelSpec):
            return value
        try:
            return parse_channel_spec(value)
        except SpecError as exc:
            self.fail(str(exc), param, ctx)

    def shell_complete(self, ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
        from click.shell_completion import CompletionItem

        from misskey_cli.core.channels import CATALOGUE, CHANNELS

        # Shells strip an open quote before click sees the word; a direct caller may not.
        quote = incomplete[:1] if incomplete[:1] in ("'", '"') else ""
        incomplete = incomplete[len(quote):]
        if "?" in incomplete:
            name, _, query = incomplete.partition("?")
            channel = CATALOGUE.get(name.partition(":")[0])
            done, _, last = query.rpartition("&")
            prefix = f"{quote}{name}?{done + '&' if done else ''}"
            return param_completions(channel.params if channel else (), last, prefix)
        return [CompletionItem(quote + c.name, help=c.summary) for c in CHANNELS if c.name.startswith(incomplete)]


def param_completions(params: Any, last: str, prefix: str = "") -> list[Any]:
    """``KEY=`` for the params a word could start, or ``KEY=true|false`` once a boolean's ``=`` is typed."""
    from click.shell_completion import CompletionItem

    from misskey_cli.core.channels import BOOL

    if "=" in last:
        key, _, partial = last.partition("=")
        found = [p for p in params if p.name == key and p.type == BOOL]
        return [CompletionItem(f"{prefix}{key}={value}") for value in ("true", "false")
                if found and value.startswith(partial)]
    return [CompletionItem(f"{prefix}{p.name}=", help=p.summary) for p in params if p.name.startswith(last)]


def channels_on_the_line(ctx: click.Context) -> list[str]:
    """Catalogue channels named so far: parsed arguments, or words left over when parsing stopped early."""
    from misskey_cli.core.channels import (
        CATALOGUE,
        ChannelSpec,
        SpecError,
        parse_channel_spec,
    )

    specs = list(ctx.params.get("channels") or ())
    if isinstance(ctx.params.get("channel"), ChannelSpec):
        specs.append(ctx.params["channel"])
    for word in ctx.args:  # e.g. `connect localTimeline -p <TAB>`: the unfinished -p stops the parser
        with contextlib.suppress(SpecError):
            specs.append(parse_channel_spec(word))
    return [name for name in dict.fromkeys(spec.channel for spec in specs) if name in CATALOGUE]


class ParamAssignmentType(click.ParamType):
    name = "key=value"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> tuple[str, str]:
        from misskey_cli.core.channels import SpecError, parse_param_assignment

        if isinstance(value, tuple):
            return value
        try:
            return parse_param_assignment(value)
        except SpecError as exc:
            self.fail(str(exc), param, ctx)

    def shell_complete(self, ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
        from misskey_cli.core.channels import CATALOGUE

        params: dict[str, Any] = {}
        for name in channels_on_the_line(ctx):
            for p in CATALOGUE[name].params:
                params.setdefault(p.name, p)
        return param_completions(list(params.values()), incomplete)


class JsonType(click.ParamType):
    name = "json"

    def __init__(self, want_object: bool = False) -> None:
        self.want_object = want_object

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        import json

        if not isinstance(value, str):
            return value
        try:
            parsed = json.loads(value)
        except ValueError as exc:
            self.fail(f"{value!r} is not JSON: {exc.args[0]}", param, ctx)
        if self.want_object and not isinstance(parsed, dict):
            self.fail(f"{value!r} must be a JSON object", param, ctx)
        return parsed


class ProxyType(click.ParamType):
    name = "url"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        from misskey_cli.net.endpoint import Proxy, parse_proxy

        if isinstance(value, Proxy):
            return value
        try:
            return parse_proxy(value)
        except UsageError as exc:
            self.fail(exc.message, param, ctx)


class CaFileType(click.Path):
    """A CA bundle that the TLS library can load: checked now, not at connect time."""

    def __init__(self) -> None:
        super().__init__(exists=True, dir_okay=False)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        import ssl

        path = super().convert(value, param, ctx)
        try:
            ssl.create_default_context(cafile=os.fspath(path))
        except (ssl.SSLError, OSError, ValueError):
            self.fail(f"{os.fspath(path)!r} holds no PEM certificate", param, ctx)
        return path


class OutputPathType(click.Path):
    """``-o FILE``; ``-`` is stdout."""

    def __init__(self) -> None:
        super().__init__(dir_okay=False, writable=True, allow_dash=True)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if value == "":
            self.fail("an empty file name: give a file, or - for stdout", param, ctx)
        return super().convert(value, param, ctx)


class SizeType(click.ParamType):
    """A size in bytes: ``512K``, ``64M``, ``1G`` or a number."""

    name = "size"
    UNITS: ClassVar[dict[str, int]] = {"": 1, "K": 1024, "M": 1024 ** 2, "G": 1024 ** 3}

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        import re

        if isinstance(value, int):
            return value
        match = re.fullmatch(r"\s*(\d+)\s*([KMG]?)i?B?\s*", str(value), re.IGNORECASE)
        if match is None:
            self.fail(f"{value!r} is not a size: use e.g. 64M, 1G or 512K", param, ctx)
        size = int(match[1]) * self.UNITS[match[2].upper()]
        if not 1024 * 1024 <= size <= 64 * 1024 ** 3:
            self.fail(f"{value!r} is out of range: give 1M to 64G", param, ctx)
        return size


class RecordPathType(click.Path):
    """``--record FILE``: a file to append a recording to (not stdout: that is where the records go)."""

    def __init__(self) -> None:
        super().__init__(dir_okay=False, writable=True)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if value in ("", "-"):
            self.fail("give a file name: the records themselves go to stdout", param, ctx)
        return super().convert(value, param, ctx)


class SpeedType(click.ParamType):
    """``--speed X``: a factor from MIN to MAX (1 = the recorded pace, 10 = ten times faster)."""

    name = "x"
    MAX = 1e6
    MIN = 1e-6  # a second of the recording is then 11.6 days: slower is a typo, not a pace

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        try:
            speed = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not self.MIN <= speed <= self.MAX:  # NaN fails too
            self.fail(f"{value!r} is out of range: give a factor from {self.MIN:g} to {self.MAX:g}", param, ctx)
        return speed


class TimeBoundType(click.ParamType):
    """``--since``/``--until``: an RFC 3339 time, a duration ago (``10m``) or after the start (``+10m``)."""

    name = "time"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        from misskey_cli.core.timefmt import TimeBound, parse_time_bound

        if isinstance(value, TimeBound):
            return value
        try:
            return parse_time_bound(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class NoteIdType(click.ParamType):
    name = "note_id"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        from misskey_cli.core.protocol import check_note_id

        try:
            return check_note_id(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class StyleType(click.ParamType):
    name = "style"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        from misskey_cli.output.render import check_style

        try:
            return check_style(value)
        except UsageError as exc:
            self.fail(exc.message.replace("unknown --style ", "unknown style "), param, ctx)

    def shell_complete(self, ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
        from click.shell_completion import CompletionItem

        from misskey_cli.output.render import style_names

        return [CompletionItem(name) for name in style_names() if name.startswith(incomplete)]


class HostType(click.ParamType):
    name = "host"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        from misskey_cli.net.endpoint import parse_host

        try:
            return parse_host(value)
        except UsageError as exc:
            self.fail(exc.message, param, ctx)


DURATION = DurationType()

