"""The process's entry point (``mkstream`` and ``python -m misskey_cli``).

SIGTERM is taken over before anything else is imported: until a run installs its own handlers,
a SIGTERM ends mkstream with the documented 143 (``SystemExit``, so ``finally`` blocks such as
the token prompt's echo restore still run) instead of the default -15.
"""

import signal
from types import FrameType


def _early_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(143)  # ExitCode.SIGTERM, without importing anything first


def run() -> None:
    signal.signal(signal.SIGTERM, _early_sigterm)
    from misskey_cli.cli.group import main

    main()


if __name__ == "__main__":
    run()
