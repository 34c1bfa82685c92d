"""Terminal-safe text: server-provided strings shown without letting them drive the terminal.

Note texts, user names, CWs, close reasons and jq error messages come from anywhere in the
fediverse. Written raw to a terminal, ESC sequences could set the clipboard (OSC 52), clear the
screen or retitle the window, a carriage return could overwrite what came before, and a bidi
override could make a line read differently from its bytes. This module owns the rule that turns
such characters into visible escapes; everything else (Japanese, emoji, ZWJ sequences, combining
marks) passes untouched.

Two views of the same rule:

- :func:`escape_controls` for human-readable text: ``\\x1b``, ``\\u202e``, ``\\ud83c`` (and the
  familiar ``\\n``, ``\\r``, ``\\t``).
- :func:`escape_json_text` for a JSON text already serialised with ``ensure_ascii=False``: the
  characters JSON leaves raw (DEL, C1, bidi controls, lone surrogates) become ``\\u0085``-style
  escapes, so the result is still valid JSON and decodes to the same value.

A backslash already in the text is left alone, so a literal ``\\x1b`` typed by a user looks like an
escaped ESC: that costs a little fidelity and no safety, as no raw control character survives.
"""

from __future__ import annotations

import re

__all__ = ["UNSAFE_CHARACTERS", "escape_controls", "escape_json_text", "is_safe"]

# C0 (tab and newline included: callers that want them fold them first), DEL, C1, the bidi
# embeddings/overrides/isolates and marks, the Arabic letter mark, and every surrogate code point
# (a str can only hold one when it is lone, e.g. json.loads of "\ud83c").
UNSAFE_CHARACTERS = (
    "\x00-\x1f\x7f-\x9f"
    "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
    "\ud800-\udfff"
)
_UNSAFE = re.compile(f"[{UNSAFE_CHARACTERS}]")

# In a JSON text, C0 is already escaped inside strings and \t \n \r outside them are layout
# (json.dumps(indent=2)); the other C0 characters cannot appear in valid JSON but are escaped too,
# in case a serialiser let one through.
_JSON_UNSAFE = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f"
    "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
    "\ud800-\udfff]"
)

_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _visible(match: re.Match[str]) -> str:
    char = match.group()
    short = _SHORT.get(char)
    if short is not None:
        return short
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _json_escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def escape_controls(text: str) -> str:
    """``text`` with every control, C1, bidi control and lone surrogate shown as a visible escape.

    Returns ``text`` itself (the same object) when there is nothing to escape, the common case.
    """
    if _UNSAFE.search(text) is None:
        return text
    return _UNSAFE.sub(_visible, text)


def escape_json_text(json_text: str) -> str:
    """A JSON text (``ensure_ascii=False``) with DEL, C1, bidi controls and lone surrogates as ``\\uXXXX``.

    Such characters can only sit inside JSON strings, where ``\\uXXXX`` means the same character, so
    the result decodes to the same value; layout whitespace between tokens is kept.
    """
    if _JSON_UNSAFE.search(json_text) is None:
        return json_text
    return _JSON_UNSAFE.sub(_json_escape, json_text)


def is_safe(text: str) -> bool:
    """Whether ``text`` holds no character that :func:`escape_controls` would escape."""
    return _UNSAFE.search(text) is None
