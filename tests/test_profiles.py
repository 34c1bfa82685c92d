"""Config profiles (SPEC section 2): the file's checks, precedence flag > env > profile, and secrecy.

The pure checks are table-driven against ``profiles.parse_config``/``load_config``; precedence is
proven end to end: the real CLI against the simulator, reading which token the handshake carried.
"""

from __future__ import annotations

import json
import os
import textwrap

import pytest
from helpers import SAFETY, in_background, join_ok, run_cli

from misskey_cli.cli.group import all_commands
from misskey_cli.cli.options import PROFILE_PARAMS
from misskey_cli.errors import ExitCode, UsageError
from misskey_cli.profiles.config_file import PROFILE_KEYS, load_config, profile_table

QUICK = ("--idle-timeout", "0.3", "--ack-timeout", "0.2", *SAFETY)


def write(path, text, mode=0o600):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    os.chmod(path, mode)
    return path


@pytest.fixture
def xdg(tmp_path):
    """An XDG_CONFIG_HOME of its own, so the user's real config never leaks into a test."""
    return tmp_path / "xdg"


def config_at(xdg, text, mode=0o600):
    return write(xdg / "mkstream" / "config.toml", text, mode)


def env_for(xdg, **extra):
    return {"XDG_CONFIG_HOME": str(xdg), "MKSTREAM_PROFILE": None, "MISSKEY_HOST": None, "MISSKEY_TOKEN": None,
            **extra}


def sent_tokens(sim):
    return [h["query"].get("i") for h in sim.handshakes]


# ----- the file -------------------------------------------------------------------------------


def test_a_config_with_profiles(tmp_path):
    path = write(tmp_path / "config.toml", """\
        default_profile = "work"

        [profiles.work]
        host = "misskey.example"
        token_file = "work.token"     # relative to the config file
        format = "ndjson"
        timestamps = true

        [profiles.local]
        host = "http://localhost:3000"
        token = "s3cret"
        auth = "header"
        """)
    config = load_config(str(path))
    assert list(config.profiles) == ["work", "local"]
    assert config.select(None).name == "work" and config.select("local").name == "local"
    work = config.profiles["work"]
    assert work.values == {"host": "misskey.example", "token_file": str(tmp_path / "work.token"),
                           "format": "ndjson", "timestamps": True}
    assert config.holds_token
    assert config.where(work, "format") == f"config file {path}, line 6"


@pytest.mark.parametrize(("text", "message"), [
    ('[profiles.work]\nhost = "a"\nhots = "b"\n',
     'line 3: unknown key "hots" in [profiles.work] (did you mean host?)'),
    ('[profiles.work]\ntoken-file = "t"\n', 'line 2: unknown key "token-file" in [profiles.work] (did you mean token_file or token?)'),
    ('default_profle = "work"\n', 'line 1: unknown key "default_profle" (did you mean default_profile?)'),
    ('[profile.work]\nhost = "a"\n', 'line 1: unknown key "profile" (did you mean profiles or default_profile?)'),
    ('[profiles.work]\nhost = "a"\nhost = "b"\n', "line 3: bad TOML: Cannot overwrite a value (column 11)"),
    ('[profiles.work]\nhost = misskey.example\n', "line 2: bad TOML: Invalid value (column 8)"),
    ('[profiles.work]\nhost = "a', "line 2: bad TOML: Unterminated string (at the end of the file)"),
    ('[profiles.work]\ntimestamps = "yes"\n', "line 2: timestamps in [profiles.work] must be true or false, not 'yes'"),
    ('[profiles.work]\nhost = 3000\n', "line 2: host in [profiles.work] must be a string, not 3000"),
    ('[profiles.work]\ntoken = "a"\ntoken_file = "b"\n', "line 3: [profiles.work] has both token and token_file"),
    ('default_profile = 1\n', "line 1: default_profile must be a string"),
    ('profiles = "work"\n', "line 1: profiles must be tables"),
    ('[profiles]\nwork = 1\n', "line 2: profiles.work must be a table"),
])
def test_config_errors_name_the_file_and_line(tmp_path, text, message):
    path = write(tmp_path / "config.toml", text)
    with pytest.raises(UsageError) as caught:
        load_config(str(path))
    assert caught.value.message.startswith(f"config file {path}, ")
    assert message in caught.value.message


