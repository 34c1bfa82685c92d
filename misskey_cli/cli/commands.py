"""The commands of the command line: click definitions only, loaded when a command is run.

``params.py`` holds the parameter types and ``options.py`` the option bundles; the commands live
here so that ``mkstream --version`` and ``mkstream --help`` start without building every command's
options (``group.py`` lists them from its summary table and adds ``COMMANDS`` when one runs).
Each command builds its settings and calls one entry point of the library.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from misskey_cli.cli.options import (
    SectionedCommand,
    build_connections,
    check_output_options,
    complete_profiles,
    explicit,
    fail,
    logged_in,
    output_options,
    output_settings,
    run,
    server_options,
    server_settings,
    stream_command,
    stream_settings,
)
from misskey_cli.cli.params import (
    CONTEXT_SETTINGS,
    DURATION,
    CaFileType,
    ChannelSpecType,
    HostType,
    JsonType,
    NoteIdType,
    ParamAssignmentType,
    ProxyType,
    SpeedType,
    TimeBoundType,
)
from misskey_cli.core.choices import COLOR_MODES, FORMATS, PROFILE_KEYS
from misskey_cli.errors import ExitCode, UsageError
from misskey_cli.run.live_notes import MAX_CAPTURE_SEEN


@click.command(cls=SectionedCommand, context_settings=CONTEXT_SETTINGS, epilog="""\b
Examples:
  mkstream connect localTimeline --demo -n 3 --ndjson | jq -r .body.body.text
  mkstream connect 'hashtag?q=misskey,fediverse' homeTimeline --host misskey.example --token-file ~/.mk-token
  mkstream connect main --stdin --jq 'select(.body.type == "notification")'""")
@click.argument("channels", nargs=-1, type=ChannelSpecType(), metavar="CHANNEL...")
@click.option("-p", "--param", "assignments", multiple=True, type=ParamAssignmentType(), metavar="KEY=VALUE",
              help="A channel param, applied to every channel named (typed by the channel catalogue).")
@click.option("--params", "params_json", type=JsonType(want_object=True), metavar="JSON",
              help="All params as one JSON object.")
@click.option("--capture", "captures", multiple=True, metavar="NOTE_ID", type=NoteIdType(),
              help="Also capture this note (subNote).")
@click.option("--capture-seen", type=click.IntRange(1, MAX_CAPTURE_SEEN), metavar="N",
              help="Capture every note the channels deliver (and the note a renote carries), as a timeline "
                   f"client does; hold at most N (1..{MAX_CAPTURE_SEEN}), releasing the note seen longest ago. "
                   "--capture notes are never released.")
@click.option("--stdin", "stdin_commands", is_flag=True,
              help="Read live commands from stdin: connect CHANNEL[:ID][?k=v], disconnect ID, sub NOTE_ID, "
                   "unsub NOTE_ID, send ID TYPE [BODY_JSON], help, or a raw JSON frame. "
                   "At the end of input the stream goes on.")
@stream_command
def connect(channels, assignments, params_json, captures, capture_seen, stdin_commands, **kw):
    """Connect channels on one socket and write every frame they deliver.

    CHANNEL is a name (localTimeline), optionally with a connection id and params in query form:
    'userList:work?listId=9abc&withFiles=true', 'hashtag?q=misskey' (q also takes [["a","b"]]
    lists, a,b for OR and a+b for AND). Repeated channels get ids NAME-2, NAME-3. Run
    'mkstream channels' for the catalogue.
    """
    from misskey_cli.run.settings import Request

    if not channels and not captures and not stdin_commands:
        raise click.UsageError("name at least one CHANNEL (or use --capture or --stdin); see 'mkstream channels'")
    connections, warnings = build_connections(channels, assignments, params_json, logged_in(kw))
    if capture_seen is not None and not channels and not stdin_commands:
        raise click.UsageError("--capture-seen captures the notes channels deliver: name at least one CHANNEL")
    run(stream_settings(kw, Request(connections, tuple(dict.fromkeys(captures)), stdin_commands=stdin_commands,
                                    capture_seen=capture_seen)), warnings)


@click.command(cls=SectionedCommand, context_settings=CONTEXT_SETTINGS, epilog="""\b
Examples:
  mkstream capture 9xyzabcdef012345 --host misskey.example
  mkstream capture 9xyzabcdef012345 9xyzabcdef012346 --jq 'select(.body.type == "reacted")' --profile work""")
@click.argument("note_ids", nargs=-1, required=True, metavar="NOTE_ID...", type=NoteIdType())
@click.option("--stdin", "stdin_commands", is_flag=True, help="Read live commands from stdin (see connect --help).")
@stream_command
def capture(note_ids, stdin_commands, **kw):
    """Capture notes and write their noteUpdated events (reactions, votes, deletion).

    Each note is shown first on stderr (author, start of text, reactions; from notes/show), so a
    person knows what they are watching.
    """
    from misskey_cli.run.settings import Request

    run(stream_settings(kw, Request(captures=tuple(dict.fromkeys(note_ids)), stdin_commands=stdin_commands,
                                    show_captured=True)))


@click.command(cls=SectionedCommand, context_settings=CONTEXT_SETTINGS, epilog="""\b
Examples:
  mkstream send queueStats requestLog '{"id":"a","length":10}' -n 1 --demo
  mkstream send serverStats requestLog '{"id":"a","length":50}' -n 1 --host misskey.example""")
@click.argument("channel", type=ChannelSpecType())
@click.argument("message_type", metavar="TYPE")
@click.argument("body", type=JsonType(), required=False, metavar="[BODY_JSON]")
@click.option("-p", "--param", "assignments", multiple=True, type=ParamAssignmentType(), metavar="KEY=VALUE",
              help="A channel param (typed by the channel catalogue).")
@click.option("--params", "params_json", type=JsonType(want_object=True), metavar="JSON",
              help="All params as one JSON object.")
@click.option("--force", is_flag=True,
              help="Send a message that changes state on the server (chat read, reversi moves).")
@stream_command
def send(channel, message_type, body, assignments, params_json, force, **kw):
    """Connect CHANNEL, send it one message, and write what arrives.

    The message is {"type":"channel","body":{"id":ID,"type":TYPE,"body":BODY}}; BODY defaults to {}.
    Use -n, --duration or --idle-timeout to say when to stop.
    """

    from misskey_cli.core.channels import SpecError, check_send
    from misskey_cli.run.settings import Request, SendRequest

    try:
        warnings = tuple(check_send(channel.channel, message_type, force))
    except SpecError as exc:
        raise click.UsageError(str(exc)) from None
    connections, more = build_connections((channel,), assignments, params_json, logged_in(kw))
    cid = channel.connection_id or channel.channel
    sends = (SendRequest(cid, message_type, {} if body is None else body),)
    run(stream_settings(kw, Request(connections, sends=sends)), warnings + more)


@click.command(cls=SectionedCommand, context_settings=CONTEXT_SETTINGS, epilog="""\b
Examples:
  mkstream connect localTimeline --demo -n 50 --record s.ndjson >/dev/null; mkstream replay s.ndjson -n 5
  mkstream replay day.ndjson.gz --speed 10 --channel localTimeline --since +1h --until +2h --line
  mkstream replay log.ndjson --since 2026-11-27T19:00:00Z --until 20m --timestamps --format line""")
@click.argument("files", nargs=-1, required=True, metavar="FILE...",
                type=click.Path(exists=True, dir_okay=False, allow_dash=True))
@click.option("--speed", type=SpeedType(), metavar="X",
              help="Keep the recorded gaps between frames, divided by X (1 = as recorded). "
                   "Default: as fast as possible.")
@click.option("--channel", "connection_ids", multiple=True, metavar="ID",
              help="Only channel frames of the connection with this id (repeatable); leaves out broadcasts, "
                   "noteUpdated and frames that are not JSON.")
@click.option("--since", type=TimeBoundType(), metavar="TIME",
              help="Only frames received at TIME or later: RFC 3339 (2026-11-27T19:28:42Z; no offset = UTC), "
                   "a duration ago (10m), or a duration after the input starts (+10m: its header's time, "
                   "else its first frame's).")
@click.option("--until", type=TimeBoundType(), metavar="TIME", help="Only frames received before TIME (as --since).")
@click.option("-n", "--count", type=click.IntRange(min=1), metavar="N", help="Stop after N records.")
@click.option("--duration", type=DURATION, metavar="D", help="Stop after D (30s, 5m, 1h).")
@output_options
def replay(files, speed, connection_ids, since, until, count, duration, **kw):
    """Replay recordings through the output options, as if the frames arrived now.

    FILE is a recording made with --record (gzip or not), or NDJSON frames (mkstream's --ndjson
    output, with or without --timestamps, or frames captured elsewhere); '-' is stdin. Files are
    replayed one after another. --timestamps shows the recorded receive times. A bad line is a
    warning naming the file and line, and the rest is replayed.
    """
    from misskey_cli.run.app import Environment
    from misskey_cli.run.replay import run_replay
    from misskey_cli.run.settings import Limits, NoticeSettings, ReplaySettings

    check_output_options(kw)
    if files.count("-") > 1:
        raise click.UsageError("- (stdin) can be read once: name it once")
    settings = ReplaySettings(tuple(files), output_settings(kw),
                              NoticeSettings(kw["quiet"], kw["verbose"], kw["stats"], kw["status"]),
                              Limits(count, duration), speed, tuple(connection_ids), since, until)
    sys.exit(run_replay(settings, Environment.from_process()))


@click.command(context_settings=CONTEXT_SETTINGS, epilog="""\b
Examples:
  mkstream channels
  mkstream channels hashtag
  mkstream channels --json | jq -r '.[].name'""")
@click.argument("name", required=False, type=ChannelSpecType(), metavar="[CHANNEL]")
@click.option("--json", "as_json", is_flag=True, help="The catalogue as JSON.")
def channels(name, as_json):
    """List the channels a Misskey server offers, or show one in detail."""
    from misskey_cli.core.channels import CATALOGUE, CHANNELS, did_you_mean
    from misskey_cli.output.catalogue_view import catalogue_json, channel_detail, channel_table

    if name is not None and name.channel not in CATALOGUE:
        raise click.BadParameter(f"unknown channel {name.channel}{did_you_mean(name.channel, list(CATALOGUE))}",
                                 param_hint="CHANNEL")
    selected = [CATALOGUE[name.channel]] if name is not None else list(CHANNELS)
    if as_json:
        click.echo(catalogue_json(selected))
    elif name is not None:
        click.echo(channel_detail(selected[0]))
    else:
        click.echo(channel_table(selected))


@click.command(context_settings=CONTEXT_SETTINGS, epilog="""\b
Examples:
  mkstream profiles
  mkstream connect homeTimeline --profile work
  MKSTREAM_PROFILE=local mkstream connect localTimeline --ndjson""")
@click.option("--config", "config_path", metavar="PATH", type=click.Path(dir_okay=False),
              help="Config file (default: $XDG_CONFIG_HOME/mkstream/config.toml).")
def profiles(config_path):
    """List the profiles in the config file: name, host, auth mode, token source.

    A profile names a server and the defaults to use with it; pick one with --profile NAME
    (or MKSTREAM_PROFILE), or set default_profile. Flags and environment variables win over the
    profile. The token itself is never shown. The file is TOML:

    \b
      default_profile = "work"
      [profiles.work]
      host = "misskey.example"
      token_file = "~/.config/mkstream/work.token"   # or: token = "..."
      format = "ndjson"                              # pretty, ndjson, raw
      [profiles.local]
      host = "http://localhost:3000"
      timestamps = true

    Keys: {keys}.
    Keep a file that holds a token private (chmod 600): mkstream warns when others can read it.
    """
    from misskey_cli.output.notices import stderr_notices
    from misskey_cli.profiles.config_file import (
        choose_profile,
        default_config_path,
        permission_warnings,
        profile_table,
    )

    try:
        config, _ = choose_profile(config_path, None, os.environ)
    except UsageError as exc:
        fail(exc.message, exc.exit_code)
    notices = stderr_notices()
    if config is None:
        notices.info(f"no config file at {default_config_path(os.environ)}; "
                     "'mkstream profiles --help' shows the format")
        return
    for warning in permission_warnings(config):
        notices.warn(warning)
    click.echo(profile_table(config))


# The key list comes from the one table of profile keys (choices.PROFILE_KEYS).
profiles.help = (profiles.help or "").replace("{keys}", "; ".join(f"{key} ({text})"
                                                                 for key, _, _, text in PROFILE_KEYS))


def serve_banner(sim: Any, yours: dict[str, str], refused: tuple[str, ...], replay: Any, faults: Any) -> list[str]:
    """What ``serve`` says on start: where it listens, the tokens, the recording, the faults."""
    from misskey_cli.simulator import DEFAULT_SUSPENDED_TOKENS, DEFAULT_TOKENS

    lines = [f"simulator listening on {sim.url} (connect with --host {sim.http_url})"]
    # The built-in tokens are public test fixtures; tokens given with --token are not echoed.
    built_in = ", ".join(f"{token} ({user})" for token, user in DEFAULT_TOKENS.items() if token not in yours)
    suspended = ", ".join(t for t in refused if t in DEFAULT_SUSPENDED_TOKENS)
    more = len([t for t in refused if t not in DEFAULT_SUSPENDED_TOKENS])
    lines.append(f"built-in tokens: {built_in}; suspended (refused with 403): {suspended or 'none'}"
                 f"{f' and {more} of yours' if more else ''}; anonymous connections work too")
    if yours:
        lines.append(f"and {len(yours)} token(s) of yours, as {', '.join(yours.values())}")
    lines.append(f"HTTP API on {sim.http_url}/api/ (e.g. POST {sim.http_url}/api/notes/local-timeline)")
    if replay is not None:
        pace = f"at {replay.speed:g}x the recorded pace" if replay.speed is not None else "as fast as clients take it"
        lines.append(f"serving {replay.path} {pace}, {'in a loop' if replay.loop else 'once'}, "
                     "from the first subscription")
    if faults.active:
        lines.append(f"faults: {faults.describe()}")
    return lines


class RateType(click.ParamType):
    """``--rate``: generated notes per second, a finite number from 0 to 1000."""

    name = "notes_per_s"
    MAX = 1000.0

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        try:
            rate = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not 0 <= rate <= self.MAX:  # NaN fails too
            self.fail(f"{value!r} is out of range: give a rate from 0 to {self.MAX:g} notes per second", param, ctx)
        return rate


class CloseEveryType(click.ParamType):
    """``--close-every D[:CODE]``: a duration and the close code to send (default 1001, going away)."""

    name = "d[:code]"
    SENDABLE = (*range(1000, 1004), *range(1007, 1015), *range(3000, 5000))  # RFC 6455 7.4

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> tuple[float, int]:
        if isinstance(value, tuple):
            return value
        text, _, code_text = str(value).partition(":")
        seconds = DURATION.convert(text, param, ctx)
        if not code_text:
            return seconds, 1001
        if not code_text.isdigit() or int(code_text) not in self.SENDABLE:
            self.fail(f"{code_text!r} is not a close code a server may send (1000-1003, 1007-1014, 3000-4999)",
                      param, ctx)
        return seconds, int(code_text)


@click.command(context_settings=CONTEXT_SETTINGS, epilog="""\b
Examples:
  mkstream serve --port 3000 --rate 5 --token secret=alice
  mkstream serve --replay day.ndjson.gz --speed 1 --loop
  mkstream serve --drop-every 20s --freeze-after 45s --inject bad-frames.ndjson --refuse 2""")
@click.option("--host", "bind_host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=3000, show_default=True, type=click.IntRange(0, 65535), help="Port (0 = any free).")
@click.option("--rate", default=2.0, show_default=True, type=RateType(), metavar="NOTES_PER_S",
              help="Generated timeline notes per second (0 to 1000).")
@click.option("--token", "tokens", multiple=True, metavar="TOKEN[=USER]",
              help="Accept this token (as USER, default user1, user2...). The built-in tokens are listed on start.")
@click.option("--suspended-token", "suspended", multiple=True, metavar="TOKEN",
              help="A token whose account is suspended (handshake answered 403), besides tok-suspended.")
@click.option("--replay", "replay_path", metavar="FILE", type=click.Path(exists=True, dir_okay=False),
              help="Serve this recording (--record, or NDJSON frames) instead of generated traffic: each "
                   "client connection gets the recorded frames of its channel, with its own connection id.")
@click.option("--speed", type=SpeedType(), metavar="X",
              help="--replay: keep the recorded gaps, divided by X (default: as fast as clients take them).")
@click.option("--loop", is_flag=True, help="--replay: start over at the end of the recording.")
@click.option("--drop-every", type=DURATION, metavar="D",
              help="Drop every connection (no close frame, like a crash) every D.")
@click.option("--close-every", type=CloseEveryType(), metavar="D[:CODE]",
              help="Close every connection with a close frame every D (code 1001 unless given).")
@click.option("--freeze-after", type=DURATION, metavar="D",
              help="Each connection stops answering (pings included) D after it opened.")
@click.option("--refuse", type=click.IntRange(min=1), metavar="N", help="Answer the next N handshakes with 503.")
@click.option("--inject", "inject_path", metavar="FILE", type=click.Path(exists=True, dir_okay=False),
              help="Send these frames to every connection once it is open: NDJSON frames, or a recording "
                   "(whose text, bytes and binary lines give frames that are not JSON).")
def serve(bind_host, port, rate, tokens, suspended, replay_path, speed, loop, drop_every, close_every,
          freeze_after, refuse, inject_path):
    """Run the built-in Misskey-compatible streaming simulator (and its HTTP API)."""
    from misskey_cli.output.notices import stderr_notices
    from misskey_cli.simulator import DEFAULT_SUSPENDED_TOKENS, DEFAULT_TOKENS
    from misskey_cli.simulator import serve as run_server
    from misskey_cli.simulator.knobs import Faults
    from misskey_cli.simulator.replay import ReplayOptions

    ctx = click.get_current_context()
    if replay_path is None and (speed is not None or loop):
        raise click.UsageError("--speed and --loop pace a recording: add --replay FILE")
    if replay_path is not None and explicit(ctx, "rate"):
        raise click.UsageError("--rate makes generated traffic, --replay serves a recording instead: keep one")
    table = dict(DEFAULT_TOKENS)
    yours: dict[str, str] = {}
    for n, item in enumerate(tokens, 1):
        token, _, user = item.partition("=")
        if not token:
            raise click.BadParameter(f"{item!r}: expected TOKEN or TOKEN=USER", param_hint="--token")
        table[token] = yours[token] = user or f"user{n}"
    refused = tuple(t for t in dict.fromkeys((*DEFAULT_SUSPENDED_TOKENS, *suspended)) if t not in yours)
    replay = ReplayOptions(replay_path, speed, loop) if replay_path is not None else None
    faults = Faults(drop_every, close_every[0] if close_every else None, close_every[1] if close_every else 1001,
                    freeze_after, refuse or 0, inject_path)

    notices = stderr_notices()

    def ready(sim: Any) -> None:
        for line in serve_banner(sim, yours, refused, replay, faults):
            notices.info(line)

    try:
        run_server(bind_host, port, rate, table, refused, ready, replay=replay, faults=faults, warn=notices.warn)
    except OSError as exc:
        notices.error(f"cannot listen on {bind_host}:{port}: {exc.strerror or exc}")
        sys.exit(ExitCode.CONNECT_FAILED)
    except KeyboardInterrupt:
        sys.exit(ExitCode.SIGINT)


@click.command(context_settings=CONTEXT_SETTINGS, epilog="""\b
Examples:
  mkstream login misskey.example
  mkstream login http://localhost:3000 --profile local --no-browser
  mkstream login misskey.example --permission read:admin:stream --force""")
@click.argument("host", type=HostType())
@click.option("--profile", "profile_name", metavar="NAME",
              help="Name of the profile to write (default: the host, e.g. misskey.example).")
@click.option("--config", "config_path", metavar="PATH", type=click.Path(dir_okay=False),
              help="Config file to add the profile to (default: $XDG_CONFIG_HOME/mkstream/config.toml).")
@click.option("--permission", "permissions", multiple=True, metavar="P",
              help="Also ask for permission P (repeat, or a,b). Default: read:account, read:notifications, "
                   "read:chat; the admin channel needs read:admin:stream.")
@click.option("--no-default-permissions", is_flag=True,
              help="Ask only for the --permission ones (read:account must be among them).")
@click.option("--no-browser", is_flag=True, help="Only print the approval URL; do not open a browser.")
@click.option("--timeout", type=DURATION, default=300.0, metavar="D",
              help="Give up when the page is not approved within D (default: 5m).")
@click.option("--force", is_flag=True, help="Replace a profile of the same name (and its token file).")
@click.option("--insecure", is_flag=True, help="Do not verify the server's TLS certificate.")
@click.option("--ca-file", metavar="PATH", type=CaFileType(), help="Verify TLS against this CA bundle (kept in "
                                                                     "the profile).")
@click.option("--proxy", metavar="URL", type=ProxyType(), help="HTTP proxy for the API calls (kept in the profile "
                                                               "unless it has a password).")
# Polling every 2 s is MiAuth's usual pace; tests poll faster.
@click.option("--poll-interval", type=DURATION, default=2.0, envvar="MKSTREAM_LOGIN_POLL", hidden=True)
def login(host, profile_name, config_path, permissions, no_default_permissions, no_browser, timeout, force, insecure,
          ca_file, proxy, poll_interval):
    """Get a token through MiAuth and keep it in a profile.

    Prints (and, on a desktop, opens) the server's approval page; approve mkstream there while
    logged in, and mkstream receives a token, checks it, saves it in a file of its own
    (0600, beside config.toml) and adds a [profiles.NAME] table for it, keeping the rest of the
    config file and its comments. The first profile becomes default_profile, so afterwards
    'mkstream connect homeTimeline' needs no other option. Only read permissions are asked for.

    Exit status: 0 logged in, 2 usage (the profile exists: add --force), 3 the server cannot be
    reached, offers no MiAuth, or the page was not approved in time, 4/5 the new token does not
    work, 130 interrupted (nothing is written).
    """
    from misskey_cli.profiles.login import LoginSettings, LoginTerminal, choose_permissions, run_login
    from misskey_cli.run.app import Environment

    if profile_name is not None and (not profile_name.strip() or not profile_name.isprintable()):
        raise click.BadParameter(f"{profile_name!r} is not a profile name", param_hint="--profile")
    try:
        chosen = choose_permissions(permissions, not no_default_permissions)
    except UsageError as exc:
        raise click.BadParameter(exc.message, param_hint="--permission") from None
    env = Environment.from_process()
    settings = LoginSettings(host, profile_name, chosen, not no_browser, timeout, force, config_path, poll_interval,
                             ca_file, insecure, proxy)
    sys.exit(run_login(settings, LoginTerminal(env.stderr, env.stdout_isatty, env.stderr_isatty, env.environ)))


@click.command(context_settings=CONTEXT_SETTINGS, epilog="""\b
Examples:
  mkstream logout
  mkstream logout --profile work""")
@click.option("--profile", "profile_name", envvar="MKSTREAM_PROFILE", metavar="NAME", shell_complete=complete_profiles,
              help="The profile to remove (default: the default_profile). [env: MKSTREAM_PROFILE]")
@click.option("--config", "config_path", metavar="PATH", type=click.Path(dir_okay=False),
              help="Config file (default: $XDG_CONFIG_HOME/mkstream/config.toml).")
def logout(profile_name, config_path):
    """Remove a profile and the token file login made for it.

    The rest of the config file, comments included, is kept. The token itself stays valid until
    it is revoked on the server: Settings > Apps in its web UI.
    """
    from misskey_cli.profiles.login import LogoutSettings, run_logout

    sys.exit(run_logout(LogoutSettings(profile_name, config_path), sys.stderr, os.environ))


@click.command(cls=SectionedCommand, context_settings=CONTEXT_SETTINGS, epilog="""\b
Examples:
  mkstream doctor --host misskey.example
  mkstream doctor main 'hashtag?q=misskey' --profile work
  mkstream doctor --json --host http://localhost:3000 | jq '.checks[] | select(.status != "ok")'""")
