"""End to end: the real CLI against the simulator over loopback sockets (issue: mkstream core)."""

from __future__ import annotations

import json
import re
import socket

import pytest
from helpers import SAFETY, in_background, join_ok, records, run_cli

from misskey_cli.errors import ExitCode


@pytest.fixture
def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def host(sim):
    return ("--host", f"http://{sim.host_port}")


def client_types(sim):
    return [f.get("type") for f in sim.client_frames()]


def test_connect_writes_frames_exactly_as_sent(sim):
    sent = []

    def feed():
        sim.wait_for_subscription("localTimeline")
        for text in ("hello", "こんにちは 🌱", "third"):
            note = sim.post_note(text=text)
            sent.append({"type": "channel", "body": {"id": "localTimeline", "type": "note", "body": note}})

    feeder = in_background(feed)
    result = run_cli("connect", "localTimeline", *host(sim), "-n", "3", "--ndjson", *SAFETY)
    join_ok(feeder)
    assert result.exit_code == 0, result.stderr
    assert records(result) == sent
    assert "こんにちは 🌱" in result.stdout and "\\u" not in result.stdout
    connect = sim.wait_for_client_frame(lambda f: f.get("type") == "connect")
    assert connect["body"] == {"channel": "localTimeline", "id": "localTimeline", "pong": True}
    # A clean exit disconnects every channel, then closes with 1000.
    sim.wait_for_client_frame(lambda f: f == {"type": "disconnect", "body": {"id": "localTimeline"}})
    assert sim.wait_for_closed() == [(1000, "")]


def test_many_channels_on_one_socket_with_ids_and_typed_params(sim):
    def feed():
        sim.wait_for_subscription("hashtag")
        sim.wait_for_subscription("localTimeline", count=3)
        sim.post_note(text="#misskey は楽しい", tags=["misskey"])

    feeder = in_background(feed)
    result = run_cli("connect", "localTimeline", "localTimeline:mine", "localTimeline?withReplies=true",
                     "hashtag?q=misskey", "-p", "withFiles=false", *host(sim), "-n", "4", "--ndjson", *SAFETY)
    join_ok(feeder)
    assert result.exit_code == 0, result.stderr
    connects = {f["body"]["id"]: f["body"] for f in sim.client_frames() if f.get("type") == "connect"}
    assert connects["localTimeline"]["params"] == {"withFiles": False}
    assert connects["mine"]["params"] == {"withFiles": False}
    assert connects["localTimeline-2"]["params"] == {"withFiles": False, "withReplies": True}
    assert connects["hashtag"]["params"] == {"withFiles": False, "q": [["misskey"]]}
    assert sim.sockets_opened == 1
    ids = sorted(r["body"]["id"] for r in records(result))
    assert ids == ["hashtag", "localTimeline", "localTimeline-2", "mine"]


def test_params_json_and_string_typed_ids(sim):
    def feed():
        sim.wait_for_subscription("userList")

    feeder = in_background(feed)
    result = run_cli("connect", "userList", "--params", '{"listId": "1234", "withFiles": true}',
                     "-p", "listId=5678", *host(sim), "--token", "tok-alice", "--idle-timeout", "0.3", *SAFETY)
    join_ok(feeder)
    assert result.exit_code == 0, result.stderr
    connect = sim.wait_for_client_frame(lambda f: f.get("type") == "connect")
    assert connect["body"]["params"] == {"listId": "5678", "withFiles": True}


def test_capture_prints_note_updates_and_releases_on_exit(sim):
    def feed():
        sim.wait_for_client_frame(lambda f: f == {"type": "subNote", "body": {"id": "note2"}})
        sim.note_updated("note1", "reacted", {"reaction": ":blobcat@.:", "emoji": {"name": "blobcat@.", "url": "u"},
                                              "userId": "u1"})
        sim.note_updated("note2", "pollVoted", {"choice": 0, "userId": "u2"})

    feeder = in_background(feed)
    result = run_cli("capture", "note1", "note2", *host(sim), "-n", "2", "--ndjson", *SAFETY)
    join_ok(feeder)
    assert result.exit_code == 0, result.stderr
    assert [(r["type"], r["body"]["id"], r["body"]["type"]) for r in records(result)] == [
        ("noteUpdated", "note1", "reacted"), ("noteUpdated", "note2", "pollVoted")]
    # The simulator may see the close before it has recorded the frames queued ahead of it.
    sim.wait_for_client_frame(lambda f: f == {"type": "unsubNote", "body": {"id": "note2"}})
    assert client_types(sim) == ["subNote", "subNote", "unsubNote", "unsubNote"]


