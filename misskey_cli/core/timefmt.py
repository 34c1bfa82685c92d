"""Times as mkstream writes and reads them: RFC 3339 UTC, durations, and ``--since``/``--until`` bounds.

One formatter for every time mkstream writes with milliseconds (``--timestamps`` in every format,
recordings), rounded to the nearest millisecond, so a time read back from any of them prints the
same again; ``rfc3339_seconds`` for whole-second stamps (notices, state files). The parsers read
RFC 3339 times (``2026-11-27T19:28:42.184Z``, an offset, or a bare date), durations as people type
them (``30s``, ``5m``, ``1h30m``, ``500ms``, bare seconds) and the ``--since``/``--until`` forms.
"""

from __future__ import annotations

import datetime
import functools
import math
import re
import time
from dataclasses import dataclass

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")

# ----- writing ---------------------------------------------------------------------------------


@functools.lru_cache(maxsize=4)
def _second(second: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))


def rfc3339(epoch: float) -> str:
    """``2026-11-27T19:28:42.184Z``: UTC, to the nearest millisecond. Raises ValueError/OverflowError/OSError
    for a time that is not one (NaN, infinite, beyond the calendar)."""
    second, milli = divmod(round(epoch * 1000), 1000)
    return f"{_second(second)}.{milli:03d}Z"


def rfc3339_seconds(epoch: float | None = None) -> str:
    """``2026-11-27T19:28:42Z``: UTC, whole seconds (now, without ``epoch``)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


# ----- reading ---------------------------------------------------------------------------------


def parse_rfc3339(text: str) -> float:
    """Epoch seconds of an RFC 3339 time (``2026-11-27T19:28:42.184Z``, ``...+09:00``, or a date).

    A time without an offset is UTC, like every time mkstream prints. Raises ValueError.
    """
    raw = text.strip()
    try:
        moment = datetime.datetime.fromisoformat(raw.replace("z", "Z"))
    except ValueError:
        raise ValueError(f"{text!r} is not an RFC 3339 time (e.g. 2026-11-27T19:28:42Z)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.timestamp()


def parse_duration(text: str) -> float:
    """Seconds in ``text``; raises ValueError with the accepted forms."""
    raw = text.strip().lower()
    try:
        seconds = float(raw)
    except ValueError:
        pos, seconds = 0, 0.0
        for match in _PART.finditer(raw):
            if match.start() != pos:
                break
            seconds += float(match[1]) * _UNITS[match[2]]
            pos = match.end()
        if pos != len(raw) or not raw:
            raise ValueError(f"{text!r} is not a duration: use e.g. 30s, 5m, 1h, 1h30m, 500ms or seconds") from None
    if math.isnan(seconds) or seconds < 0 or math.isinf(seconds):
        raise ValueError(f"{text!r} is not a duration: it must be a finite number of seconds, not negative")
    return seconds


@dataclass(frozen=True)
class TimeBound:
    """A ``--since``/``--until`` value: an epoch time, ``ago`` seconds before now, or ``after_start``
    seconds after the input starts (its first header's time, else its first frame's)."""

    kind: str  # "at", "ago", "after_start"
    seconds: float

    def resolve(self, now: float, start: float | None) -> float | None:
        """The epoch time meant, or None while the input's start is not known yet."""
        if self.kind == "at":
            return self.seconds
        if self.kind == "ago":
            return now - self.seconds
        return None if start is None else start + self.seconds


def parse_time_bound(text: str) -> TimeBound:
    """``2026-11-27T19:28:42Z`` (RFC 3339), ``10m`` (ten minutes ago) or ``+10m`` (after the start)."""
    raw = text.strip()
    if raw[:1] in ("+", "-") or (raw[:1].isdigit() and not _looks_like_date(raw)):
        sign, rest = (raw[0], raw[1:]) if raw[:1] in ("+", "-") else ("", raw)
        try:
            seconds = parse_duration(rest)
        except ValueError:
            raise ValueError(f"{text!r} is not a time: give an RFC 3339 time (2026-11-27T19:28:42Z), "
                             "a duration ago (10m) or a duration after the start of the input (+10m)") from None
        return TimeBound("after_start" if sign == "+" else "ago", seconds)
    return TimeBound("at", parse_rfc3339(raw))


def _looks_like_date(text: str) -> bool:
    return len(text) >= 10 and text[4:5] == "-" and text[7:8] == "-"