def test_unknown_profile_names_the_ones_there_are(tmp_path):
    path = write(tmp_path / "config.toml", '[profiles.work]\n[profiles.local]\n')
    with pytest.raises(UsageError, match=r"no profile 'wrok' \(did you mean work\?\); it has: work, local"):
        load_config(str(path)).select("wrok")
    path.write_text('default_profile = "gone"\n[profiles.work]\n')
    with pytest.raises(UsageError, match="its default_profile"):
        load_config(str(path)).select(None)


def test_profile_table_shows_where_the_token_is_never_the_token(tmp_path):
    path = write(tmp_path / "config.toml", """\
        default_profile = "b"
        [profiles.a]
        host = "a.example"
        token = "s3cret-token"
        [profiles.b]
        host = "b.example"
        token_file = "/keys/b"
        auth = "header"
        [profiles.c]
        """)
    table = profile_table(load_config(str(path)))
    assert "s3cret-token" not in table
    lines = table.splitlines()
    assert lines[0] == f"config: {path}"
    assert lines[3].split() == ["a", "a.example", "query", "token:", "set"]
    assert lines[4].split() == ["b", "*", "b.example", "header", "token_file:", "/keys/b"]
    assert lines[5].split() == ["c", "-", "query", "none", "(anonymous)"]


@pytest.mark.parametrize("command", ["connect", "capture", "send"])
def test_every_profile_key_is_an_option_of_every_streaming_command(command):
    names = {param.name for param in all_commands()[command].params}
    assert {PROFILE_PARAMS.get(key, key) for key in PROFILE_KEYS} <= names


# ----- precedence, end to end ------------------------------------------------------------------


def test_profile_supplies_host_and_token(sim, xdg):
    config_at(xdg, f"""\
        default_profile = "sim"
        [profiles.sim]
        host = "http://{sim.host_port}"
        token = "tok-alice"
        """)
    result = run_cli("connect", "homeTimeline", *QUICK, env=env_for(xdg))
    assert result.exit_code == 0, result.stderr
    assert sent_tokens(sim) == ["tok-alice"]
    assert "tok-alice" not in result.stderr + result.stdout


def test_flag_beats_env_beats_profile(sim, xdg, tmp_path):
    token_file = write(tmp_path / "bob.token", "tok-bob\n")
    config_at(xdg, f"""\
        default_profile = "alice"
        [profiles.alice]
        host = "http://{sim.host_port}"
        token = "tok-alice"
        [profiles.bob]
        host = "http://{sim.host_port}"
        token_file = "{token_file}"
        [profiles.nowhere]
        host = "http://127.0.0.1:9"
        """)
    runs = [
        ((), {}, "tok-alice"),                                              # default_profile
        (("--profile", "bob"), {}, "tok-bob"),                              # --profile, token_file
        ((), {"MKSTREAM_PROFILE": "bob"}, "tok-bob"),                       # env picks the profile
        (("--profile", "alice"), {"MKSTREAM_PROFILE": "bob"}, "tok-alice"),  # the flag beats the env
        ((), {"MISSKEY_TOKEN": "tok-bob"}, "tok-bob"),                      # env token beats profile token
        (("--profile", "bob"), {"MISSKEY_TOKEN": "tok-alice"}, "tok-alice"),  # ... and profile token_file
        (("--token", "tok-bob"), {"MISSKEY_TOKEN": "tok-alice"}, "tok-bob"),  # flag beats env and profile
        (("--token-file", str(token_file)), {}, "tok-bob"),                 # flag token_file beats profile token
        (("--profile", "nowhere"), {"MISSKEY_HOST": f"http://{sim.host_port}"}, None),  # env host beats profile
    ]
    for args, extra, _ in runs:
        result = run_cli("connect", "localTimeline", *args, *QUICK, env=env_for(xdg, **extra))
        assert result.exit_code == 0, (args, extra, result.stderr)
    assert sent_tokens(sim) == [token for _, _, token in runs]