def test_connect_with_capture_on_the_same_socket(sim):
    def feed():
        sim.wait_for_subscription("localTimeline")
        sim.wait_for_client_frame(lambda f: f.get("type") == "subNote")
        sim.note_updated("n1", "deleted", {"deletedAt": "2026-11-27T19:28:42.184Z"})

    feeder = in_background(feed)
    result = run_cli("connect", "localTimeline", "--capture", "n1", *host(sim), "-n", "1", "--ndjson", *SAFETY)
    join_ok(feeder)
    assert result.exit_code == 0, result.stderr
    assert records(result)[0]["body"]["type"] == "deleted"
    assert sim.sockets_opened == 1


def test_send_request_log(sim):
    result = run_cli("send", "queueStats", "requestLog", '{"id":"a","length":3}', *host(sim), "-n", "1",
                     "--ndjson", *SAFETY)
    assert result.exit_code == 0, result.stderr
    [record] = records(result)
    assert record["body"]["id"] == "queueStats" and record["body"]["type"] == "statsLog"
    assert len(record["body"]["body"]) == 3
    message = sim.wait_for_client_frame(lambda f: f.get("type") == "channel")
    assert message == {"type": "channel", "body": {"id": "queueStats", "type": "requestLog",
                                                   "body": {"id": "a", "length": 3}}}


def test_unacknowledged_channel_warns_with_the_likely_cause(sim):
    result = run_cli("connect", "main", *host(sim), "--ack-timeout", "0.2", "--idle-timeout", "1", *SAFETY)
    assert result.exit_code == 0
    assert "channel main needs a logged-in user" in result.stderr  # before connecting
    assert re.search(r"channel main \(id main\) was not acknowledged within 0.2s: it needs a token", result.stderr)


def test_require_ack_makes_it_fatal(sim):
    result = run_cli("connect", "localTimeline", "main", *host(sim), "--ack-timeout", "0.2", "--require-ack",
                     *SAFETY)
    assert result.exit_code == ExitCode.NOT_ACKNOWLEDGED
    assert "was not acknowledged" in result.stderr


def app_token(sim, session: str, *permissions: str) -> str:
    """A MiAuth token for alice granted ``permissions`` (an app token, not a native one)."""
    return sim.approve_miauth(session, "alice", list(permissions))


CHAT_WITH_BOB = ("chatUser", "-p", "otherId=9bob00000000000")


def test_an_app_token_without_the_channels_permission_is_not_acknowledged_exit_7_naming_it(sim):
    token = app_token(sim, "no-chat", "read:account", "read:notifications")
    result = run_cli("connect", *CHAT_WITH_BOB, *host(sim), "--token", token, "--ack-timeout", "0.3",
                     "--require-ack", *SAFETY)
    assert result.exit_code == ExitCode.NOT_ACKNOWLEDGED, result.stderr
    assert re.search(r"channel chatUser \(id chatUser\) was not acknowledged within 0.3s: "
                     r"the token may lack the permission read:chat", result.stderr)
    assert sim.wait_for_client_frame(lambda f: f.get("type") == "connect")["body"]["pong"] is True
    assert token not in result.stderr + result.stdout


@pytest.mark.parametrize(("granted", "channel"), [
    (("read:account", "read:chat"), CHAT_WITH_BOB),
    (("read:account",), ("main",)),  # main needs read:account alone (read:notifications is the backfill's)
], ids=["chatUser-with-read:chat", "main-with-read:account"])
def test_an_app_token_with_the_channels_permission_is_acknowledged(sim, granted, channel):
    token = app_token(sim, f"grant-{channel[0]}", *granted)

    def feed():
        sim.wait_for_subscription(channel[0])
        sim.channel_event(channel[0], "probe", {"n": 1})

    feeder = in_background(feed)
    result = run_cli("connect", *channel, *host(sim), "--token", token, "--require-ack", "--no-backfill",
                     "-n", "1", "--ndjson", *SAFETY)
    join_ok(feeder)
    assert result.exit_code == 0, result.stderr
    assert records(result)[0]["body"]["type"] == "probe"
    assert "not acknowledged" not in result.stderr


