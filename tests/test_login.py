"""mkstream login / logout: MiAuth against the simulator, the approval given by the test through its knob.

End to end: the approval URL, polling, the token checked with ``i``, the token file (0600) and
the profile written with the rest of config.toml kept, ``--force``, the timeout, Ctrl-C (a child
process and SIGINT), a server without MiAuth, and afterwards ``mkstream connect homeTimeline``
with no other option. The pure rules (permissions, URLs, names, when to open a browser) are tables.
"""

from __future__ import annotations

import io
import os
import signal
import stat
import subprocess
import textwrap
import tomllib
from pathlib import Path

import pytest
from helpers import SAFETY, in_background, join_ok, records, run_cli, spawn

from misskey_cli.errors import ExitCode, UsageError
from misskey_cli.net.endpoint import parse_host
from misskey_cli.profiles.config_edit import ConfigEdit
from misskey_cli.profiles.login import (
    DEFAULT_PERMISSIONS,
    LoginSettings,
    LoginTerminal,
    LogoutSettings,
    approval_url,
    can_open_browser,
    choose_permissions,
    default_profile_name,
    host_value,
    logout,
    run_login,
    token_file_name,
)
from misskey_cli.simulator import Simulator

FAST = "0.02"  # seconds between checks: the approval comes from the test, not from a person


@pytest.fixture
def xdg(tmp_path):
    return tmp_path / "xdg"


def env_for(xdg, **extra):
    return {"XDG_CONFIG_HOME": str(xdg), "MKSTREAM_LOGIN_POLL": FAST, "MKSTREAM_PROFILE": None,
            "MISSKEY_HOST": None, "MISSKEY_TOKEN": None, **extra}


def config_path(xdg) -> Path:
    return xdg / "mkstream" / "config.toml"


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def checked_sessions(sim) -> list[str]:
    return [r["endpoint"][len("miauth/"):-len("/check")] for r in sim.http_requests()
            if r.get("endpoint", "").startswith("miauth/") and r["endpoint"].endswith("/check")]


def wait_for_polling(sim, known: frozenset[str] = frozenset()) -> str:
    """The MiAuth session the client polls (one not in ``known``), once it polls: the test is the user."""
    seen = len(sim.http_requests())
    while True:
        fresh = [session for session in checked_sessions(sim) if session not in known]
        if fresh:
            return fresh[0]
        seen = len(sim.wait_for_http_requests(seen + 1))


def approve_when_polled(sim, username="admin"):
    """The user clicks Approve once the client is waiting: a feeder thread."""
    tokens: list[str] = []
    known = frozenset(checked_sessions(sim))

    def approve():
        tokens.append(sim.approve_miauth(wait_for_polling(sim, known), username))

    thread = in_background(approve)
    thread.tokens = tokens  # type: ignore[attr-defined]
    return thread


def login(sim, xdg, *args, username="admin", approve=True):
    feeder = approve_when_polled(sim, username) if approve else None
    result = run_cli("login", f"http://{sim.host_port}", "--no-browser", *args, env=env_for(xdg))
    token = None
    if feeder is not None:
        join_ok(feeder)
        token = feeder.tokens[0]  # type: ignore[attr-defined]
    return result, token


# ----- end to end -------------------------------------------------------------------------------