def test_profile_output_defaults_yield_to_flags(sim, xdg):
    config_at(xdg, f"""\
        [profiles.logging]
        host = "http://{sim.host_port}"
        timestamps = true
        format = "pretty"
        color = "never"
        """)

    def one_record(*args):
        def feed():
            sim.wait_for_subscription("localTimeline")
            sim.post_note(text="hello")

        feeder = in_background(feed)
        result = run_cli("connect", "localTimeline", "--profile", "logging", "-n", "1", *args, *SAFETY,
                         env=env_for(xdg))
        join_ok(feeder)
        sim.wait_for_closed()
        assert result.exit_code == 0, result.stderr
        return result.stdout

    pretty = one_record()
    assert pretty.startswith('{\n  "ts": "') and "\x1b[" not in pretty  # pretty, uncoloured, stamped
    [line] = one_record("--ndjson", "--no-timestamps").splitlines()
    record = json.loads(line)
    assert "ts" not in record and record["body"]["body"]["text"] == "hello"


def test_config_option_overrides_the_xdg_path(sim, xdg, tmp_path):
    config_at(xdg, '[profiles.sim]\nhost = "http://127.0.0.1:9"\n')
    other = write(tmp_path / "other.toml", f'[profiles.sim]\nhost = "http://{sim.host_port}"\ntoken = "tok-bob"\n')
    result = run_cli("connect", "localTimeline", "--config", str(other), "--profile", "sim", *QUICK, env=env_for(xdg))
    assert result.exit_code == 0, result.stderr
    assert sent_tokens(sim) == ["tok-bob"]


def test_no_config_file_is_fine_until_a_profile_is_asked_for(sim, xdg):
    result = run_cli("connect", "localTimeline", "--host", f"http://{sim.host_port}", *QUICK, env=env_for(xdg))
    assert result.exit_code == 0, result.stderr
    result = run_cli("connect", "localTimeline", "--host", f"http://{sim.host_port}", *QUICK,
                     env=env_for(xdg, MKSTREAM_PROFILE="work"))
    assert result.exit_code == ExitCode.USAGE
    assert f"no config file at {xdg / 'mkstream' / 'config.toml'}, so no profile 'work'" in result.stderr
    assert sim.sockets_opened == 1


@pytest.mark.parametrize(("text", "message"), [
    ('[profiles.w]\nhots = "x"\n', 'line 2: unknown key "hots" in [profiles.w] (did you mean host?)'),
    ("[profiles.w\n", "line 1: bad TOML"),
    ('[profiles.w]\nformat = "yaml"\n', "line 2: format = 'yaml': 'yaml' is not one of 'pretty', 'ndjson', 'raw'"),
    ('[profiles.w]\nauth = "cookie"\n', "line 2: auth = 'cookie': 'cookie' is not one of 'query', 'header'"),
    ('[profiles.w]\n\nhost = "ftp://x"\n', "line 3: host = 'ftp://x': bad host 'ftp://x': the scheme must be"),
    ('[profiles.w]\nstyle = "nostyle"\n', "line 2: style = 'nostyle': unknown style"),
    ('[profiles.v]\n', "no profile 'w'; it has: v"),
])
def test_a_bad_config_is_exit_2_naming_the_file_and_nothing_is_sent(sim, xdg, text, message):
    path = config_at(xdg, text)
    result = run_cli("connect", "localTimeline", "--host", f"http://{sim.host_port}", "--profile", "w", *QUICK,
                     env=env_for(xdg))
    assert result.exit_code == ExitCode.USAGE
    assert result.stderr.startswith(f"mkstream: error: config file {path}")
    assert message in result.stderr and len(result.stderr.splitlines()) == 1
    assert result.stdout == "" and sim.sockets_opened == 0


