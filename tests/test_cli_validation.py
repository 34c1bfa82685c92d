"""The catalogue catches at the prompt what Misskey would silently ignore (issue: catalogue-driven
validation), proven through the real CLI against the simulator: what is an error sends nothing,
what is a warning is still sent exactly as typed.
"""

from __future__ import annotations

import pytest
from helpers import SAFETY, run_cli

from misskey_cli.errors import ExitCode

QUICK = ("--idle-timeout", "0.3", "--ack-timeout", "0.2", *SAFETY)


@pytest.fixture(autouse=True)
def no_user_config(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("MKSTREAM_PROFILE", raising=False)


def host(sim):
    return ("--host", f"http://{sim.host_port}")


def connects(sim):
    return [f["body"] for f in sim.client_frames() if f.get("type") == "connect"]


@pytest.mark.parametrize(("args", "message"), [
    (("connect", "hashtag"),
     ("channel hashtag needs param q (tags: a list of lists, OR of ANDs; `misskey`, `a,b` (OR) and `a+b` (AND) "
      "are accepted as shorthands), e.g. mkstream connect 'hashtag?q=misskey,fediverse'")),
    (("connect", "localTimeline", "userList"),
     "channel userList needs param listId (the list's id), e.g. mkstream connect 'userList?listId=9abcdef012345678'"),
    (("connect", "antenna", "-p", "withFiles=true"), "channel antenna needs param antennaId"),
    (("connect", "localTimeline?withFiles=maybe"),
     "localTimeline param withFiles is a boolean: use withFiles=true or withFiles=false, not 'maybe'"),
    (("connect", "localTimeline", "-p", "withReplies=2"), "param withReplies is a boolean"),
    (("connect", "hashtag?q=[[1]]"), "hashtag param q must be a list of lists of tags"),
    (("connect", "hashtag", "-p", "q=,"), "hashtag param q needs at least one tag, e.g. q=misskey"),
    (("send", "reversiGame?gameId=g1", "putStone"),
     "reversiGame message putStone changes state on the server; add --force to send it anyway"),
])
def test_sure_misses_are_exit_2_with_the_right_form_and_send_nothing(sim, args, message):
    result = run_cli(*args, *host(sim), "--token", "tok-alice", *QUICK)
    assert result.exit_code == ExitCode.USAGE, result.stderr
    assert message in result.stderr
    assert result.stdout == "" and sim.sockets_opened == 0


def test_hashtag_shorthands_are_typed_by_the_catalogue(sim):
    result = run_cli("connect", "hashtag?q=misskey", "hashtag:tags?q=%23a+b,c", "hashtag:json", "-p",
                     'q=[["x"]]', *host(sim), *QUICK)
    assert result.exit_code == 0, result.stderr
    sent = {c["id"]: c["params"]["q"] for c in connects(sim)}
    assert sent == {"hashtag": [["misskey"]], "tags": [["a", "b"], ["c"]], "json": [["x"]]}


def test_unknown_param_warns_with_close_matches_and_is_still_sent(sim):
    result = run_cli("connect", "localTimeline?withReplys=true", "-p", "forkOption=7", *host(sim), *QUICK)
    assert result.exit_code == 0, result.stderr
    assert ("channel localTimeline has no param withReplys (did you mean withReplies or withRenotes or withFiles?); "
            "sending it anyway"
            in result.stderr)
    assert "has no param forkOption (it takes withRenotes, withReplies, withFiles)" in result.stderr
    [connect] = connects(sim)
    assert connect["params"] == {"forkOption": 7, "withReplys": True}


def test_unknown_and_removed_channels_warn_and_are_still_sent(sim):
    result = run_cli("connect", "localTimline", "messaging", *host(sim), *QUICK)
    assert result.exit_code == 0, result.stderr
    assert "unknown channel localTimline (did you mean localTimeline" in result.stderr
    assert "channel messaging was removed from Misskey (chat is chatUser/chatRoom now)" in result.stderr
    assert [c["channel"] for c in connects(sim)] == ["localTimline", "messaging"]


def test_credential_channel_warns_only_without_a_token(sim):
    anonymous = run_cli("connect", "homeTimeline", *host(sim), *QUICK)
    assert "channel homeTimeline needs a logged-in user and no token is set" in anonymous.stderr
    logged_in = run_cli("connect", "homeTimeline", *host(sim), "--token", "tok-alice", *QUICK)
    assert "needs a logged-in user" not in logged_in.stderr and "not acknowledged" not in logged_in.stderr
    assert [c["channel"] for c in connects(sim)] == ["homeTimeline", "homeTimeline"]


def test_send_checks_the_message_type(sim):
    result = run_cli("send", "queueStats", "requestLogs", '{"id":"a"}', *host(sim), *QUICK)
    assert result.exit_code == 0, result.stderr
    assert ("channel queueStats does not handle requestLogs (did you mean requestLog?) (it accepts requestLog); "
            "sending it anyway") in result.stderr
    message = sim.wait_for_client_frame(lambda f: f.get("type") == "channel")
    assert message["body"]["type"] == "requestLogs"


def test_send_with_force_sends_a_side_effecting_message(sim):
    result = run_cli("send", "chatUser?otherId=u2", "read", "--force", *host(sim), "--token", "tok-alice", *QUICK)
    assert result.exit_code == 0, result.stderr
    message = sim.wait_for_client_frame(lambda f: f.get("type") == "channel")
    assert message == {"type": "channel", "body": {"id": "chatUser", "type": "read", "body": {}}}
