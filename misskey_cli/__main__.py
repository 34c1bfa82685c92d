"""The process's entry point (``mkstream`` and ``python -m misskey_cli``).

SIGTERM is taken over before anything else is imported: until a run installs its own handlers,
a SIGTERM ends mkstream with the documented 143 (``SystemExit``, so ``finally`` blocks such as
the token prompt's echo restore still run) instead of the default -15.

The GIL switch interval is cut from Python's 5 ms to 1 ms. The stream loop computes without
pause while frames arrive; the writer thread (and the proxy's records thread) does a little Python
between system calls, and each time it gives up the GIL it waits up to one interval to take it
back from the loop. At 5 ms a ``--state`` run, whose writer saves the state file per batch, let
10-20 MB of records queue up meanwhile; at 1 ms about 2 MB (``benchmarks/run.py``'s memory figure).
A busy loop is only asked to switch when another thread is waiting, so nothing else changes.
"""

import signal
import sys
from types import FrameType


def _early_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(143)  # ExitCode.SIGTERM, without importing anything first


def run() -> None:
    signal.signal(signal.SIGTERM, _early_sigterm)
    sys.setswitchinterval(0.001)
    from misskey_cli.cli.group import main

    main()


if __name__ == "__main__":
    run()
