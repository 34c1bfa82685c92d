"""The ``--stdin`` command language: one line, one command, parsed without side effects.

``connect CHANNEL[:ID][?params]``, ``disconnect ID``, ``sub NOTE_ID``, ``unsub NOTE_ID``,
``send ID TYPE [BODY_JSON]``, ``help``, or a raw JSON frame sent as is. Blank lines and ``#``
comments are ignored. At the end of input the stream goes on with what it has.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from misskey_cli.core.channels import ChannelSpec, SpecError, parse_channel_spec
from misskey_cli.core.protocol import BadFrame, check_note_id, parse_client_frame
from misskey_cli.run.settings import SendRequest


class CommandError(ValueError):
    """A line that is not a command; the message says what would be."""


@dataclass(frozen=True)
class Connect:
    spec: ChannelSpec


@dataclass(frozen=True)
class Disconnect:
    connection_id: str


@dataclass(frozen=True)
class Sub:
    note_id: str


@dataclass(frozen=True)
class Unsub:
    note_id: str


# ``send ID TYPE [BODY]``: the same request as ``mkstream send``'s, one type for both.
Send = SendRequest


@dataclass(frozen=True)
class RawFrame:
    text: str


@dataclass(frozen=True)
class Help:
    pass


Command = Connect | Disconnect | Sub | Unsub | Send | RawFrame | Help

USAGE = ("commands: connect CHANNEL[:ID][?k=v], disconnect ID, sub NOTE_ID, unsub NOTE_ID, "
         "send ID TYPE [BODY_JSON], help, or a JSON frame")

HELP = ("live commands, one per line: connect CHANNEL[:ID][?k=v] | disconnect ID | sub NOTE_ID | "
        "unsub NOTE_ID | send ID TYPE [BODY_JSON] | a raw JSON frame {\"type\":...,\"body\":...} | help; "
        "# starts a comment; at end of input the stream goes on")


def parse_body(text: str | None) -> Any:
    """A message body given as JSON; absent means ``{}`` (the server drops a missing body)."""
    if text is None or not text.strip():
        return {}
    try:
        return json.loads(text)
    except ValueError as exc:
        raise CommandError(f"body is not JSON: {exc.args[0]}") from None


def parse_command(line: str) -> Command | None:
    text = line.strip()
    if not text or text.startswith("#"):
        return None
    if text.startswith(("{", "[")):
        try:
            parse_client_frame(text)
        except BadFrame as exc:
            raise CommandError(f"a raw frame must be a JSON object with a string type; this one is {exc}") from None
        return RawFrame(text)
    word, _, rest = text.partition(" ")
    parse = _WORDS.get(word)
    if parse is None:
        shown = word if len(word) <= 40 else word[:40] + "..."
        raise CommandError(f"unknown command {shown!r}; {USAGE}")
    return parse(word, rest.strip())


def _help(word: str, rest: str) -> Command:
    if rest:
        raise CommandError("usage: help")
    return Help()


def _connect(word: str, rest: str) -> Command:
    if not rest:
        raise CommandError("usage: connect CHANNEL[:ID][?key=value&...]")
    try:
        return Connect(parse_channel_spec(rest))
    except SpecError as exc:
        raise CommandError(str(exc)) from None


def _one_id(word: str, rest: str) -> Command:
    if not rest or " " in rest:
        raise CommandError(f"usage: {word} {'ID' if word == 'disconnect' else 'NOTE_ID'}")
    if word == "disconnect":
        return Disconnect(rest)
    try:
        check_note_id(rest)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    return Sub(rest) if word == "sub" else Unsub(rest)


def _send(word: str, rest: str) -> Command:
    parts = rest.split(None, 2)
    if len(parts) < 2:
        raise CommandError("usage: send ID TYPE [BODY_JSON]")
    return Send(parts[0], parts[1], parse_body(parts[2] if len(parts) == 3 else None))


_WORDS: dict[str, Callable[[str, str], Command]] = {
    "help": _help, "connect": _connect, "disconnect": _one_id, "sub": _one_id, "unsub": _one_id, "send": _send,
}
