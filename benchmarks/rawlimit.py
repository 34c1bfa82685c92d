"""The raw limit: a bare websocket-client receive loop that discards frames.

``python benchmarks/rawlimit.py URL COUNT`` connects, sends the same ``connect`` frame mkstream
sends, receives the ack and COUNT frames with ``WebSocket.recv()`` (which decodes the text), then
writes one line to stdout and leaves. It is configured as mkstream configures websocket-client:
``skip_utf8_validation=True`` (the library's own validator is pure Python and would make the
limit meaninglessly low; ``recv()`` still decodes the UTF-8) and ``enable_multithread=False``.
"""

from __future__ import annotations

import json
import os
import sys

import websocket


def main() -> None:
    url, count = sys.argv[1], int(sys.argv[2])
    ws = websocket.create_connection(url, skip_utf8_validation=True, enable_multithread=False)
    ws.send(json.dumps({"type": "connect", "body": {"channel": "localTimeline", "id": "localTimeline", "pong": True}}))
    recv = ws.recv
    for _ in range(count + 1):  # the ack, then the notes
        recv()
    os.write(1, f"{count}\n".encode())
    ws.close()


if __name__ == "__main__":
    main()