@click.argument("channels", nargs=-1, type=ChannelSpecType(), metavar="[CHANNEL]...")
@click.option("--json", "as_json", is_flag=True, help="Write the report as one JSON document on stdout.")
@click.option("--ack-timeout", type=DURATION, default=5.0, show_default=True, metavar="D",
              help="How long a channel may take to be acknowledged.")
@click.option("--connect-timeout", type=DURATION, default=10.0, show_default=True, metavar="D",
              help="Bound on each phase of connecting (DNS, TCP, TLS, HTTP, handshake).")
@click.option("--color", type=click.Choice(COLOR_MODES), default="auto", show_default=True,
              help="Colour the marks (auto honours NO_COLOR and FORCE_COLOR).")
# A profile may carry output defaults for the streaming commands; doctor accepts and ignores them.
@click.option("--format", "fmt", type=click.Choice(FORMATS), hidden=True)
@click.option("--style", hidden=True)
@click.option("--timestamps/--no-timestamps", hidden=True)
@server_options
def doctor(channels, as_json, ack_timeout, connect_timeout, color, fmt, style, timestamps, **kw):
    """Check, step by step, why a stream does not work.

    Name resolution, TCP, TLS (certificate and its expiry), HTTP, the server's clock, nodeinfo
    (Misskey or which fork), meta, the token (whose it is), the streaming handshake, and each
    CHANNEL (default: localTimeline, and main with a token) connected and acknowledged or not,
    with the likely reason. One line per check; it stops at the first failure that makes the rest
    meaningless. Exit status: 0 when nothing failed (warnings allowed), else that of the first
    failure: 3 connect, 4 token rejected, 5 forbidden, 7 channel not acknowledged.
    """
    from misskey_cli.doctor.checks import DoctorSettings
    from misskey_cli.doctor.checks import run as run_doctor
    from misskey_cli.output.notices import stderr_notices
    from misskey_cli.run.app import Environment

    connections, _ = build_connections(channels, (), None, logged_in(kw))
    settings = DoctorSettings(server_settings(kw), connections, ack_timeout, connect_timeout, as_json, color)
    ctx = click.get_current_context()
    notices = stderr_notices()
    for warning in ctx.meta.get("mkstream.warnings", ()):
        notices.warn(warning)
    sys.exit(run_doctor(settings, Environment.from_process()))


