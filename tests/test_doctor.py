"""mkstream doctor against the simulator in each state that makes a stream fail, with its exit code.

Real sockets all the way: nothing listening, a self-signed certificate (and --ca-file,
--insecure), a bad and a suspended token, a refused handshake, channels not acknowledged (or
acknowledged and inert), a fork, an unknown server software, a skewed clock, a proxy from the
environment, --json, and server text that tries to drive the terminal. The judgement of a channel
and the proxy rule are pure and table-tested.
"""

from __future__ import annotations

import json
import socket
import threading

import pytest
from helpers import run_cli
from test_transport import ForwardProxy

from misskey_cli.doctor.forks import ServerKind, parse_version
from misskey_cli.doctor.verdict import FAIL, OK, WARN, ChannelContext, judge_channel
from misskey_cli.errors import ExitCode
from misskey_cli.net.endpoint import Proxy, parse_host
from misskey_cli.net.transport import effective_proxy, no_proxy_matches
from misskey_cli.run.settings import ConnectionRequest
from misskey_cli.simulator import Simulator

QUICK = ("--ack-timeout", "0.3", "--connect-timeout", "5")


def doctor(*args, env=None):
    return run_cli("doctor", *QUICK, *args, env=env)


def host(sim):
    return ("--host", f"http://{sim.host_port}")


def lines(result) -> dict[str, str]:
    """Check title -> its line, from the human report."""
    out = {}
    for line in result.stdout.splitlines()[1:-1]:
        _mark, _, rest = line.partition(" ")
        title = rest.strip().split("  ")[0]
        out[title] = line
    return out


def marks(result) -> dict[str, str]:
    return {title: line.split()[0] for title, line in lines(result).items()}


def report(result):
    return json.loads(result.stdout)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# ----- passing --------------------------------------------------------------------------------


def test_everything_passes_anonymously_with_ascii_marks_off_a_terminal(sim):
    result = doctor(*host(sim))
    assert result.exit_code == 0, result.stdout + result.stderr
    assert result.stdout.startswith(f"mkstream doctor: ws://{sim.host_port}/streaming\n")
    assert marks(result) == {
        "proxy": "ok", "name resolution": "ok", "TCP connect": "ok", "TLS": "skip", "HTTP": "ok", "clock": "ok",
        "nodeinfo": "ok", "meta": "ok", "token": "ok", "streaming handshake": "ok", "channel localTimeline": "ok"}
    found = lines(result)
    assert "Misskey 2026.5.1" in found["nodeinfo"]
    assert "none: anonymous" in found["token"]
    assert "HTTP 101" in found["streaming handshake"]
    assert result.stdout.endswith("all checks passed\n")


def test_a_token_is_named_and_main_is_checked_too(sim):
    result = doctor(*host(sim), "--token", "tok-alice")
    assert result.exit_code == 0, result.stdout
    found = lines(result)
    assert "belongs to @alice" in found["token"]
    assert "acknowledged" in found["channel main"]
    assert "tok-alice" not in result.stdout + result.stderr
    assert "i=***" in result.stdout


def test_the_token_goes_where_auth_says(sim):
    result = doctor(*host(sim), "--token", "tok-alice", "--auth", "header")
    assert result.exit_code == 0, result.stdout
    assert "(the token in an Authorization header)" in lines(result)["streaming handshake"]
    assert sim.handshakes[-1]["headers"]["authorization"] == "Bearer tok-alice"
    assert "i" not in sim.handshakes[-1]["query"]


def test_the_demo_server_passes():
    result = doctor("--demo")
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "belongs to @demo" in result.stdout


# ----- failing, each with its exit code ---------------------------------------------------------


def test_nothing_listening_stops_at_tcp_with_exit_3():
    result = doctor("--host", f"http://127.0.0.1:{free_port()}")
    assert result.exit_code == ExitCode.CONNECT_FAILED
    found = lines(result)
    assert found["TCP connect"].startswith("FAIL")
    assert "refused the connection" in found["TCP connect"] and "fix: is the server running" in found["TCP connect"]
    assert "HTTP" not in found and "meta" not in found  # the rest would say nothing new
    assert result.stdout.endswith("failed: TCP connect (exit 3)\n")


def test_an_unknown_host_fails_name_resolution():
    result = doctor("--host", "no-such-host.invalid")
    assert result.exit_code == ExitCode.CONNECT_FAILED
    assert lines(result)["name resolution"].startswith("FAIL")


def test_a_self_signed_certificate_fails_tls_with_the_fix(tls_sim):
    result = doctor("--host", tls_sim.host_port)
    assert result.exit_code == ExitCode.CONNECT_FAILED
    tls = lines(result)["TLS"]
    assert tls.startswith("FAIL") and "certificate rejected" in tls
    assert "--ca-file" in tls and "--insecure" in tls