def test_login_writes_a_private_token_file_and_a_default_profile_then_connect_needs_nothing_else(sim, xdg):
    result, token = login(sim, xdg)
    assert result.exit_code == 0, result.stderr
    name = sim.host_port
    assert f"logged in as @admin on {name}; profile {name}" in result.stderr
    assert result.stdout == ""
    assert token not in result.stderr
    # The approval URL, with the read permissions, on stderr.
    assert (f"http://{sim.host_port}/miauth/{checked_sessions(sim)[0]}?name=mkstream"
            "&permission=read:account,read:notifications,read:chat") in result.stderr

    config = config_path(xdg)
    data = tomllib.loads(config.read_text())
    token_file = config.parent / token_file_name(name)
    assert data == {"default_profile": name,
                    "profiles": {name: {"host": f"http://{sim.host_port}", "token_file": token_file.name}}}
    assert token_file.read_text() == token + "\n"
    assert mode(token_file) == 0o600
    assert mode(config) == 0o600
    assert mode(config.parent) == 0o700

    # The token was checked with i before anything was written.
    endpoints = [r.get("endpoint") for r in sim.http_requests() if r["method"] == "POST"]
    assert endpoints[0] == "meta" and endpoints[-1] == "i"

    feeder = in_background(lambda: (sim.wait_for_subscription("homeTimeline"), sim.post_note(text="at home")))
    streamed = run_cli("connect", "homeTimeline", "-n", "1", "--ndjson", *SAFETY, env=env_for(xdg))
    join_ok(feeder)
    assert streamed.exit_code == 0, streamed.stderr
    assert records(streamed)[0]["body"]["body"]["text"] == "at home"
    assert sim.handshakes[-1]["query"]["i"] == token

    doctor = run_cli("doctor", env=env_for(xdg))
    assert doctor.exit_code == 0, doctor.stdout + doctor.stderr
    assert "belongs to @admin" in doctor.stdout and "channel main" in doctor.stdout
    assert token not in doctor.stdout + doctor.stderr


def test_an_existing_config_keeps_its_comments_other_profiles_and_default(sim, xdg):
    config = config_path(xdg)
    config.parent.mkdir(parents=True)
    original = textwrap.dedent("""\
        # my servers
        default_profile = "work"   # the one I use most

        [profiles.work]  # the office
        host = "misskey.example"
        # output for scripts
        format = "ndjson"

        # a local dev server
        [profiles.dev]
        host = "http://localhost:3000"
        """)
    config.write_text(original)
    os.chmod(config, 0o640)
    result, _ = login(sim, xdg, "--profile", "sim")
    assert result.exit_code == 0, result.stderr
    assert "use it with --profile sim" in result.stderr
    text = config.read_text()
    assert text.startswith(original)  # every byte kept; the new table comes after
    data = tomllib.loads(text)
    assert data["default_profile"] == "work"
    assert data["profiles"]["sim"] == {"host": f"http://{sim.host_port}", "token_file": "sim.token"}
    assert mode(config) == 0o640  # the file's own mode is kept


def test_an_existing_profile_is_replaced_only_with_force(sim, xdg):
    first, first_token = login(sim, xdg, "--profile", "sim")
    assert first.exit_code == 0, first.stderr
    config = config_path(xdg)
    config.write_text(config.read_text().replace('token_file = "sim.token"', 'token_file = "sim.token"\n'
                                                 'format = "ndjson"  # mine'))
    before = len(sim.http_requests())

    again, _ = login(sim, xdg, "--profile", "sim", approve=False)
    assert again.exit_code == ExitCode.USAGE
    assert "already has a profile 'sim'" in again.stderr and "--force" in again.stderr
    assert len(sim.http_requests()) == before  # nothing was sent

    forced, new_token = login(sim, xdg, "--profile", "sim", "--force", username="alice")
    assert forced.exit_code == 0, forced.stderr
    assert "logged in as @alice" in forced.stderr
    assert (config.parent / "sim.token").read_text() == new_token + "\n" != first_token + "\n"
    profile = tomllib.loads(config.read_text())["profiles"]["sim"]
    assert profile["format"] == "ndjson"  # output preferences stay; the server and token are replaced
    assert "# mine" in config.read_text()


def test_a_session_never_approved_times_out_and_writes_nothing(sim, xdg):
    result, _ = login(sim, xdg, "--timeout", "300ms", approve=False)
    assert result.exit_code == ExitCode.CONNECT_FAILED
    assert "not approved within 0.3s" in result.stderr and "--timeout" in result.stderr
    assert len(checked_sessions(sim)) >= 2  # it kept asking
    assert not (xdg / "mkstream").exists()


def test_a_server_without_miauth_is_a_clear_error(xdg):
    with Simulator(miauth=False) as sim:
        result, _ = login(sim, xdg, approve=False)
    assert result.exit_code == ExitCode.CONNECT_FAILED
    assert "does not offer MiAuth" in result.stderr and "/settings/api" in result.stderr
    assert not (xdg / "mkstream").exists()


