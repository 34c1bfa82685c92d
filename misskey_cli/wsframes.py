"""Splitting a server's byte stream into WebSocket messages (RFC 6455 section 5). Pure.

websocket-client opens the socket (handshake, TLS, proxies) and sends; receiving goes through this
parser instead of the library's frame reader, which costs three ``recv`` calls and a pure-Python
UTF-8 check per frame. Here one ``recv`` brings as many frames as have arrived and each is cut out
of the buffer with a few slice operations. Text is not validated here: the JSON decoder does it.
"""

from __future__ import annotations

OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

_DATA = (OP_TEXT, OP_BINARY)
_CONTROL = (OP_CLOSE, OP_PING, OP_PONG)


class FramingError(ValueError):
    """The byte stream is not valid WebSocket framing: the connection cannot be trusted."""


class FrameParser:
    """Feed it bytes as they arrive; it returns whole messages as ``(opcode, payload)``.

    Fragmented data messages are reassembled; control frames (close, ping, pong) are returned as
    they come, even between the fragments of a data message.
    """

    def __init__(self, max_message: int = 256 * 1024 * 1024) -> None:
        self.buffer = bytearray()
        self.max_message = max_message
        self._fragments: list[bytes] = []
        self._fragment_opcode = 0
        self._fragment_size = 0

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        buffer = self.buffer
        buffer += data
        messages: list[tuple[int, bytes]] = []
        pos = 0
        size = len(buffer)
        while size - pos >= 2:
            first = buffer[pos]
            second = buffer[pos + 1]
            length = second & 0x7F
            header = 2
            if length == 126:
                if size - pos < 4:
                    break
                length = int.from_bytes(buffer[pos + 2:pos + 4], "big")
                header = 4
            elif length == 127:
                if size - pos < 10:
                    break
                length = int.from_bytes(buffer[pos + 2:pos + 10], "big")
                header = 10
            if length > self.max_message:
                raise FramingError(f"a frame of {length} bytes is larger than the {self.max_message} byte limit")
            masked = second & 0x80
            if masked:
                header += 4
            end = pos + header + length
            if end > size:
                break
            payload = bytes(buffer[pos + header:end])
            if masked:
                payload = _unmask(payload, bytes(buffer[pos + header - 4:pos + header]))
            pos = end
            opcode = first & 0x0F
            if first & 0x80 and opcode in _DATA and not self._fragments:
                messages.append((opcode, payload))  # the common case: one whole text frame
            else:
                self._fragment(first & 0x80, opcode, payload, messages)
        if pos:
            del buffer[:pos]
        return messages

    def _fragment(self, fin: int, opcode: int, payload: bytes, messages: list[tuple[int, bytes]]) -> None:
        if opcode in _CONTROL:
            if not fin or len(payload) > 125:
                raise FramingError("a control frame was fragmented or longer than 125 bytes")
            messages.append((opcode, payload))
        elif opcode in _DATA:
            if self._fragments:
                raise FramingError("a new message started before the last one was finished")
            self._fragments = [payload]
            self._fragment_opcode = opcode
            self._fragment_size = len(payload)
        elif opcode == OP_CONTINUATION:
            if not self._fragments:
                raise FramingError("a continuation frame arrived with no message to continue")
            self._fragments.append(payload)
            self._fragment_size += len(payload)
            if self._fragment_size > self.max_message:
                raise FramingError(f"a message is larger than the {self.max_message} byte limit")
            if fin:
                messages.append((self._fragment_opcode, b"".join(self._fragments)))
                self._fragments = []
        else:
            raise FramingError(f"unknown opcode {opcode:#x}")


def _unmask(payload: bytes, mask: bytes) -> bytes:
    # Servers must not mask (RFC 6455 5.1), but undoing it costs nothing when one does.
    repeated = (mask * (len(payload) // 4 + 1))[:len(payload)]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(len(payload), "big")


def close_status(payload: bytes) -> tuple[int, str]:
    """The code and reason of a close frame's payload (1005 = none given)."""
    if len(payload) < 2:
        return 1005, ""
    return int.from_bytes(payload[:2], "big"), payload[2:].decode("utf-8", "replace")
