"""What a hostile new user still broke (issue 23): each case through the real CLI.

Unbounded input, arguments and files that crashed, a full device, the terminal, and wording.
None may end in a traceback, exit 1, a spin or memory without bound.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
from helpers import SAFETY, finish, in_background, join_ok, run_cli, spawn, stderr_until
from hostile import RawServer

from misskey_cli.errors import ExitCode

FRAME = '{"type":"channel","body":{"id":"x","type":"note","body":{"id":"n1","text":"hello"}}}'


def host(sim):
    return ("--host", f"http://{sim.host_port}")


def no_traceback(err: str) -> None:
    assert "Traceback" not in err and "unexpected" not in err, err


# ----- item 6: unbounded input ----------------------------------------------------------------


def test_replay_of_input_without_newlines_is_refused_with_exit_2():
    code, _, err = finish(spawn("replay", "/dev/zero"), timeout=60)
    assert code == ExitCode.USAGE, err
    assert "/dev/zero: line 1 is longer than 256 MB: not a recording or NDJSON frames" in err
    no_traceback(err)


def test_replay_from_a_silent_pipe_ends_on_sigterm():
    proc = spawn("replay", "-", "--format", "raw", stdin=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(FRAME.encode() + b"\n" + b'{"type":"chan')  # then half a line, and silence
    proc.stdin.flush()
    assert proc.stdout.readline().decode().strip() == FRAME  # the run is in its loop: the handlers are set
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=20)  # stdin still open: the pipe stays silent, no end of input
    except subprocess.TimeoutExpired:
        proc.kill()
    code, _, err = finish(proc, timeout=20)
    assert code == ExitCode.SIGTERM, err


def test_serve_replay_of_input_without_newlines_warns_and_serves_on():
    import re

    server = spawn("serve", "--replay", "/dev/zero", "--port", "0")
    assert server.stderr is not None
    try:
        host_url = re.search(r"--host (http://\S+)\)", server.stderr.readline().decode())[1]
        client = spawn("connect", "localTimeline", "--host", host_url, "--idle-timeout", "1", *SAFETY)
        seen = stderr_until(server, "is longer than")
        line = next(line for line in seen.splitlines(keepends=True) if "is longer than" in line)
        assert line == ("mkstream: warning: /dev/zero: line 1 is longer than 256 MB: not a recording or NDJSON "
                        "frames; the rest is not served\n")
        code, _, err = finish(client, timeout=60)
        assert code == 0, err  # the server is still up and answering
        assert server.poll() is None
    finally:
        server.send_signal(signal.SIGINT)
        _, _, rest = finish(server, timeout=30)
    no_traceback(rest)


@pytest.mark.parametrize(("args", "message"), [
    (("connect", "localTimeline", "--host", "h.example", "--token-file", "/dev/zero"),
     "token file /dev/zero is larger than 64 KB: it should hold only the token"),
    (("connect", "localTimeline", "--config", "/dev/zero"),
     "config file /dev/zero is larger than 1 MB: it is not an mkstream config"),
    (("profiles", "--config", "/dev/zero"), "config file /dev/zero is larger than 1 MB"),
    (("logout", "--config", "/dev/zero", "--profile", "x"), "config file /dev/zero is larger than 1 MB"),
])
def test_endless_token_and_config_files_are_refused_with_exit_2(args, message):
    code, _, err = finish(spawn(*args), timeout=30)
    assert code == ExitCode.USAGE, err
    assert message in err
    no_traceback(err)


def test_an_endless_token_on_stdin_is_refused_with_exit_2():
    with open("/dev/zero", "rb") as zero:
        code, _, err = finish(spawn("connect", "localTimeline", "--host", "h.example", "--token-file", "-",
                                    stdin=zero.fileno()), timeout=30)
    assert code == ExitCode.USAGE, err
    assert "token file - is larger than 64 KB" in err


def test_stdin_commands_without_newlines_stop_the_commands_not_the_stream(sim):
    with open("/dev/zero", "rb") as zero:
        proc = spawn("connect", "localTimeline", *host(sim), "--stdin", "--jq", ".body.body.text", "-r", "-n", "1",
                     *SAFETY, stdin=zero.fileno())
    said = stderr_until(proc, "no more live commands")  # the note comes after: -n 1 would end the run first
    sim.wait_for_subscription("localTimeline")
    sim.post_note(text="still streaming")
    code, out, err = finish(proc, timeout=60)
    assert code == 0, err
    assert out == "still streaming\n"
    assert "stdin: a line longer than 64 KB is no command; no more live commands" in said


# ----- item 7: a host that is no URL ----------------------------------------------------------

UNCLOSED = "http://[::1"
BRACKETS = "bad host 'http://[::1': an IPv6 address goes in brackets, like http://[::1]:3000"


def config_with_host(tmp_path, value):
    path = tmp_path / "config.toml"
    path.write_text(f'[profiles.p]\nhost = "{value}"\n', encoding="utf-8")
    return str(path)


@pytest.mark.parametrize("where", ["option", "environment", "config", "doctor", "login", "proxy"])
def test_an_unclosed_ipv6_bracket_is_a_usage_error_everywhere(tmp_path, where):
    env = {}
    message = BRACKETS
    if where == "option":
        args = ("connect", "localTimeline", "--host", UNCLOSED)
    elif where == "environment":
        args, env = ("connect", "localTimeline"), {"MISSKEY_HOST": UNCLOSED}
    elif where == "config":
        args = ("connect", "localTimeline", "--config", config_with_host(tmp_path, UNCLOSED), "--profile", "p")
    elif where == "doctor":
        args = ("doctor", "--host", UNCLOSED)
    elif where == "login":
        args = ("login", UNCLOSED, "--config", str(tmp_path / "new.toml"))
    else:
        args = ("connect", "localTimeline", "--host", "h.example", "--proxy", "http://u:SECRET@[::1")
        message = "bad proxy 'http://u:***@[::1': an IPv6 address goes in brackets"
    code, _, err = finish(spawn(*args, env=env), timeout=30)
    assert code == ExitCode.USAGE, err
    assert message in err
    assert "SECRET" not in err
    no_traceback(err)


HOSTILE_LOCATIONS = ["http://[\x1b]52;c;aGk=\x07", "http://evil.example\x1b[2J/", "http://[::1"]


@pytest.mark.parametrize("location", HOSTILE_LOCATIONS)
def test_a_redirect_to_no_url_is_reported_escaped(location):
    def redirect(conn, index):
        server.read_head(conn)
        conn.sendall(b"HTTP/1.1 302 Found\r\nLocation: " + location.encode("latin-1") + b"\r\nContent-Length: 0\r\n\r\n")
        server.hold(conn)

    with RawServer(redirect) as server:
        code, _, err = finish(spawn("connect", "localTimeline", "--host", f"http://{server.host_port}", *SAFETY))
    assert code == ExitCode.CONNECT_FAILED, err
    assert "\x1b" not in err and "\x07" not in err
    assert "Invalid IPv6 URL" not in err
    assert "(a redirect) to a Location that is no URL: http://" in err
    no_traceback(err)


@pytest.mark.parametrize("location", HOSTILE_LOCATIONS)
def test_doctor_reports_a_redirect_to_no_url_escaped(location):
    def redirect(conn, index):
        server.read_head(conn)
        conn.sendall(b"HTTP/1.1 302 Found\r\nLocation: " + location.encode("latin-1") + b"\r\nContent-Length: 0\r\n\r\n")
        server.hold(conn, read=False)

    with RawServer(redirect) as server:
        code, out, err = finish(spawn("doctor", "--host", f"http://{server.host_port}"))
    assert code == ExitCode.CONNECT_FAILED, err
    assert "\x1b" not in out + err and "\x07" not in out + err
    assert "redirected to" in out + err
    no_traceback(err)


# ----- item 8: a config nested without end ----------------------------------------------------


@pytest.mark.parametrize("value", ["[" * 1000 + "]" * 1000, "{a=" * 1000 + "1" + "}" * 1000])
@pytest.mark.parametrize("command", [("connect", "localTimeline"), ("profiles",), ("logout", "--profile", "p")])
def test_a_config_nested_a_thousand_deep_is_a_config_error(tmp_path, value, command):
    path = tmp_path / "config.toml"
    path.write_text(f'[profiles.p]\nhost = "h.example"\nx = {value}\n', encoding="utf-8")
    code, _, err = finish(spawn(*command, "--config", str(path)), timeout=30)
    assert code == ExitCode.USAGE, err
    assert f"config file {path}: values nested too deeply" in err
    assert path.read_text(encoding="utf-8").endswith(value + "\n")  # left as it was
    no_traceback(err)


# ----- item 9: a pace that overflows ----------------------------------------------------------


def far_apart_recording(tmp_path):
    path = tmp_path / "far.ndjson"
    path.write_text('{"t":1,"frame":{"type":"a"}}\n{"t":99999999999,"frame":{"type":"b"}}\n', encoding="utf-8")
    return str(path)


@pytest.mark.parametrize("speed", ["1e-300", "0", "-1", "nan", "1e-7"])
@pytest.mark.parametrize("command", ["replay", "serve"])
def test_a_speed_too_slow_is_refused_when_parsed(tmp_path, speed, command):
    path = far_apart_recording(tmp_path)
    args = ("replay", path) if command == "replay" else ("serve", "--replay", path, "--port", "0")
    code, out, err = finish(spawn(*args, "--speed", speed), timeout=30)
    assert code == ExitCode.USAGE, err
    assert "is out of range: give a factor from 1e-06 to 1e+06" in err
    assert out == ""


@pytest.mark.parametrize("speed", ["1e-6", "1"])
def test_a_gap_of_centuries_waits_instead_of_overflowing(tmp_path, speed):
    proc = spawn("replay", far_apart_recording(tmp_path), "--speed", speed, "--format", "raw")
    assert proc.stdout is not None
    assert proc.stdout.readline() == b'{"type":"a"}\n'  # then a wait of 3,000 years (or 3 billion)
    proc.send_signal(signal.SIGTERM)
    code, out, err = finish(proc, timeout=30)
    assert code == ExitCode.SIGTERM, err
    assert out == ""
    no_traceback(err)


# ----- item 10: stdout on a full device -------------------------------------------------------


@pytest.mark.parametrize("args", [
    ("--help",), ("--version",), ("connect", "--help"), ("channels",), ("channels", "localTimeline"),
    ("completion", "bash"), ("doctor", "--host", "http://127.0.0.1:9"), ("profiles", "--config", "CONFIG"),
])
def test_stdout_on_a_full_device_is_one_error_line(tmp_path, args):
    config = tmp_path / "config.toml"
    config.write_text('[profiles.p]\nhost = "h.example"\n', encoding="utf-8")
    args = tuple(str(config) if arg == "CONFIG" else arg for arg in args)
    with open("/dev/full", "wb") as full:
        code, _, err = finish(spawn(*args, stdout=full.fileno()), timeout=30)
    assert code == ExitCode.RUNTIME_ERROR, err
    assert err == "mkstream: error: cannot write to stdout: No space left on device\n"


# ----- item 11: stderr on a full device -------------------------------------------------------


def loose_config(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text('[profiles.p]\nhost = "h.example"\ntoken = "abc"\n', encoding="utf-8")
    path.chmod(0o644)  # a warning before the run: the config holds a token and others can read it
    return str(path)


@pytest.mark.parametrize("extra", [(), ("--stats", "-v")])
def test_notices_that_cannot_be_written_are_dropped_and_the_records_flow(tmp_path, extra):
    with open("/dev/full", "w") as full:
        proc = subprocess.Popen([sys.executable, "-m", "misskey_cli", "connect", "localTimeline", "--config",
                                 loose_config(tmp_path), "--demo", "-n", "3", "--jq", ".type", "-r", *extra, *SAFETY],
                                stdout=subprocess.PIPE, stderr=full, stdin=subprocess.DEVNULL)
        code, out, _ = finish(proc, timeout=60)
    assert code == 0
    assert out == "channel\n" * 3


def test_doctor_with_a_full_stderr_still_reports(tmp_path):
    with open("/dev/full", "w") as full:
        proc = subprocess.Popen([sys.executable, "-m", "misskey_cli", "doctor", "--config", loose_config(tmp_path),
                                 "--demo"], stdout=subprocess.PIPE, stderr=full, stdin=subprocess.DEVNULL)
        code, out, _ = finish(proc, timeout=60)
    assert code == 0
    assert out.endswith("all checks passed\n") or "all checks passed (" in out


def test_a_usage_error_with_a_full_stderr_keeps_its_exit_status():
    with open("/dev/full", "w") as full:
        proc = subprocess.Popen([sys.executable, "-m", "misskey_cli", "connect", "localTimeline", "--bogus"],
                                stdout=subprocess.PIPE, stderr=full, stdin=subprocess.DEVNULL)
        code, _, _ = finish(proc, timeout=60)
    assert code == ExitCode.USAGE


# ----- item 3: a replay that reads its own output ---------------------------------------------


@pytest.mark.parametrize("how", ["record", "record-hard-link", "output", "stdin-record", "stdout-append"])
def test_a_replay_never_writes_to_the_file_it_reads(tmp_path, how):
    source = tmp_path / "r.ndjson"
    content = '{"t":1,"frame":{"type":"a"}}\n{"t":2,"frame":{"type":"b"}}\n'
    source.write_text(content, encoding="utf-8")
    link = tmp_path / "link.ndjson"
    os.link(source, link)
    limit = ("--duration", "2")  # before the fix this run would never end
    stdin, stdout = None, None
    with open(source, "rb") as reading, open(source, "ab") as appending:
        if how == "record":
            args, what = ("replay", str(source), "--record", str(source)), f"--record {source}"
        elif how == "record-hard-link":
            args, what = ("replay", str(source), "--record", str(link)), f"--record {link}"
        elif how == "output":
            args, what = ("replay", str(source), "-o", str(link)), f"-o {link}"
        elif how == "stdin-record":
            args, what, stdin = ("replay", "-", "--record", str(source)), f"--record {source}", reading.fileno()
        else:
            args, what, stdout = ("replay", str(link)), "standard output", appending.fileno()
        proc = spawn(*args, *limit, stdin=stdin, stdout=stdout) if stdin or stdout else spawn(*args, *limit)
        code, _, err = finish(proc, timeout=30)
    assert code == ExitCode.USAGE, err
    assert f"{what} is the same file as the input" in err and "would read its own output without end" in err
    assert source.read_text(encoding="utf-8") == content


# ----- item 4: one token file per profile -----------------------------------------------------


def test_profiles_whose_names_clean_alike_get_their_own_token_files(sim, tmp_path):
    import tomllib

    from test_login import config_path, env_for, login

    xdg = tmp_path / "xdg"
    first, first_token = login(sim, xdg, "--profile", "a/b")
    second, second_token = login(sim, xdg, "--profile", "a_b", username="alice")
    assert first.exit_code == second.exit_code == 0, first.stderr + second.stderr
    config = config_path(xdg)
    profiles = tomllib.loads(config.read_text())["profiles"]
    files = {name: config.parent / profiles[name]["token_file"] for name in ("a/b", "a_b")}
    assert files["a/b"] != files["a_b"]
    assert files["a/b"].read_text() == first_token + "\n" and files["a_b"].read_text() == second_token + "\n"

    out = run_cli("logout", "--profile", "a/b", env=env_for(xdg))
    assert out.exit_code == 0, out.stderr
    assert not files["a/b"].exists()
    assert files["a_b"].read_text() == second_token + "\n"  # the other profile still logs in


def test_logout_leaves_a_token_file_another_profile_still_uses(tmp_path):
    config = tmp_path / "config.toml"
    token = tmp_path / "a_b.token"
    token.write_text("shared\n", encoding="utf-8")
    token.chmod(0o600)
    config.write_text('[profiles."a/b"]\nhost = "h.example"\ntoken_file = "a_b.token"\n'
                      '[profiles.a_b]\nhost = "h.example"\ntoken_file = "a_b.token"\n', encoding="utf-8")
    config.chmod(0o600)
    result = run_cli("logout", "--profile", "a/b", "--config", str(config))
    assert result.exit_code == 0, result.stderr
    assert f"token file {token} is also the token file of profile a_b: left in place" in result.stderr
    assert token.read_text(encoding="utf-8") == "shared\n"
    profiles = run_cli("profiles", "--config", str(config))
    assert profiles.exit_code == 0 and "a_b" in profiles.stdout and "a/b" not in profiles.stdout


# ----- item 5: a full disk keeps every whole record that fits ---------------------------------

FILE_LIMIT = 20_000


def replay_into(tmp_path, name, limit, *output):
    """A replay hands the writer one buffer per 1 MB of input: 2,000 records, one write crossing the limit."""
    import json
    import resource

    source = tmp_path / "r.ndjson"
    if not source.exists():
        with open(source, "w", encoding="utf-8") as out:
            for n in range(2000):
                frame = {"type": "channel", "body": {"id": "x", "type": "note", "body": {"n": n}}}
                out.write(json.dumps({"t": 1 + n / 1000, "frame": frame}, separators=(",", ":")) + "\n")
    log = tmp_path / name

    def small_disk():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of being killed
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    proc = subprocess.Popen([sys.executable, "-m", "misskey_cli", "replay", str(source), "-o", str(log), "--stats",
                             *output], stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            preexec_fn=small_disk if limit else None)
    code, _, err = finish(proc, timeout=60)
    assert code == (ExitCode.RUNTIME_ERROR if limit else 0), err
    if limit:
        assert f"cannot write to {log}: File too large" in err
    records = int(err.split("records written ")[1].split(";")[0])
    return log.read_bytes(), records


@pytest.mark.parametrize("output", [(), ("--jq", ".body"), ("--format", "line"), ("--timestamps",)])
def test_a_full_disk_keeps_every_whole_record_that_fits(tmp_path, output):
    full, _ = replay_into(tmp_path, "all", 0, *output)
    content, records = replay_into(tmp_path, "cut", FILE_LIMIT, *output)
    assert len(full) > FILE_LIMIT
    assert content == full[:full.rfind(b"\n", 0, FILE_LIMIT) + 1]  # the longest run of whole lines that fits
    assert records == content.count(b"\n") > 0


def test_a_full_disk_cuts_pretty_records_whole(tmp_path):
    full, _ = replay_into(tmp_path, "all", 0, "--pretty", "--color", "never")
    content, records = replay_into(tmp_path, "cut", FILE_LIMIT, "--pretty", "--color", "never")
    assert full.startswith(content)
    assert content.count(b"\n}\n") == records  # no record cut in half (several lines each: none kept here)


# ----- item 13: raw and NDJSON to a terminal --------------------------------------------------

OSC52 = "\x1b]52;c;aGk=\x07\x1b[2Jcleared"
BIDI = "a\u202eb\u2066c\u0085d\x7f"


def hostile_recording(tmp_path):
    import json

    path = tmp_path / "hostile.ndjson"
    note = {"type": "channel", "body": {"id": "x", "type": "note", "body": {"id": "n1", "text": BIDI}}}
    path.write_text(json.dumps({"t": 1, "text": OSC52}) + "\n" + json.dumps({"t": 2, "frame": note}) + "\n",
                    encoding="utf-8")
    return str(path)


def on_a_terminal(*args):
    """mkstream's stdout on a pseudo-terminal: everything it drew, as bytes."""
    import pty
    import select

    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "misskey_cli", *args], stdout=slave, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL)
    os.close(slave)
    seen = b""
    while True:
        ready, _, _ = select.select([master], [], [], 30)
        assert ready, seen
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the child closed its end
            break
        if not chunk:
            break
        seen += chunk
    os.close(master)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    return seen