@click.command(context_settings=CONTEXT_SETTINGS, epilog="""\b
Examples:
  mkstream completion bash > ~/.local/share/bash-completion/completions/mkstream
  mkstream completion zsh > ~/.zfunc/_mkstream
  mkstream completion fish > ~/.config/fish/completions/mkstream.fish""")
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell):
    """Print the shell completion script for bash, zsh or fish."""
    from misskey_cli.cli.completion import completion_script

    click.echo(completion_script(click.get_current_context().find_root().command, shell), nl=False)


class ListenType(click.ParamType):
    """``--listen HOST:PORT`` (or just PORT): where the proxy accepts clients."""

    name = "host:port"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> tuple[str, int]:
        if isinstance(value, tuple):
            return value
        text = str(value).strip()
        host, colon, port_text = text.rpartition(":")
        if not colon:
            host, port_text = "127.0.0.1", text
        host = host.removeprefix("[").removesuffix("]") or "127.0.0.1"
        if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
            self.fail(f"{text!r}: expected HOST:PORT with a port from 0 to 65535 (0 = any free), "
                      "e.g. 127.0.0.1:3001", param, ctx)
        return host, int(port_text)


@click.command(cls=SectionedCommand, context_settings=CONTEXT_SETTINGS, epilog="""\b
Examples:
  mkstream proxy --host misskey.example --line
  mkstream proxy --host misskey.example --listen 127.0.0.1:3001 --record bot.ndjson.gz --ndjson > bot.log
  mkstream proxy --host http://localhost:3000 --jq 'select(.from == "client")'""")
