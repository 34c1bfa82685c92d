"""What one run was asked to do: frozen, typed settings built by ``cli.py`` and read by ``app.py``.

Every string the user typed has been parsed by the time a settings object exists, so nothing
downstream parses options again. ``PROFILE_KEYS``/``PATH_KEYS`` are the views of the profile key
table (``choices.PROFILE_KEYS``) that profile loading needs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from misskey_cli.choices import PROFILE_KEYS as _PROFILE_KEYS

if TYPE_CHECKING:  # annotations only: cli.py imports this module at start-up, so it stays light
    from misskey_cli.config import Endpoint, Proxy
    from misskey_cli.recording import TimeBound

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


@dataclass(frozen=True)
class Liveness:
    ping_interval: float = 30.0
    ping_timeout: float = 60.0
    ack_timeout: float = 5.0
    require_ack: bool = False
    connect_timeout: float = 10.0


@dataclass(frozen=True)
class Reconnect:
    enabled: bool = True
    max_retries: int | None = None  # None = never give up
    first_delay: float = 0.5
    cap: float = 30.0
    # A connection that lived this long resets the backoff (reconnecting-websocket, which the
    # official client builds on, uses 5 s too).
    stable_after: float = 5.0

    @property
    def retry_first_connect(self) -> bool:
        """Retries given explicitly apply to the first connection too; by default it fails at once."""
        return self.max_retries is not None


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


# ----- config profiles ------------------------------------------------------------------------

# The one table of profile keys lives in choices.py, which cli.py imports at start-up without
# the cost of these dataclasses; its rows are (key, TOML type, click parameter, help).
PROFILE_KEY_TABLE = _PROFILE_KEYS
PROFILE_KEYS: dict[str, type] = {key: kind for key, kind, _, _ in PROFILE_KEY_TABLE}
PATH_KEYS = ("token_file", "ca_file")
