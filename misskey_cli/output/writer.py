"""The only code that writes records: a writer thread per run, drained on every exit path.

The thread is what keeps a slow or paused reader (``| less``, a full pipe, a stalled disk) from
stalling the socket: the event loop goes on receiving frames and answering pings while the
records queue up in memory. ``Writer`` is a context manager: leaving it waits (for a bounded
time) until every queued record is written, so an error exit loses nothing that was received;
``records_written`` counts the records that reached the file, which is what ``--stats`` reports.
Write errors surface on the next ``write``, through ``failed_fd`` (readable once a write failed,
so an event loop learns of it without waiting for a frame), or at the end. On a regular file a
failed write (a full disk) is cut back to the last whole record, so the file never ends in half a
line and keeps every whole record that fit; with a journal (``--state``) it is cut back to the end of
the last batch the journal was told of instead, since the next run fetches what follows again.
``reopen`` (SIGHUP, after logrotate moved the file) makes the thread open the path again between two writes.

A ``Journal`` (``--state``) hears of every batch that moves a cursor: a ``mark`` queued with the
records says what they bring the cursors to. On a regular file the journal is told *before* the
write which bytes the batch will take (``writing``), and after it that the batch is written
(``written``), so what it saves never names a record that is not in the file; on a pipe only
afterwards.
"""

from __future__ import annotations

import contextlib
import os
import queue
import stat
import threading
from collections.abc import Callable
from typing import Any, BinaryIO, Protocol, Self

from misskey_cli.core.files import open_private_append
from misskey_cli.errors import OutputError, UsageError


class ReaderGone(Exception):
    """The reader closed the pipe: a normal end."""


class Journal(Protocol):
    """Told by the writer thread where the records of each marked batch go (see the module docstring)."""

    def writing(self, mark: Any, start: int | None, end: int | None, output: tuple[int, int] | None) -> None: ...

    def written(self, mark: Any, end: int | None) -> None: ...


_REOPEN = (b"", -1, None)  # a queue item: open the path again before the next write
Item = tuple[bytes, int, Any]  # (records, how many, the mark they bring the journal to or None)


