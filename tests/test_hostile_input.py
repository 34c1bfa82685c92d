"""Nothing a server sends and nothing a user types crashes mkstream, spins, or leaks.

Each case goes through the real CLI: server data against the simulator over loopback, arguments
through click. None may end in exit 1 or a traceback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from helpers import SAFETY, in_background, join_ok, records, run_cli

from misskey_cli.errors import ExitCode

QUICK = ("--idle-timeout", "0.5", *SAFETY)
SURROGATE = '{"type":"channel","body":{"id":"localTimeline","type":"note","body":{"id":"n1","text":"cut \\ud83c"}}}'


def host(sim):
    return ("--host", f"http://{sim.host_port}")


def inject(sim, *frames, subscription="localTimeline"):
    def feed():
        sim.wait_for_subscription(subscription)
        for frame in frames:
            sim.inject(frame)
        sim.post_note(text="still streaming")

    return in_background(feed)


# ----- server data ----------------------------------------------------------------------------


@pytest.mark.parametrize("output", [
    ("--ndjson",), ("--pretty",), ("--pretty", "--color", "always"), ("--ndjson", "--timestamps"),
    ("--jq", ".body.body.text"), ("--jq", ".body.body.text", "-r"), ("--jq", ".body.body | {text}"),
    ("--line",), ("--format", "raw"),
])
def test_a_lone_surrogate_is_written_escaped_and_the_stream_goes_on(sim, output):
    feeder = inject(sim, SURROGATE)
    result = run_cli("connect", "localTimeline", *host(sim), *output, "-n", "2", *SAFETY)
    join_ok(feeder)
    assert result.exit_code == 0, result.stderr
    assert "still streaming" in result.stdout
    first = result.stdout_bytes.split(b"\n")[0] if "--pretty" not in output else result.stdout_bytes
    assert b"\\ud83c" in first or "\ufffd".encode() in first, first[:300]
    if output == ("--ndjson",):
        assert json.loads(result.stdout.splitlines()[0])["body"]["body"]["text"] == "cut \ud83c"


def test_a_frame_nested_two_thousand_deep_is_a_bad_frame(sim):
    deep = '{"type":"channel","body":' + "[" * 2000 + "]" * 2000 + "}"
    feeder = inject(sim, deep)
    result = run_cli("connect", "localTimeline", *host(sim), "-n", "1", *SAFETY)
    join_ok(feeder)
    assert result.exit_code == 0, result.stderr
    assert "bad frame skipped (nested too deeply)" in result.stderr
    assert records(result)[0]["body"]["body"]["text"] == "still streaming"


def test_jq_runtime_errors_are_reported_five_times_then_counted(sim):
    def feed():
        sim.wait_for_subscription("localTimeline")
        for n in range(12):
            sim.post_note(text=f"not a number {n}")

    feeder = in_background(feed)
    result = run_cli("connect", "localTimeline", *host(sim), "--jq", ".body.body.text | tonumber", *QUICK)
    join_ok(feeder)
    assert result.exit_code == 0, result.stderr
    assert result.stderr.count("jq error, frame skipped") == 5
    assert "further jq errors are only counted" in result.stderr
    assert "12 frames skipped for jq errors in all (the first 5 shown)" in result.stderr


# ----- run control ----------------------------------------------------------------------------


@pytest.mark.parametrize("option", ["--reconnect-delay", "--ping-interval", "--ping-timeout", "--ack-timeout",
                                    "--duration", "--idle-timeout", "--connect-timeout"])
@pytest.mark.parametrize("value", ["0", "-1", "0s", "100000000000000000000", "inf", "nan", "367d"])
def test_durations_are_positive_and_bounded(option, value):
    result = run_cli("connect", "localTimeline", "--demo", option, value)
    assert result.exit_code == ExitCode.USAGE, (option, value, result.stderr)
    assert result.stderr.startswith("mkstream: error: ") and "Traceback" not in result.stderr


def test_a_short_ping_timeout_pings_often_enough_to_keep_a_quiet_connection(sim):
    # With the default 30 s interval a 1 s timeout would drop a healthy quiet socket every second.
    result = run_cli("connect", "localTimeline", *host(sim), "--ping-timeout", "1", "--duration", "3", "-v")
    assert result.exit_code == 0, result.stderr
    assert "connection lost" not in result.stderr and sim.sockets_opened == 1


# ----- arguments ------------------------------------------------------------------------------


@pytest.mark.parametrize(("params", "message"), [
    ('{"q":"music"}', "hashtag param q must be a list of lists of tags"),
    ('{"q":5}', "hashtag param q must be a list of lists of tags"),
])
def test_params_json_is_typed_by_the_catalogue_too(sim, params, message):
    result = run_cli("connect", "hashtag", "--params", params, *host(sim))
    assert result.exit_code == ExitCode.USAGE and message in result.stderr
    assert sim.sockets_opened == 0


def test_params_json_booleans_must_be_booleans(sim):
    result = run_cli("connect", "localTimeline", "--params", '{"withFiles":"false"}', *host(sim))
    assert result.exit_code == ExitCode.USAGE
    assert 'localTimeline param withFiles is a boolean: give true or false, not "false"' in result.stderr


@pytest.mark.parametrize(("filters", "ok"), [
    (("--jq", ".body.body.text # the text"), True),
    (("--jq", ".body # first", "--jq", ".body # second"), True),
    (("--jq", ".a) | (.b"), False),
    (("--jq", ""), False),
    (("--jq", "   "), False),
])
def test_jq_filters_are_each_checked_on_their_own(sim, filters, ok):
    feeder = inject(sim) if ok else None
    result = run_cli("connect", "localTimeline", *host(sim), *filters, "-n", "1", *SAFETY)
    if feeder is not None:
        join_ok(feeder)
    if ok:
        assert result.exit_code == 0, result.stderr
    else:
        assert result.exit_code == ExitCode.USAGE
        assert "unexpected ')'" not in result.stderr or ".a) | (.b" in result.stderr
        assert ("empty --jq filter" in result.stderr) == (not filters[1].strip())


def test_argjson_is_parsed_when_the_options_are(sim):
    result = run_cli("connect", "localTimeline", *host(sim), "--jq", "$x", "--argjson", "x", "{bad")
    assert result.exit_code == ExitCode.USAGE and "is not JSON" in result.stderr
    assert sim.sockets_opened == 0


def test_closed_stdout_is_a_usage_error_not_a_traceback():
    done = subprocess.run([sys.executable, "-m", "misskey_cli", "connect", "localTimeline", "--demo", "-n", "2"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60,
                          preexec_fn=lambda: os.close(1))
    assert done.returncode == ExitCode.USAGE, done.stderr
    assert b"standard output is closed: use -o FILE" in done.stderr and b"Traceback" not in done.stderr


@pytest.mark.parametrize("args", [("--token-file", "-", "--host", "h.example"), ("--stdin", "--demo")])
def test_closed_stdin_is_a_usage_error_not_a_traceback(args):
    done = subprocess.run([sys.executable, "-m", "misskey_cli", "connect", "localTimeline", *args],
                          capture_output=True, timeout=60,
                          preexec_fn=lambda: os.close(0))
    assert done.returncode == ExitCode.USAGE, done.stderr
    assert b"standard input is closed" in done.stderr and b"Traceback" not in done.stderr


def test_quiet_keeps_the_stats_that_were_asked_for_and_contradicts_verbose(sim):
    result = run_cli("connect", "localTimeline", *host(sim), "-q", "--stats", "--idle-timeout", "0.3", *SAFETY)
    assert result.exit_code == 0 and "stats: frames received" in result.stderr
    result = run_cli("connect", "localTimeline", *host(sim), "-q", "-v")
    assert result.exit_code == ExitCode.USAGE and "contradict" in result.stderr


def test_output_dash_is_stdout_and_empty_is_an_error(sim, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    feeder = inject(sim)
    result = run_cli("connect", "localTimeline", *host(sim), "-o", "-", "-n", "1", *SAFETY)
    join_ok(feeder)
    assert result.exit_code == 0 and "still streaming" in result.stdout
    assert not (tmp_path / "-").exists()
    result = run_cli("connect", "localTimeline", *host(sim), "-o", "")
    assert result.exit_code == ExitCode.USAGE and "an empty file name" in result.stderr


def test_a_ca_file_that_is_no_certificate_is_exit_2(tmp_path):
    bogus = tmp_path / "ca.pem"
    bogus.write_text("not a certificate\n")
    result = run_cli("connect", "localTimeline", "--host", "misskey.example", "--ca-file", str(bogus))
    assert result.exit_code == ExitCode.USAGE and "holds no PEM certificate" in result.stderr


@pytest.mark.parametrize(("args", "message"), [
    (("--token", "abcdef", "--token-file", "t"), "--token and --token-file both give a token"),
    (("--no-reconnect", "--max-retries", "3"), "--no-reconnect and --max-retries contradict each other"),
])
def test_conflicts_are_usage_errors(tmp_path, args, message):
    (tmp_path / "t").write_text("tok\n")
    os.chmod(tmp_path / "t", 0o600)
    result = run_cli("connect", "localTimeline", "--host", "h.example", *[str(tmp_path / a) if a == "t" else a
                                                                           for a in args])
    assert result.exit_code == ExitCode.USAGE and message in result.stderr


@pytest.mark.parametrize("note_id", ["", "a b", "x" * 65, "../etc"])
def test_capture_ids_are_checked(note_id):
    result = run_cli("capture", note_id, "--demo")
    assert result.exit_code == ExitCode.USAGE and "bad note id" in result.stderr


def test_redaction_changes_nothing_but_the_token_even_a_short_one():
    # A refused connection's message quotes the URL; a one-letter token must not garble it.
    result = run_cli("connect", "localTimeline", "--host", "http://127.0.0.1:9", "--token", "e")
    assert result.exit_code == ExitCode.CONNECT_FAILED
    assert result.stderr == ("mkstream: error: could not connect to ws://127.0.0.1:9/streaming?i=***: "
                             "connection refused (is the server running?)\n")


def test_click_usage_errors_look_like_mkstream_errors():
    result = run_cli("connect", "--no-such-option")
    assert result.exit_code == ExitCode.USAGE
    first, *rest = result.stderr.splitlines()
    assert first.startswith("mkstream: error: ") and "--no-such-option" in first
    assert len(rest) <= 1 and (not rest or rest[0] == "mkstream: see 'mkstream connect --help'")


def test_token_file_dash_on_a_terminal_prompts_without_echo(sim):
    import pty
    import select

    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "misskey_cli", "connect", "localTimeline", *host(sim),
                             "--token-file", "-", "--duration", "1", "--ndjson"],
                            stdin=slave, stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    screen = b""
    while b"token (not echoed)" not in screen:
        assert select.select([master], [], [], 30)[0], screen
        screen += os.read(master, 4096)
    os.write(master, b"tok-alice\n")
    sim.wait_for_subscription("localTimeline")
    assert sim.handshakes[-1]["query"].get("i") == "tok-alice"
    assert proc.wait(timeout=30) == 0
    while select.select([master], [], [], 0.5)[0]:
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        screen += chunk
    os.close(master)
    assert b"tok-alice" not in screen


def test_frame_types_a_server_invents_are_counted_up_to_a_bound(sim):
    frames = [{"type": f"invented-{n}", "body": None} for n in range(200)]
    feeder = inject(sim, *frames)
    result = run_cli("connect", "localTimeline", *host(sim), "-n", "201", "--stats", *SAFETY)
    join_ok(feeder)
    stats = next(line for line in result.stderr.splitlines() if "stats:" in line)
    assert "(other) 137" in stats  # 64 types by name (channel among them), the rest together
    assert len(stats) < 3000


def test_insecure_and_clear_text_tokens_are_warned_about():
    result = run_cli("connect", "localTimeline", "--host", "misskey.invalid", "--insecure")
    assert "warning: TLS certificates are not verified (--insecure)" in result.stderr
    result = run_cli("connect", "localTimeline", "--host", "ws://misskey.invalid", "--token", "secret-token-1")
    assert "warning: the token is sent in clear text over plain ws:// to misskey.invalid" in result.stderr
    assert "secret-token-1" not in result.stderr
    result = run_cli("connect", "localTimeline", "--host", "ws://127.0.0.1:9", "--token", "secret-token-1")
    assert "clear text" not in result.stderr  # loopback: a local development server


def test_a_bad_proxy_url_never_echoes_its_password():
    result = run_cli("connect", "localTimeline", "--host", "misskey.example", "--proxy", "ftp://me:hunter22@proxy:1")
    assert result.exit_code == ExitCode.USAGE and "hunter22" not in result.stderr and "me:***@" in result.stderr


def test_no_server_with_token_file_dash_exits_2_at_once_without_reading_stdin():
    """The endpoint is checked before the token: a run that cannot start asks for nothing."""
    proc = subprocess.Popen([sys.executable, "-m", "misskey_cli", "connect", "localTimeline", "--token-file", "-"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        code = proc.wait(timeout=30)  # stdin stays open and empty: a read of it would never end
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail("mkstream waited for a token although no server was given")
    _, err = proc.communicate()
    assert code == ExitCode.USAGE, err
    assert err.decode().splitlines() == [
        "mkstream: error: no server given: use --host misskey.example (or set MISSKEY_HOST), or --demo"]
