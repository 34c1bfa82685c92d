"""What one run was asked to do: frozen, typed settings built by ``cli.py`` and read by ``app.py``.

Every string the user typed has been parsed by the time a settings object exists, so nothing
downstream parses options again. The profile key table lives here too: it drives profile loading
(``profiles.py``), click's ``default_map`` (``cli.py``) and the ``mkstream profiles`` help.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

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
class StreamSettings:
    """Everything a streaming command (connect, capture, send) asked for."""

    server: ServerSettings
    output: OutputSettings
    notices: NoticeSettings
    limits: Limits
    liveness: Liveness
    reconnect: Reconnect
    request: Request


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


@dataclass(frozen=True)
class ProfileKey:
    name: str
    type: type
    param: str  # the click parameter it defaults
    help: str


PROFILE_KEY_TABLE: tuple[ProfileKey, ...] = (
    ProfileKey("host", str, "host", "server, as --host takes it"),
    ProfileKey("token", str, "token", "access token (keep the file private: chmod 600)"),
    ProfileKey("token_file", str, "token_file", "file holding the token (relative to the config file)"),
    ProfileKey("auth", str, "auth", "query or header"),
    ProfileKey("ca_file", str, "ca_file", "CA bundle to verify TLS against"),
    ProfileKey("proxy", str, "proxy", "HTTP proxy URL"),
    ProfileKey("format", str, "fmt", "pretty, ndjson, raw or line"),
    ProfileKey("color", str, "color", "auto, always or never"),
    ProfileKey("style", str, "style", "pygments style"),
    ProfileKey("timestamps", bool, "timestamps", "true to add receive times"),
)
PROFILE_KEYS: dict[str, type] = {key.name: key.type for key in PROFILE_KEY_TABLE}
PATH_KEYS = ("token_file", "ca_file")