class Writer:
    BATCH = 512

    def __init__(self, fd: int, label: str, owns: bool = False, stream: BinaryIO | None = None,
                 warn: Callable[[str], None] | None = None, path: str | None = None) -> None:
        self.fd = fd
        self.label = label
        self.owns = owns
        self.stream = stream
        self.warn = warn
        self.path = path  # set for -o FILE: what reopen opens
        self.error: Exception | None = None
        self.backlog = 0  # bytes queued, not yet written
        self.records_queued = 0
        self.records_written = 0
        self._changed = threading.Condition()
        self.journal: Journal | None = None
        self._queue: queue.SimpleQueue[Item | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._regular = fd >= 0 and _is_regular(fd)
        self._settled: int | None = None  # with a journal: the end of -o FILE as the journal last saw it written
        self._unsettled = 0  # records written past it
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
        return cls(_open_append(path), path, owns=True, warn=warn, path=path)

    def reopen(self) -> None:
        """Open the path again before the next write (safe to call from a signal handler)."""
        if self.path is not None:
            self._queue.put(_REOPEN)
            if self._thread is None:
                self._start()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----- writing --------------------------------------------------------------------------

    def raise_error(self) -> None:
        if self.error is not None:
            raise self.error

    def write(self, data: bytes, records: int = 1, mark: Any = None) -> None:
        """Queue ``records`` whole records (``data`` holds them all); written at once by the thread.

        ``mark`` goes to the journal once they are written (with no data: once all before it are).
        """
        if self.error is not None:
            raise self.error
        if self._thread is None:
            self._start()
        with self._changed:
            self.backlog += len(data)
            self.records_queued += records
        self._queue.put((data, records, mark))

    def wait_for_room(self, backlog: int, timeout: float) -> bool:
        """Wait (at most ``timeout`` seconds) until no more than ``backlog`` bytes are queued; whether they are.

        A failed write counts as room: the next ``write`` raises its error.
        """
        with self._changed:
            return self._changed.wait_for(lambda: self.backlog <= backlog or self.error is not None, timeout)

    def _start(self) -> None:
        self._thread = threading.Thread(target=self._drain, name="mkstream-writer", daemon=True)
        self._thread.start()

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
            if item is _REOPEN:
                self._reopen()
                continue
            batch = [item]
            # Buffers that queued up while the last write ran go out in one system call (writev).
            try:
                while len(batch) < self.BATCH:
                    more = get_nowait()
                    if more is None:
                        finished = True
                        break
                    if more is _REOPEN:
                        self._queue.put(_REOPEN)  # after this batch, in order
                        break
                    batch.append(more)
            except queue.Empty:
                pass
            size = sum(len(data) for data, _, _ in batch)
            marks = [i for i, (_, _, mark) in enumerate(batch) if mark is not None]
            journal = self.journal if marks else None
            start = os.fstat(self.fd).st_size if self._regular and self.error is None else None
            if journal is not None and start is not None:
                journal.writing(batch[marks[-1]][2], start, start + size, self._identity())
            if self.journal is not None and start is not None and self._settled is None:
                self._settled = start  # where the journal's account of -o FILE ends: nothing of this run yet
            failed_before = self.error is not None
            written, kept = self._write([(data, n) for data, n, _ in batch if data], start) if not failed_before \
                else (0, 0)
            whole = _whole_items(batch, written)
            records = self._account(batch, marks if journal is not None else [], start, whole, kept,
                                    self.error is not None and not failed_before)
            with self._changed:
                self.backlog -= size
                self.records_written += records
                self._changed.notify_all()

    def _account(self, batch: list[Item], marks: list[int], start: int | None, whole: int, kept: int,
                 failed: bool) -> int:
        """Tell the journal what of ``batch`` is written; how many records it added to the output."""
        records = sum(n for _, n, _ in batch[:whole]) + kept
        done = [i for i in marks if i < whole]
        if done and self.journal is not None:
            end = None if start is None else start + sum(len(d) for d, _, _ in batch[:done[-1] + 1])
            self.journal.written(batch[done[-1]][2], end)
            if end is not None:
                self._settled = end
                self._unsettled = records - sum(n for _, n, _ in batch[:done[-1] + 1])
        elif self.journal is not None:
            self._unsettled += records
        if failed and self._settled is not None:
            # A torn write with --state: the state names no cursor for the records past its last mark,
            # so the next run fetches them again; kept here they would be there twice.
            with contextlib.suppress(OSError):
                os.ftruncate(self.fd, self._settled)
            records -= self._unsettled
            self._unsettled = 0
        return records

    def output_stat(self) -> os.stat_result | None:
        """``-o FILE``'s identity and size (for the journal's next run), None for other outputs."""
        if self.path is None or not self._regular:
            return None
        try:
            return os.fstat(self.fd)
        except OSError:
            return None

    def cut(self, size: int) -> None:
        """Cut ``-o FILE`` back to ``size`` bytes before anything is written (a batch a kill tore, per the journal)."""
        try:
            os.ftruncate(self.fd, size)
        except OSError as exc:
            raise OutputError(f"cannot cut {self.label} back to {size} bytes: {exc.strerror or exc}") from None

    def _identity(self) -> tuple[int, int] | None:
        try:
            info = os.fstat(self.fd)
        except OSError:
            return None
        return info.st_dev, info.st_ino

    def _write(self, items: list[tuple[bytes, int]], start: int | None = None) -> tuple[int, int]:
        """Write every buffer (with its record count); returns how many were written whole (all of them
        unless it failed) and how many records of the one cut short were kept."""
        buffers = [data for data, _ in items]
        pending = list(buffers)
        done = kept_records = 0
        whole = 0  # bytes of the buffers written whole
        if start is None:
            start = os.fstat(self.fd).st_size if self._regular else 0
        try:
            if self.stream is not None:
                self.stream.write(b"".join(buffers))
                self.stream.flush()
                return len(buffers), 0
            while pending:
                written = os.writev(self.fd, pending)
                while pending and written >= len(pending[0]):
                    size = len(pending.pop(0))
                    written -= size
                    whole += size
                    done += 1
                if written:
                    pending[0] = pending[0][written:]
            return done, 0
        except BrokenPipeError:
            self.error = ReaderGone()
        except OSError as exc:
            self.error = OutputError(f"cannot write to {self.label}: {exc.strerror or exc}")
            if self._regular:  # whole records or nothing: cut the half-written one off
                kept = 0
                if pending and done < len(items):
                    kept, kept_records = _whole_lines(items[done], len(buffers[done]) - len(pending[0]))
                with contextlib.suppress(OSError):
                    os.ftruncate(self.fd, start + whole + kept)
        os.write(self._failed_signal, b"!")
        return done, kept_records

    def _reopen(self) -> None:
        assert self.path is not None
        try:
            fd = _open_append(self.path)
        except UsageError as exc:
            if self.warn is not None:
                self.warn(f"{exc.message}; still writing to the file it had open")
            return
        old, self.fd = self.fd, fd
        self._regular = _is_regular(fd)
        self._settled, self._unsettled = None, 0  # the journal's account starts over in the new file
        with contextlib.suppress(OSError):
            os.close(old)

    def close(self) -> None:
        for fd in (self.failed_fd, self._failed_signal):
            if fd >= 0:
                os.close(fd)
        self.failed_fd = self._failed_signal = -1
        if self.owns:
            os.close(self.fd)
            self.owns = False


def _whole_lines(item: tuple[bytes, int], written: int) -> tuple[int, int]:
    """Of a buffer cut short after ``written`` bytes: the bytes and the records of it that are whole.

    A buffer is a whole socket batch, many records; when they are one line each (as many newlines
    as records: NDJSON, --line, jq's compact output) every line written whole is a record kept.
    Records of several lines (--pretty) cannot be told apart here: the buffer goes whole or not at all.
    """
    data, records = item
    if written <= 0 or data.count(b"\n") != records:
        return 0, 0
    cut = data.rfind(b"\n", 0, written) + 1
    return cut, data.count(b"\n", 0, cut)


def _whole_items(batch: list[Item], buffers_written: int) -> int:
    """How many items of ``batch`` were written whole, given how many of its non-empty buffers were."""
    if buffers_written == sum(1 for data, _, _ in batch if data):
        return len(batch)
    seen = 0
    for i, (data, _, _) in enumerate(batch):
        if data:
            if seen == buffers_written:
                return i
            seen += 1
    return len(batch)


def _open_append(path: str) -> int:
    """Append to ``path``; a new file is created 0600 (``main`` events carry sign-in IPs and headers)."""
    try:
        return open_private_append(path)
    except OSError as exc:
        raise UsageError(f"cannot open output file {path}: {exc.strerror or exc}") from None


def _is_regular(fd: int) -> bool:
    try:
        return stat.S_ISREG(os.fstat(fd).st_mode)
    except OSError:
        return False
