"""Durations as people type them: ``30s``, ``5m``, ``1h``, ``1h30m``, ``500ms``, or bare seconds."""

from __future__ import annotations

import math
import re

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")


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
        raise ValueError(f"{text!r} is not a duration: it must be a finite number of seconds, zero or more")
    return seconds