@pytest.mark.parametrize("fmt", ["raw", "ndjson", "jq", "jq-fast"])
def test_raw_and_ndjson_to_a_terminal_escape_control_characters(tmp_path, fmt):
    # jq's own answer (a filter jqfast leaves to jq) and jqfast's are both NDJSON here.
    output = {"jq": ("--ndjson", "--jq", "[.body.body.text] | first"), "jq-fast": ("--ndjson", "--jq", ".body")}
    seen = on_a_terminal("replay", hostile_recording(tmp_path), *output.get(fmt, ("--format", fmt)))
    for raw in ("\x1b", "\x07", "\u202e", "\u2066", "\u0085", "\x7f"):
        assert raw.encode("utf-8") not in seen, (raw, seen)
    if fmt == "raw":  # shown as escape_controls shows them: the frame need not be JSON
        assert b"\\x1b]52;c;aGk=\\x07\\x1b[2Jcleared" in seen
        assert b"a\\u202eb\\u2066c\\x85d\\x7f" in seen
    else:  # the same JSON, with \u escapes
        assert b"a\\u202eb\\u2066c\\u0085d\\u007f" in seen


def test_raw_to_a_terminal_with_unsafe_raw_is_byte_for_byte(tmp_path):
    seen = on_a_terminal("replay", hostile_recording(tmp_path), "--format", "raw", "--unsafe-raw")
    assert OSC52.encode() in seen


