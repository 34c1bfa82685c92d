"""The client's side of the WebSocket wire format (RFC 6455): the frame parser and the handshake pieces."""

from __future__ import annotations

import os

import pytest

from misskey_cli.net.wsframes import (
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    FrameParser,
    FramingError,
    HandshakeError,
    ResponseHead,
    accept_value,
    check_upgrade,
    close_status,
    head_end,
    redirect_target,
    upgrade_request,
)


def frame(payload: bytes, opcode: int = OP_TEXT, fin: bool = True, mask: bytes | None = None) -> bytes:
    head = bytes([(0x80 if fin else 0) | opcode])
    n = len(payload)
    mask_bit = 0x80 if mask else 0
    if n < 126:
        head += bytes([mask_bit | n])
    elif n < 1 << 16:
        head += bytes([mask_bit | 126]) + n.to_bytes(2, "big")
    else:
        head += bytes([mask_bit | 127]) + n.to_bytes(8, "big")
    if mask:
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        head += mask
    return head + payload


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 300_000])
def test_lengths_of_every_header_form(size):
    payload = os.urandom(size)
    assert FrameParser().feed(frame(payload, OP_BINARY)) == [(OP_BINARY, payload)]


def test_many_frames_in_one_chunk_and_one_frame_over_many_chunks():
    texts = [f"frame {n} こんにちは".encode() for n in range(50)]
    stream = b"".join(frame(t) for t in texts)
    assert FrameParser().feed(stream) == [(OP_TEXT, t) for t in texts]
    parser = FrameParser()
    got = []
    for i in range(len(stream)):
        got.extend(parser.feed(stream[i:i + 1]))
    assert got == [(OP_TEXT, t) for t in texts]
    assert parser.buffer == bytearray()


def test_fragments_are_reassembled_around_control_frames():
    stream = (frame(b"hel", OP_TEXT, fin=False) + frame(b"", OP_PING) + frame(b"lo ", 0, fin=False)
              + frame(b"world", 0, fin=True))
    assert FrameParser().feed(stream) == [(OP_PING, b""), (OP_TEXT, b"hello world")]


def test_masked_frames_are_unmasked():
    assert FrameParser().feed(frame(b"masked text", mask=b"\x01\x02\x03\x04")) == [(OP_TEXT, b"masked text")]


def test_control_frames_and_close_status():
    stream = frame(b"p", OP_PING) + frame(b"q", OP_PONG) + frame((4000).to_bytes(2, "big") + b"bye", OP_CLOSE)
    messages = FrameParser().feed(stream)
    assert [op for op, _ in messages] == [OP_PING, OP_PONG, OP_CLOSE]
    assert close_status(messages[2][1]) == (4000, "bye")
    assert close_status(b"") == (1005, "")


def test_invalid_utf8_text_is_passed_on_for_the_decoder_to_judge():
    assert FrameParser().feed(frame(b"\xff\xfe")) == [(OP_TEXT, b"\xff\xfe")]


@pytest.mark.parametrize(("stream", "message"), [
    (frame(b"x", 0), "no message to continue"),
    (frame(b"a", OP_TEXT, fin=False) + frame(b"b", OP_TEXT), "before the last one was finished"),
    (frame(b"x", 0x3), "unknown opcode"),
    (frame(b"p" * 126, OP_PING), "control frame"),
    (frame(b"p", OP_PING, fin=False), "control frame"),
    (bytes([0xC1, 0x01]) + b"x", "reserved bits 0b100"),  # RSV1: permessage-deflate, never negotiated
    (frame(b"", OP_TEXT)[:1] + bytes([127]) + (1 << 62).to_bytes(8, "big"), "larger than"),
])
def test_framing_errors(stream, message):
    with pytest.raises(FramingError, match=message):
        FrameParser().feed(stream)


def test_size_limit():
    with pytest.raises(FramingError, match="limit"):
        FrameParser(max_message=10).feed(frame(b"x" * 11))


@pytest.mark.parametrize("bad", [frame(b"x", 0x3), frame(b"", OP_TEXT)[:1] + bytes([127]) + (1 << 62).to_bytes(8, "big")])
def test_a_framing_error_carries_the_messages_parsed_before_it(bad):
    good = [f"frame {n}".encode() for n in range(50)]
    with pytest.raises(FramingError) as caught:
        FrameParser().feed(b"".join(frame(t) for t in good) + frame(b"p", OP_PING) + bad)
    assert caught.value.messages == [(OP_TEXT, t) for t in good] + [(OP_PING, b"p")]