def test_ctrl_c_while_waiting_writes_nothing(sim, xdg):
    env = {k: v for k, v in env_for(xdg).items() if v is not None}
    proc = spawn("login", f"http://{sim.host_port}", "--no-browser", env=env)
    wait_for_polling(sim)
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    assert proc.returncode == ExitCode.SIGINT, err
    assert b"login cancelled; nothing was written" in err
    assert b"Traceback" not in err
    assert not (xdg / "mkstream").exists()


def test_a_browser_opens_only_on_a_desktop_terminal_and_the_countdown_is_cleared(sim, xdg):
    opened: list[str] = []
    stderr = io.StringIO()
    terminal = LoginTerminal(stderr, stdout_isatty=True, stderr_isatty=True,
                             environ={"XDG_CONFIG_HOME": str(xdg), "DISPLAY": ":0"})
    settings = LoginSettings(parse_host(f"http://{sim.host_port}"), poll_interval=0.02)
    feeder = approve_when_polled(sim)
    code = run_login(settings, terminal, open_url=lambda url: opened.append(url) or True)
    join_ok(feeder)
    assert code == 0, stderr.getvalue()
    assert opened == [approval_url(f"http://{sim.host_port}", checked_sessions(sim)[0], DEFAULT_PERMISSIONS)]
    assert "your browser shows this page" in stderr.getvalue()
    # A countdown on the terminal's stderr while waiting, cleared before the next line.
    assert "\r\x1b[Kmkstream: / waiting for the approval, 5:00 left (Ctrl-C to cancel)" in stderr.getvalue()
    assert "\r\x1b[Kmkstream: logged in as @admin" in stderr.getvalue()

    # --no-browser, or no display: only the URL.
    settings = LoginSettings(parse_host(f"http://{sim.host_port}"), profile="again", poll_interval=0.02,
                             open_browser=False)
    feeder = approve_when_polled(sim)
    assert run_login(settings, terminal, open_url=lambda url: opened.append(url) or True) == 0
    join_ok(feeder)
    assert len(opened) == 1


def test_a_server_failing_while_the_user_approves_is_waited_out(sim, xdg):
    def restart_then_approve():
        session = wait_for_polling(sim)
        before = len(sim.http_requests())
        sim.fail_next("*", 503, count=2)
        sim.wait_for_http_requests(before + 2)
        sim.approve_miauth(session)

    feeder = in_background(restart_then_approve)
    result = run_cli("login", f"http://{sim.host_port}", "--no-browser", env=env_for(xdg))
    join_ok(feeder)
    assert result.exit_code == 0, result.stderr
    assert result.stderr.count("HTTP 503") == 1 and "still waiting" in result.stderr
    assert [r["status"] for r in sim.http_requests() if r.get("endpoint", "").endswith("/check")].count(503) == 2


@pytest.mark.parametrize(("status", "code", "words"), [
    (401, ExitCode.TOKEN_REJECTED, "gave a token that it then rejects"),
    (403, ExitCode.FORBIDDEN, "is it suspended?"),
])
def test_a_token_that_fails_i_is_not_kept(sim, xdg, status, code, words):
    def approve_but_break_i():
        session = wait_for_polling(sim)
        sim.fail_next("i", status)
        sim.approve_miauth(session)

    feeder = in_background(approve_but_break_i)
    result = run_cli("login", f"http://{sim.host_port}", "--no-browser", env=env_for(xdg))
    join_ok(feeder)
    assert result.exit_code == code, result.stderr
    assert words in result.stderr
    assert not (xdg / "mkstream").exists()


def test_login_with_a_write_permission_warns(sim, xdg):
    result, _ = login(sim, xdg, "--permission", "write:notes")
    assert result.exit_code == 0, result.stderr
    assert "warning: you asked for write:notes" in result.stderr
    assert "permission=read:account,read:notifications,read:chat,write:notes" in result.stderr


@pytest.mark.parametrize(("args", "message"), [
    (("--permission", "everything"), "bad permission 'everything'"),
    (("--no-default-permissions", "--permission", "read:drive"), "must include read:account"),
    (("--profile", " "), "is not a profile name"),
])
def test_bad_login_options_are_usage_errors_before_anything_is_sent(sim, xdg, args, message):
    result, _ = login(sim, xdg, *args, approve=False)
    assert result.exit_code == ExitCode.USAGE
    assert message in result.stderr
    assert sim.http_requests() == []


