"""The receive-side WebSocket frame parser (RFC 6455 section 5), table-driven."""

from __future__ import annotations

import os

import pytest

from misskey_cli.wsframes import (
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    FrameParser,
    FramingError,
    close_status,
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
])
def test_framing_errors(stream, message):
    with pytest.raises(FramingError, match=message):
        FrameParser().feed(stream)


def test_size_limit():
    with pytest.raises(FramingError, match="limit"):
        FrameParser(max_message=10).feed(frame(b"x" * 11))