def test_a_framing_error_in_a_later_feed_carries_only_that_feeds_messages():
    parser = FrameParser()
    assert parser.feed(frame(b"one") + frame(b"tw")[:2]) == [(OP_TEXT, b"one")]
    with pytest.raises(FramingError) as caught:
        parser.feed(b"tw" + frame(b"x", 0xB))
    assert caught.value.messages == [(OP_TEXT, b"tw")]


# ----- the opening handshake --------------------------------------------------------------------


def test_accept_value_is_the_rfc_example():
    assert accept_value("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="  # RFC 6455 1.3


def test_upgrade_request_carries_every_header_once_and_ends_with_a_blank_line():
    request = upgrade_request("/streaming?i=t", "h.example:3000", "http://h.example:3000", "a2V5", ["X-A: 1"])
    lines = request.decode().split("\r\n")
    assert lines[0] == "GET /streaming?i=t HTTP/1.1"
    assert lines[-2:] == ["", ""]
    assert set(lines[1:-2]) == {"Upgrade: websocket", "Connection: Upgrade", "Host: h.example:3000",
                                "Origin: http://h.example:3000", "Sec-WebSocket-Key: a2V5",
                                "Sec-WebSocket-Version: 13", "X-A: 1"}


@pytest.mark.parametrize(("data", "start", "end"), [
    (b"HTTP/1.1 101 x\r\n\r\n", 0, 18),
    (b"HTTP/1.1 101 x\r\n\r\nframes", 0, 18),
    (b"HTTP/1.1 101 x\r\n\r\n", 16, 18),  # the blank line straddles what was searched before
    (b"HTTP/1.1 101 x\r\n", 0, -1),
    (b"", 0, -1),
])
def test_head_end(data, start, end):
    assert head_end(data, start) == end


def test_response_head_parse():
    head = ResponseHead.parse(b"HTTP/1.1 302 Found\r\nLocation: ws://x/\r\nSet-Cookie: a=1\r\n"
                              b"set-cookie: b=2\r\nX-Empty:\r\n\r\n")
    assert head == ResponseHead(302, "Found", {"location": "ws://x/", "set-cookie": "a=1, b=2", "x-empty": ""})
    assert ResponseHead.parse(b"HTTP/1.0 200\r\n\r\n") == ResponseHead(200, "", {})


@pytest.mark.parametrize("data", [b"SSH-2.0-OpenSSH\r\n\r\n", b"HTTP/1.1 abc OK\r\n\r\n",
                                  b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", b"\x16\x03\x01\r\n\r\n"])
def test_response_head_that_is_not_http(data):
    with pytest.raises(HandshakeError):
        ResponseHead.parse(data)


KEY = "dGhlIHNhbXBsZSBub25jZQ=="
GOOD = {"upgrade": "websocket", "connection": "Upgrade", "sec-websocket-accept": "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="}


@pytest.mark.parametrize(("status", "changes", "problem"), [
    (101, {}, None),
    (101, {"upgrade": "WebSocket", "connection": "keep-alive, Upgrade"}, None),
    (200, {}, "HTTP 200"),
    (101, {"upgrade": "h2c"}, "does not upgrade to websocket"),
    (101, {"connection": "close"}, "Connection: Upgrade"),
    (101, {"sec-websocket-accept": "s3pPLMBiTxaQ9kYGzzhZRbK+xOo"}, "Sec-WebSocket-Accept"),
    (101, {"sec-websocket-accept": None}, "Sec-WebSocket-Accept"),
])
def test_check_upgrade(status, changes, problem):
    headers = {k: v for k, v in {**GOOD, **changes}.items() if v is not None}
    if problem is None:
        check_upgrade(ResponseHead(status, "", headers), KEY)
    else:
        with pytest.raises(HandshakeError, match=problem):
            check_upgrade(ResponseHead(status, "", headers), KEY)


@pytest.mark.parametrize(("location", "target"), [
    ("https://other.example/streaming", "https://other.example"),
    ("wss://other.example:8443/streaming?i=secret#x", "wss://other.example:8443"),
    ("ws://user:pw@other.example/", "ws://other.example"),
    ("https://other.example/prefix/streaming", "https://other.example/prefix/streaming"),
    ("/elsewhere", "ws://h.example:3000/elsewhere"),
    ("  https://other.example  ", "https://other.example"),
])
def test_redirect_target_is_a_host_option_without_secrets(location, target):
    assert redirect_target(location, "ws://h.example:3000/streaming") == target
