"""Writing a recording: ``Recorder`` appends one (its header, then frames and events) to a file,
plain or gzip, flushed after every batch so a killed run keeps all it received. The lines are
``format``'s.
"""

from __future__ import annotations

import os
import time
import zlib
from collections.abc import Sequence
from typing import Any

from misskey_cli.core import jsoncodec
from misskey_cli.core.files import open_private_append, write_all
from misskey_cli.core.timefmt import rfc3339
from misskey_cli.errors import OutputError, UsageError
from misskey_cli.recording.format import FORMAT_NAME, VERSION, Subscriptions, frame_line, relayed_line


class Recorder:
    """Appends one recording to a file: the header, then frames and events, flushed per batch."""

    def __init__(self, fd: int, label: str, gzip: bool) -> None:
        self.fd = fd
        self.label = label
        self._deflate = zlib.compressobj(6, zlib.DEFLATED, 31) if gzip else None
        self.started = False

    @classmethod
    def open(cls, path: str) -> Recorder:
        """Open ``path`` for appending; a new file is made 0600 (``main`` frames carry sign-in IPs)."""
        try:
            fd = open_private_append(path)
        except OSError as exc:
            raise UsageError(f"cannot open recording file {path}: {exc.strerror or exc}") from None
        return cls(fd, path, path.endswith(".gz"))

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def header(self, host: str | None, subscriptions: Subscriptions, at: float | None = None) -> None:
        from misskey_cli import __version__

        now = time.time() if at is None else at
        head: dict[str, Any] = {"mkstream": FORMAT_NAME, "version": VERSION, "t": round(now, 6),
                                "started": rfc3339(now), "by": f"mkstream {__version__}", "host": host}
        head.update(subscriptions.to_json())
        self.started = True
        self._write(jsoncodec.dumps_line(head))

    def frames(self, items: Sequence[tuple[bytes, bool, float]]) -> None:
        if len(items) == 1:
            data, binary, at = items[0]
            self._write(frame_line(data, binary, at))
        else:
            self._write(b"".join([frame_line(data, binary, at) for data, binary, at in items]))

    def relayed(self, at: float, conn: int, side: str, key: str, value: bytes) -> None:
        self._write(relayed_line(at, conn, side, key, value))

    def event(self, kind: str, at: float | None = None, **fields: Any) -> None:
        self._write(jsoncodec.dumps_line({"t": round(time.time() if at is None else at, 6), "event": kind, **fields}))

    def _write(self, data: bytes) -> None:
        if self.fd < 0:
            return
        if self._deflate is not None:
            data = self._deflate.compress(data) + self._deflate.flush(zlib.Z_SYNC_FLUSH)
        self._write_all(data)

    def _write_all(self, data: bytes) -> None:
        try:
            write_all(self.fd, data)
        except OSError as exc:
            raise OutputError(f"cannot write to recording {self.label}: {exc.strerror or exc}") from None

    def close(self) -> None:
        if self.fd < 0:
            return
        try:
            if self._deflate is not None:
                self._write_all(self._deflate.flush(zlib.Z_FINISH))
        finally:
            os.close(self.fd)
            self.fd = -1
