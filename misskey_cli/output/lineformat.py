"""``--format line``: one human-readable line per frame, like stern or ``kubectl get -w``.

This module owns the wording and layout of that line, and fitting it to a terminal width (with ``cells``). It is
pure: the caller passes the width and whether to colour, and gets back a string without a
trailing newline. Nothing here reads the terminal, the environment or the clock.

A line is three runs of styled spans: a *head* that is always kept (time, connection id, event,
who), a *body* that is cut first when the line is too wide (the note text, a JSON payload) and a
*tail* of markers kept after the body (``[📎2] [poll]``). Widths are display columns (wcwidth: CJK
and emoji count two), measured on the text only, so colour codes never count.

Every server-provided string passes through :func:`safetext.escape_controls` after newlines are
folded, so the only escape sequences in a line are the formatter's own colours. Any value that a
renderer cannot make sense of falls back to its compact JSON: ``format`` never raises.

Most of a timeline is notes that are not quotes; ``_plain_note`` writes their line directly, with
no spans, at half the cost. Its lines are the span renderers' to the character (a test compares
them), so the spans remain the one definition of every line.
"""

from __future__ import annotations

import math
import re
import zlib
from collections.abc import Callable
from datetime import datetime, tzinfo
from typing import Any

from misskey_cli.core.notes import is_pure_renote
from misskey_cli.core.safetext import UNSAFE_CHARACTERS, escape_controls
from misskey_cli.core.timefmt import rfc3339
from misskey_cli.output.cells import ELLIPSIS, Span, clip, cut_spans, display_width, fit, measure, wcs
from misskey_cli.output.notecontext import NoteContext
from misskey_cli.output.plaintext import (
    NEWLINE,
    compact_json,
    count_text,
    fold_lines,
    reduce_mfm,
    size_text,
    stats_peaks,
    stats_summary,
)

__all__ = ["ELLIPSIS", "PALETTE", "LineFormatter", "clip", "compact_json", "display_width", "fit", "fold_lines"]


# Connection ids get these in first-seen order, as stern colours pods.
PALETTE = ("36", "32", "33", "35", "34", "96", "92", "95")
DIM = "2"
BOLD = "1"
MUTED = "90"
EVENT = BOLD
USER = BOLD

# Below this many columns for the body, cutting the body alone would leave a stub: the whole
# line is cut at the end instead.
MIN_BODY = 8
# Connection ids remembered for colours; beyond that an id's colour comes from its hash.
_MAX_REMEMBERED_IDS = 1024
# Nested notes followed (a renote of a quote of ...); deeper ones are named, not rendered.
_MAX_NOTE_DEPTH = 2

_NEEDS_FOLD = re.compile("[\t\n\u2028\u2029]")
# Anything _clean would fold or escape: one search decides that most text needs neither.
_SPECIAL = re.compile(f"[\u2028\u2029{UNSAFE_CHARACTERS}]")
# The same, or a character that may start MFM markup ($[, <, **): one search for a note's text.
_SPECIAL_OR_MFM = re.compile(f"[\u2028\u2029{UNSAFE_CHARACTERS}$<*]")


# ---------------------------------------------------------------------------------------------
# The formatter
# ---------------------------------------------------------------------------------------------

def _plain_note_of(value: Any) -> tuple[dict[str, Any], str] | None:
    """(note, connection id) of a channel frame carrying a note; None for any other value."""
    if type(value) is not dict or value.get("type") != "channel":
        return None
    body = value.get("body")
    if type(body) is not dict or body.get("type") != "note":
        return None
    note = body.get("body")
    connection = body.get("id")
    if type(note) is not dict or type(connection) is not str:
        return None
    return note, connection


def _is_pure_renote(note: dict[str, Any]) -> bool:
    """A pure renote (the server's rule) whose renoted note is here and is not itself a renote."""
    renote = note.get("renote")
    return (is_pure_renote(note) and type(renote) is dict and renote.get("renote") is None
            and renote.get("renoteId") is None)


class _Parts:
    """The spans of one line being built: head (kept), body (cut first), tail (markers)."""

    __slots__ = ("body", "head", "tail")

    def __init__(self, stamp: str) -> None:
        self.head: list[Span] = [(stamp, DIM)]
        self.body: list[Span] = []
        self.tail: list[Span] = []


