"""Option bundles and settings builders shared by the commands: click definitions only.

Profiles become click's ``default_map`` (flag > environment > profile > default); the bundles
(server, output, run control, gaps) are plain decorators whose options --help lists under
headings; ``stream_settings`` turns parsed options into the frozen settings ``run/app.py`` runs.
Usage errors, from click or from mkstream, look the same: ``mkstream: error: ...`` and at most one hint.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn

import click
from click.core import ParameterSource

from misskey_cli.core.choices import AUTH_MODES, COLOR_MODES, DEFAULT_STYLE, FORMATS, PROFILE_KEYS
from misskey_cli.errors import ExitCode, UsageError

if TYPE_CHECKING:
    from misskey_cli.core.channels import ChannelSpec
    from misskey_cli.run.settings import ConnectionRequest, ServerSettings, StreamSettings

from misskey_cli.cli.params import (
    DURATION,
    CaFileType,
    HostType,
    JsonType,
    OutputPathType,
    ProxyType,
    RecordPathType,
    SizeType,
    StyleType,
)

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
    from misskey_cli.profiles.config_file import choose_profile, permission_warnings

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
            from misskey_cli.net.endpoint import without_password

            shown = without_password(value) if isinstance(value, str) else value  # a host's, a proxy's
            raise UsageError(f"{config.where(profile, key)}: {key} = {shown!r}: {exc.message}") from None
        defaults[str(param.name)] = value
    return defaults


def complete_profiles(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
    from click.shell_completion import CompletionItem

    from misskey_cli.profiles.config_file import default_config_path, profile_hosts

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
                     help="With -r or --format raw on a terminal, write strings and frames byte for byte, "
                          "control characters and all."),
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



def fail(message: str, code: int = ExitCode.USAGE, hint: str | None = None) -> NoReturn:
    """The one way a command reports an error before anything ran: a line (and a hint), an exit."""
    from misskey_cli.output.notices import stderr_notices

    notices = stderr_notices()
    notices.error(message)
    if hint:
        notices.info(hint)
    sys.exit(code)


def build_connections(specs: tuple[ChannelSpec, ...], assignments: tuple[tuple[str, str], ...],
                      params_json: dict[str, Any] | None,
                      logged_in: bool) -> tuple[tuple[ConnectionRequest, ...], tuple[str, ...]]:
    """Type params per channel (-p applies to every channel), validate them: (connections, warnings)."""
    from misskey_cli.core.channels import SpecError, check_connection, check_param_json, parse_param_value
    from misskey_cli.run.settings import ConnectionRequest

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
    from misskey_cli.run import settings as s

    if kw["no_reconnect"] and kw["max_retries"] is not None:
        raise click.UsageError("--no-reconnect and --max-retries contradict each other: keep one")
    check_output_options(kw)
    if kw["state_file"] and kw["no_backfill"]:
        raise click.UsageError("--state resumes by backfilling what happened between runs: drop --no-backfill")
    ping_timeout = kw["ping_timeout"]
    return s.StreamSettings(
        server=server_settings(kw),
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


def server_settings(kw: dict[str, Any]) -> ServerSettings:
    """The server settings from the server options; the one place the token's precedence is decided.

    A token from the flag or the environment beats a token_file from the profile, and the other way
    round; both given explicitly is a usage error.
    """
    from misskey_cli.run import settings as s

    ctx = click.get_current_context()
    token, token_file = kw["token"], kw["token_file"]
    if token and token_file:
        if explicit(ctx, "token") and explicit(ctx, "token_file"):
            raise click.UsageError("--token and --token-file both give a token: keep one")
        if explicit(ctx, "token"):
            token_file = None
        else:
            token = None
    return s.ServerSettings(kw["host"], s.TokenSource(token or None, token_file), kw["auth"], kw["insecure"],
                            kw["ca_file"], kw["proxy"], kw["demo"])


def check_output_options(kw: dict[str, Any]) -> None:
    if kw["quiet"] and kw["verbose"]:
        raise click.UsageError("-q/--quiet and -v/--verbose contradict each other: keep one")
    if kw["raw_output"] and not kw["filters"]:
        raise click.UsageError("-r/--raw-output applies to --jq results: add a --jq filter")


def output_settings(kw: dict[str, Any]) -> Any:
    from misskey_cli.run.settings import OutputSettings

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
    from misskey_cli.output.notices import stderr_notices
    from misskey_cli.run.app import Environment, run_stream

    ctx = click.get_current_context()
    notices = stderr_notices(quiet=settings.notices.quiet)
    for warning in (*ctx.meta.get("mkstream.warnings", ()), *warnings):
        notices.warn(warning)
    sys.exit(run_stream(settings, Environment.from_process()))


