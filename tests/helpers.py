"""Running the real CLI: in-process through click's CliRunner, or as a child process.

Child processes are for what an in-process run cannot show: signals, stdin commands, real pipes.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from click.testing import CliRunner, Result

from misskey_cli.cli.group import main

# Every streaming test run also carries a limit, so a broken run fails instead of hanging.
SAFETY = ("--duration", "60s")


def run_cli(*args: str, input: str | None = None, env: dict[str, str] | None = None) -> Result:
    runner = CliRunner()
    return runner.invoke(main, list(args), input=input, env=env, catch_exceptions=False)


def records(result: Result) -> list[Any]:
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def in_background(fn: Callable[[], Any]) -> threading.Thread:
    """Run a feeder beside the CLI; its exception is re-raised by ``join_ok``."""
    errors: list[BaseException] = []

    def wrapper() -> None:
        try:
            fn()
        except BaseException as exc:  # noqa: BLE001 - reported by join_ok
            errors.append(exc)

    thread = threading.Thread(target=wrapper, daemon=True)
    thread.errors = errors  # type: ignore[attr-defined]
    thread.start()
    return thread


def join_ok(thread: threading.Thread, timeout: float = 30.0) -> None:
    thread.join(timeout)
    assert not thread.is_alive(), "feeder thread did not finish"
    errors = thread.errors  # type: ignore[attr-defined]
    if errors:
        raise errors[0]


def spawn(*args: str, env: dict[str, str] | None = None, stdin: int | None = subprocess.DEVNULL,
          stdout: int | None = subprocess.PIPE) -> subprocess.Popen[bytes]:
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.Popen([sys.executable, "-m", "misskey_cli", *args], stdin=stdin, stdout=stdout,
                            stderr=subprocess.PIPE, env=full_env)


def stderr_until(proc: subprocess.Popen[bytes], marker: str, timeout: float = 30) -> str:
    """Read a spawned mkstream's stderr up to the end of the line holding ``marker``; what was read.

    For a test that must act only once mkstream has said something. The wait is bounded: no
    marker within ``timeout`` seconds (or stderr closed first) fails the test.
    """
    import pytest

    assert proc.stderr is not None
    seen = b""
    deadline = time.monotonic() + timeout
    while marker.encode() not in seen or not seen.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([proc.stderr], [], [], left)[0]:
            pytest.fail(f"no {marker!r} on stderr within {timeout:g}s: {seen.decode(errors='replace')}")
        chunk = os.read(proc.stderr.fileno(), 65536)
        if not chunk:
            pytest.fail(f"stderr ended without {marker!r}: {seen.decode(errors='replace')}")
        seen += chunk
    return seen.decode(errors="replace")


def finish(proc: subprocess.Popen[bytes], timeout: float = 60) -> tuple[int, str, str]:
    """Wait for a spawned mkstream: (exit status, stdout, stderr); a hang fails the test."""
    import pytest

    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"mkstream did not exit: {err.decode()}")
    return proc.returncode, (out or b"").decode(), (err or b"").decode()