class LineFormatter:
    """Turns decoded frames (or any JSON value) into single display lines.

    ``width``: display columns to fit, None for no cut (pipes). ``color``: emit SGR colours.
    ``show_cw``: show the text behind a content warning. ``timestamps``: full RFC 3339 UTC time
    with milliseconds instead of local ``HH:MM:SS``. ``tz``: the zone for ``HH:MM:SS`` (None: the
    machine's local time), for tests and callers that know better.

    ``context``: what it knows of the notes and users behind ``noteUpdated`` events (only read here).
    """

    def __init__(self, *, width: int | None, color: bool, show_cw: bool = False, timestamps: bool = False,
                 tz: tzinfo | None = None, context: NoteContext | None = None) -> None:
        self._context = context or NoteContext()  # notes and users behind noteUpdated events
        self.resize(width)
        self._color = color
        self._show_cw = show_cw
        self._timestamps = timestamps
        self._tz = tz
        self._colours: dict[str, str] = {}
        self._accounts: dict[tuple[Any, Any], str] = {}
        self._connections: dict[str, tuple[str, str]] = {}
        self._stamp_from, self._stamp_until = math.inf, -math.inf  # the second of _stamp_text (without)
        self._stamp_text = ""

    def resize(self, width: int | None) -> None:
        """Fit later lines to ``width`` columns (the terminal was resized)."""
        self._width = None if width is None else max(1, width)
        # Server strings longer than this are cut before any work on them: a line never shows more.
        self._limit = None if width is None else 4 * max(1, width) + 64

    # -- entry ------------------------------------------------------------------------------

    def format(self, value: Any, received_at: float) -> str:
        """One line for ``value`` received at ``received_at`` (epoch seconds), no trailing newline."""
        stamp = self._stamp(received_at)
        try:
            line = self._plain_note(value, stamp)
        except Exception:  # noqa: BLE001 - the span renderers have the fallback for any shape
            line = None
        return line if line is not None else self._spans_line(value, stamp)

    def _spans_line(self, value: Any, stamp: str) -> str:
        """The line of any value, built from styled spans by the renderers below."""
        parts = _Parts(stamp)
        try:
            self._render(parts, value)
            return self._finish(parts)
        except Exception:  # noqa: BLE001 - a shape no renderer expected: the compact JSON still shows it
            parts = _Parts(stamp)
            parts.body.append((" " + self._json(value), ""))
            return self._finish(parts)

    def _plain_note(self, value: Any, stamp: str) -> str | None:
        """The line of a channel note that is not a quote (a plain note, a reply, a pure renote),
        written directly; None for any other value, which the span renderers take.

        Such notes are most of a timeline, and building spans for them costs twice as much. The
        result is the span renderers' to the character: tests/test_lineformat.py compares the two
        on every recorded frame and many variants of each, at many widths, with and without colour.
        """
        found = _plain_note_of(value)
        if found is None:
            return None
        note, connection = found
        author, painted_author = self._plain_author(note)
        markers = self._note_markers(note)
        if note.get("renote") is not None or note.get("renoteId") is not None:
            if not _is_pure_renote(note):
                return None
            note = note["renote"]  # the renoted note's author, text and markers follow
            renoted, painted_renoted = self._plain_author(note)
            author += " ♻ " + renoted
            painted_author += f"\x1b[{MUTED}m ♻ \x1b[0m" + painted_renoted
            markers = self._note_markers(note) + markers
        text = self._plain_text(note)
        if text is None:
            return None
        label, raw, mfm = text
        lead = self._connections.get(connection)
        if lead is None:
            lead = self._connection_lead(connection)
        head = f"{stamp}{lead[0]} {author}" if raw is None else f"{stamp}{lead[0]} {author}:"
        tail = "".join([marker for marker, _ in markers])
        if self._width is None:
            shown = None if raw is None else self._clean(raw, mfm)
        else:
            fits, shown = self._plain_fit(head, label, raw, mfm, tail)
            if not fits:
                return None  # the whole line is cut: the span renderers' case
        if not self._color:
            return head + tail if shown is None else f"{head} {label}{shown}{tail}"
        painted = f"\x1b[{DIM}m{stamp}\x1b[0m{lead[1]} {painted_author}"
        tail = self._paint(markers)
        if shown is None:
            return painted + tail
        return f"{painted}: \x1b[{MUTED}m{label}\x1b[0m{shown}{tail}" if label else f"{painted}: {shown}{tail}"

    def _plain_text(self, note: dict[str, Any]) -> tuple[str, str | None, bool] | None:
        """(label, text, mfm) of a plain note as _note_text shows it, not yet cleaned: ("CW: ", its
        CW, False) or ("", its text or None, True); None when the spans must show it (a value that
        is not a string, --show-cw)."""
        text = note.get("text")
        cw = note.get("cw")
        if cw is None:
            if text is None or type(text) is str:
                return "", text or None, True
            return None
        if type(cw) is str and not (self._show_cw and text):
            return "CW: ", cw, False
        return None

    def _plain_author(self, note: dict[str, Any]) -> tuple[str, str]:
        """The author and the marks after it, plain and painted ("" without colour): _note_lead's
        spans joined, ``@alice [home] ↩ @bob``."""
        get = note.get
        if (get("visibility") == "public" and get("reply") is None and get("replyId") is None
                and get("localOnly") is not True and get("isHidden") is not True):
            account = self._acct(get("user"))  # no marks, the common case: no spans to build
            return account, f"\x1b[{USER}m{account}\x1b[0m" if self._color else ""
        lead = self._note_lead(note)
        return "".join([text for text, _ in lead]), self._paint(lead) if self._color else ""

    def _plain_fit(self, head: str, label: str, raw: str | None, mfm: bool, tail: str) -> tuple[bool, str | None]:
        """(fits, text): the text cleaned and cut as _finish and _cut would cut its spans, or fits
        False when _finish would cut the whole line."""
        width = self._width
        assert width is not None
        used = measure(head, width) + (measure(tail, width) if tail else 0)
        if raw is None:
            return used <= width, None
        room = width - used - 1 - len(label)  # columns for the text after " " and the label
        if room + 1 + len(label) < MIN_BODY:
            shown = self._clean(raw, mfm)
            return measure(shown, max(room, 0)) <= room, shown
        return True, self._fit_text(raw, mfm, room)

    def _fit_text(self, raw: str, mfm: bool, columns: int) -> str:
        """``fit(self._clean(raw, mfm), columns)``, cleaning no more than can show when that is the same.

        It is when the first ``columns + 1`` characters have nothing to clean (no markup starts
        there, no line break, no control) and are wider than ``columns``: the cut falls among them,
        and nothing after them changes them (but a fold's strip of a leading blank: none there).
        """
        if len(raw) > columns + 1 and not raw[0].isspace():
            start = raw[:columns + 1]
            if (_SPECIAL_OR_MFM if mfm else _SPECIAL).search(start) is None:
                width = len(start) if start.isascii() else wcs(start)
                if width > columns:
                    return clip(start, columns - 1, (columns + 1, width)) + ELLIPSIS
        return fit(self._clean(raw, mfm), columns)

    def _connection_lead(self, connection: str) -> tuple[str, str]:
        """`` <id>`` plain and painted, for the plain-note line; remembered per connection id."""
        text = " " + self._clean(connection)
        lead = (text, f"\x1b[{self._conn_style(text[1:])}m{text}\x1b[0m" if self._color else text)
        if len(self._connections) >= _MAX_REMEMBERED_IDS:
            self._connections.clear()
        self._connections[connection] = lead
        return lead

    # -- time -------------------------------------------------------------------------------

    def _stamp(self, received_at: float) -> str:
        try:
            if self._stamp_from <= received_at < self._stamp_until:
                return self._stamp_text  # the second of the last line (HH:MM:SS only)
            if self._timestamps:
                return rfc3339(received_at)
            second = int(received_at // 1)
            self._stamp_text = datetime.fromtimestamp(second, self._tz).strftime("%H:%M:%S")
            self._stamp_from, self._stamp_until = second, second + 1
            return self._stamp_text
        except (TypeError, ValueError, OverflowError, OSError):
            return "????-??-??T??:??:??.???Z" if self._timestamps else "??:??:??"

    # -- layout -----------------------------------------------------------------------------

    def _finish(self, parts: _Parts) -> str:
        spans = parts.head + parts.body + parts.tail
        width = self._width
        if width is None:
            return self._paint(spans)
        # Each run measured as one string: one call into wcwidth instead of one per span.
        head_text = "".join([text for text, _ in parts.head])
        tail_text = "".join([text for text, _ in parts.tail])
        head = measure(head_text, width)
        tail = measure(tail_text, width)
        if head + tail <= width:
            body_text = "".join([text for text, _ in parts.body])
            body = measure(body_text, width)
            if head + body + tail <= width:
                return self._paint(spans) if self._color else head_text + body_text + tail_text
            room = width - head - tail
            if room >= MIN_BODY:
                return self._paint(parts.head + cut_spans(parts.body, room) + parts.tail)
        return self._paint(cut_spans(spans, width))

    def _paint(self, spans: list[Span]) -> str:
        if not self._color:
            return "".join([text for text, _ in spans])
        return "".join([f"\x1b[{style}m{text}\x1b[0m" if style and text else text for text, style in spans])

    # -- text helpers -----------------------------------------------------------------------

    def _clean(self, raw: Any, mfm: bool = False) -> str:
        """A server value as one terminal-safe line of text (non-strings as compact JSON)."""
        if not isinstance(raw, str):
            return "" if raw is None else self._json(raw)
        value: str = raw
        limit = self._limit
        if limit is not None and len(value) > limit:
            value = value[:limit] + ELLIPSIS
        if mfm:
            if _SPECIAL_OR_MFM.search(value) is None:
                return value  # the common case: no markup, nothing to fold, nothing to escape
            value = reduce_mfm(value)
        if _SPECIAL.search(value) is None:
            return value
        if _NEEDS_FOLD.search(value) is not None:
            value = fold_lines(value)
        return escape_controls(value)

    def _json(self, value: Any) -> str:
        text = compact_json(value)
        limit = self._limit
        if limit is not None and len(text) > limit:
            return text[:limit] + ELLIPSIS
        return text

    def _acct(self, user: Any) -> str:
        if not isinstance(user, dict):
            return "@?"
        username = user.get("username")
        host = user.get("host")
        key = (username, host)
        try:
            known = self._accounts.get(key)  # a timeline's authors repeat: clean each once
            cacheable = True
        except TypeError:  # an unhashable username or host
            known, cacheable = None, False
        if known is not None:
            return known
        name = self._clean(username) if isinstance(username, str) else "?"
        account = f"@{name}@{self._clean(host)}" if host else f"@{name}"
        if cacheable:
            if len(self._accounts) >= _MAX_REMEMBERED_IDS:
                self._accounts.clear()
            self._accounts[key] = account
        return account

    def _reaction(self, reaction: Any) -> str:
        if isinstance(reaction, str) and reaction.endswith("@.:"):
            reaction = reaction[:-3] + ":"  # a local custom emoji: :blobcat@.: is :blobcat:
        return self._clean(reaction)

    def _conn_style(self, key: str) -> str:
        style = self._colours.get(key)
        if style is None:
            if len(self._colours) < _MAX_REMEMBERED_IDS:
                style = PALETTE[len(self._colours) % len(PALETTE)]
                self._colours[key] = style
            else:
                style = PALETTE[zlib.crc32(key.encode("utf-8", "replace")) % len(PALETTE)]
        return style

    def _connection(self, parts: _Parts, connection_id: Any) -> None:
        text = connection_id if isinstance(connection_id, str) else compact_json(connection_id)
        text = self._clean(text)
        parts.head.append((" " + text, self._conn_style(text) if self._color else ""))

    def _event(self, parts: _Parts, name: Any) -> None:
        parts.head.append((" " + self._clean(name if isinstance(name, str) else compact_json(name)), EVENT))

    def _put_json(self, parts: _Parts, value: Any) -> None:
        if value is not None:
            parts.body.append((" " + self._json(value), ""))

    def _put_user(self, parts: _Parts, user: Any, *, with_name: bool = True) -> None:
        parts.head.append((" " + self._acct(user), USER))
        if with_name and isinstance(user, dict):
            name = user.get("name")
            if isinstance(name, str) and name:
                parts.body.append((f" ({self._clean(name)})", ""))

    # -- notes ------------------------------------------------------------------------------

    def _note_lead(self, note: dict[str, Any]) -> list[Span]:
        """Author and markers: ``@alice [home] ↩ @bob``."""
        lead: list[Span] = [(self._acct(note.get("user")), USER)]
        visibility = note.get("visibility")
        if isinstance(visibility, str) and visibility != "public":
            lead.append((f" [{self._clean(visibility)}]", MUTED))
        if note.get("localOnly") is True:
            lead.append((" [localOnly]", MUTED))
        if note.get("isHidden") is True:
            lead.append((" [hidden]", MUTED))
        reply = note.get("reply")
        if isinstance(reply, dict):
            lead.append((" ↩", MUTED))
            lead.append((" " + self._acct(reply.get("user")), USER))
        elif isinstance(note.get("replyId"), str):
            lead.append((" ↩ " + self._clean(note["replyId"]), MUTED))
        return lead

    def _note_text(self, note: dict[str, Any]) -> list[Span]:
        """The text, or ``CW: <cw>`` with the text hidden unless show_cw."""
        cw = note.get("cw")
        text = note.get("text")
        spans: list[Span] = []
        if cw is not None:
            spans.append(("CW: ", MUTED))
            spans.append((self._clean(cw), ""))
            if self._show_cw and text:
                spans.append((NEWLINE, MUTED))
                spans.append((self._clean(text, mfm=True), ""))
        elif text:
            spans.append((self._clean(text, mfm=True), ""))
        return spans

    def _note_markers(self, note: dict[str, Any], poll_results: bool = False) -> list[Span]:
        markers: list[Span] = []
        files = note.get("files")
        if not isinstance(files, list):
            files = note.get("fileIds")
        if isinstance(files, list) and files:
            markers.append((f" [📎{len(files)}]", MUTED))
        poll = note.get("poll")
        if isinstance(poll, dict):
            markers.append((self._poll(poll) if poll_results else " [poll]", MUTED))
        channel = note.get("channel")
        if isinstance(channel, dict) and isinstance(channel.get("name"), str):
            markers.append((f" [channel {self._clean(channel['name'])}]", MUTED))
        return markers

    def _poll(self, poll: dict[str, Any]) -> str:
        choices = poll.get("choices")
        if not isinstance(choices, list):
            return " [poll]"
        results = ", ".join(
            f"{self._clean(c.get('text'))} {count_text(c.get('votes'))}" if isinstance(c, dict) else "?"
            for c in choices
        )
        return f" [poll: {results}]"

    def _note(self, note: dict[str, Any], depth: int = 0,
              poll_results: bool = False) -> tuple[list[Span], list[Span], list[Span]]:
        """(lead, text, markers) of a note, renotes and quotes included."""
        lead = self._note_lead(note)
        text = self._note_text(note)
        markers = self._note_markers(note, poll_results)
        renote = note.get("renote")
        renote_id = note.get("renoteId")
        if renote is None and not isinstance(renote_id, str):
            return lead, text, markers
        # Misskey's own test for a pure renote: no text, no CW, no files, no poll.
        pure = (note.get("text") is None and note.get("cw") is None
                and not note.get("fileIds") and not note.get("files") and not isinstance(note.get("poll"), dict))
        if not isinstance(renote, dict) or depth >= _MAX_NOTE_DEPTH:
            # the renoted note is gone (deleted) or nested too deep: name it
            named = self._clean(renote_id) if isinstance(renote_id, str) else "?"
            (lead if pure else text).append((" ♻ " + named, MUTED))
            return lead, text, markers
        inner_lead, inner_text, inner_markers = self._note(renote, depth + 1)
        if pure:
            return [*lead, (" ♻ ", MUTED), *inner_lead], inner_text, inner_markers + markers
        text.append((" ♻ ", MUTED))
        text.extend(inner_lead)
        if inner_text:
            text.append((": ", ""))
            text.extend(inner_text)
        text.extend(inner_markers)
        return lead, text, markers

    def _put_note(self, parts: _Parts, note: Any, poll_results: bool = False) -> None:
        if not isinstance(note, dict):
            self._put_json(parts, note)
            return
        lead, text, markers = self._note(note, poll_results=poll_results)
        parts.head.append((" ", ""))
        parts.head.extend(lead)
        if text:
            parts.head.append((":", ""))
            parts.body.append((" ", ""))
            parts.body.extend(text)
        parts.tail.extend(markers)

    # -- frames -----------------------------------------------------------------------------

    def _render(self, parts: _Parts, value: Any) -> None:
        if isinstance(value, dict) and isinstance(value.get("type"), str) and "body" in value:
            kind = value["type"]
            body = value["body"]
            if kind == "channel":
                self._render_channel(parts, body)
                return
            handler = _TOP_LEVEL.get(kind)
            if handler is None:
                self._event(parts, kind)
                self._put_json(parts, body)
            else:
                handler(self, parts, body)
            return
        parts.body.append((" " + self._json(value), ""))

    def _render_channel(self, parts: _Parts, body: Any) -> None:
        if not isinstance(body, dict):
            self._event(parts, "channel")
            self._put_json(parts, body)
            return
        self._connection(parts, body.get("id"))
        kind = body.get("type")
        payload = body.get("body")
        if kind == "note" and isinstance(payload, dict):
            self._put_note(parts, payload)
            return
        self._event(parts, kind)
        if not isinstance(kind, str):
            self._put_json(parts, payload)
            return
        handler = _CHANNEL_EVENTS.get(kind)
        if handler is not None:
            handler(self, parts, payload)
        elif kind in _OBJECT_EVENTS and isinstance(payload, dict):
            _OBJECT_EVENTS[kind](self, parts, payload)
        else:
            self._put_json(parts, payload)

    # top-level frames

    def _connected(self, parts: _Parts, body: Any) -> None:
        if isinstance(body, dict) and "id" in body:
            self._connection(parts, body["id"])
            self._event(parts, "connected")
            rest = {k: v for k, v in body.items() if k != "id"}
            self._put_json(parts, rest or None)
        else:
            self._event(parts, "connected")
            self._put_json(parts, body)

    def _note_updated(self, parts: _Parts, body: Any) -> None:
        self._event(parts, "noteUpdated")
        if not isinstance(body, dict):
            self._put_json(parts, body)
            return
        parts.head.append((" " + self._clean(body.get("id")), MUTED))
        kind, payload = body.get("type"), body.get("body")
        self._event(parts, kind)
        note = self._context.known_note(body.get("id"))  # its author and text (after an update, the new), if known
        if kind in ("reacted", "unreacted") and isinstance(payload, dict):
            parts.head.append((" " + self._reaction(payload.get("reaction")), ""))
            self._by(parts, payload.get("userId"))
        elif kind == "pollVoted" and isinstance(payload, dict):
            parts.head.append((f" choice {count_text(payload.get('choice'))}", ""))
            self._by(parts, payload.get("userId"))
        elif kind == "updated" and isinstance(payload, dict):
            text = self._note_text(payload) if note is None else []  # else the note below has it
            if text:
                parts.head.append((":", ""))
                parts.body.append((" ", ""))
                parts.body.extend(text)
        elif kind != "deleted" or not isinstance(payload, dict):  # deleted: {deletedAt}, the receive time says it
            self._put_json(parts, payload)
            return
        if note is not None:
            parts.head.extend([(" on", MUTED)] if kind != "updated" else [])
            self._put_note(parts, note)

    def _by(self, parts: _Parts, user_id: Any) -> None:
        if user_id is not None:
            user = self._context.known_user(user_id)  # the @handle, when known
            parts.head += [(" by", MUTED), (" " + self._acct(user), USER) if user else (" " + self._clean(user_id), "")]

    def _emoji_added(self, parts: _Parts, body: Any) -> None:
        self._event(parts, "emojiAdded")
        emoji = body.get("emoji") if isinstance(body, dict) else None
        if not isinstance(emoji, dict):
            self._put_json(parts, body)
            return
        self._put_emojis(parts, [emoji])

    def _emojis_changed(self, kind: str, parts: _Parts, body: Any) -> None:
        self._event(parts, kind)
        emojis = body.get("emojis") if isinstance(body, dict) else None
        if not isinstance(emojis, list):
            self._put_json(parts, body)
            return
        self._put_emojis(parts, emojis)

    def _put_emojis(self, parts: _Parts, emojis: list[Any]) -> None:
        for emoji in emojis[:32]:
            if not isinstance(emoji, dict):
                parts.body.append((" " + self._json(emoji), ""))
                continue
            parts.body.append((f" :{self._clean(emoji.get('name'))}:", ""))
            category = emoji.get("category")
            if isinstance(category, str) and category:
                parts.body.append((f" ({self._clean(category)})", MUTED))
        if len(emojis) > 32:
            parts.body.append((f" +{len(emojis) - 32}", MUTED))

    def _announcement_broadcast(self, parts: _Parts, body: Any) -> None:
        self._event(parts, "announcementCreated")
        self._put_announcement(parts, body)

    def _put_announcement(self, parts: _Parts, body: Any) -> None:
        announcement = body.get("announcement") if isinstance(body, dict) else None
        if not isinstance(announcement, dict):
            self._put_json(parts, body)
            return
        self._put_titled(parts, announcement.get("title"), announcement.get("text"), mfm=True)

    def _put_titled(self, parts: _Parts, title: Any, text: Any, mfm: bool = False) -> None:
        """``<title>: <text>``, the title bold, either one left out when empty."""
        if title:
            parts.head.append((" " + self._clean(title), BOLD))
        if text:
            parts.head.append((":", ""))
            parts.body.append((" " + self._clean(text, mfm=mfm), ""))

    # channel events

    def _notification(self, parts: _Parts, notification: dict[str, Any]) -> None:
        kind = notification.get("type")
        self._event(parts, kind)
        note = notification.get("note")
        user = notification.get("user")
        if isinstance(note, dict) and isinstance(kind, str) and kind in _NOTE_NOTIFICATIONS:
            self._put_note(parts, note, poll_results=kind == "pollEnded")
            return
        if isinstance(user, dict):
            parts.head.append((" " + self._acct(user), USER))
        if "reaction" in notification:
            parts.head.append((" " + self._reaction(notification["reaction"]), ""))
        detail = _NOTIFICATION_DETAILS.get(kind) if isinstance(kind, str) else None
        if detail is not None:
            detail(self, parts, notification)
        elif isinstance(note, dict):
            pass
        else:
            rest = {k: v for k, v in notification.items() if k not in _NOTIFICATION_COMMON}
            self._put_json(parts, rest or None)
        if isinstance(note, dict):
            parts.head.append((" on", MUTED))
            self._put_note(parts, note)

    def _app_notification(self, parts: _Parts, notification: dict[str, Any]) -> None:
        self._put_titled(parts, notification.get("header"), notification.get("body"))

    def _named_detail(self, key: str, parts: _Parts, notification: dict[str, Any]) -> None:
        value = notification.get(key)
        if isinstance(value, dict):
            value = value.get("name")
        if value is not None:
            parts.body.append((" " + self._clean(value), ""))

    def _user_event(self, parts: _Parts, user: Any) -> None:
        if isinstance(user, dict):
            self._put_user(parts, user)
        else:
            self._put_json(parts, user)

    def _invited(self, parts: _Parts, body: Any) -> None:
        user = body.get("user") if isinstance(body, dict) else None
        if isinstance(user, dict):
            parts.head.append((" by", MUTED))
            self._put_user(parts, user)
        else:
            self._put_json(parts, body)

    def _signin(self, parts: _Parts, body: Any) -> None:
        # The body carries the sign-in's IP and HTTP headers: never shown.
        if isinstance(body, dict) and body.get("success") is False:
            parts.head.append((" [failed]", MUTED))

    def _nothing(self, parts: _Parts, body: Any) -> None:
        self._put_json(parts, body)  # these events have a null body; show one if a server sends it

    def _bare_id(self, parts: _Parts, body: Any) -> None:
        if isinstance(body, str):
            parts.head.append((" " + self._clean(body), MUTED))
        else:
            self._put_json(parts, body)

    def _drive_file(self, parts: _Parts, file: dict[str, Any]) -> None:
        parts.body.append((" " + self._clean(file.get("name")), ""))
        comment = file.get("comment")
        if isinstance(comment, str) and comment:
            parts.body.append((" alt:", MUTED))
            parts.body.append((" " + self._clean(comment), ""))
        kind = file.get("type")
        facts = [self._clean(kind)] if isinstance(kind, str) else []
        if "size" in file:
            facts.append(size_text(file.get("size")))
        if facts:
            parts.tail.append((f" [{' '.join(facts)}]", MUTED))
        if file.get("isSensitive") is True:
            parts.tail.append((" [sensitive]", MUTED))

    def _url_upload(self, parts: _Parts, body: dict[str, Any]) -> None:
        file = body.get("file")
        if isinstance(file, dict):
            self._drive_file(parts, file)
        else:
            self._put_json(parts, body)

    def _folder(self, parts: _Parts, folder: dict[str, Any]) -> None:
        parts.body.append((" " + self._clean(folder.get("name")), ""))

    def _page_event(self, parts: _Parts, body: dict[str, Any]) -> None:
        if isinstance(body.get("user"), dict):
            parts.head.append((" " + self._acct(body["user"]), USER))
        parts.head.append((" " + self._clean(body.get("event")), ""))
        if "var" in body:
            self._put_json(parts, body["var"])

    def _registry(self, parts: _Parts, body: dict[str, Any]) -> None:
        scope = body.get("scope")
        path = "/".join(self._clean(s) for s in scope) if isinstance(scope, list) else self._clean(scope)
        parts.head.append((f" {path} {self._clean(body.get('key'))} =", ""))
        self._put_json(parts, body.get("value"))

    def _chat_message(self, parts: _Parts, message: dict[str, Any]) -> None:
        sender = message.get("fromUser")
        if isinstance(sender, dict):
            parts.head.append((" " + self._acct(sender), USER))
        else:
            parts.head.append((" " + self._clean(message.get("fromUserId")), MUTED))
        text = message.get("text")
        if text:
            parts.head.append((":", ""))
            parts.body.append((" " + self._clean(text, mfm=True), ""))
        if message.get("file") or message.get("fileId"):
            parts.tail.append((" [📎1]", MUTED))

    def _chat_reaction(self, parts: _Parts, body: dict[str, Any]) -> None:
        if isinstance(body.get("user"), dict):
            parts.head.append((" " + self._acct(body["user"]), USER))
        parts.head.append((" " + self._reaction(body.get("reaction")), ""))
        parts.head.append((" on", MUTED))
        parts.head.append((" " + self._clean(body.get("messageId")), MUTED))

    def _abuse_report(self, parts: _Parts, report: dict[str, Any]) -> None:
        parts.head.append((" " + self._clean(report.get("reporterId")), ""))
        parts.head.append((" reported", MUTED))
        parts.head.append((" " + self._clean(report.get("targetUserId")), ""))
        comment = report.get("comment")
        if comment:
            parts.head.append((":", ""))
            parts.body.append((" " + self._clean(comment), ""))

    def _stats(self, parts: _Parts, stats: Any) -> None:
        summary = stats_summary(self._clean, stats)
        if summary is None:
            self._put_json(parts, stats)
        else:
            parts.body.append((" " + summary, ""))

    def _stats_log(self, parts: _Parts, log: Any) -> None:
        if not isinstance(log, list):
            self._put_json(parts, log)
            return
        parts.head.append((f" {len(log)} samples", ""))
        peaks = stats_peaks(log)
        if peaks:
            parts.body.append((", peak " + peaks, ""))

    def _game(self, parts: _Parts, body: dict[str, Any]) -> None:
        game = body.get("game")
        if not isinstance(game, dict):
            self._put_json(parts, body)
            return
        parts.head.append((" " + self._acct(game.get("user1")), USER))
        parts.head.append((" vs", MUTED))
        parts.head.append((" " + self._acct(game.get("user2")), USER))

    def _game_ended(self, parts: _Parts, body: dict[str, Any]) -> None:
        game = body.get("game")
        winner = game.get("winner") if isinstance(game, dict) else None
        if isinstance(winner, dict):
            parts.head.append((" winner", MUTED))
            parts.head.append((" " + self._acct(winner), USER))
        elif body.get("winnerId") is None and isinstance(game, dict):
            parts.head.append((" draw", MUTED))
        else:
            parts.head.append((" winner " + self._clean(body.get("winnerId")), MUTED))

    def _game_settings(self, parts: _Parts, body: dict[str, Any]) -> None:
        parts.head.append((f" {self._clean(body.get('key'))} =", ""))
        self._put_json(parts, body.get("value"))

    def _ready_states(self, parts: _Parts, body: dict[str, Any]) -> None:
        states = [f"{self._clean(k)} {'ready' if v is True else 'not ready'}" for k, v in body.items()]
        parts.head.append((" " + ", ".join(states), ""))

    def _game_log(self, parts: _Parts, body: dict[str, Any]) -> None:
        parts.head.append((f" {self._clean(body.get('operation'))} {count_text(body.get('pos'))}", ""))

    def _game_canceled(self, parts: _Parts, body: dict[str, Any]) -> None:
        parts.head.append((" by", MUTED))
        parts.head.append((" " + self._clean(body.get("userId")), ""))

    def _unread_notification(self, parts: _Parts, body: Any) -> None:
        if isinstance(body, dict):
            self._notification(parts, body)
        else:
            self._put_json(parts, body)


_Handler = Callable[[LineFormatter, _Parts, Any], None]

# Notifications whose note is by the notifier: the note line says who.
_NOTE_NOTIFICATIONS = {"mention", "reply", "renote", "quote", "note", "pollEnded", "scheduledNotePosted"}
_NOTIFICATION_COMMON = {"id", "createdAt", "type", "userId", "user", "note", "reaction", "isRead"}
_NOTIFICATION_DETAILS: dict[str, _Handler] = {
    "app": LineFormatter._app_notification,
    "achievementEarned": lambda f, p, n: f._named_detail("achievement", p, n),
    "roleAssigned": lambda f, p, n: f._named_detail("role", p, n),
    "exportCompleted": lambda f, p, n: f._named_detail("exportedEntity", p, n),
    "followRequestAccepted": lambda f, p, n: f._named_detail("message", p, n),
    "follow": lambda f, p, n: None,
    "receiveFollowRequest": lambda f, p, n: None,
    "login": lambda f, p, n: None,
    "createToken": lambda f, p, n: None,
    "test": lambda f, p, n: None,
    "reaction": lambda f, p, n: None,
}

# Channel events, any body shape.
_CHANNEL_EVENTS: dict[str, _Handler] = {
    "mention": LineFormatter._put_note,
    "reply": LineFormatter._put_note,
    "renote": LineFormatter._put_note,
    "note": LineFormatter._put_note,
    "unreadNotification": LineFormatter._unread_notification,
    "follow": LineFormatter._user_event,
    "followed": LineFormatter._user_event,
    "unfollow": LineFormatter._user_event,
    "receiveFollowRequest": LineFormatter._user_event,
    "meUpdated": LineFormatter._user_event,
    "userAdded": LineFormatter._user_event,
    "userRemoved": LineFormatter._user_event,
    "invited": LineFormatter._invited,
    "signin": LineFormatter._signin,
    "readAllNotifications": LineFormatter._nothing,
    "readAllAnnouncements": LineFormatter._nothing,
    "notificationFlushed": LineFormatter._nothing,
    "myTokenRegenerated": LineFormatter._nothing,
    "fileDeleted": LineFormatter._bare_id,
    "folderDeleted": LineFormatter._bare_id,
    "deleted": LineFormatter._bare_id,
    "announcementCreated": LineFormatter._put_announcement,
    "stats": LineFormatter._stats,
    "statsLog": LineFormatter._stats_log,
}

# Channel events whose body must be an object; any other body shows as JSON.
_OBJECT_EVENTS: dict[str, _Handler] = {
    "notification": LineFormatter._notification,
    "driveFileCreated": LineFormatter._drive_file,
    "fileCreated": LineFormatter._drive_file,
    "fileUpdated": LineFormatter._drive_file,
    "urlUploadFinished": LineFormatter._url_upload,
    "folderCreated": LineFormatter._folder,
    "folderUpdated": LineFormatter._folder,
    "pageEvent": LineFormatter._page_event,
    "registryUpdated": LineFormatter._registry,
    "newChatMessage": LineFormatter._chat_message,
    "message": LineFormatter._chat_message,
    "react": LineFormatter._chat_reaction,
    "unreact": LineFormatter._chat_reaction,
    "newAbuseUserReport": LineFormatter._abuse_report,
    "matched": LineFormatter._game,
    "started": LineFormatter._game,
    "ended": LineFormatter._game_ended,
    "canceled": LineFormatter._game_canceled,
    "updateSettings": LineFormatter._game_settings,
    "changeReadyStates": LineFormatter._ready_states,
    "log": LineFormatter._game_log,
}

# Top-level frames other than ``channel``.
_TOP_LEVEL: dict[str, _Handler] = {
    "connected": LineFormatter._connected,
    "noteUpdated": LineFormatter._note_updated,
    "emojiAdded": LineFormatter._emoji_added,
    "emojiUpdated": lambda f, p, b: f._emojis_changed("emojiUpdated", p, b),
    "emojiDeleted": lambda f, p, b: f._emojis_changed("emojiDeleted", p, b),
    "announcementCreated": LineFormatter._announcement_broadcast,
}