def test_a_native_token_has_every_permission(sim):
    def feed():
        sim.wait_for_subscription("chatUser")
        sim.channel_event("chatUser", "probe", {"n": 1})

    feeder = in_background(feed)
    result = run_cli("connect", *CHAT_WITH_BOB, *host(sim), "--token", "tok-alice", "--require-ack",
                     "-n", "1", "--ndjson", *SAFETY)
    join_ok(feeder)
    assert result.exit_code == 0, result.stderr


def test_shareable_channel_twice_is_explained(sim):
    result = run_cli("connect", "queueStats", "queueStats", *host(sim), "--ack-timeout", "0.3",
                     "--idle-timeout", "1", *SAFETY)
    assert "queueStats-2) was not acknowledged" in result.stderr
    assert "once per socket" in result.stderr


def test_token_rejected_is_exit_4_and_never_printed(sim):
    secret = "wrong-s3cret-token"
    result = run_cli("connect", "localTimeline", *host(sim), "--token", secret, "-v", *SAFETY)
    assert result.exit_code == ExitCode.TOKEN_REJECTED
    assert "rejected the token" in result.stderr
    assert "i=***" in result.stderr
    assert secret not in result.stderr + result.stdout
    assert sim.handshakes[-1]["status"] == 401


def test_suspended_account_is_exit_5(sim):
    result = run_cli("connect", "localTimeline", *host(sim), "--token", "tok-suspended", *SAFETY)
    assert result.exit_code == ExitCode.FORBIDDEN
    assert "403" in result.stderr and "tok-suspended" not in result.stderr


def test_header_auth_keeps_the_token_out_of_the_url(sim):
    result = run_cli("connect", "homeTimeline", *host(sim), "--token", "tok-alice", "--auth", "header",
                     "--idle-timeout", "0.5", *SAFETY)
    assert result.exit_code == 0, result.stderr
    handshake = sim.handshakes[0]
    assert handshake["headers"]["authorization"] == "Bearer tok-alice"
    assert "i" not in handshake["query"]
    assert "not acknowledged" not in result.stderr


def test_query_auth_sends_i(sim):
    run_cli("connect", "homeTimeline", *host(sim), "--token", "tok-alice", "--idle-timeout", "0.3", *SAFETY)
    assert sim.handshakes[0]["query"]["i"] == "tok-alice"


def test_token_from_env_and_file(sim, tmp_path):
    path = tmp_path / "token"
    path.write_text("tok-bob\n")
    run_cli("connect", "homeTimeline", *host(sim), "--token-file", str(path), "--idle-timeout", "0.2", *SAFETY)
    run_cli("connect", "homeTimeline", "--idle-timeout", "0.2", *SAFETY,
            env={"MISSKEY_HOST": f"http://{sim.host_port}", "MISSKEY_TOKEN": "tok-alice"})
    assert [h["query"].get("i") for h in sim.handshakes] == ["tok-bob", "tok-alice"]


def test_nothing_listening_is_exit_3(free_port):
    result = run_cli("connect", "localTimeline", "--host", f"http://127.0.0.1:{free_port}", *SAFETY)
    assert result.exit_code == ExitCode.CONNECT_FAILED
    assert "connection refused" in result.stderr


def test_unknown_host_is_exit_3():
    result = run_cli("connect", "localTimeline", "--host", "no-such-host.invalid", *SAFETY)
    assert result.exit_code == ExitCode.CONNECT_FAILED
    assert "could not connect" in result.stderr


def test_jq_filters_chain_and_raw_output(sim):
    def feed():
        sim.wait_for_subscription("localTimeline")
        sim.post_note(text="one")
        sim.post_note(text="two")

    feeder = in_background(feed)
    result = run_cli("connect", "localTimeline", *host(sim), "--jq", ".body.body", "--jq", ".text",
                     "--jq", "select(. == $want)", "--arg", "want", "two", "-r", "-n", "1", *SAFETY)
    join_ok(feeder)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "two\n"


