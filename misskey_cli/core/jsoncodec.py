"""JSON in and out, the one place that knows orjson and the standard library's ``json`` differ.

Encoding is compact (``{"a":1}``), non-ASCII left as it is. orjson is the fast path; the standard
library takes over for what orjson refuses (integers beyond 64 bits, lone surrogates, non-string
keys), and a lone surrogate, which only a JSON string can hold, is written as its ``\\udXXX``
escape so the bytes stay UTF-8.

Decoding validates UTF-8. orjson is strict; what it refuses and JSON still allows (an escaped lone
surrogate, as JavaScript makes of a string cut mid-emoji; NaN; huge numbers) is read "loosely" by the
standard library, and ``loads`` says which of the two it took (a loose value needs care to re-encode).
Every module that reads or writes JSON on a hot path or in a file goes through here.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

_COMPACT = (",", ":")


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON."""
    try:
        return orjson.dumps(value)
    except (TypeError, orjson.JSONEncodeError):
        return json.dumps(value, ensure_ascii=False, separators=_COMPACT).encode("utf-8", "backslashreplace")


def dumps_line(value: Any) -> bytes:
    """Compact UTF-8 JSON and a newline: one NDJSON record."""
    try:
        return orjson.dumps(value, option=orjson.OPT_APPEND_NEWLINE)
    except (TypeError, orjson.JSONEncodeError):
        return dumps(value) + b"\n"


def dumps_text(value: Any) -> str:
    """Compact JSON as a ``str`` (a lone surrogate stays a character: encode with ``backslashreplace``)."""
    return json.dumps(value, ensure_ascii=False, separators=_COMPACT)


def is_strict(data: bytes) -> bool:
    """Whether orjson (and so every jq) reads ``data``: no NaN, no escaped lone surrogate, valid UTF-8."""
    try:
        orjson.loads(data)
    except orjson.JSONDecodeError:
        return False
    return True


def loads(data: bytes) -> tuple[Any, bool]:
    """Decode one JSON text (UTF-8 validated): (value, strict); raises ValueError with a short reason."""
    try:
        return orjson.loads(data), True
    except orjson.JSONDecodeError as exc:
        if str(exc).startswith("depth limit"):
            raise ValueError("nested too deeply") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("invalid UTF-8") from None
    try:
        return json.loads(text), False
    except RecursionError:
        raise ValueError("nested too deeply") from None
    except ValueError as exc:
        raise ValueError(f"not JSON ({exc.args[0].split(':')[0]})") from None