def test_a_broken_config_stops_login_before_anything_is_sent(sim, xdg):
    config = config_path(xdg)
    config.parent.mkdir(parents=True)
    config.write_text('[profiles.a]\nhost = "x"\nhots = "y"\n')
    result, _ = login(sim, xdg, approve=False)
    assert result.exit_code == ExitCode.USAGE
    assert "line 3" in result.stderr and "hots" in result.stderr
    assert sim.http_requests() == []


# ----- logout -----------------------------------------------------------------------------------


def test_logout_removes_the_profile_and_its_token_file_and_keeps_the_rest(sim, xdg):
    config = config_path(xdg)
    config.parent.mkdir(parents=True)
    config.write_text('# mine\n[profiles.other]  # keep me\nhost = "misskey.example"\n\n# the simulator below\n')
    result, _ = login(sim, xdg, "--profile", "sim")
    assert result.exit_code == 0, result.stderr
    assert tomllib.loads(config.read_text())["default_profile"] == "sim"
    token_file = config.parent / "sim.token"
    assert token_file.exists()

    out = run_cli("logout", env=env_for(xdg))  # the default profile
    assert out.exit_code == 0, out.stderr
    assert "removed profile sim" in out.stderr and f"deleted the token file {token_file}" in out.stderr
    assert f"http://{sim.host_port}/settings/apps" in out.stderr and "Settings > Apps" in out.stderr
    assert not token_file.exists()
    # Back to what it was, but for blank lines tomlkit added around the keys and tables login added.
    assert [line for line in config.read_text().splitlines() if line.strip()] == [
        "# mine", "[profiles.other]  # keep me", 'host = "misskey.example"', "# the simulator below"]

    again = run_cli("logout", "--profile", "sim", env=env_for(xdg))
    assert again.exit_code == ExitCode.USAGE
    assert "no profile 'sim'" in again.stderr


def test_logout_leaves_a_token_file_it_did_not_make(tmp_path):
    own = tmp_path / "elsewhere" / "my.token"
    own.parent.mkdir()
    own.write_text("tok\n")
    config = tmp_path / "conf" / "config.toml"
    config.parent.mkdir()
    config.write_text(f'default_profile = "a"\n[profiles.a]\nhost = "h.example"\ntoken_file = "{own}"\n')
    lines = logout(LogoutSettings(None, str(config)), {})
    assert own.exists()
    assert any("left in place" in line for line in lines)
    assert any("no default_profile now" in line for line in lines)
    assert tomllib.loads(config.read_text()) == {}


def test_logout_without_a_config_is_a_usage_error(xdg):
    result = run_cli("logout", env=env_for(xdg))
    assert result.exit_code == ExitCode.USAGE and "no config file" in result.stderr


# ----- editing the config (configwrite) ---------------------------------------------------------

LAYOUT = """\
# top
default_profile = "a"  # mine

# a: the first
[profiles.a]  # header comment
host = "a.example"
# between keys
token_file = "a.token"

# b comes next
[profiles.b]
host = "b.example"
# after b
"""


@pytest.mark.parametrize(("remove", "expected"), [
    (("a",), '# top\ndefault_profile = "a"  # mine\n\n# a: the first\n\n# b comes next\n[profiles.b]\n'
             'host = "b.example"\n# after b\n'),
    (("b",), '# top\ndefault_profile = "a"  # mine\n\n# a: the first\n[profiles.a]  # header comment\n'
             'host = "a.example"\n# between keys\ntoken_file = "a.token"\n\n# b comes next\n# after b\n'),
    (("a", "b"), '# top\ndefault_profile = "a"  # mine\n\n# a: the first\n\n# b comes next\n# after b\n'),
    (("b", "a"), '# top\ndefault_profile = "a"  # mine\n\n# a: the first\n\n# b comes next\n# after b\n'),
])
def test_removing_a_table_keeps_every_comment_outside_it(tmp_path, remove, expected):
    path = tmp_path / "config.toml"
    path.write_text(LAYOUT)
    edit = ConfigEdit.open(str(path))
    for name in remove:
        edit.remove_profile(name)
    assert edit.text() == expected
    tomllib.loads(edit.text())