# ----- secrecy --------------------------------------------------------------------------------


def test_loose_permissions_are_warned_about(sim, xdg, tmp_path):
    token_file = write(tmp_path / "token", "tok-bob\n", mode=0o644)
    config = config_at(xdg, f"""\
        [profiles.a]
        host = "http://{sim.host_port}"
        token = "tok-alice"
        [profiles.b]
        host = "http://{sim.host_port}"
        token_file = "{token_file}"
        """, mode=0o644)
    result = run_cli("connect", "localTimeline", "--profile", "b", *QUICK, env=env_for(xdg))
    assert result.exit_code == 0, result.stderr
    assert f"warning: config file {config} holds a token and is readable by others: chmod 600" in result.stderr
    assert f"warning: token file {token_file} is readable by others: chmod 600" in result.stderr
    assert "tok-" not in result.stderr

    os.chmod(config, 0o600)
    os.chmod(token_file, 0o600)
    result = run_cli("connect", "localTimeline", "--profile", "b", *QUICK, env=env_for(xdg))
    assert "readable by others" not in result.stderr
    # A config without tokens may be shared; -q silences the warning like any other.
    config_at(xdg, f'[profiles.c]\nhost = "http://{sim.host_port}"\n', mode=0o644)
    assert "readable" not in run_cli("connect", "localTimeline", "--profile", "c", *QUICK, env=env_for(xdg)).stderr


def test_a_readable_config_with_a_token_is_warned_about_even_when_unused(sim, xdg):
    config_at(xdg, '[profiles.a]\ntoken = "tok-alice"\n', mode=0o640)
    result = run_cli("connect", "localTimeline", "--host", f"http://{sim.host_port}", *QUICK, env=env_for(xdg))
    assert result.exit_code == 0 and "holds a token and is readable by others" in result.stderr
    assert sent_tokens(sim) == [None]


def test_profiles_command_lists_hosts_never_tokens(xdg, tmp_path):
    config = config_at(xdg, """\
        default_profile = "work"
        [profiles.work]
        host = "misskey.example"
        token = "s3cret-token"
        [profiles.local]
        host = "http://localhost:3000"
        token_file = "~/.mk-token"
        """)
    result = run_cli("profiles", env=env_for(xdg))
    assert result.exit_code == 0, result.stderr
    assert "s3cret-token" not in result.stdout + result.stderr
    assert "work *" in result.stdout and "misskey.example" in result.stdout and "token: set" in result.stdout
    assert f"token_file: {os.path.expanduser('~/.mk-token')}" in result.stdout
    assert result.stderr == ""

    os.chmod(config, 0o644)
    assert "holds a token and is readable by others" in run_cli("profiles", env=env_for(xdg)).stderr


def test_profiles_command_without_a_config(xdg, tmp_path):
    result = run_cli("profiles", env=env_for(xdg))
    assert result.exit_code == 0 and result.stdout == ""
    assert "no config file at" in result.stderr and "mkstream profiles --help" in result.stderr
    result = run_cli("profiles", "--config", str(tmp_path / "missing.toml"), env=env_for(xdg))
    assert result.exit_code == ExitCode.USAGE and "cannot read config file" in result.stderr
    bad = write(tmp_path / "bad.toml", "[profiles.x]\ncolour = 'never'\n")
    result = run_cli("profiles", "--config", str(bad), env=env_for(xdg))
    assert result.exit_code == ExitCode.USAGE
    assert result.stderr == (f'mkstream: error: config file {bad}, line 2: unknown key "colour" in [profiles.x] '
                             "(did you mean color?)\n")