@click.option("--host", type=HostType(), envvar="MISSKEY_HOST", metavar="HOST", required=True,
              help="The server to relay to: misskey.example, host:port, or an http(s) URL. [env: MISSKEY_HOST]")
@click.option("--listen", type=ListenType(), default="127.0.0.1:3001", show_default=True, metavar="HOST:PORT",
              help="Where to accept clients (port 0 = any free; the address taken is printed on start).")
@click.option("--insecure", is_flag=True, help="Do not verify the server's TLS certificate.")
@click.option("--ca-file", metavar="PATH", type=CaFileType(), help="Verify TLS against this CA bundle.")
@click.option("--proxy", metavar="URL", type=ProxyType(),
              help="Reach the server through this HTTP proxy, or socks5:// with python-socks installed (default: "
                   "http(s)_proxy, honouring no_proxy).")
@click.option("--bodies", is_flag=True,
              help="Add each API call's request and response bodies to its record (tokens removed).")
@click.option("--ack-timeout", type=DURATION, default=5.0, show_default=True, metavar="D",
              help="Warn when a connect that asked for pong, or a server ping, is not answered within D.")
@click.option("--connect-timeout", type=DURATION, default=10.0, show_default=True, metavar="D",
              help="Give up reaching the server after D (the client gets a 502).")