@pytest.mark.parametrize("fmt", ["raw", "ndjson"])
def test_raw_and_ndjson_into_a_pipe_stay_as_received(tmp_path, fmt):
    code, out, err = finish(spawn("replay", hostile_recording(tmp_path), "--format", fmt), timeout=30)
    assert code == 0, err
    if fmt == "raw":
        assert out.splitlines()[0] == OSC52
    assert BIDI in out


# ----- item 12: the window size follows SIGWINCH ----------------------------------------------


def set_size(fd, columns, rows=24):
    import fcntl
    import struct
    import termios

    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))


def test_the_line_format_follows_a_window_resize():
    import json
    import pty
    import select
    import termios
    import tty

    master, slave = pty.openpty()
    tty.setraw(slave, termios.TCSANOW)  # no \r added: the lines as mkstream writes them
    set_size(slave, 40)
    proc = subprocess.Popen([sys.executable, "-m", "misskey_cli", "replay", "-", "--format", "line", "--color", "never"],
                            stdin=subprocess.PIPE, stdout=slave, stderr=subprocess.PIPE)
    os.close(slave)
    assert proc.stdin is not None
    seen = b""

    def next_line(n):
        nonlocal seen
        frame = {"type": "channel", "body": {"id": "x", "type": "note",
                                             "body": {"id": f"n{n}", "text": f"{n} " + "wide " * 60}}}
        proc.stdin.write(json.dumps(frame).encode() + b"\n")
        proc.stdin.flush()
        while b"\n" not in seen:
            assert select.select([master], [], [], 30)[0], seen
            seen += os.read(master, 65536)
        line, _, seen = seen.partition(b"\n")
        return line.decode()

    from misskey_cli.output.cells import display_width

    assert display_width(next_line(0)) == 40
    set_size(master, 100)
    proc.send_signal(signal.SIGWINCH)
    widths = [display_width(next_line(n)) for n in range(1, 20)]
    assert widths[-1] == 100, widths
    assert widths == sorted(widths) and set(widths) <= {40, 100}  # at once, at the loop's next safe point
    proc.stdin.close()
    assert proc.wait(timeout=30) == 0
    os.close(master)


