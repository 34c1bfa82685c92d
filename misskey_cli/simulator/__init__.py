"""The built-in Misskey-compatible server (docs/cli.md §7, docs/protocol.md): the streaming API and,
on the same host and port, the HTTP API beside it (docs/protocol.md §9).

A package of small modules, each owning one job:

- ``rules``: the pure admission and routing rules (handshakes, connects, which note goes where);
- ``engine``: the asyncio ``websockets`` server thread, the only module importing ``websockets``;
- ``activity``: the background tasks (generated notes, stats, main and capture ticks, broadcasts);
- ``corpus``: the raw material: aidx ids and times, the cast of users, the texts they post;
- ``traffic``: the content (notes, notifications, note events, stats) in the real server's shapes;
- ``history``: the ordered note and notification history and the pagination rule;
- ``httpwire`` and ``api_server``: HTTP/1.1 framing and the Misskey HTTP API endpoints;
- ``api_params``: Misskey's error objects and parameter checks;
- ``bot_api`` and ``world``: the endpoints a bot calls beyond the timelines, and what they change;
- ``replay``: serving a recording (``serve --replay``) instead of generated traffic;
- ``knobs``: the public ``Simulator`` with the knobs and observations tests use, and ``serve``.

From the client's side it uses only the pure layers below it: ``core/`` (frames, channels, notes,
the JSON codec), ``errors`` and the recording reader.
"""

from __future__ import annotations

from misskey_cli.simulator.knobs import Simulator, serve
from misskey_cli.simulator.rules import (
    DEFAULT_MODERATORS,
    DEFAULT_SUSPENDED_TOKENS,
    DEFAULT_TOKENS,
    DEMO_TOKEN,
    WWW_AUTHENTICATE,
    hashtag_matches,
    hashtag_q_valid,
    js_truthy,
    reply_shown,
)

__all__ = [
    "DEFAULT_MODERATORS",
    "DEFAULT_SUSPENDED_TOKENS",
    "DEFAULT_TOKENS",
    "DEMO_TOKEN",
    "WWW_AUTHENTICATE",
    "Simulator",
    "hashtag_matches",
    "hashtag_q_valid",
    "js_truthy",
    "reply_shown",
    "serve",
]