def test_jq_runtime_error_skips_that_frame(sim):
    def feed():
        sim.wait_for_subscription("localTimeline")
        sim.inject({"type": "channel", "body": {"id": "localTimeline", "type": "note", "body": "a string"}})
        sim.post_note(text="fine")

    feeder = in_background(feed)
    result = run_cli("connect", "localTimeline", *host(sim), "--jq", ".body.body.text", "-n", "1", *SAFETY)
    join_ok(feeder)
    assert result.exit_code == 0
    assert result.stdout == '"fine"\n'
    assert "jq error, frame skipped: Cannot index string" in result.stderr


def test_bad_jq_filter_is_exit_2_before_connecting(sim):
    result = run_cli("connect", "localTimeline", *host(sim), "--jq", ".body |||", *SAFETY)
    assert result.exit_code == ExitCode.USAGE
    assert "bad --jq filter" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert sim.sockets_opened == 0


def test_usage_errors_exit_2_and_send_nothing(sim, tmp_path):
    cases = [
        ("connect", "local timeline"),
        ("connect", "localTimeline?withFiles=maybe"),
        ("connect", "hashtag"),
        ("connect", "hashtag?q=[1]"),
        ("connect", "localTimeline", "-p", "novalue"),
        ("connect", "localTimeline", "--params", "[1]"),
        ("connect", "localTimeline", "--duration", "5 minutes"),
        ("connect", "localTimeline", "--argjson", "x", "{bad"),
        ("connect", "localTimeline", "--token-file", str(tmp_path / "missing")),
        ("connect", "localTimeline", "--format", "raw", "--jq", "."),
        ("send", "queueStats", "requestLog", "{bad json"),
        ("send", "chatUser?otherId=x", "read"),
        ("connect", "localTimeline", "localTimeline:localTimeline"),
        ("connect", "localTimeline", "--stdin", "--token-file", "-"),
    ]
    for args in cases:
        result = run_cli(args[0], *SAFETY, *args[1:], *host(sim))
        assert result.exit_code == ExitCode.USAGE, (args, result.stderr)
        assert result.stderr.strip(), args
        assert result.stdout == "", args
    result = run_cli("connect", "localTimeline", "--host", "ftp://x", *SAFETY)
    assert result.exit_code == ExitCode.USAGE and "scheme" in result.stderr
    assert sim.sockets_opened == 0


def test_timestamps_raw_and_pretty_formats(sim):
    def feed(count):
        def run():
            sim.wait_for_subscription("localTimeline")
            for _ in range(count):
                sim.inject('{"type":"channel", "body":{"id":"localTimeline","type":"note","body":{"text":"\\u3042"}}}')
        return run

    feeder = in_background(feed(1))
    result = run_cli("connect", "localTimeline", *host(sim), "--timestamps", "--ndjson", "-n", "1", *SAFETY)
    join_ok(feeder)
    [record] = records(result)
    assert list(record) == ["ts", "type", "body"] and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", record["ts"])
    assert "あ" in result.stdout

    sim.close_all()
    feeder = in_background(feed(1))
    result = run_cli("connect", "localTimeline", *host(sim), "--format", "raw", "-n", "1", *SAFETY)
    join_ok(feeder)
    assert result.stdout == '{"type":"channel", "body":{"id":"localTimeline","type":"note","body":{"text":"\\u3042"}}}\n'

    sim.close_all()
    feeder = in_background(feed(1))
    result = run_cli("connect", "localTimeline", *host(sim), "--pretty", "--color", "always", "-n", "1", *SAFETY)
    join_ok(feeder)
    assert "\x1b[" in result.stdout
    assert json.loads(re.sub(r"\x1b\[[0-9;]*m", "", result.stdout))["body"]["body"]["text"] == "あ"


def test_output_file_appends(sim, tmp_path):
    out = tmp_path / "log.ndjson"
    for n in range(2):
        def feed(n=n):
            sim.wait_for_subscription("localTimeline", count=1)
            sim.post_note(text=f"run {n}")

        feeder = in_background(feed)
        result = run_cli("connect", "localTimeline", *host(sim), "-o", str(out), "-n", "1", *SAFETY)
        join_ok(feeder)
        assert result.exit_code == 0 and result.stdout == ""
        sim.wait_for_closed()
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["body"]["body"]["text"] for line in lines] == ["run 0", "run 1"]


