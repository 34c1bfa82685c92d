"""The only code that writes records: a writer thread per run, drained on every exit path.

The thread is what keeps a slow or paused reader (``| less``, a full pipe, a stalled disk) from
stalling the socket: the event loop goes on receiving frames and answering pings while the
records queue up in memory. ``Writer`` is a context manager: leaving it waits (for a bounded
time) until every queued record is written, so an error exit loses nothing that was received;
``records_written`` counts the records that reached the file, which is what ``--stats`` reports.
Write errors surface on the next ``write``, through ``failed_fd`` (readable once a write failed,
so an event loop learns of it without waiting for a frame), or at the end.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable
from typing import BinaryIO, Self

from misskey_cli.errors import OutputError, UsageError


class ReaderGone(Exception):
    """The reader closed the pipe: a normal end."""


class Writer:
    BACKLOG_HIGH = 2 * 1024 * 1024
    BACKLOG_LOW = 512 * 1024
    BACKLOG_WARNING = 64 * 1024 * 1024
    BATCH = 512

    def __init__(self, fd: int, label: str, owns: bool = False, stream: BinaryIO | None = None,
                 warn: Callable[[str], None] | None = None) -> None:
        self.fd = fd
        self.label = label
        self.owns = owns
        self.stream = stream
        self.warn = warn
        self.error: Exception | None = None
        self.backlog = 0  # bytes queued, not yet written
        self.records_queued = 0
        self.records_written = 0
        self._changed = threading.Condition()
        self._warned = False
        self._queue: queue.SimpleQueue[tuple[bytes, int] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self.failed_fd, self._failed_signal = os.pipe()

    # ----- opening --------------------------------------------------------------------------

    @classmethod
    def to_fd(cls, fd: int | None, stream: BinaryIO | None, warn: Callable[[str], None] | None = None) -> Writer:
        """Standard output: its file descriptor, or a binary stream where it has none (a test harness)."""
        if fd is not None:
            return cls(fd, "stdout", warn=warn)
        if stream is None:
            raise UsageError("standard output is closed: use -o FILE")
        return cls(-1, "stdout", stream=stream, warn=warn)

    @classmethod
    def open_append(cls, path: str, warn: Callable[[str], None] | None = None) -> Writer:
        """Append to ``path``; a new file is created 0600 (``main`` events carry sign-in IPs and headers)."""
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise UsageError(f"cannot open output file {path}: {exc.strerror or exc}") from None
        return cls(fd, path, owns=True, warn=warn)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----- writing --------------------------------------------------------------------------

    def raise_error(self) -> None:
        if self.error is not None:
            raise self.error

    def write(self, data: bytes, records: int = 1) -> None:
        """Queue ``records`` whole records (``data`` holds them all); written at once by the thread."""
        if self.error is not None:
            raise self.error
        if self._thread is None:
            self._thread = threading.Thread(target=self._drain, name="mkstream-writer", daemon=True)
            self._thread.start()
        with self._changed:
            self.backlog += len(data)
            self.records_queued += records
        if self.backlog > self.BACKLOG_WARNING and not self._warned and self.warn is not None:
            self._warned = True
            self.warn(f"{self.label} is not keeping up: {self.backlog // (1024 * 1024)} MB of records waiting "
                      "in memory (nothing is dropped)")
        self._queue.put((data, records))

    def wait_for_room(self, timeout: float) -> None:
        """If more than BACKLOG_HIGH bytes wait, wait (up to ``timeout``) until BACKLOG_LOW or less do."""
        if self.backlog <= self.BACKLOG_HIGH:
            return
        with self._changed:
            self._changed.wait_for(lambda: self.backlog <= self.BACKLOG_LOW or self.error is not None, timeout)

    def finish(self, timeout: float | None = None) -> int:
        """Wait until every queued record is written (at most ``timeout`` seconds).

        Returns how many records are still unwritten (0 unless the time ran out); raises the
        write error if there was one.
        """
        thread = self._thread
        if thread is not None:
            self._queue.put(None)
            thread.join(timeout)
            if not thread.is_alive():
                self._thread = None
        if self.error is not None:
            raise self.error
        return self.records_queued - self.records_written

    def _drain(self) -> None:
        get, get_nowait = self._queue.get, self._queue.get_nowait
        finished = False
        while not finished:
            item = get()
            if item is None:
                return
            batch = [item]
            # Buffers that queued up while the last write ran go out in one system call (writev).
            try:
                while len(batch) < self.BATCH:
                    more = get_nowait()
                    if more is None:
                        finished = True
                        break
                    batch.append(more)
            except queue.Empty:
                pass
            size = sum(len(data) for data, _ in batch)
            written = self._write([data for data, _ in batch]) if self.error is None else 0
            with self._changed:
                self.backlog -= size
                self.records_written += sum(n for _, n in batch[:written])
                self._changed.notify_all()

    def _write(self, buffers: list[bytes]) -> int:
        """Write every buffer; returns how many were written whole (all of them unless it failed)."""
        done = 0
        try:
            if self.stream is not None:
                self.stream.write(b"".join(buffers))
                self.stream.flush()
                return len(buffers)
            pending = list(buffers)
            while pending:
                written = os.writev(self.fd, pending)
                while pending and written >= len(pending[0]):
                    written -= len(pending.pop(0))
                    done += 1
                if written:
                    pending[0] = pending[0][written:]
            return done
        except BrokenPipeError:
            self.error = ReaderGone()
        except OSError as exc:
            self.error = OutputError(f"cannot write to {self.label}: {exc.strerror or exc}")
        os.write(self._failed_signal, b"!")
        return done

    def close(self) -> None:
        for fd in (self.failed_fd, self._failed_signal):
            if fd >= 0:
                os.close(fd)
        self.failed_fd = self._failed_signal = -1
        if self.owns:
            os.close(self.fd)
            self.owns = False