def test_ca_file_verifies_and_shows_the_days_left(tls_sim, certificate):
    cert, _ = certificate
    result = doctor("--host", tls_sim.host_port, "--ca-file", str(cert))
    assert result.exit_code == 0, result.stdout
    tls = lines(result)["TLS"]
    assert tls.startswith("warn")  # a two-day test certificate is about to expire
    assert f"verified by --ca-file {cert}" in tls and "expires in 1 day" in tls
    assert "renew" in tls


def test_insecure_is_noted_and_the_rest_goes_on(tls_sim):
    result = doctor("--host", tls_sim.host_port, "--insecure")
    assert result.exit_code == 0, result.stdout
    tls = lines(result)["TLS"]
    assert tls.startswith("warn") and "accepted because of --insecure" in tls
    assert lines(result)["channel localTimeline"].startswith("ok")


@pytest.fixture
def plain_http_port():
    """A plain HTTP server that answers anything with 400, as nginx answers a TLS hello on port 80."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve():
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            with client:
                client.recv(4096)
                client.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")

    threading.Thread(target=serve, daemon=True).start()
    yield listener.getsockname()[1]
    listener.close()


def test_a_plain_http_port_asked_for_tls_says_so(plain_http_port):
    result = doctor("--host", f"127.0.0.1:{plain_http_port}")  # a bare host means TLS
    assert result.exit_code == ExitCode.CONNECT_FAILED
    tls = lines(result)["TLS"]
    assert tls.startswith("FAIL") and f"use --host http://127.0.0.1:{plain_http_port}" in tls


def test_a_bad_token_is_exit_4_and_stops_before_the_stream(sim):
    result = doctor(*host(sim), "--token", "not-a-token")
    assert result.exit_code == ExitCode.TOKEN_REJECTED
    token = lines(result)["token"]
    assert token.startswith("FAIL") and "HTTP 401" in token and "mkstream login" in token
    assert "streaming handshake" not in lines(result)
    assert "not-a-token" not in result.stdout + result.stderr


def test_a_suspended_account_is_exit_5(sim):
    result = doctor(*host(sim), "--token", "tok-suspended")
    assert result.exit_code == ExitCode.FORBIDDEN
    assert "suspended" in lines(result)["token"]


def test_a_handshake_answered_503_points_at_a_proxy_dropping_upgrade(sim):
    sim.refuse_next(1, 503)
    result = doctor(*host(sim))
    assert result.exit_code == ExitCode.CONNECT_FAILED
    handshake = lines(result)["streaming handshake"]
    assert "HTTP 503 instead of 101" in handshake and "Upgrade" in handshake and "proxy_set_header" in handshake


def test_main_without_a_token_is_not_acknowledged_exit_7(sim):
    result = doctor(*host(sim), "main", "localTimeline")
    assert result.exit_code == ExitCode.NOT_ACKNOWLEDGED
    found = lines(result)
    assert found["channel main"].startswith("FAIL")
    assert "not acknowledged within 0.3s: likely it needs a token" in found["channel main"]
    assert found["channel localTimeline"].startswith("ok")
    assert result.stdout.endswith("failed: channel main (exit 7)\n")


def test_admin_for_a_non_moderator_is_acknowledged_but_inert(sim):
    result = doctor(*host(sim), "--token", "tok-alice", "admin")
    assert result.exit_code == 0
    assert lines(result)["channel admin"].startswith("warn")
    assert "@alice is not a moderator" in lines(result)["channel admin"]
    ok = doctor(*host(sim), "--token", "tok-admin", "admin")
    assert lines(ok)["channel admin"].startswith("ok")


def test_an_app_token_without_read_chat_is_told_to_log_in_asking_for_it(sim):
    token = sim.approve_miauth("doctor-no-chat", "alice", ["read:account", "read:notifications"])
    result = doctor(*host(sim), "--token", token, "chatUser?otherId=9bob00000000000", "main")
    assert result.exit_code == ExitCode.NOT_ACKNOWLEDGED
    found = lines(result)
    assert found["channel main"].startswith("ok")  # main needs read:account only
    chat = found["channel chatUser"]
    assert chat.startswith("FAIL") and "may lack the permission read:chat" in chat
    assert f"mkstream login {sim.host_port} --permission read:chat --force" in result.stdout
    assert token not in result.stdout + result.stderr
    granted = sim.approve_miauth("doctor-chat", "alice", ["read:account", "read:chat"])
    assert lines(doctor(*host(sim), "--token", granted, "chatUser?otherId=9bob00000000000"))[
        "channel chatUser"].startswith("ok")


def test_a_fork_without_the_channel_is_told_apart():
    with Simulator(software_name="iceshrimp", software_version="2024.1.0") as sim:
        result = doctor(*host(sim), "hashtag?q=misskey")
    assert result.exit_code == 0, result.stdout  # this server did acknowledge it
    found = lines(result)
    assert "Iceshrimp 2024.1.0, a Misskey fork" in found["nodeinfo"] and "has no hashtag" in found["nodeinfo"]
    assert found["channel hashtag"].startswith("warn")
    assert "Iceshrimp 2024.1.0 is not known to have hashtag" in found["channel hashtag"]


def test_an_unknown_software_is_a_warning():
    with Simulator(software_name="gotosocial", software_version="0.17") as sim:
        result = doctor(*host(sim))
    assert result.exit_code == 0
    assert lines(result)["nodeinfo"].startswith("warn")
    assert "not Misskey nor a fork mkstream knows" in lines(result)["nodeinfo"]


def test_clock_skew_is_a_warning():
    with Simulator(clock_offset=-125) as sim:
        result = doctor(*host(sim))
    assert result.exit_code == 0
    clock = lines(result)["clock"]
    assert clock.startswith("warn") and "2 min behind this machine's" in clock and "NTP" in clock


def test_server_text_is_escaped():
    with Simulator(software_name="evil\x1b]0;owned\x07") as sim:
        result = doctor(*host(sim))
    assert "\x1b" not in result.stdout and "\x07" not in result.stdout
    assert "evil\\x1b]0;owned\\x07" in lines(result)["nodeinfo"]


def test_a_proxy_from_the_environment_is_used_and_shown(monkeypatch):
    proxy = ForwardProxy()
    try:
        with Simulator(host="127.0.0.2") as sim:
            monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{proxy.port}")
            result = doctor(*host(sim))
            assert result.exit_code == 0, result.stdout + result.stderr
            found = lines(result)
            assert f"http://127.0.0.1:{proxy.port} (from http_proxy)" in found["proxy"]
            assert found["proxy tunnel"].startswith("ok")
            assert "the proxy resolves 127.0.0.2 itself" in found["name resolution"]
            assert any(request.startswith(f"CONNECT {sim.host_port}") for request in proxy.requests)
            monkeypatch.setenv("no_proxy", "127.0.0.2")
            direct = doctor(*host(sim))
            assert "none: no_proxy names 127.0.0.2" in lines(direct)["proxy"]
    finally:
        proxy.close()


def test_json_is_one_document_with_every_check_and_no_token(sim):
    result = doctor(*host(sim), "--json", "--token", "tok-alice", "main", "chatUser?otherId=x")
    data = report(result)
    assert result.exit_code == 0 and data["ok"] is True and data["exit_code"] == 0
    assert [c["check"] for c in data["checks"]] == [
        "proxy", "dns", "tcp", "tls", "http", "clock", "nodeinfo", "meta", "token", "stream", "channel", "channel"]
    assert data["checks"][-2] == {"check": "channel", "title": "channel main", "status": "ok",
                                  "found": "acknowledged", "channel": "main", "id": "main", "acknowledged": True}
    assert "tok-alice" not in result.stdout
    assert data["server"] == f"ws://{sim.host_port}/streaming?i=***"


def test_json_of_a_failure_carries_its_exit_code(sim):
    result = doctor(*host(sim), "--json", "main")
    data = report(result)
    assert result.exit_code == ExitCode.NOT_ACKNOWLEDGED
    assert data["ok"] is False and data["exit_code"] == ExitCode.NOT_ACKNOWLEDGED
    [failed] = [c for c in data["checks"] if c["status"] == "fail"]
    assert failed["exit_code"] == 7 and failed["reason"] == "it needs a token (none was given)"
    assert "mkstream login" in failed["fix"]


def test_a_profile_provides_the_server_and_its_output_keys_are_accepted(sim, tmp_path):
    xdg = tmp_path / "xdg"
    (xdg / "mkstream").mkdir(parents=True)
    (xdg / "mkstream" / "config.toml").write_text(
        f'default_profile = "s"\n[profiles.s]\nhost = "http://{sim.host_port}"\ntoken = "tok-bob"\n'
        'format = "ndjson"\ntimestamps = true\n')
    result = doctor(env={"XDG_CONFIG_HOME": str(xdg)})
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "belongs to @bob" in lines(result)["token"]


def test_no_server_is_a_usage_error():
    result = doctor()
    assert result.exit_code == ExitCode.USAGE
    assert "mkstream login HOST" in result.stderr


def test_a_channel_missing_its_required_param_is_a_usage_error(sim):
    result = doctor(*host(sim), "hashtag")
    assert result.exit_code == ExitCode.USAGE
    assert sim.http_requests() == []


# ----- pure rules --------------------------------------------------------------------------------

MISSKEY = ServerKind("misskey", "2025.12.2")
ICESHRIMP = ServerKind("iceshrimp", "2024.1")
SHARKEY = ServerKind("sharkey", "2025.4.2")


def judged(channel, acked, others=(), **ctx):
    context = ChannelContext(**{"logged_in": True, "server": MISSKEY, "ack_timeout": 5.0, "host": "h", **ctx})
    return judge_channel(ConnectionRequest(channel, None), acked, list(others), context)


@pytest.mark.parametrize(("channel", "acked", "others", "ctx", "status", "words"), [
    ("localTimeline", True, (), {}, OK, "acknowledged"),
    ("main", False, (), {"logged_in": False}, FAIL, "it needs a token"),
    ("main", False, ("main",), {}, FAIL, "connected once per socket"),
    ("admin", False, (), {}, FAIL, "moderator"),
    ("admin", True, (), {"moderator": False, "username": "bob"}, WARN, "@bob is not a moderator"),
    ("userList", True, (), {"logged_in": False}, WARN, "without a token"),
    ("localTimeline", True, (), {"policies": {"ltlAvailable": False}}, WARN, "ltlAvailable"),
    ("globalTimeline", True, (), {"policies": {"gtlAvailable": False}, "username": "a"}, WARN, "off for @a"),
    ("hashtag", False, (), {"server": ICESHRIMP}, FAIL, "Iceshrimp 2024.1 has no hashtag channel"),
    ("hashtag", True, (), {"server": ICESHRIMP}, WARN, "not known to have hashtag"),
    ("chatUser", False, (), {"server": ServerKind("misskey", "2025.3.1")}, FAIL, "older than 2025.4"),
    ("chatUser", False, (), {}, FAIL, "read:chat"),
    ("chatRoom", False, (), {}, FAIL, "--permission read:chat --force"),
    ("admin", False, (), {"moderator": True}, FAIL, "read:admin:stream"),
    ("channel", False, (), {}, FAIL, "check that channelId is right and open to you"),  # needs no permission
    ("bubbleTimeline", True, (), {"server": SHARKEY}, OK, "a channel of this fork"),
    ("bubbleTimeline", False, (), {"server": SHARKEY}, FAIL, "Sharkey 2025.4.2 is known to have it"),
    ("noSuchChannel", False, (), {}, FAIL, "does not know this channel"),
    ("noSuchChannel", True, (), {}, OK, "not in mkstream's catalogue"),
])
def test_judge_channel(channel, acked, others, ctx, status, words):
    check = judged(channel, acked, others, **ctx)
    assert check.status == status
    assert words in check.found + (check.fix or "")
    assert check.exit_code == (ExitCode.NOT_ACKNOWLEDGED if status == FAIL else 0)


@pytest.mark.parametrize(("host_name", "no_proxy", "expected"), [
    ("misskey.example", "*", True),
    ("misskey.example", "misskey.example", True),
    ("sub.misskey.example", "misskey.example", True),
    ("sub.misskey.example", ".misskey.example", True),
    ("notmisskey.example", "misskey.example", False),
    ("10.1.2.3", "10.0.0.0/8", True),
    ("11.1.2.3", "10.0.0.0/8, localhost", False),
    ("127.0.0.1", "127.0.0.1", True),
])
def test_no_proxy_matches(host_name, no_proxy, expected):
    assert no_proxy_matches(host_name, no_proxy) is expected


def test_effective_proxy_prefers_the_option_then_the_schemes_variable_unless_no_proxy_names_the_host():
    explicit = Proxy("p.example", 3128, "http")
    wss, ws = parse_host("misskey.example"), parse_host("http://localhost:3000")
    assert effective_proxy(wss, explicit, {}) == (explicit, "--proxy")
    assert effective_proxy(wss, explicit, {"no_proxy": "misskey.example"}) == (None, "no_proxy")
    assert effective_proxy(wss, None, {"https_proxy": "http://e.example:8080", "http_proxy": "http://x:1"}) == (
        Proxy("e.example", 8080, "http"), "https_proxy")
    assert effective_proxy(ws, None, {"HTTP_PROXY": "http://e.example:8080"}) == (
        Proxy("e.example", 8080, "http"), "HTTP_PROXY")
    assert effective_proxy(ws, None, {"https_proxy": "http://e.example:8080"}) == (None, "")


@pytest.mark.parametrize(("text", "expected"), [
    ("2025.12.2", (2025, 12, 2)), ("2025.4.0-beta.1", (2025, 4, 0)), ("13.14", (13, 14)), ("dev", None)])
def test_parse_version(text, expected):
    assert parse_version(text) == expected
