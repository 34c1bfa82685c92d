"""The command line: click definitions only. Parses, builds frozen settings, calls one entry point.

Anything typed as a string is converted by a ``click.ParamType`` whose ``convert`` calls a pure
function, so bad input exits 2 before any connection. Each command builds its settings
(``settings.py``) and hands them to ``app.py``, which runs them and returns the exit status.
Usage errors, from click or from mkstream, look the same: ``mkstream: error: ...`` and at most
one hint line.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, MutableMapping
from typing import TYPE_CHECKING, Any, ClassVar, NoReturn

import click
from click.core import ParameterSource

from misskey_cli import __version__
from misskey_cli.choices import AUTH_MODES, COLOR_MODES, DEFAULT_STYLE, FORMATS, PROFILE_KEYS
from misskey_cli.errors import ExitCode, UsageError

if TYPE_CHECKING:
    from misskey_cli.channels import ChannelSpec
    from misskey_cli.settings import ConnectionRequest, StreamSettings

# The library is imported inside the functions that use it, so that `mkstream --help` and
# `--version` load little more than click.

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


# ----- parameter types ------------------------------------------------------------------------


class DurationType(click.ParamType):
    """A positive, bounded duration: ``30s``, ``5m``, ``1h30m``, ``500ms`` or seconds."""

    name = "duration"
    MAX = 366 * 86400.0  # a year: longer is a typo, and would overflow the clocks it is added to

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        from misskey_cli.timeparse import parse_duration

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
        from misskey_cli.channels import ChannelSpec, SpecError, parse_channel_spec

        if isinstance(value, ChannelSpec):
            return value
        try:
            return parse_channel_spec(value)
        except SpecError as exc:
            self.fail(str(exc), param, ctx)

    def shell_complete(self, ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
        from click.shell_completion import CompletionItem

        from misskey_cli.channels import CATALOGUE, CHANNELS

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

    from misskey_cli.channels import BOOL

    if "=" in last:
        key, _, partial = last.partition("=")
        found = [p for p in params if p.name == key and p.type == BOOL]
        return [CompletionItem(f"{prefix}{key}={value}") for value in ("true", "false")
                if found and value.startswith(partial)]
    return [CompletionItem(f"{prefix}{p.name}=", help=p.summary) for p in params if p.name.startswith(last)]


def channels_on_the_line(ctx: click.Context) -> list[str]:
    """Catalogue channels named so far: parsed arguments, or words left over when parsing stopped early."""
    from misskey_cli.channels import (
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
        from misskey_cli.channels import SpecError, parse_param_assignment

        if isinstance(value, tuple):
            return value
        try:
            return parse_param_assignment(value)
        except SpecError as exc:
            self.fail(str(exc), param, ctx)

    def shell_complete(self, ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
        from misskey_cli.channels import CATALOGUE

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
        from misskey_cli.config import Proxy, parse_proxy

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
    """``--speed X``: a finite factor above 0 (1 = the recorded pace, 10 = ten times faster)."""

    name = "x"
    MAX = 1e6

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        try:
            speed = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not 0 < speed <= self.MAX:  # NaN fails too
            self.fail(f"{value!r} is out of range: give a factor above 0 and at most {self.MAX:g}", param, ctx)
        return speed


class TimeBoundType(click.ParamType):
    """``--since``/``--until``: an RFC 3339 time, a duration ago (``10m``) or after the start (``+10m``)."""

    name = "time"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        from misskey_cli.recording import TimeBound, parse_time_bound

        if isinstance(value, TimeBound):
            return value
        try:
            return parse_time_bound(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class NoteIdType(click.ParamType):
    name = "note_id"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        from misskey_cli.protocol import check_note_id

        try:
            return check_note_id(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class StyleType(click.ParamType):
    name = "style"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        from misskey_cli.output import check_style

        try:
            return check_style(value)
        except UsageError as exc:
            self.fail(exc.message.replace("unknown --style ", "unknown style "), param, ctx)

    def shell_complete(self, ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
        from click.shell_completion import CompletionItem

        from misskey_cli.output import style_names

        return [CompletionItem(name) for name in style_names() if name.startswith(incomplete)]


class HostType(click.ParamType):
    name = "host"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        from misskey_cli.config import parse_host

        try:
            return parse_host(value)
        except UsageError as exc:
            self.fail(exc.message, param, ctx)


DURATION = DurationType()


# ----- config profiles --------------------------------------------------------------------------


# Profile keys whose click parameter has another name (from the one table in choices.py).
PROFILE_PARAMS = {key: param for key, _, param, _ in PROFILE_KEYS if param != key}
_META = "mkstream.profile."


def profile_callback(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """Eager callback of --config and --profile: once both are seen, the profile becomes click's
    ``default_map``, so click resolves flag > environment > profile > built-in default."""
    ctx.meta[_META + str(param.name)] = value
    if ctx.resilient_parsing or not all(_META + name in ctx.meta for name in ("config", "profile")):
        return value
    try:
        ctx.default_map = {**(ctx.default_map or {}), **profile_defaults(ctx)}
    except UsageError as exc:
        fail(exc.message, exc.exit_code)
    return value


def profile_defaults(ctx: click.Context) -> dict[str, Any]:
    """Load the config and the chosen profile, check its values with the options' own types."""
    from misskey_cli.profiles import choose_profile, permission_warnings

    config, profile = choose_profile(ctx.meta[_META + "config"], ctx.meta[_META + "profile"], os.environ)
    if config is None:
        return {}
    ctx.meta["mkstream.warnings"] = permission_warnings(config)
    if profile is None:
        return {}
    params: dict[str | None, click.Parameter] = {}
    for p in ctx.command.params:
        params.setdefault(p.name, p)  # --format, not the --pretty/--ndjson flags that share its name
    defaults = {}
    for key, value in profile.values.items():
        param = params.get(PROFILE_PARAMS.get(key, key))
        if param is None:
            continue  # an output key, say, for a command that writes no records (doctor)
        try:
            param.type.convert(value, param, ctx)
        except click.BadParameter as exc:
            raise UsageError(f"{config.where(profile, key)}: {key} = {value!r}: {exc.message}") from None
        defaults[str(param.name)] = value
    return defaults


