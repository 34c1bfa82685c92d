"""libjq, the jq that ``--jq`` answers for, run in a worker process the run can always stop.

The only user of the ``jq`` binding (jq.py). It calls libjq holding the GIL: while a filter
computes (``last(range(1e12))``) no thread of mkstream runs, not even a signal handler, and a
frame that makes ten million records would be collected whole before the first was written. So
libjq runs in a process of its own (``python -m misskey_cli.output.jqworker``, started at the first frame
that needs it): the run waits for its records while still watching its signals, takes them one
at a time (a full pipe makes the worker wait, so memory stays bounded), stops reading after
``-n`` records, and kills the worker when it stops mid-frame.

Each record comes back as the text jq itself prints with ``-c`` (the program runs as
``(PROGRAM) | tojson``), so numbers keep the literal form jq 1.8 keeps (``1.50``, ``1E+1000``,
``-0``, integers past 2**53) instead of passing through doubles.

The pipes carry messages: a 4-byte big-endian length and the bytes. To the worker: first the
program and its arguments (JSON), then one frame's text per message. From the worker, per frame:
``R`` + a record, ... then ``D`` (done) or ``E`` + jq's error message.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import struct
import subprocess
import sys
from collections.abc import Callable, Generator, Sequence
from typing import Any, BinaryIO

_LENGTH = struct.Struct(">I")
_READ = 65536


class JqError(Exception):
    """jq's own error for one frame (its message, as jq words it)."""


def compile_error(program: str, args: dict[str, Any]) -> str | None:
    """jq's complaint about ``program`` (the first line that says something), or None when it compiles."""
    import jq

    try:
        jq.compile(program, args=args)
    except ValueError as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        return (lines[0] if lines else "syntax error").removeprefix("jq: error: ")
    return None


def printing(program: str) -> str:
    """``program`` made to yield each result as jq prints it.

    The parenthesis opens on the program's first line (``$__loc__`` keeps its line numbers) and
    closes two lines down: a trailing ``# comment \\`` carries over one line, not two.
    """
    return f"({program}\n\n) | tojson"


Wake = Callable[[int], None]


class JqProcess:
    """One compiled program in a worker process; ``results`` runs it on a frame's text."""

    def __init__(self, program: str, args: dict[str, Any]) -> None:
        self.program = program
        self.args = args
        # A program that only compiles at the top level (``import``) is run as it is; its records
        # are then jq.py's values written by json (numbers through doubles).
        self.wrap = compile_error(printing(program), args) is None
        self._proc: subprocess.Popen[bytes] | None = None
        self._buffer = bytearray()

    def results(self, text: bytes, watch: Sequence[int] = (), woken: Wake | None = None,
                idle: Callable[[], None] | None = None) -> Generator[bytes, None, None]:
        """jq's records for one input text, as it prints them; raises JqError where jq fails.

        Before it waits for the worker it calls ``idle`` (the caller writes what it holds: jq may
        compute for long); while it waits, a readable fd of ``watch`` is handed to ``woken``
        (which may raise: a signal ends the run). Leaving before the frame's end (an exception, or the
        caller stopping after ``-n`` records) kills the worker; the next frame starts another.
        """
        proc = self._start()
        finished = False
        try:
            self._send(proc, text)
            while True:
                kind, payload = self._receive(proc, watch, woken, idle)
                if kind == b"R":
                    yield payload
                elif kind == b"D":
                    finished = True
                    return
                else:
                    finished = True
                    raise JqError(payload.decode("utf-8", "replace"))
        finally:
            if not finished:
                self.close()

    def start(self) -> None:
        """Start the worker now rather than at the first frame (python and libjq take a moment)."""
        self._start()

    def close(self) -> None:
        proc, self._proc = self._proc, None
        self._buffer.clear()
        if proc is None:
            return
        with contextlib.suppress(OSError):
            proc.kill()
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        proc.wait()

    # ----- the pipes ----------------------------------------------------------------------------

    def _start(self) -> subprocess.Popen[bytes]:
        if self._proc is not None:
            return self._proc
        try:
            proc = subprocess.Popen([sys.executable, "-m", "misskey_cli.output.jqworker"], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, close_fds=True,
                                    # out of the terminal's process group: Ctrl-C is the run's to act on
                                    start_new_session=True)
        except OSError as exc:
            raise JqError(f"cannot start the jq worker process: {exc.strerror or exc}") from None
        self._proc = proc
        header = json.dumps({"program": self.program, "args": self.args, "wrap": self.wrap}).encode("utf-8")
        self._send(proc, header)
        return proc

    def _send(self, proc: subprocess.Popen[bytes], data: bytes) -> None:
        assert proc.stdin is not None
        try:
            proc.stdin.write(_LENGTH.pack(len(data)) + data)
            proc.stdin.flush()
        except OSError:
            self.close()
            raise JqError("the jq worker process ended") from None

    def _receive(self, proc: subprocess.Popen[bytes], watch: Sequence[int], woken: Wake | None,
                 idle: Callable[[], None] | None) -> tuple[bytes, bytes]:
        buffer = self._buffer
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        while True:
            if buffer:
                kind = bytes(buffer[:1])
                if kind == b"D":
                    del buffer[:1]
                    return kind, b""
                if len(buffer) >= 5:
                    (size,) = _LENGTH.unpack_from(buffer, 1)
                    if len(buffer) >= 5 + size:
                        payload = bytes(buffer[5:5 + size])
                        del buffer[:5 + size]
                        return kind, payload
            if idle is not None:
                idle()
            ready, _, _ = select.select([fd, *watch], [], [])
            for other in ready:
                if other != fd and woken is not None:
                    woken(other)
            if fd in ready:
                chunk = os.read(fd, _READ)
                if not chunk:
                    self.close()
                    raise JqError("the jq worker process ended")
                buffer += chunk


# ----- the worker ---------------------------------------------------------------------------------


def _read_message(stream: BinaryIO) -> bytes | None:
    head = stream.read(4)
    if len(head) < 4:
        return None
    (size,) = _LENGTH.unpack(head)
    data = stream.read(size)
    return data if len(data) == size else None


def _die_with_parent() -> None:
    """Linux: the kernel kills the worker when mkstream ends, however it ends (even mid-computation)."""
    with contextlib.suppress(Exception):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


def worker_main(stdin: BinaryIO, stdout: BinaryIO) -> int:
    import jq

    header = _read_message(stdin)
    if header is None:
        return 0
    spec = json.loads(header)
    wrap = spec["wrap"]
    program = jq.compile(printing(spec["program"]) if wrap else spec["program"], args=spec["args"])
    pack = _LENGTH.pack
    while True:
        text = _read_message(stdin)
        if text is None:
            return 0
        try:
            for record in program.input_text(text.decode("utf-8")):
                data = (record if wrap else json.dumps(record, ensure_ascii=False)).encode("utf-8")
                stdout.write(b"R" + pack(len(data)) + data)
                stdout.flush()  # out before jq computes the next one, which may take long
        except ValueError as exc:
            message = str(exc).encode("utf-8", "replace")
            stdout.write(b"E" + pack(len(message)) + message)
        else:
            stdout.write(b"D")
        stdout.flush()


def main() -> None:
    _die_with_parent()
    if os.getppid() == 1:  # the parent ended before the line above took effect
        return
    with contextlib.suppress(BrokenPipeError, KeyboardInterrupt), \
            open(sys.stdout.fileno(), "wb", buffering=_READ, closefd=False) as stdout:
        sys.exit(worker_main(sys.stdin.buffer, stdout))


if __name__ == "__main__":
    main()