def test_idle_timeout_and_duration_end_with_0(sim):
    result = run_cli("connect", "localTimeline", *host(sim), "--idle-timeout", "0.3")
    assert result.exit_code == 0 and "no frame for 0.3s" in result.stderr
    result = run_cli("connect", "localTimeline", *host(sim), "--duration", "0.3")
    assert result.exit_code == 0 and "duration of 0.3s reached" in result.stderr


def test_unknown_frame_types_pass_through_and_bad_frames_are_reported(sim):
    def feed():
        sim.wait_for_subscription("localTimeline")
        sim.inject("not json at all")
        sim.inject(b"\x00\x01binary")
        sim.inject([1, 2, 3])
        sim.inject_invalid_utf8()
        sim.inject({"type": "forkSpecialEvent", "body": {"x": 1}})

    feeder = in_background(feed)
    result = run_cli("connect", "localTimeline", *host(sim), "-n", "1", "--ndjson", *SAFETY)
    join_ok(feeder)
    assert result.exit_code == 0
    assert records(result) == [{"type": "forkSpecialEvent", "body": {"x": 1}}]
    for reason in ("not JSON", "binary frame", "a JSON array", "invalid UTF-8"):
        assert reason in result.stderr


def test_quiet_silences_notices(sim):
    result = run_cli("connect", "main", *host(sim), "--ack-timeout", "0.1", "--idle-timeout", "0.5", "-q")
    assert result.exit_code == 0 and result.stderr == ""


def test_demo_prints_note_texts():
    result = run_cli("connect", "localTimeline", "--demo", "-n", "3", "--ndjson", *SAFETY,
                     env={"MKSTREAM_DEMO_RATE": "100"})
    assert result.exit_code == 0, result.stderr
    texts = [r["body"]["body"]["text"] for r in records(result)]
    assert len(texts) == 3 and all(isinstance(t, str) and t for t in texts)


def one_injected_note(sim, *args, env=None):
    def feed():
        sim.wait_for_subscription("localTimeline")
        sim.post_note(text="colour?")

    feeder = in_background(feed)
    result = run_cli("connect", "localTimeline", *host(sim), "-n", "1", *args, *SAFETY, env=env)
    join_ok(feeder)
    sim.wait_for_closed()
    return result


def test_colour_follows_force_color_no_color_and_style(sim):
    assert "\x1b[" not in one_injected_note(sim, "--pretty").stdout  # not a terminal
    forced = one_injected_note(sim, "--pretty", env={"FORCE_COLOR": "1"}).stdout
    assert "\x1b[" in forced
    assert "\x1b[" not in one_injected_note(sim, "--pretty", env={"FORCE_COLOR": "1", "NO_COLOR": "1"}).stdout
    other_style = one_injected_note(sim, "--pretty", "--style", "solarized-light", env={"FORCE_COLOR": "1"}).stdout
    assert "\x1b[" in other_style and other_style != forced
    result = run_cli("connect", "localTimeline", *host(sim), "--style", "nosuchstyle", *SAFETY)
    assert result.exit_code == ExitCode.USAGE and "unknown style" in result.stderr


def test_strings_and_unknown_connection_ids(sim):
    def feed():
        sim.wait_for_subscription("localTimeline")
        sim.inject('"just a string"')
        sim.inject({"type": "channel", "body": {"id": "someone-else", "type": "note", "body": {"text": "stray"}}})

    feeder = in_background(feed)
    result = run_cli("connect", "localTimeline", *host(sim), "-n", "1", "--ndjson", *SAFETY)
    join_ok(feeder)
    assert "bad frame skipped (a JSON string, not an object)" in result.stderr
    # A frame for a connection id mkstream did not open is still the server's data: passed through.
    assert records(result)[0]["body"]["id"] == "someone-else"


def test_version_and_module_entry_point():
    import subprocess
    import sys

    from misskey_cli import __version__

    result = run_cli("--version")
    assert result.exit_code == 0 and result.stdout == f"mkstream, version {__version__}\n"
    done = subprocess.run([sys.executable, "-m", "misskey_cli", "--version"], capture_output=True, check=True)
    assert done.stdout.decode() == result.stdout
