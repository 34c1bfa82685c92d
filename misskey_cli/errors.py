"""Exit statuses (docs/cli.md §6) and the exceptions library code raises.

Library code raises these; the entry points turn them into one line on stderr and the exit
status: ``run/app.py`` for the runs (stream, replay, proxy), ``cli/`` (and the login/doctor entry
points it calls) for the rest. No other module exits.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    RUNTIME_ERROR = 1
    USAGE = 2
    CONNECT_FAILED = 3
    TOKEN_REJECTED = 4
    FORBIDDEN = 5
    CONNECTION_LOST = 6
    NOT_ACKNOWLEDGED = 7
    SIGHUP = 129
    SIGINT = 130
    SIGQUIT = 131
    SIGTERM = 143


class MkstreamError(Exception):
    """An error with a one-line message and the exit status it means."""

    exit_code: ExitCode = ExitCode.RUNTIME_ERROR

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UsageError(MkstreamError):
    exit_code = ExitCode.USAGE


class ConnectFailed(MkstreamError):
    exit_code = ExitCode.CONNECT_FAILED


class TokenRejected(MkstreamError):
    exit_code = ExitCode.TOKEN_REJECTED


class Forbidden(MkstreamError):
    exit_code = ExitCode.FORBIDDEN


class ConnectionLost(MkstreamError):
    exit_code = ExitCode.CONNECTION_LOST


class NotAcknowledged(MkstreamError):
    exit_code = ExitCode.NOT_ACKNOWLEDGED


class SourceEnded(Exception):
    """A finite frame source (a recording being replayed) has nothing more: a normal end."""


class OutputError(MkstreamError):
    """Writing a record failed for a reason other than the reader going away."""

    exit_code = ExitCode.RUNTIME_ERROR