@click.option("-n", "--count", type=click.IntRange(min=1), metavar="N", help="Stop after N records.")
@click.option("--duration", type=DURATION, metavar="D", help="Stop after D (30s, 5m, 1h).")
@output_options
def proxy(host, listen, insecure, ca_file, proxy, bodies, ack_timeout, connect_timeout, count, duration, **kw):
    """Relay a client's traffic to a server and write every frame, both ways.

    Point a bot or client at the proxy instead of the server (its origin or base URL: with the
    default --listen, http://127.0.0.1:3001) and it works as before: WebSocket connections are
    relayed frame by frame, byte for byte, and every other request (the API, nodeinfo, MiAuth) is
    forwarded as it is. Each frame becomes a record {"conn": N, "from": "client"|"server",
    "frame": ...}, each API call {"conn": N, "from": "client", "api": {...}}, through the output
    options; --format line names the channel of each frame. Warnings on stderr say what the
    server silently ignores: connects past 32 per socket, unknown channels, params of the wrong
    type, login channels without a token, messages for ids never connected, notes captured twice
    or never released, sr, connects never acknowledged, pings the client does not answer.
    """
    from misskey_cli.relay.proxy import ProxySettings, run_proxy
    from misskey_cli.run.app import Environment
    from misskey_cli.run.settings import NoticeSettings

    check_output_options(kw)
    settings = ProxySettings(host, listen[0], listen[1], output_settings(kw),
                             NoticeSettings(kw["quiet"], kw["verbose"], kw["stats"], kw["status"]),
                             insecure, ca_file, proxy, ack_timeout, connect_timeout, bodies, count, duration)
    sys.exit(run_proxy(settings, Environment.from_process()))


COMMANDS = (capture, channels, completion, connect, doctor, login, logout, profiles, proxy, replay, send, serve)