def test_the_status_line_follows_a_window_resize():
    import pty
    import re
    import select

    master, slave = pty.openpty()
    set_size(slave, 40)
    proc = subprocess.Popen([sys.executable, "-m", "misskey_cli", "replay", "-"], stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    assert proc.stdin is not None
    seen = ""

    def until(pattern):
        nonlocal seen
        while not re.search(pattern, seen):
            ready, _, _ = select.select([master], [], [], 30)
            assert ready, seen
            seen += os.read(master, 65536).decode("utf-8", "replace")

    proc.stdin.write(FRAME.encode() + b"\n")
    proc.stdin.flush()
    until(r"\r\x1b\[Kmkstream: [^\r]{29}(?=\r|$)")  # cut to 39 columns
    set_size(master, 120)
    proc.send_signal(signal.SIGWINCH)
    until(r"\r\x1b\[Kmkstream: [^\r]* \| 0 reconnects \| \d+ B")  # the whole line fits now
    proc.stdin.close()
    assert proc.wait(timeout=30) == 0
    os.close(master)


# ----- item 14: doctor --json keeps each check's status ----------------------------------------


def test_doctor_json_status_is_the_checks_and_the_http_status_is_its_own_key(sim):
    import json

    result = run_cli("doctor", "--json", *host(sim))
    assert result.exit_code == 0, result.stderr
    checks = json.loads(result.stdout)["checks"]
    assert {c["status"] for c in checks} <= {"ok", "warn", "skip"}  # the README's select(.status != "ok") works
    [http] = [c for c in checks if c["check"] == "http"]
    assert http["status"] == "ok" and http["http_status"] == 200



# ----- item 15: serve --replay --loop warns once ----------------------------------------------


def test_serve_loop_says_a_recordings_warnings_once(tmp_path):
    import re

    from test_serve import LTL, note, record

    path = tmp_path / "served.ndjson"
    record(path, [(note("localTimeline", f"n{n}"), False) for n in range(2)], (LTL,))
    with open(path, "a", encoding="utf-8") as out:
        out.write("this line is not JSON\n")
    server = spawn("serve", "--replay", str(path), "--loop", "--port", "0")
    assert server.stderr is not None
    banner = server.stderr.readline().decode()
    match = re.search(r"--host (http://\S+)\)", banner)
    assert match, banner
    try:
        code, out, err = finish(spawn("connect", "localTimeline", "--host", match[1], "-n", "40", "--jq",
                                      ".body.body.text", "-r", *SAFETY), timeout=60)
        assert code == 0, err
        assert out.split() == ["n0", "n1"] * 20  # 20 rounds of the recording
    finally:
        server.send_signal(signal.SIGTERM)
        _, _, rest = finish(server, timeout=30)
    warnings = [line for line in rest.splitlines() if "not JSON" in line]
    assert len(warnings) == 1, rest[:2000]


# ----- item 16: wording -----------------------------------------------------------------------


@pytest.mark.parametrize("where", ["option", "environment", "config", "no-scheme", "bad-port"])
def test_a_password_in_the_host_is_never_echoed(tmp_path, where):
    env = {}
    if where == "option":
        args = ("--host", "http://user:SECRET@h.example")
    elif where == "environment":
        args, env = (), {"MISSKEY_HOST": "http://user:SECRET@h.example"}
    elif where == "config":
        args = ("--config", config_with_host(tmp_path, "http://user:SECRET@h.example"), "--profile", "p")
    elif where == "no-scheme":
        args = ("--host", "user:SECRET@h.example")
    else:
        args = ("--host", "http://user:SECRET@h.example:99999")
    result = run_cli("connect", "localTimeline", *args, env=env)
    assert result.exit_code == ExitCode.USAGE, result.stderr
    assert "SECRET" not in result.stderr
    assert "user:***@h.example" in result.stderr


def test_an_idle_timeout_during_a_slow_handshake_names_the_idle_timeout():
    def silent(conn, index):
        server.read_head(conn)
        server.hold(conn)

    with RawServer(silent) as server:
        result = run_cli("connect", "localTimeline", "--host", f"http://{server.host_port}", "--idle-timeout", "0.5",
                         "--connect-timeout", "60", *SAFETY)
    assert result.exit_code == ExitCode.CONNECT_FAILED, result.stderr
    assert f"could not connect to ws://{server.host_port}/streaming within --idle-timeout 0.5s" in result.stderr
    assert "time limit" not in result.stderr


@pytest.mark.parametrize("value", ["nan", "-1", "inf"])
def test_a_bad_duration_does_not_promise_zero(value):
    result = run_cli("connect", "localTimeline", "--demo", "--duration", value)
    assert result.exit_code == ExitCode.USAGE
    assert "zero or more" not in result.stderr and "is not a duration" in result.stderr


@pytest.mark.parametrize(("args", "said", "not_said"), [
    (("localTimeline",), ["turned this channel off for visitors without a token"],
     ["list/antenna/room", "not yours"]),  # anonymous: the server's choice, not a list's
    (("userList?listId=nope", "--token", "t"), ["the list may not exist or not be open to you"], []),
], ids=["anonymous local timeline", "a list"])
def test_an_unacknowledged_channel_is_blamed_on_what_it_is(args, said, not_said):
    def never_acks(conn, index):
        server.upgrade(conn)
        server.hold(conn)

    with RawServer(never_acks) as server:
        result = run_cli("connect", *args, "--host", f"http://{server.host_port}", "--require-ack",
                         "--ack-timeout", "0.3", *SAFETY)
    assert result.exit_code == ExitCode.NOT_ACKNOWLEDGED, result.stderr
    for text in said:
        assert text in result.stderr
    for text in not_said:
        assert text not in result.stderr


def test_stdin_disconnect_is_confirmed(sim):
    proc = spawn("connect", "localTimeline", "--stdin", *host(sim), *SAFETY, stdin=subprocess.PIPE)
    assert proc.stdin is not None and proc.stderr is not None
    sim.wait_for_subscription("localTimeline")
    proc.stdin.write(b"disconnect localTimeline\n")
    proc.stdin.flush()
    line = proc.stderr.readline().decode()
    assert line == "mkstream: disconnected localTimeline (id localTimeline)\n"
    proc.send_signal(signal.SIGTERM)
    code, _, err = finish(proc, timeout=30)
    assert code == ExitCode.SIGTERM, err


def test_the_status_line_counts_reconnects_once_they_happen_and_counts_the_wait_down(sim):
    import pty
    import re
    import select

    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "misskey_cli", "connect", "localTimeline", *host(sim),
                             "--reconnect-delay", "3", *SAFETY], stdout=subprocess.DEVNULL, stderr=slave,
                            stdin=subprocess.DEVNULL)
    os.close(slave)
    seen = ""

    def until(pattern):
        nonlocal seen
        while not (found := re.search(pattern, seen)):
            ready, _, _ = select.select([master], [], [], 30)
            assert ready, seen[-2000:]
            seen += os.read(master, 65536).decode("utf-8", "replace")
        seen = seen[found.end():]
        return found

    until(r"mkstream: connected \|")
    sim.drop_all()
    first = until(r"mkstream: reconnecting in (\d+)s \|[^\r]*\| (\d+) reconnects")
    assert first[2] == "0"  # lost, not yet reconnected
    later = until(r"mkstream: reconnecting in (\d+)s \|")
    while later[1] == first[1]:
        later = until(r"mkstream: reconnecting in (\d+)s \|")
    assert int(later[1]) < int(first[1])  # the wait counts down
    until(r"mkstream: connected \|[^\r]*\| 1 reconnects")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == ExitCode.SIGTERM
    os.close(master)


