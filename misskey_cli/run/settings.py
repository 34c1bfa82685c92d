"""What one run was asked to do: frozen, typed settings built by ``cli/`` and read by ``run/app.py``.

Every string the user typed has been parsed by the time a settings object exists, so nothing
downstream parses options again. ``Liveness`` and ``Reconnect`` are defined beside the policies that
read them (``net/policy.py``) and composed here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from misskey_cli.net.policy import Liveness as Liveness  # re-exported: run control settings net/ owns
from misskey_cli.net.policy import Reconnect as Reconnect

if TYPE_CHECKING:  # annotations only: cli.py imports this module at start-up, so it stays light
    from misskey_cli.core.timefmt import TimeBound
    from misskey_cli.net.endpoint import Endpoint, Proxy

# ----- the server -----------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenSource:
    """Where the token comes from: a value, a file (``-`` = stdin), or nowhere (anonymous)."""

    value: str | None = None
    file: str | None = None


@dataclass(frozen=True)
class ServerSettings:
    endpoint: Endpoint | None  # None only with demo
    token: TokenSource = TokenSource()
    auth: str = "query"
    insecure: bool = False
    ca_file: str | None = None
    proxy: Proxy | None = None
    demo: bool = False


# ----- output ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class OutputSettings:
    format: str | None = None  # None: pretty on a terminal, else ndjson
    color: str = "auto"
    style: str = "monokai"
    filters: tuple[str, ...] = ()
    jq_args: tuple[tuple[str, Any], ...] = ()  # --arg values are strings, --argjson values parsed JSON
    raw_output: bool = False
    timestamps: bool = False
    path: str | None = None  # -o FILE; None = stdout
    width: int | None = None  # --format line: columns (None: the terminal's, no cut in a pipe)
    show_cw: bool = False
    unsafe_raw: bool = False  # -r strings verbatim even on a terminal
    max_backlog: int = 256 * 1024 * 1024  # bytes of records waiting for a slow reader before dropping
    record: str | None = None  # --record FILE[.gz]: every frame as received, in the recording format


@dataclass(frozen=True)
class NoticeSettings:
    quiet: bool = False
    verbose: bool = False
    stats: bool = False
    status: bool = True  # the status line, when stderr is a terminal and the records go elsewhere


# ----- run control ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Limits:
    count: int | None = None
    duration: float | None = None
    idle_timeout: float | None = None


# ----- what to subscribe ----------------------------------------------------------------------


@dataclass(frozen=True)
class ConnectionRequest:
    channel: str
    connection_id: str | None
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SendRequest:
    connection_id: str
    message_type: str
    body: Any


@dataclass(frozen=True)
class Request:
    connections: tuple[ConnectionRequest, ...] = ()
    captures: tuple[str, ...] = ()
    sends: tuple[SendRequest, ...] = ()
    stdin_commands: bool = False
    capture_seen: int | None = None  # --capture-seen N: capture the notes channels deliver, N at most
    show_captured: bool = False  # ``capture``: show each note (notes/show) before its events


@dataclass(frozen=True)
class Gaps:
    """Backfill after reconnects, dedupe across connections, resume across runs."""

    backfill: bool = True
    backfill_max: int = 1000
    mark: bool = False  # add "backfilled": true to backfilled records
    dedupe: bool = False
    state: str | None = None  # --state FILE


@dataclass(frozen=True)
class StreamSettings:
    """Everything a streaming command (connect, capture, send) asked for."""

    server: ServerSettings
    output: OutputSettings
    notices: NoticeSettings
    limits: Limits
    liveness: Liveness
    reconnect: Reconnect
    request: Request
    gaps: Gaps = Gaps()


@dataclass(frozen=True)
class ReplaySettings:
    """What ``replay`` asked for: the inputs (``-`` = stdin), pacing, selection, and the stream's output."""

    files: tuple[str, ...]
    output: OutputSettings
    notices: NoticeSettings
    limits: Limits
    speed: float | None = None  # None: as fast as possible; 1: the recorded pace
    connection_ids: tuple[str, ...] = ()  # --channel: only channel frames of these connections
    since: TimeBound | None = None
    until: TimeBound | None = None