def complete_profiles(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
    from click.shell_completion import CompletionItem

    from misskey_cli.profiles import default_config_path, profile_hosts

    path = ctx.meta.get(_META + "config") or default_config_path(os.environ)
    return [CompletionItem(name, help=host) for name, host in profile_hosts(path).items()
            if name.startswith(incomplete)]


def config_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--config", metavar="PATH", type=click.Path(dir_okay=False), expose_value=False,
                        is_eager=True, callback=profile_callback,
                        help="Config file (default: $XDG_CONFIG_HOME/mkstream/config.toml).")(f)


# ----- option bundles -------------------------------------------------------------------------

# Parameter name -> the heading its option is listed under in --help.
HELP_SECTIONS: dict[str, str] = {}


def apply_bundle(title: str, options: list[Callable[[Any], Any]], f: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(options):
        f = option(f)
    for param in f.__click_params__[-len(options):]:  # type: ignore[attr-defined]
        HELP_SECTIONS[param.name] = title
    return f


class SectionedCommand(click.Command):
    """A command whose --help lists its own options first, then the bundles under headings."""

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        sections: dict[str, list[tuple[str, str]]] = {}
        for param in self.get_params(ctx):
            record = None if isinstance(param, click.Argument) else param.get_help_record(ctx)
            if record is not None:
                sections.setdefault(HELP_SECTIONS.get(str(param.name), "Options"), []).append(record)
        for title, records in sections.items():
            with formatter.section(f"{title} options" if title != "Options" else title):
                formatter.write_dl(records)


def server_options(f: Callable[..., Any]) -> Callable[..., Any]:
    options: list[Callable[[Any], Any]] = [
        click.option("--profile", envvar="MKSTREAM_PROFILE", metavar="NAME", expose_value=False, is_eager=True,
                     callback=profile_callback, shell_complete=complete_profiles,
                     help="Use this [profiles.NAME] of the config file for host, token and output defaults; "
                          "flags and env win over it (default: its default_profile; see 'mkstream profiles'). "
                          "[env: MKSTREAM_PROFILE]"),
        config_option,
        click.option("--host", type=HostType(), envvar="MISSKEY_HOST", metavar="HOST",
                     help="Server: misskey.example, host:port, or an http(s)/ws(s) URL. [env: MISSKEY_HOST]"),
        click.option("--token", envvar="MISSKEY_TOKEN", metavar="TOKEN", show_envvar=False,
                     help="Access token (absent: anonymous). [env: MISSKEY_TOKEN]"),
        click.option("--token-file", metavar="PATH", type=click.Path(dir_okay=False, allow_dash=True),
                     help="Read the token from a file ('-' = stdin)."),
        click.option("--auth", type=click.Choice(AUTH_MODES), default="query", show_default=True,
                     help="Send the token as ?i= (documented form) or an Authorization: Bearer header."),
        click.option("--insecure", is_flag=True, help="Do not verify the server's TLS certificate."),
        click.option("--ca-file", metavar="PATH", type=CaFileType(),
                     help="Verify TLS against this CA bundle."),
        click.option("--proxy", metavar="URL", type=ProxyType(),
                     help="HTTP proxy, or socks5:// with python-socks installed (default: http(s)_proxy, honouring "
                          "no_proxy)."),
        click.option("--demo", is_flag=True,
                     help="Start the built-in simulator on a free loopback port and stream from it "
                          "(logged in as its demo user; --host and --token are ignored)."),
    ]
    return apply_bundle("Server", options, f)


def output_options(f: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("--format", "fmt", type=click.Choice(FORMATS),
                     help="pretty (indented, coloured), ndjson (one compact line), raw (bytes as received), "
                          "line (one readable line per event). Default: pretty on a terminal, else ndjson."),
        click.option("--pretty", "fmt", flag_value="pretty", help="Same as --format pretty."),
        click.option("--ndjson", "fmt", flag_value="ndjson", help="Same as --format ndjson."),
        click.option("--line", "fmt", flag_value="line", help="Same as --format line."),
        click.option("--width", type=click.IntRange(min=20, max=10000), metavar="N",
                     help="Columns a --format line record may use (default: the terminal's; no cut in a pipe)."),
        click.option("--show-cw", is_flag=True, help="--format line: show the text behind a content warning."),
        click.option("--color", type=click.Choice(COLOR_MODES), default="auto", show_default=True,
                     help="Colour pretty and line output (auto honours NO_COLOR and FORCE_COLOR)."),
        click.option("--style", type=StyleType(), default=DEFAULT_STYLE, show_default=True,
                     help="Pygments colour style."),
        click.option("--jq", "filters", multiple=True, metavar="FILTER",
                     help="jq filter; repeat to chain (f1 | f2). A filter may emit 0..n records per frame."),
        click.option("--arg", "jq_args", nargs=2, multiple=True, metavar="NAME VALUE",
                     help="Bind $NAME to a string in the filters."),
        click.option("--argjson", "jq_argjson", nargs=2, multiple=True, metavar="NAME JSON", type=(str, JsonType()),
                     help="Bind $NAME to a JSON value in the filters."),
        click.option("-r", "--raw-output", is_flag=True,
                     help="Write jq string results without quotes (to a terminal, control characters escaped)."),
        click.option("--unsafe-raw", is_flag=True,
                     help="With -r on a terminal, write strings byte for byte, control characters and all."),
        click.option("--timestamps/--no-timestamps", help='Add "ts" (receive time, RFC 3339 UTC) as the first key.'),
        click.option("-o", "--output", metavar="FILE", type=OutputPathType(),
                     help="Append records to FILE instead of stdout ('-' = stdout); a new file is made 0600."),
        click.option("--record", metavar="FILE", type=RecordPathType(),
                     help="Also append every frame exactly as received, with its receive time and what was "
                          "subscribed (never the token), to FILE (FILE.gz: gzip), for 'mkstream replay'."),
        click.option("-q", "--quiet", is_flag=True, help="No notices on stderr (errors, and --stats if asked, still)."),
        click.option("-v", "--verbose", is_flag=True, help="Connection diagnostics on stderr."),
        click.option("--stats", is_flag=True, help="On exit, print frame and record counts to stderr (even with -q)."),
        click.option("--max-backlog", type=SizeType(), default="256M", show_default=True, metavar="SIZE",
                     help="Records held in memory for a reader that is not reading; past it new frames are "
                          "dropped (and backfilled once it catches up)."),
        click.option("--status/--no-status", default=True,
                     help="A self-updating status line on stderr when it is a terminal and the records go elsewhere."),
    ]
    return apply_bundle("Output", options, f)


def run_options(f: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("-n", "--count", type=click.IntRange(min=1), metavar="N", help="Stop after N records."),
        click.option("--duration", type=DURATION, metavar="D", help="Stop after D (30s, 5m, 1h)."),
        click.option("--idle-timeout", type=DURATION, metavar="D", help="Stop when no frame arrives for D."),
        click.option("--no-reconnect", is_flag=True, help="Do not reconnect when the connection is lost."),
        click.option("--max-retries", type=click.IntRange(min=0), metavar="N",
                     help="Give up after N failed reconnects in a row (default: never). "
                          "Given, it also retries the first connection."),
        click.option("--reconnect-delay", type=DURATION, default=0.5, show_default=True, metavar="D",
                     help="First reconnect delay; doubles (with jitter) up to 30s."),
        click.option("--ping-interval", type=DURATION, default=30.0, show_default=True, metavar="D",
                     help="Send a WebSocket ping this often (at least twice per --ping-timeout)."),
        click.option("--ping-timeout", type=DURATION, default=60.0, show_default=True, metavar="D",
                     help="Reconnect when nothing (no frame, no pong) arrives for this long."),
        click.option("--connect-timeout", type=DURATION, default=10.0, show_default=True, metavar="D",
                     help="Give up a connection attempt that takes longer than this."),
        click.option("--ack-timeout", type=DURATION, default=5.0, show_default=True, metavar="D",
                     help="Warn when a channel is not acknowledged within D."),
        click.option("--require-ack", is_flag=True, help="An unacknowledged channel is fatal (exit 7)."),
    ]
    return apply_bundle("Run control", options, f)


def gap_options(f: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("--no-backfill", is_flag=True,
                     help="Do not fetch what a reconnect missed from the HTTP API (timeline channels and main)."),
        click.option("--backfill-max", type=click.IntRange(1, 100_000), default=1000, show_default=True, metavar="N",
                     help="Fetch at most N notes per connection after a reconnect."),
        click.option("--mark-backfill", is_flag=True, help='Add "backfilled": true to records fetched by backfill.'),
        click.option("--dedupe", is_flag=True,
                     help="Write a note seen on several connections (home and local timeline) only once."),
        click.option("--state", "state_file", metavar="FILE", type=click.Path(dir_okay=False, writable=True),
                     help="Keep the last note id per connection in FILE and resume from it: no gap between runs."),
    ]
    return apply_bundle("No gaps", options, f)


# ----- the group ------------------------------------------------------------------------------


# Each command's summary (the first paragraph of its help), so that the group's --help and
# --version need not build every command's options; tests/test_help.py checks them against the
# commands themselves (cli_commands.py).
COMMANDS = {
    "capture": "Capture notes and write their noteUpdated events (reactions, votes, deletion).",
    "channels": "List the channels a Misskey server offers, or show one in detail.",
    "completion": "Print the shell completion script for bash, zsh or fish.",
    "connect": "Connect channels on one socket and write every frame they deliver.",
    "doctor": "Check, step by step, why a stream does not work.",
    "login": "Get a token through MiAuth and keep it in a profile.",
    "logout": "Remove a profile and the token file login made for it.",
    "profiles": "List the profiles in the config file: name, host, auth mode, token source.",
    "replay": "Replay recordings through the output options, as if the frames arrived now.",
    "send": "Connect CHANNEL, send it one message, and write what arrives.",
    "serve": "Run the built-in Misskey-compatible streaming simulator (and its HTTP API).",
}


def all_commands() -> MutableMapping[str, click.Command]:
    """Build (once) and return every command: importing cli_commands registers them on ``main``."""
    import misskey_cli.cli_commands  # noqa: F401

    return main.commands


class MkstreamGroup(click.Group):
    """Loads its commands when one is needed, and reports click's usage errors the way mkstream
    reports its own: one line, one hint."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in COMMANDS:
            all_commands()
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        limit = formatter.width - 6 - max(map(len, COMMANDS))
        # A bare Command with the same help shortens it exactly as the real one would.
        rows = [(name, click.Command(name, help=COMMANDS[name]).get_short_help_str(limit)) for name in sorted(COMMANDS)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def _main_shell_completion(self, *args: Any, **kwargs: Any) -> None:
        register_bash_completion()  # only when completing: importing it would slow every start-up
        super()._main_shell_completion(*args, **kwargs)

    def main(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["standalone_mode"] = False
        try:
            code = super().main(*args, **kwargs)
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
        except click.Abort:
            sys.exit(ExitCode.SIGINT)
        except click.UsageError as exc:
            if type(exc).__name__ == "NoArgsIsHelpError":  # `mkstream` alone: the help, as click shows it
                exc.show()
                sys.exit(exc.exit_code)
            hint = None
            if exc.ctx is not None:
                names, ctx = [], exc.ctx
                while ctx.parent is not None:
                    names.append(ctx.info_name or "")
                    ctx = ctx.parent
                hint = f"see '{' '.join(['mkstream', *reversed(names)])} --help'"
            fail(exc.format_message(), ExitCode.USAGE, hint)
        except click.ClickException as exc:
            fail(exc.format_message(), exc.exit_code)
        sys.exit(code if isinstance(code, int) else 0)


def fail(message: str, code: int = ExitCode.USAGE, hint: str | None = None) -> NoReturn:
    """The one way a command reports an error before anything ran: a line (and a hint), an exit."""
    from misskey_cli.notices import one_line

    click.echo(f"mkstream: error: {one_line(message)}", err=True)
    if hint:
        click.echo(f"mkstream: {hint}", err=True)
    sys.exit(code)


@click.group(cls=MkstreamGroup, context_settings=CONTEXT_SETTINGS, epilog="""\b
Examples:
  mkstream connect localTimeline --demo -n 3
  mkstream channels hashtag
  mkstream connect 'hashtag?q=misskey' homeTimeline --profile work --jq .body.body.text -r""")
@click.version_option(__version__, "-V", "--version", prog_name="mkstream")
def main() -> None:
    """Watch and debug the Misskey streaming API.

    Opens the WebSocket, connects channels and note captures, and writes every frame the server
    sends, optionally through jq, as coloured JSON on a terminal or NDJSON in a pipe.

    Run 'mkstream channels' for the channels and their params, 'mkstream COMMAND --help' for a
    command's options, and 'mkstream profiles --help' to keep servers and tokens in a config file.
    """


def build_connections(specs: tuple[ChannelSpec, ...], assignments: tuple[tuple[str, str], ...],
                      params_json: dict[str, Any] | None,
                      logged_in: bool) -> tuple[tuple[ConnectionRequest, ...], tuple[str, ...]]:
    """Type params per channel (-p applies to every channel), validate them: (connections, warnings)."""
    from misskey_cli.channels import SpecError, check_connection, check_param_json, parse_param_value
    from misskey_cli.settings import ConnectionRequest

    connections, warnings = [], []
    for spec in specs:
        try:
            params = {key: check_param_json(spec.channel, key, value) for key, value in (params_json or {}).items()}
            for key, text in assignments:
                params[key] = parse_param_value(spec.channel, key, text)
            params.update(spec.params)
            warnings += check_connection(spec.channel, params, logged_in)
        except SpecError as exc:
            raise click.UsageError(str(exc)) from None
        connections.append(ConnectionRequest(spec.channel, spec.connection_id, params))
    return tuple(connections), tuple(warnings)


def stream_command(f: Callable[..., Any]) -> Callable[..., Any]:
    return server_options(output_options(run_options(gap_options(f))))


def explicit(ctx: click.Context, name: str) -> bool:
    """The user set this option on the command line or through its environment variable."""
    return ctx.get_parameter_source(name) in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)


def stream_settings(kw: dict[str, Any], request: Any) -> StreamSettings:
    """The settings of a streaming command from its parsed options; conflicts are usage errors."""
    from misskey_cli import settings as s

    ctx = click.get_current_context()
    if kw["token"] and kw["token_file"] and explicit(ctx, "token") and explicit(ctx, "token_file"):
        raise click.UsageError("--token and --token-file both give a token: keep one")
    if kw["no_reconnect"] and kw["max_retries"] is not None:
        raise click.UsageError("--no-reconnect and --max-retries contradict each other: keep one")
    check_output_options(kw)
    if kw["state_file"] and kw["no_backfill"]:
        raise click.UsageError("--state resumes by backfilling what happened between runs: drop --no-backfill")
    # A token from the flag or the environment beats a token_file from the profile, and the other way round.
    token_file = kw["token_file"]
    token = kw["token"]
    if token and token_file:
        if explicit(ctx, "token"):
            token_file = None
        else:
            token = None
    ping_timeout = kw["ping_timeout"]
    return s.StreamSettings(
        server=s.ServerSettings(kw["host"], s.TokenSource(token or None, token_file), kw["auth"], kw["insecure"],
                                kw["ca_file"], kw["proxy"], kw["demo"]),
        output=output_settings(kw),
        notices=s.NoticeSettings(kw["quiet"], kw["verbose"], kw["stats"], kw["status"]),
        limits=s.Limits(kw["count"], kw["duration"], kw["idle_timeout"]),
        # A path is only known dead after a ping went unanswered: ping at least twice per timeout.
        liveness=s.Liveness(min(kw["ping_interval"], ping_timeout / 2), ping_timeout, kw["ack_timeout"],
                            kw["require_ack"], kw["connect_timeout"]),
        reconnect=s.Reconnect(not kw["no_reconnect"], kw["max_retries"], kw["reconnect_delay"]),
        request=request,
        gaps=s.Gaps(not kw["no_backfill"], kw["backfill_max"], kw["mark_backfill"], kw["dedupe"], kw["state_file"]),
    )


def check_output_options(kw: dict[str, Any]) -> None:
    if kw["quiet"] and kw["verbose"]:
        raise click.UsageError("-q/--quiet and -v/--verbose contradict each other: keep one")
    if kw["raw_output"] and not kw["filters"]:
        raise click.UsageError("-r/--raw-output applies to --jq results: add a --jq filter")


def output_settings(kw: dict[str, Any]) -> Any:
    from misskey_cli.settings import OutputSettings

    path = None if kw["output"] in (None, "-") else kw["output"]
    if kw["record"] is not None and path is not None and os.path.abspath(kw["record"]) == os.path.abspath(path):
        raise click.UsageError("--record and -o name the same file: give the recording a file of its own")
    return OutputSettings(kw["fmt"], kw["color"], kw["style"], tuple(kw["filters"]),
                          tuple(kw["jq_args"]) + tuple(kw["jq_argjson"]), kw["raw_output"], kw["timestamps"],
                          path, kw["width"], kw["show_cw"], kw["unsafe_raw"], max_backlog=kw["max_backlog"],
                          record=kw["record"])


def logged_in(kw: dict[str, Any]) -> bool:
    return bool(kw["demo"] or kw["token"] or kw["token_file"])


def run(settings: StreamSettings, warnings: tuple[str, ...] = ()) -> None:
    """Hand the settings to the app and exit with its status."""
    from misskey_cli.app import Environment, run_stream

    ctx = click.get_current_context()
    if not settings.notices.quiet:
        for warning in (*ctx.meta.get("mkstream.warnings", ()), *warnings):
            click.echo(f"mkstream: warning: {warning}", err=True)
    sys.exit(run_stream(settings, Environment.from_process()))


# ----- commands -------------------------------------------------------------------------------


def completion_script(shell: str) -> str:
    from click.shell_completion import get_completion_class

    register_bash_completion()
    cls = get_completion_class(shell)
    assert cls is not None
    return cls(main, {}, "mkstream", "_MKSTREAM_COMPLETE").source()


# click's bash script, with the words as the user typed them: bash splits the word being completed
# at COMP_WORDBREAKS (= and :), which KEY=VALUE params and NAME:ID channels contain, so the script
# splits COMP_LINE at blanks itself, hands click whole words, and gives bash back only the part
# after the last break character (what bash replaces). A completion ending in = gets no space.
BASH_TEMPLATE = """\
%(complete_func)s() {
    local IFS=$'\\n'
    local response
    local -a words
    local cword prefix=""

    if [[ -n ${COMP_LINE+set} ]]; then
        local line="${COMP_LINE:0:${COMP_POINT:-${#COMP_LINE}}}"
        IFS=$' \\t' read -r -a words <<< "$line"
        [[ -z $line || $line == *[[:blank:]] ]] && words+=("")
        cword=$(( ${#words[@]} - 1 ))
        local cur="${words[cword]}" fragment="${COMP_WORDS[COMP_CWORD]}"
        [[ $cur == *"$fragment" ]] && prefix="${cur%%"$fragment"}"
    else
        words=("${COMP_WORDS[@]}")
        cword=$COMP_CWORD
    fi

    response=$(env COMP_WORDS="${words[*]}" COMP_CWORD=$cword %(complete_var)s=bash_complete $1)

    for completion in $response; do
        IFS=',' read type value <<< "$completion"

        if [[ $type == 'dir' ]]; then
            COMPREPLY=()
            compopt -o dirnames
        elif [[ $type == 'file' ]]; then
            COMPREPLY=()
            compopt -o default
        elif [[ $type == 'plain' ]]; then
            [[ $value == *= ]] && compopt -o nospace
            COMPREPLY+=("${value#"$prefix"}")
        fi
    done

    return 0
}

%(complete_func)s_setup() {
    complete -o nosort -F %(complete_func)s %(prog_name)s
}

%(complete_func)s_setup;
"""


def register_bash_completion() -> None:
    """Use the word-break-aware bash script for ``completion bash`` and ``_MKSTREAM_COMPLETE=bash_source``."""
    from click.shell_completion import BashComplete, add_completion_class

    class Bash(BashComplete):
        source_template = BASH_TEMPLATE

    add_completion_class(Bash, "bash")


if __name__ == "__main__":  # pragma: no cover
    main()