@pytest.mark.parametrize("program", ['"bye\\n" | halt_error', "halt_error(5)", "if .type == \"x\" then halt_error end"])
def test_halt_error_is_refused_not_ignored(sim, program):
    result = run_cli("connect", "localTimeline", *host(sim), "--jq", program, *SAFETY)
    assert result.exit_code == ExitCode.USAGE, result.stderr
    assert "halt_error would end jq, which mkstream runs once per frame: use error(...)" in result.stderr
    assert sim.sockets_opened == 0


@pytest.mark.parametrize("program", [".halt_error", '"halt_error"', "{halt_error: 1}", "$__loc__ | .halt_error"])
def test_a_key_named_halt_error_is_no_halt_error(sim, program):
    sim_feeder = in_background(lambda: (sim.wait_for_subscription("localTimeline"), sim.post_note(text="x")))
    result = run_cli("connect", "localTimeline", *host(sim), "--jq", program, "-n", "1", *SAFETY)
    join_ok(sim_feeder)
    assert result.exit_code == 0, result.stderr


def test_jq_input_without_a_next_input_says_so(sim):
    feeder = in_background(lambda: (sim.wait_for_subscription("localTimeline"), sim.post_note(text="x")))
    result = run_cli("connect", "localTimeline", *host(sim), "--jq", "input", "--idle-timeout", "1", *SAFETY)
    join_ok(feeder)
    assert result.exit_code == 0, result.stderr
    assert "jq error, frame skipped: input/inputs: there is no next input (mkstream gives jq one frame at a time)" \
        in result.stderr
    assert "jq error, frame skipped: break" not in result.stderr


def test_jq_ndjson_to_a_terminal_is_what_jq_answers_escaped(tmp_path):
    path = tmp_path / "numbers.ndjson"
    path.write_text('{"type":"x","body":{"n":100000000000000000001,"f":1.10,"t":"a\\u202eb"}}\n', encoding="utf-8")
    seen = on_a_terminal("replay", str(path), "--ndjson", "--jq", "[.body.n, .body.f, 3.0, .body.t]")
    assert b'[100000000000000000001,1.10,3.0,"a\\u202eb"]' in seen  # jq's own text, as in a pipe
