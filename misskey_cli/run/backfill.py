"""No hole in the log: what a reconnect (or the time between two runs) missed, fetched over HTTP.

For every channel connection with a timeline endpoint (docs/protocol.md §9) the stream loop tells a
``Backfill`` the newest note id it wrote (``observe``). After a reconnect (``start``) a worker
thread pages the endpoint from that id with the connection's own params, sorts by id, and hands
back each note in exactly the frame shape the channel sends; the loop writes them, oldest first,
before the live frames that arrived on that connection meanwhile (held until then), and drops
the live ones the backfill already wrote. The worker never touches the socket, so pings are
answered and other connections flow while it pages.

``--dedupe`` (``SeenNotes``) drops a note already written on another connection, with bounded
memory. ``StateFile`` keeps the last id per connection across runs: a small JSON file written
atomically, never holding the token, locked so two runs cannot interleave.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import queue
import stat
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from misskey_cli.core import jsoncodec
from misskey_cli.core.files import replace_atomically
from misskey_cli.core.timefmt import parse_rfc3339, rfc3339_seconds
from misskey_cli.errors import ConnectFailed, MkstreamError, UsageError
from misskey_cli.net.api import ApiError

PAGE = 100  # the most a Misskey timeline answers at once
# A page that fails for a passing reason (unreachable, timeout, 5xx, 429) is asked again, waiting
# 0.5 s doubling to 15 s, for up to 10 minutes: the gap is declared only then (or at once for an
# answer that will not change, like 401), since a declared gap is skipped for good by --state.
RETRY_FIRST, RETRY_CAP, PATIENCE = 0.5, 15.0, 600.0
DATE_MARGIN = 1.0  # seconds: how far before the gap a connection with no cursor is fetched from

# channel -> (HTTP endpoint, params it needs renamed: channel param -> endpoint param)
TIMELINES: dict[str, tuple[str, dict[str, str]]] = {
    "localTimeline": ("notes/local-timeline", {}),
    "globalTimeline": ("notes/global-timeline", {}),
    "homeTimeline": ("notes/timeline", {}),
    "hybridTimeline": ("notes/hybrid-timeline", {}),
    "userList": ("notes/user-list-timeline", {}),
    "antenna": ("antennas/notes", {}),
    "channel": ("channels/timeline", {}),
    "roleTimeline": ("roles/notes", {}),
    "hashtag": ("notes/search-by-tag", {"q": "query"}),
    "main": ("i/notifications", {}),
}
# What the channel calls the items its timeline holds, and the inner frame type it sends them as.
ITEM = {"main": ("notification", "notifications")}
NOTE = ("note", "notes")


def item_kind(channel: str) -> tuple[str, str]:
    return ITEM.get(channel, NOTE)


def id_key(note_id: str) -> tuple[int, str]:
    """Misskey ids (aidx, aid, meid, ulid, objectid) sort by time as equal-length strings."""
    return len(note_id), note_id


def newer(a: str | None, b: str) -> bool:
    return a is None or id_key(b) > id_key(a)


# ----- what to fetch, and what came of it ---------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """One connection to backfill: where it stood, and from when the gap runs."""

    connection_id: str
    channel: str
    params: dict[str, Any]
    since_id: str | None  # None: nothing was written yet, so the gap is fetched by date
    gap_from: float  # epoch seconds: when the connection was last known to be alive


@dataclass
class Result:
    target: Target
    frames: list[tuple[str, bytes]] = field(default_factory=list)  # (item id, frame JSON), oldest first
    capped: bool = False
    failure: str | None = None  # why the endpoint gave nothing (or not everything)


def _request_body(target: Target, since_id: str | None) -> dict[str, Any]:
    _, renames = TIMELINES[target.channel]
    body = {renames.get(key, key): value for key, value in target.params.items()}
    if since_id is not None:
        body["sinceId"] = since_id
    else:
        # Nothing was written on this connection yet, so nothing can come twice: reach a second
        # back, past clock granularity on either side, rather than miss the gap's first note.
        body["sinceDate"] = int((target.gap_from - DATE_MARGIN) * 1000)
    body["limit"] = PAGE
    return body


def fetch(call: Callable[[str, dict[str, Any]], Any], target: Target, limit: int,
          mark: bool = False) -> Result:
    """Page a timeline from ``target.since_id`` (exclusive), at most ``limit`` items, oldest first."""
    endpoint, _ = TIMELINES[target.channel]
    kind, _ = item_kind(target.channel)
    result = Result(target)
    since = target.since_id
    while len(result.frames) < limit:
        try:
            page = call(endpoint, _request_body(target, since))
        except MkstreamError as exc:
            result.failure = exc.message
            return result
        items = sorted((i for i in page if isinstance(i, dict) and isinstance(i.get("id"), str))
                       if isinstance(page, list) else (), key=lambda i: id_key(i["id"]))
        items = [i for i in items if since is None or newer(since, i["id"])]
        room = limit - len(result.frames)
        if len(items) > room:
            result.capped = True
        for item in items[:room]:
            frame: dict[str, Any] = {"type": "channel", "body": {"id": target.connection_id, "type": kind,
                                                                   "body": item}}
            if mark:
                frame["backfilled"] = True
            result.frames.append((item["id"], jsoncodec.dumps(frame)))
        if result.capped or not items or len(page) < PAGE:
            return result
        since = items[-1]["id"]
    result.capped = True  # a full last page: there may be more
    return result


# ----- the worker ---------------------------------------------------------------------------------


class Backfill:
    """Cursors per connection, and a worker thread that fetches gaps; results come back through ``fd``."""

    def __init__(self, call: Callable[[str, dict[str, Any]], Any], limit: int, mark: bool = False) -> None:
        self.call = call
        self.limit = limit
        self.mark = mark
        self.cursors: dict[str, str] = {}  # connection id -> newest item id written
        self.pending: dict[str, Target] = {}  # connection id -> its fetch under way
        self._results: queue.SimpleQueue[Result] = queue.SimpleQueue()
        self._jobs: queue.SimpleQueue[Target | None] = queue.SimpleQueue()
        self.fd, self._signal = os.pipe()
        os.set_blocking(self.fd, False)
        self._thread: threading.Thread | None = None
        self._closing = threading.Event()
        self.patience = PATIENCE
        self.moves = 0  # how often a cursor moved: the stream marks its writes when it changes

    def observe(self, connection_id: str, item_id: str) -> None:
        cursor = self.cursors.get(connection_id)
        if cursor is None or id_key(item_id) > id_key(cursor):
            self.cursors[connection_id] = item_id
            self.moves += 1

    def start(self, target: Target) -> None:
        self.pending[target.connection_id] = target
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="mkstream-backfill", daemon=True)
            self._thread.start()
        self._jobs.put(target)

    def collect(self) -> list[Result]:
        """The fetches finished since the last call."""
        with contextlib.suppress(BlockingIOError):
            os.read(self.fd, 4096)
        done: list[Result] = []
        while True:
            try:
                result = self._results.get_nowait()
            except queue.Empty:
                return done
            self.pending.pop(result.target.connection_id, None)
            done.append(result)

    def _work(self) -> None:
        while (target := self._jobs.get()) is not None:
            try:
                result = fetch(self._patient, target, self.limit, self.mark)
            except Exception as exc:  # noqa: BLE001 - a failed backfill must never stop the stream
                result = Result(target, failure=f"unexpected {type(exc).__name__}: {exc}")
            self._results.put(result)
            with contextlib.suppress(OSError):
                os.write(self._signal, b"!")

    def _patient(self, endpoint: str, body: dict[str, Any]) -> Any:
        """One page, asked again while the failure is a passing one (see PATIENCE)."""
        delay, since = RETRY_FIRST, time.monotonic()
        while True:
            try:
                return self.call(endpoint, body)
            except MkstreamError as exc:
                passing = isinstance(exc, ConnectFailed) or (isinstance(exc, ApiError) and exc.retryable)
                if not passing or time.monotonic() + delay - since > self.patience or self._closing.is_set():
                    raise
            if self._closing.wait(delay):
                raise MkstreamError("the run ended")
            delay = min(delay * 2, RETRY_CAP)

    def close(self) -> None:
        self._closing.set()
        self._jobs.put(None)
        for fd in (self.fd, self._signal):
            with contextlib.suppress(OSError):
                os.close(fd)


class SeenNotes:
    """Note ids written recently, on any connection (``--dedupe``); the oldest are forgotten first."""

    def __init__(self, size: int = 20_000) -> None:
        self.size = size
        self._ids: OrderedDict[str, None] = OrderedDict()

    def first_time(self, note_id: str) -> bool:
        if note_id in self._ids:
            self._ids.move_to_end(note_id)
            return False
        self._ids[note_id] = None
        if len(self._ids) > self.size:
            self._ids.popitem(last=False)
        return True


# ----- the state file -----------------------------------------------------------------------------

STATE_VERSION = 1


@dataclass(frozen=True)
class SavedConnection:
    channel: str
    params: dict[str, Any]
    last_id: str


Row = tuple[str, str, dict[str, Any], str]  # (connection id, channel, params, last id)
LEGACY_TMP = ".mkstream-state-"  # how earlier builds named their temporary files
MAX_STATE_BYTES = 16 * 1024 * 1024  # a state file is a few hundred bytes; anything this large is not one


class StateFile:
    """``--state FILE``: the last item id per connection, kept across runs, never ahead of the log.

    Format (version 1)::

        {"mkstream": "state", "version": 1, "host": "misskey.example", "updated": "2026-12-01T09:00:00Z",
         "connections": {"localTimeline": {"channel": "localTimeline", "params": {}, "lastId": "9xyz..."}},
         "output": {"device": 2049, "inode": 131, "offset": 20480},
         "next": {"offset": 24576, "connections": {...}}}

    The writer thread keeps it (``writing``/``written``, the writer's journal). With ``-o FILE`` a
    batch is announced *before* it is written: ``connections`` hold while the output file is
    ``offset`` bytes long, ``next`` once it is ``next.offset`` long. The next run reads the file's
    size and knows which is true, so a kill -9 at any moment neither loses nor repeats a record; a
    size between the two is a batch the kill cut in half, cut back off and fetched again. Other
    outputs (a pipe) are recorded after each write: a kill in between repeats that batch at most.

    Every file is replaced atomically (a temporary file renamed over the real path, so a symlink
    stays a symlink), mode 0600; the real path's ``.lock`` is held (flock) for the whole run. An
    existing file that is not a regular file in this format is refused, and left alone.
    """

    def __init__(self, path: str, host: str, warn: Callable[[str], None]) -> None:
        self.path = path
        self.real = os.path.realpath(path)  # through symlinks: one lock and one file however it is named
        self.host = host
        self.warn = warn
        self._tmp_prefix = f".{os.path.basename(self.real)}.tmp-"
        self._tmp = os.path.join(os.path.dirname(self.real), f"{self._tmp_prefix}{os.getpid()}")
        self._guard = threading.Lock()  # saves come from the writer thread and, at the end, the main thread
        self._committed: list[Row] | None = None  # the rows that hold for what is written
        self._committed_offset: int | None = None
        self._output: tuple[int, int] | None = None  # (device, inode) of -o FILE
        self._failed = False
        self._check_kind()
        self._lock_fd = self._lock()
        self._document = self._read()
        self._clean_temporaries()

    def _check_kind(self) -> None:
        try:
            info = os.stat(self.real)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise UsageError(f"cannot use state file {self.path}: {exc.strerror or exc}") from None
        if not stat.S_ISREG(info.st_mode):
            raise UsageError(f"state file {self.path} is not a regular file: give a file mkstream may replace")

    def _lock(self) -> int:
        try:
            fd = os.open(self.real + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise UsageError(f"cannot use state file {self.path}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise UsageError(f"state file {self.path} is in use by another mkstream run") from None
        return fd

    def _read(self) -> Any:
        """The document, None for a missing or empty file; anything else is refused (exit 2)."""
        try:
            with open(self.real, "rb") as handle:
                raw = handle.read(MAX_STATE_BYTES + 1)
        except FileNotFoundError:
            return None
        except OSError as exc:
            self.close()
            raise UsageError(f"cannot read state file {self.path}: {exc.strerror or exc}") from None
        if not raw.strip():
            return None
        try:
            if len(raw) > MAX_STATE_BYTES:
                raise ValueError("too large")
            data = json.loads(raw.decode("utf-8"))
        except (ValueError, RecursionError):
            data = None
        if not isinstance(data, dict) or data.get("mkstream") != "state":
            self.close()
            raise UsageError(f"{self.path} is not an mkstream state file: refusing to replace it "
                             "(give a new file name for --state)")
        return data

    def _clean_temporaries(self) -> None:
        """Temporary files a killed run left (this lock is held: no run is writing them).

        Earlier versions named theirs ``.mkstream-state-*`` whatever the state file: those are
        removed once a minute old, when no save (microseconds long) can still be renaming one.
        """
        directory = os.path.dirname(self.real)
        with contextlib.suppress(OSError):
            for name in os.listdir(directory):
                path = os.path.join(directory, name)
                with contextlib.suppress(OSError):
                    if name.startswith(self._tmp_prefix) or (name.startswith(LEGACY_TMP)
                                                             and time.time() - os.lstat(path).st_mtime > 60):
                        os.unlink(path)

    def load(self, output: os.stat_result | None = None
             ) -> tuple[dict[str, SavedConnection], float | None, int | None]:
        """The saved connections, when they were saved, and the size to cut the output back to (a torn batch).

        ``output`` is the ``-o FILE`` opened for this run (None for other outputs).
        """
        data = self._document
        if data is None:
            return {}, None, None
        if data.get("version") != STATE_VERSION:
            self.warn(f"state file {self.path} has format version {data.get('version')!r}, this mkstream "
                      f"reads {STATE_VERSION}: starting fresh")
            return {}, None, None
        if data.get("host") != self.host:
            self.warn(f"state file {self.path} was written for {data.get('host')!r}, not {self.host}: starting fresh")
            return {}, None, None
        connections, cut = self._which(data, output)
        if not isinstance(connections, dict):
            self.warn(f"state file {self.path} holds no connections: starting fresh")
            return {}, None, None
        saved = {}
        for cid, entry in connections.items():
            if (isinstance(entry, dict) and isinstance(entry.get("channel"), str)
                    and isinstance(entry.get("params"), dict) and isinstance(entry.get("lastId"), str)):
                saved[cid] = SavedConnection(entry["channel"], entry["params"], entry["lastId"])
        return saved, _parse_time(data.get("updated")), cut

    def _which(self, data: dict[str, Any], output: os.stat_result | None) -> tuple[Any, int | None]:
        """The connections that hold for the output as it is: before or after the batch announced last."""
        after = data.get("next")
        if not isinstance(after, dict) or not isinstance(after.get("offset"), int):
            return data.get("connections"), None
        mark = data.get("output")
        before = mark.get("offset") if isinstance(mark, dict) else None
        same = (output is not None and isinstance(mark, dict) and isinstance(before, int)
                and (mark.get("device"), mark.get("inode")) == (output.st_dev, output.st_ino))
        if not same:
            # Another output (or the file was rotated): the batch was announced just before its
            # write, which almost surely happened.
            return after.get("connections"), None
        assert isinstance(before, int)
        if output is not None and output.st_size == before:
            return data.get("connections"), None  # killed after the announcement, before the write
        if output is not None and before < output.st_size < after["offset"]:
            self.warn(f"{self.path}: the output ends in a batch a kill cut short; cutting it back to "
                      f"{before} bytes and fetching it again")
            return data.get("connections"), before
        return after.get("connections"), None

    # ----- saving (the writer's journal) -----------------------------------------------------

    def start(self, rows: list[Row], output: os.stat_result | None) -> None:
        """What holds when the run starts (before anything is written)."""
        self._committed = rows
        if output is not None:
            self._output = (output.st_dev, output.st_ino)
            self._committed_offset = output.st_size

    def writing(self, rows: Any, start: int | None, end: int | None, output: tuple[int, int] | None) -> None:
        """A batch bringing the cursors to ``rows`` is about to be written to bytes ``start``..``end`` of a file."""
        if start is None or end is None or output is None:
            return
        with self._guard:
            self._output = output
            self._committed_offset = start
            self._write(self._document_for(self._committed or [], start, (end, rows)))

    def written(self, rows: Any, end: int | None) -> None:
        """Everything up to ``rows`` is written (to a file: at ``end``)."""
        with self._guard:
            self._committed = rows
            if end is None:
                self._write(self._document_for(rows, None, None))
            else:
                self._committed_offset = end

    def finish(self) -> None:
        """The final save: what is written, nothing announced."""
        with self._guard:
            if self._committed is not None:
                self._write(self._document_for(self._committed, self._committed_offset, None))

    def _document_for(self, rows: list[Row], offset: int | None, after: tuple[int, list[Row]] | None
                      ) -> dict[str, Any]:
        document: dict[str, Any] = {
            "mkstream": "state", "version": STATE_VERSION, "host": self.host,
            "updated": rfc3339_seconds(),
            "connections": _connections(rows),
        }
        if offset is not None and self._output is not None:
            document["output"] = {"device": self._output[0], "inode": self._output[1], "offset": offset}
            if after is not None:
                document["next"] = {"offset": after[0], "connections": _connections(after[1])}
        return document

    def _write(self, document: dict[str, Any]) -> None:
        """Replace the file with ``document``: four system calls, since the writer thread saves per batch.

        Each call gives up the GIL, and taking it back from a busy stream loop can take a switch
        interval: a lean save keeps the writer's queue short. The temporary file's name is fixed
        (this run holds the lock; a killed run's is removed at the next start).
        """
        try:
            replace_atomically(self.real, jsoncodec.dumps(document) + b"\n", temporary=self._tmp)
            self._failed = False
        except OSError as exc:
            if not self._failed:
                self.warn(f"cannot write state file {self.path}: {exc.strerror or exc}")
            self._failed = True

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._lock_fd)


def _connections(rows: list[Row]) -> dict[str, Any]:
    return {cid: {"channel": channel, "params": params, "lastId": last} for cid, channel, params, last in rows}


def _parse_time(text: Any) -> float | None:
    if not isinstance(text, str):
        return None
    try:
        return parse_rfc3339(text)
    except ValueError:
        return None


# ----- the stream's side --------------------------------------------------------------------------

WRITE, HOLD, DROP = 0, 1, 2


@dataclass
class _Reconnect:
    """What one reconnect (or the start from a state file) is waiting for, for its one notice."""

    what: str  # "reconnected after 12 s" / "resumed from state file X"
    waiting: set[str]
    lines: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


class Gaps:
    """Decides, frame by frame, what the stream loop writes: the backfill and ``--dedupe`` rules.

    ``sort`` is called with each live channel frame's connection id, inner type and item id;
    ``finished`` turns completed fetches into frames to write and releases held ones.
    """

    def __init__(self, backfill: Backfill | None, seen: SeenNotes | None, state: StateFile | None) -> None:
        self.backfill = backfill
        self.seen = seen
        self.state = state
        self.held: dict[str, list[Any]] = {}  # connection id -> live frames waiting for its backfill
        self.backfilled: dict[str, set[str]] = {}  # connection id -> ids its backfill wrote
        self.again: dict[str, Target] = {}  # a reconnect came while a fetch was under way
        self.reconnects: list[_Reconnect] = []

    @property
    def fd(self) -> int | None:
        return self.backfill.fd if self.backfill is not None else None

    def sort(self, connection_id: Any, kind: Any, item_id: str) -> int:
        """WRITE, HOLD or DROP a live note or notification."""
        backfill = self.backfill
        if backfill is not None:
            if connection_id in backfill.pending:
                return HOLD
            done = self.backfilled.get(connection_id)
            if done is not None and item_id in done:
                return DROP
            backfill.observe(connection_id, item_id)
        if self.seen is not None and kind == "note" and not self.seen.first_time(item_id):
            return DROP
        return WRITE

    def hold(self, connection_id: str, item: Any) -> None:
        self.held.setdefault(connection_id, []).append(item)

    def start(self, what: str, targets: list[Target], unfetchable: list[str]) -> None:
        """Fetch the gaps of ``targets``; ``unfetchable`` are connections nothing can be fetched for."""
        record = _Reconnect(what, set(), problems=list(unfetchable))
        self.reconnects.append(record)
        for target in targets:
            assert self.backfill is not None
            record.waiting.add(target.connection_id)
            if target.connection_id in self.backfill.pending:
                self.again[target.connection_id] = target
            else:
                self.backfilled.pop(target.connection_id, None)
                self.backfill.start(target)

    def finished(self) -> tuple[list[bytes], list[Any], list[str]]:
        """(backfilled frames, released live frames, notices) for the fetches that completed."""
        assert self.backfill is not None
        frames: list[bytes] = []
        released: list[Any] = []
        for result in self.backfill.collect():
            cid = result.target.connection_id
            frames += self._accept(result)
            if cid in self.again:
                target = self.again.pop(cid)
                cursor = self.backfill.cursors.get(cid, target.since_id)
                self.backfill.start(Target(cid, target.channel, target.params, cursor, target.gap_from))
                continue
            released += self.held.pop(cid, [])
        return frames, released, self._notices()

    def _accept(self, result: Result) -> list[bytes]:
        assert self.backfill is not None
        target = result.target
        cid = target.connection_id
        written = self.backfilled.setdefault(cid, set())
        frames = []
        for item_id, frame in result.frames:
            if item_id in written:
                continue
            written.add(item_id)
            self.backfill.observe(cid, item_id)
            kind, _ = item_kind(target.channel)
            if self.seen is not None and kind == "note" and not self.seen.first_time(item_id):
                continue
            frames.append(frame)
        for record in self.reconnects:
            if cid in record.waiting and cid not in self.again:
                record.waiting.discard(cid)
                record.lines.append(f"{len(frames)} {item_kind(target.channel)[1]} on {cid}")
                record.problems += _problems(result)
        return frames

    def _notices(self) -> list[str]:
        out = []
        while self.reconnects and not self.reconnects[0].waiting:
            record = self.reconnects.pop(0)
            line = record.what
            if record.lines:
                line += "; backfilled " + ", ".join(record.lines)
            out.append(line)
            out += [f"warning: {problem}" for problem in record.problems]
        return out

    def cursors(self) -> dict[str, str]:
        return dict(self.backfill.cursors) if self.backfill is not None else {}

    def close(self) -> None:
        if self.backfill is not None:
            self.backfill.close()
        if self.state is not None:
            self.state.close()


def _problems(result: Result) -> list[str]:
    target = result.target
    since = rfc3339_seconds(target.gap_from)
    what = item_kind(target.channel)[1]
    if result.failure is not None:
        return [f"{target.connection_id}: backfill failed ({result.failure}); {what} since {since} may be missing"]
    if result.capped:
        last = result.frames[-1][0] if result.frames else target.since_id
        return [f"{target.connection_id}: backfill stopped at the cap of {len(result.frames)} {what} "
                f"(--backfill-max); {what} after {last} may be missing"]
    return []


def unfetchable_notice(connection_id: str, channel: str, gap_from: float) -> str:
    return (f"{connection_id}: {channel} has no timeline to backfill from; its events since "
            f"{rfc3339_seconds(gap_from)} may be missing")