def test_replacing_a_table_keeps_its_place_and_puts_new_keys_before_the_next_tables_comments(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text(LAYOUT)
    edit = ConfigEdit.open(str(path))
    edit.set_profile("a", {"host": "new.example", "ca_file": "/ca.pem"}, ("host", "token_file", "ca_file"))
    assert edit.text() == LAYOUT.replace('host = "a.example"', 'host = "new.example"').replace(
        'token_file = "a.token"\n', 'ca_file = "/ca.pem"\n')


def test_a_new_config_is_private_and_a_symlinked_one_stays_a_link(tmp_path):
    edit = ConfigEdit.open(str(tmp_path / "new" / "config.toml"))
    edit.set_profile("x", {"host": "x.example"})
    edit.set_default_profile("x")
    edit.save()
    assert mode(tmp_path / "new") == 0o700 and mode(tmp_path / "new" / "config.toml") == 0o600
    assert tomllib.loads((tmp_path / "new" / "config.toml").read_text()) == {
        "default_profile": "x", "profiles": {"x": {"host": "x.example"}}}

    real = tmp_path / "dotfiles" / "config.toml"
    real.parent.mkdir()
    real.write_text("# kept\n")
    os.chmod(real, 0o644)
    link = tmp_path / "link.toml"
    link.symlink_to(real)
    edit = ConfigEdit.open(str(link))
    edit.set_profile("y", {"host": "y.example"})
    edit.save()
    assert link.is_symlink() and real.read_text().startswith("# kept\n")
    assert mode(real) == 0o644


def test_bad_toml_is_a_usage_error_with_the_line(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text('[profiles.a]\nhost = "x"\nhost = \n')
    with pytest.raises(UsageError, match="line 3"):
        ConfigEdit.open(str(path))


# ----- the pure rules ---------------------------------------------------------------------------


@pytest.mark.parametrize(("extra", "defaults", "expected"), [
    ((), True, DEFAULT_PERMISSIONS),
    (("read:admin:stream",), True, (*DEFAULT_PERMISSIONS, "read:admin:stream")),
    (("read:drive,read:account",), True, (*DEFAULT_PERMISSIONS, "read:drive")),
    (("read:account",), False, ("read:account",)),
])
def test_choose_permissions(extra, defaults, expected):
    assert choose_permissions(extra, defaults) == expected


@pytest.mark.parametrize("extra", [("read",), ("Read:Account",), ("read:account write:notes",)])
def test_bad_permissions(extra):
    with pytest.raises(UsageError):
        choose_permissions(extra)


def test_approval_url():
    assert approval_url("https://misskey.example", "abc-123", ("read:account", "read:chat")) == \
        "https://misskey.example/miauth/abc-123?name=mkstream&permission=read:account,read:chat"


@pytest.mark.parametrize(("tty", "environ", "platform", "expected"), [
    (False, {"DISPLAY": ":0"}, "linux", False),
    (True, {}, "linux", False),
    (True, {"DISPLAY": ":0"}, "linux", True),
    (True, {"WAYLAND_DISPLAY": "wayland-0"}, "linux", True),
    (True, {}, "darwin", True),
    (True, {"SSH_CONNECTION": "1.2.3.4 5 6.7.8.9 22"}, "darwin", False),
    (True, {}, "win32", True),
])
def test_when_a_browser_is_opened(tty, environ, platform, expected):
    assert can_open_browser(tty, environ, platform) is expected


@pytest.mark.parametrize(("host", "value", "name", "file"), [
    ("misskey.example", "misskey.example", "misskey.example", "misskey.example.token"),
    ("https://misskey.example/", "misskey.example", "misskey.example", "misskey.example.token"),
    ("http://localhost:3000", "http://localhost:3000", "localhost:3000", "localhost_3000.token"),
    ("wss://m.example/prefix/streaming", "https://m.example/prefix/streaming", "m.example", "m.example.token"),
    ("http://[::1]:3000", "http://[::1]:3000", "[::1]:3000", "1_3000.token"),
])
def test_profile_host_name_and_token_file(host, value, name, file):
    endpoint = parse_host(host)
    assert host_value(endpoint) == value
    assert parse_host(value) == endpoint  # the profile reads back to the same server
    assert default_profile_name(endpoint) == name
    assert token_file_name(name) == file
