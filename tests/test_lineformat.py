"""lineformat: one display line per frame, fitted to a width, with nothing from the server driving the terminal.

Golden files under tests/golden/line/ hold every distinct frame of the real-server recording
rendered plain and coloured, at 40 and 120 columns and with no width. They change only when
asked: MKSTREAM_REGEN_GOLDEN=1 python -m pytest tests/test_lineformat.py
"""

from __future__ import annotations

import copy
import json
import math
import os
import random
import re
import unicodedata
from datetime import UTC, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import wcwidth
from conftest import fixture_frames

from misskey_cli.output import cells
from misskey_cli.output.lineformat import (
    ELLIPSIS,
    PALETTE,
    LineFormatter,
    clip,
    compact_json,
    display_width,
    fold_lines,
)

GOLDEN = Path(__file__).parent / "golden" / "line"
REGEN = os.environ.get("MKSTREAM_REGEN_GOLDEN") == "1"
BASE_TIME = 1795807722.184  # 2026-11-27T19:28:42.184Z, when the recording was made

SGR = re.compile(r"\x1b\[[0-9;]*m")
UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def plain(line: str) -> str:
    return SGR.sub("", line)


def columns(line: str) -> int:
    width = wcwidth.wcswidth(plain(line))
    assert width >= 0, f"unprintable character in {line!r}"
    return width


def assert_safe(line: str) -> None:
    """No control character, C1, bidi control or lone surrogate except the formatter's own SGR colours."""
    bare = plain(line)
    assert UNSAFE.search(bare) is None, f"unsafe character in {bare!r}"
    assert "\n" not in line


def formatter(width: int | None = 120, color: bool = False, **kwargs: Any) -> LineFormatter:
    return LineFormatter(width=width, color=color, tz=UTC, **kwargs)


def distinct_frames() -> list[tuple[str, dict[str, Any]]]:
    """(label, frame) for every distinct frame in the recording, in recording order."""
    seen: set[str] = set()
    out = []
    for item in fixture_frames():
        raw = item.get("raw")
        if not raw or raw in seen:
            continue
        seen.add(raw)
        out.append((f"{item['what']} ({item.get('viewer')})", item["frame"]))
    return out


def note_frame(text: Any = "hello", connection: str = "localTimeline", **note: Any) -> dict[str, Any]:
    body = {
        "id": "au2xv40x4uqb0008", "createdAt": "2026-11-27T19:28:42.273Z", "userId": "u1",
        "user": {"id": "u1", "name": "Alice", "username": "alice", "host": None},
        "text": text, "cw": None, "visibility": "public", "localOnly": False,
        "fileIds": [], "files": [], "replyId": None, "renoteId": None,
    }
    body.update(note)
    return {"type": "channel", "body": {"id": connection, "type": "note", "body": body}}


# ---------------------------------------------------------------------------------------------
# Golden files
# ---------------------------------------------------------------------------------------------

GOLDEN_CASES = {
    "plain-w40": {"width": 40, "color": False},
    "plain-w120": {"width": 120, "color": False},
    "plain-nowidth": {"width": None, "color": False},
    "color-w40": {"width": 40, "color": True},
    "color-w120": {"width": 120, "color": True},
    "color-nowidth": {"width": None, "color": True},
}


def render_golden(width: int | None, color: bool) -> str:
    fmt = formatter(width, color)
    lines = []
    for index, (label, frame) in enumerate(distinct_frames()):
        line = fmt.format(frame, BASE_TIME + index)
        lines.append(f"# {label}")
        # ESC shown as \e so the colour goldens read (and diff) as text.
        lines.append(line.replace("\x1b", "\\e"))
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("name", sorted(GOLDEN_CASES))
def test_golden(name: str) -> None:
    path = GOLDEN / f"{name}.txt"
    rendered = render_golden(**GOLDEN_CASES[name])
    if REGEN:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(rendered, encoding="utf-8")
        pytest.skip(f"regenerated {path}")
    assert path.exists(), f"{path} missing: run MKSTREAM_REGEN_GOLDEN=1 python -m pytest {__file__}"
    assert rendered == path.read_text(encoding="utf-8"), f"{name} differs from its golden file"


def test_goldens_cover_every_frame_kind() -> None:
    kinds = set()
    for _, frame in distinct_frames():
        body = frame.get("body")
        kind = frame["type"]
        if kind in ("channel", "noteUpdated") and isinstance(body, dict):
            kind += "/" + str(body.get("type"))
            if body.get("type") == "notification":
                kind += "/" + str(body["body"].get("type"))
        kinds.add(kind)
    assert len(kinds) == 69  # every event and notification type the recording holds
    assert {"connected", "noteUpdated/reacted", "channel/notification/reaction", "channel/statsLog",
            "emojiAdded", "channel/fileDeleted", "channel/signin"} <= kinds


@pytest.mark.parametrize(("label", "frame"), distinct_frames(), ids=[label for label, _ in distinct_frames()])
def test_every_recorded_frame_has_its_own_rendering(label: str, frame: dict[str, Any]) -> None:
    line = formatter(None).format(frame, BASE_TIME)
    assert not line[9:].startswith('{"type"'), f"{label} fell back to the whole frame's JSON: {line}"
    for width in (1, 2, 5, 12, 40, 80, 120):
        for color in (False, True):
            cut = formatter(width, color).format(frame, BASE_TIME)
            assert_safe(cut)
            assert columns(cut) <= width, (width, cut)
    assert plain(formatter(120, True).format(frame, BASE_TIME)) == formatter(120).format(frame, BASE_TIME)


# ---------------------------------------------------------------------------------------------
# Frame kinds, one line each
# ---------------------------------------------------------------------------------------------

LINES = [
    ("plain note", note_frame("お昼はラーメン 🍜 #今日のごはん"),
     "19:28:42 localTimeline @alice: お昼はラーメン 🍜 #今日のごはん"),
    ("remote user, files and poll",
     note_frame("hi", user={"username": "bob", "host": "misskey.example"}, files=[{}, {}], poll={"choices": []}),
     "19:28:42 localTimeline @bob@misskey.example: hi [📎2] [poll]"),
    ("visibility and localOnly", note_frame("x", visibility="followers", localOnly=True),
     "19:28:42 localTimeline @alice [followers] [localOnly]: x"),
    ("hidden", note_frame(None, isHidden=True), "19:28:42 localTimeline @alice [hidden]"),
    ("cw hides the text", note_frame("secret", cw="spoiler"), "19:28:42 localTimeline @alice: CW: spoiler"),
    ("reply", note_frame("yes", reply={"user": {"username": "bob", "host": None}}, replyId="r1"),
     "19:28:42 localTimeline @alice ↩ @bob: yes"),
    ("pure renote", note_frame(None, renoteId="n1", renote={"user": {"username": "carol"}, "text": "original"}),
     "19:28:42 localTimeline @alice ♻ @carol: original"),
    ("quote", note_frame("look", renoteId="n1", renote={"user": {"username": "carol"}, "text": "original"}),
     "19:28:42 localTimeline @alice: look ♻ @carol: original"),
    ("pure renote in a channel",
     note_frame(None, renoteId="n1", renote={"user": {"username": "carol"}, "text": "original"},
                channel={"name": "料理"}),
     "19:28:42 localTimeline @alice ♻ @carol: original [channel 料理]"),
    ("renote of a deleted note", note_frame(None, renoteId="au2xv40x4uqb0008"),
     "19:28:42 localTimeline @alice ♻ au2xv40x4uqb0008"),
    ("newlines folded", note_frame("one\n\ntwo\r\nthree  \n  four"),
     "19:28:42 localTimeline @alice: one ⏎ two ⏎ three ⏎ four"),
    ("mfm", note_frame("$[x2 big] <center>mid</center> <small>s</small> **bold** $[spin $[tada 🎉]] :blobcat:"),
     "19:28:42 localTimeline @alice: big mid s bold 🎉 :blobcat:"),
    ("mfm plain stays literal", note_frame("<plain>**not bold** $[x2 no]</plain> **bold**"),
     "19:28:42 localTimeline @alice: **not bold** $[x2 no] bold"),
    ("connected", {"type": "connected", "body": {"id": "localTimeline"}}, "19:28:42 localTimeline connected"),
    ("reacted", {"type": "noteUpdated", "body": {"id": "n1", "type": "reacted",
                                                 "body": {"reaction": ":blobcat@.:", "emoji": None, "userId": "u2"}}},
     "19:28:42 noteUpdated n1 reacted :blobcat: by u2"),
    ("remote custom reaction",
     {"type": "noteUpdated", "body": {"id": "n1", "type": "unreacted",
                                      "body": {"reaction": ":ok@m.example:", "userId": "u2"}}},
     "19:28:42 noteUpdated n1 unreacted :ok@m.example: by u2"),
    ("pollVoted",
     {"type": "noteUpdated", "body": {"id": "n1", "type": "pollVoted", "body": {"choice": 2, "userId": "u"}}},
     "19:28:42 noteUpdated n1 pollVoted choice 2 by u"),
    ("updated", {"type": "noteUpdated", "body": {"id": "n1", "type": "updated", "body": {"cw": None, "text": "fixed"}}},
     "19:28:42 noteUpdated n1 updated: fixed"),
    ("deleted", {"type": "noteUpdated", "body": {"id": "n1", "type": "deleted", "body": {"deletedAt": "x"}}},
     "19:28:42 noteUpdated n1 deleted"),
    ("noteUpdated unknown type", {"type": "noteUpdated", "body": {"id": "n1", "type": "edited", "body": {"a": 1}}},
     '19:28:42 noteUpdated n1 edited {"a":1}'),
    ("signin hides IP and headers",
     {"type": "channel", "body": {"id": "main", "type": "signin",
                                  "body": {"id": "s", "ip": "203.0.113.9", "headers": {"user-agent": "x"},
                                           "success": True}}},
     "19:28:42 main signin"),
    ("failed signin", {"type": "channel", "body": {"id": "main", "type": "signin", "body": {"success": False}}},
     "19:28:42 main signin [failed]"),
    ("null body event", {"type": "channel", "body": {"id": "main", "type": "readAllNotifications", "body": None}},
     "19:28:42 main readAllNotifications"),
    ("bare id body", {"type": "channel", "body": {"id": "drive", "type": "fileDeleted", "body": "f1"}},
     "19:28:42 drive fileDeleted f1"),
    ("array body", {"type": "channel", "body": {"id": "x", "type": "whatever", "body": [1, "a", None]}},
     '19:28:42 x whatever [1,"a",null]'),
    ("unknown channel event", {"type": "channel", "body": {"id": "x", "type": "bubble", "body": {"k": "v"}}},
     '19:28:42 x bubble {"k":"v"}'),
    ("urlUploadFinished", {"type": "channel", "body": {"id": "main", "type": "urlUploadFinished", "body": {
        "marker": "m1", "file": {"name": "cat.jpg", "type": "image/jpeg", "size": 123456, "comment": None}}}},
     "19:28:42 main urlUploadFinished cat.jpg [image/jpeg 121K]"),
    ("reversi canceled", {"type": "channel", "body": {"id": "rg", "type": "canceled", "body": {"userId": "u1"}}},
     "19:28:42 rg canceled by u1"),
    ("channel frame with a string body", {"type": "channel", "body": "oops"}, '19:28:42 channel "oops"'),
    ("channel frame with a null body", {"type": "channel", "body": None}, "19:28:42 channel"),
    ("unknown top-level frame", {"type": "sharkeyThing", "body": {"n": 1}}, '19:28:42 sharkeyThing {"n":1}'),
    ("jq result: object", {"text": "x", "n": 1}, '19:28:42 {"text":"x","n":1}'),
    ("jq result: string", "お昼", '19:28:42 "お昼"'),
    ("jq result: number", 3, "19:28:42 3"),
    ("jq result: null", None, "19:28:42 null"),
    ("stats", {"type": "channel", "body": {"id": "ss", "type": "stats", "body": {
        "cpu": 0.125, "mem": {"used": 1610612736, "active": 1}, "net": {"rx": 2048, "tx": 500},
        "fs": {"r": 1, "w": 2}}}},
     "19:28:42 ss stats cpu 12.5% mem 1.5G net rx 2.0K/s tx 500B/s fs r 1/s w 2/s"),
    ("notification reaction",
     {"type": "channel", "body": {"id": "main", "type": "notification", "body": {
         "type": "reaction", "user": {"username": "bob"}, "reaction": "👍",
         "note": {"user": {"username": "alice"}, "text": "my note"}}}},
     "19:28:42 main notification reaction @bob 👍 on @alice: my note"),
    ("unknown notification", {"type": "channel", "body": {"id": "main", "type": "notification", "body": {
        "id": "x", "type": "brandNew", "createdAt": "t", "thing": 1}}},
     '19:28:42 main notification brandNew {"thing":1}'),
]


@pytest.mark.parametrize(("what", "value", "expected"), LINES, ids=[case[0] for case in LINES])
def test_line(what: str, value: Any, expected: str) -> None:
    assert formatter(None).format(value, BASE_TIME) == expected


def test_show_cw() -> None:
    frame = note_frame("the text", cw="spoiler")
    assert formatter(None, show_cw=True).format(frame, BASE_TIME) == \
        "19:28:42 localTimeline @alice: CW: spoiler ⏎ the text"


def test_timestamps_are_rfc3339_utc_with_milliseconds() -> None:
    fmt = LineFormatter(width=None, color=False, timestamps=True)
    assert fmt.format(None, BASE_TIME).startswith("2026-11-27T19:28:42.184Z ")
    assert fmt.format(None, BASE_TIME + 0.816).startswith("2026-11-27T19:28:43.000Z ")
    assert fmt.format(None, BASE_TIME + 1.0004).startswith("2026-11-27T19:28:43.184Z ")  # to the nearest ms
    assert fmt.format(None, BASE_TIME + 1.0006).startswith("2026-11-27T19:28:43.185Z ")


def test_time_is_local_or_the_given_zone() -> None:
    assert LineFormatter(width=None, color=False, tz=timezone(timedelta(hours=9))).format(None, BASE_TIME) == \
        "04:28:42 null"
    assert re.fullmatch(r"\d\d:\d\d:\d\d null", LineFormatter(width=None, color=False).format(None, BASE_TIME))


@pytest.mark.parametrize("received_at", [math.nan, math.inf, -math.inf, 1e300, -1e300])
def test_absurd_receive_times_do_not_crash(received_at: float) -> None:
    assert formatter(None).format(None, received_at) == "??:??:?? null"
    assert LineFormatter(width=None, color=False, timestamps=True).format(None, received_at).endswith(" null")


def test_connection_colours_are_stable_in_first_seen_order() -> None:
    fmt = formatter(None, color=True)

    def colour(connection_id: str) -> str:
        line = fmt.format({"type": "channel", "body": {"id": connection_id, "type": "x", "body": None}}, BASE_TIME)
        match = re.search(r"\x1b\[(\d+)m " + re.escape(connection_id), line)
        assert match, line
        return match.group(1)

    ids = [f"c{i}" for i in range(len(PALETTE) + 2)]
    first = [colour(i) for i in ids]
    assert first[: len(PALETTE)] == list(PALETTE)
    assert first[len(PALETTE):] == list(PALETTE[:2])  # the palette cycles
    assert [colour(i) for i in reversed(ids)] == list(reversed(first))
    connected = fmt.format({"type": "connected", "body": {"id": "c1"}}, BASE_TIME)
    assert f"\x1b[{first[1]}m c1" in connected


def test_colour_uses_dim_time_bold_user_and_muted_markers() -> None:
    line = formatter(None, color=True).format(note_frame("x", files=[{}]), BASE_TIME)
    assert line.startswith("\x1b[2m19:28:42\x1b[0m")
    assert "\x1b[1m@alice\x1b[0m" in line
    assert "\x1b[90m [📎1]\x1b[0m" in line
    assert line.endswith("\x1b[0m")


def test_plain_output_has_no_escape_sequences() -> None:
    for _, frame in distinct_frames():
        assert "\x1b" not in formatter(120).format(frame, BASE_TIME)


# ---------------------------------------------------------------------------------------------
# Widths: CJK, emoji, ZWJ sequences
# ---------------------------------------------------------------------------------------------

CJK = ("吾輩は猫である。名前はまだ無い。どこで生れたかとんと見当がつかぬ。"
       "何でも薄暗いじめじめした所でニャーニャー泣いていた。")
EMOJI = "👨\u200d👩\u200d👧\u200d👦🧑🏽\u200d💻❤️\u200d🔥🇯🇵🇫🇷🏳️\u200d🌈e\u0301ｶﾞ" * 6


@pytest.mark.parametrize("width", range(1, 70))
def test_cjk_line_fits_its_width(width: int) -> None:
    line = formatter(width).format(note_frame(CJK), BASE_TIME)
    assert columns(line) <= width
    if width >= 20:
        assert columns(line) >= width - 1  # a wide character may leave one column free
        assert line.endswith(ELLIPSIS)


@pytest.mark.parametrize("width", range(20, 70))
def test_emoji_sequences_are_never_split(width: int) -> None:
    line = formatter(width).format(note_frame(EMOJI, connection="l"), BASE_TIME)
    assert columns(line) <= width
    text = line.split(": ", 1)[1].removesuffix(ELLIPSIS)
    assert EMOJI.startswith(text)
    if not hasattr(wcwidth, "iter_graphemes"):
        pytest.skip("wcwidth too old to segment graphemes (0.3+)")
    boundaries = {0}
    for grapheme in wcwidth.iter_graphemes(EMOJI):
        boundaries.add(max(boundaries) + len(grapheme))
    assert len(text) in boundaries, (width, text[-4:])


def test_colour_codes_are_not_counted() -> None:
    for width in (40, 100):
        frame = note_frame(CJK, connection="l", files=[{}])
        coloured = formatter(width, color=True).format(frame, BASE_TIME)
        assert plain(coloured) == formatter(width).format(frame, BASE_TIME)
        assert columns(coloured) <= width
        assert coloured.endswith("\x1b[90m [📎1]\x1b[0m")  # markers are kept when the text is cut


def test_markers_are_kept_when_the_text_is_cut() -> None:
    line = formatter(40).format(note_frame("x" * 200, connection="l", files=[{}], poll={}), BASE_TIME)
    assert line == "19:28:42 l @alice: xxxxxxx… [📎1] [poll]"
    assert columns(line) == 40
    # too little room left for the text: the whole line is cut at the end instead
    line = formatter(40).format(note_frame("x" * 200, files=[{}], poll={}), BASE_TIME)
    assert line == "19:28:42 localTimeline @alice: xxxxxxxx…"


def test_ascii_line_fills_the_width_exactly() -> None:
    line = formatter(50).format(note_frame("y" * 300), BASE_TIME)
    assert len(line) == 50 and line.endswith("y" + ELLIPSIS)


def test_no_width_means_no_cut() -> None:
    long = "長い" * 2000
    line = formatter(None).format(note_frame(long), BASE_TIME)
    assert line.endswith(long)


CLIPS = [
    ("ascii", "abcdef", 4, "abcd"),
    ("cjk even", "日本語です", 4, "日本"),
    ("cjk odd leaves a column", "日本語です", 5, "日本"),
    ("zero", "日本", 0, ""),
    ("family emoji whole or not at all", "a👨\u200d👩\u200d👧\u200d👦b", 2, "a"),
    ("family emoji fits", "a👨\u200d👩\u200d👧\u200d👦b", 3, "a👨\u200d👩\u200d👧\u200d👦"),
    ("flag pairs stay together", "🇯🇵🇫🇷", 3, "🇯🇵"),
    ("combining mark stays", "e\u0301e\u0301", 1, "e\u0301"),
    ("skin tone stays", "👍🏽👍🏽", 3, "👍🏽"),
    ("variation selector stays", "❤️❤️", 3, "❤️"),
    ("halfwidth voiced mark stays", "ｶﾞｷﾞ", 3, "ｶﾞ"),
    ("fits entirely", "日本", 10, "日本"),
]


def reference_clip(text: str, columns: int) -> str:
    """What clip means, measured prefix by prefix: the longest that fits, backed off to a cluster start."""
    if columns <= 0:
        return ""
    end = max(n for n in range(len(text) + 1) if display_width(text[:n]) <= columns)
    while 0 < end < len(text) and cells._continues_cluster(text, end):
        end -= 1
    return text[:end]


# Characters of every kind clip meets: narrow, wide, of no width, joiners, marks, pairs, tags.
CLIP_ALPHABET = ["a", " ", "語", "か", "゛", "゙", "ｶ", "ﾞ", "！", "、", "「", "👍", "🏽", "❤", "\ufe0f", "\u200d",
                 "👩", "🇯", "🇵", "e", "\u0301", "\u200b", "\U000e0067", "🏴", "é", "ä", "\u3000", "Ω", "한"]


def test_clip_is_the_longest_prefix_that_fits() -> None:
    rng = random.Random(20261201)
    for _ in range(3000):
        # runs of one kind (as real text has), mixed at random
        text = "".join(rng.choice(CLIP_ALPHABET) * rng.randrange(1, 8) for _ in range(rng.randrange(1, 20)))
        columns = rng.randrange(0, 2 * display_width(text) + 2)
        expected = reference_clip(text, columns)
        assert clip(text, columns) == expected, (text, columns)
        for length in range(0, len(text) + 1, 7):  # whatever prefix the caller has measured
            measured = (length, display_width(text[:length]))
            assert clip(text, columns, measured) == expected, (text, columns, measured)


def test_solid_characters_add_their_own_width_and_never_join() -> None:
    solid = [chr(code) for code in range(0x20, 0x10000) if cells._solid_width(chr(code))]
    assert len(solid) > 21_000
    prefixes = ["a", "語", "e\u0301a", "👍語", "🇯a", "❤\ufe0f語"]
    for char in solid:
        width = cells._solid_width(char)
        assert wcwidth.wcwidth(char) == width, repr(char)
        assert unicodedata.category(char)[0] != "M", repr(char)
        assert not cells._continues_cluster("a" + char, 1), repr(char)
        for prefix in prefixes:
            assert display_width(prefix + char) == display_width(prefix) + width, (prefix, char)


def test_cluster_shortcut_ranges_hold_no_marks() -> None:
    fast = [*range(0x20, 0x300), *range(0x3041, 0x3097), *range(0x30A1, 0xA000)]
    for code in fast:
        assert unicodedata.category(chr(code))[0] != "M", hex(code)


@pytest.mark.parametrize(("what", "text", "width", "expected"), CLIPS, ids=[c[0] for c in CLIPS])
def test_clip(what: str, text: str, width: int, expected: str) -> None:
    assert clip(text, width) == expected
    assert display_width(clip(text, width)) <= width


# ---------------------------------------------------------------------------------------------
# Escape injection: server text never drives the terminal
# ---------------------------------------------------------------------------------------------

NASTY = [
    "\x1b]52;c;ZXZpbCBwYXlsb2Fk\x07",  # OSC 52: write the clipboard
    "\x1b]52;c;ZXZpbA==\x1b\\",
    "\x1b[2J\x1b[H",  # clear the screen
    "safe\rEVIL",  # overwrite the line
    "abc\u202etxt.exe",  # right-to-left override
    "\u2066isolate\u2069\u200f",
    "\x9b2J\x85\x9d0;title\x9c",  # C1 CSI, NEL, OSC, ST
    json.loads('"lone \\ud83c surrogate"'),
    "nul\x00bell\x07del\x7f",
]


def nasty_frames(evil: str) -> list[Any]:
    user = {"username": f"u{evil}", "host": f"h{evil}", "name": f"n{evil}"}
    return [
        note_frame(f"text {evil}"),
        note_frame("x", cw=f"cw {evil}"),
        note_frame("x", user=user),
        note_frame(f"a\n{evil}\nb", visibility=evil),
        note_frame(None, renoteId=evil, renote={"user": user, "text": evil, "cw": None}),
        note_frame("x", files=[{}], channel={"name": evil}, reply={"user": user}, replyId=evil),
        {"type": "channel", "body": {"id": evil, "type": evil, "body": evil}},
        {"type": "channel", "body": {"id": "m", "type": "notification", "body": {
            "type": evil, "user": user, "reaction": evil, "header": evil, "body": evil}}},
        {"type": "channel", "body": {"id": "m", "type": "notification", "body": {
            "type": "app", "header": evil, "body": evil}}},
        {"type": "channel", "body": {"id": "m", "type": "follow", "body": user}},
        {"type": "channel", "body": {"id": "d", "type": "fileCreated", "body": {"name": evil, "comment": evil,
                                                                                "type": evil}}},
        {"type": "channel", "body": {"id": "c", "type": "message", "body": {"fromUserId": evil, "text": evil}}},
        {"type": "noteUpdated", "body": {"id": evil, "type": "reacted", "body": {"reaction": evil, "userId": evil}}},
        {"type": "noteUpdated", "body": {"id": "n", "type": "updated", "body": {"cw": evil, "text": evil}}},
        {"type": "emojiAdded", "body": {"emoji": {"name": evil, "category": evil}}},
        {"type": "announcementCreated", "body": {"announcement": {"title": evil, "text": evil}}},
        {"type": evil, "body": {evil: evil}},
        {evil: [evil]},
        evil,
    ]


@pytest.mark.parametrize("evil", NASTY, ids=[repr(e)[:24] for e in NASTY])
@pytest.mark.parametrize("color", [False, True])
@pytest.mark.parametrize("width", [None, 30, 200])
def test_server_text_cannot_inject_control_sequences(evil: str, color: bool, width: int | None) -> None:
    fmt = formatter(width, color)
    for value in nasty_frames(evil):
        line = fmt.format(value, BASE_TIME)
        assert_safe(line)
        if color:
            assert re.sub(r"\x1b\[[0-9;]*m", "", line).count("\x1b") == 0
        if width is not None:
            assert columns(line) <= width


def test_injected_sequences_are_shown_escaped() -> None:
    line = formatter(None).format(note_frame("hi \x1b]52;c;ZXZpbA==\x07 \x1b[2J a\rb \u202e"), BASE_TIME)
    assert line == "19:28:42 localTimeline @alice: hi \\x1b]52;c;ZXZpbA==\\x07 \\x1b[2J a\\rb \\u202e"
    surrogate = formatter(None).format(note_frame(json.loads('"x\\ud83cy"')), BASE_TIME)
    assert surrogate.endswith("x\\ud83cy")
    surrogate.encode("utf-8")  # printable to a UTF-8 stdout


# ---------------------------------------------------------------------------------------------
# Weird input: never a crash, always one safe line
# ---------------------------------------------------------------------------------------------

def _deep(levels: int) -> Any:
    value: Any = "bottom"
    for _ in range(levels):
        value = {"body": [value]}
    return value


_circular: dict[str, Any] = {"type": "channel"}
_circular["body"] = {"id": "x", "type": "note", "body": _circular}

WEIRD: list[Any] = [
    None, True, 0, -1.5, 10 ** 30, 10 ** 5000, math.nan, math.inf, "", "plain string", [], {}, [None, [[]]],
    {"type": 1, "body": 2}, {"type": "channel"}, {"type": "channel", "body": 1},
    {"type": "channel", "body": []}, {"type": "channel", "body": {}},
    {"type": "channel", "body": {"id": None, "type": None, "body": None}},
    {"type": "channel", "body": {"id": ["a"], "type": {"t": 1}, "body": "x"}},
    {"type": "channel", "body": {"id": 7, "type": "note", "body": "not a note"}},
    {"type": "channel", "body": {"id": "l", "type": "note", "body": {}}},
    {"type": "channel", "body": {"id": "l", "type": "note", "body": {
        "user": "alice", "text": 42, "cw": ["x"], "visibility": 3, "files": {"a": 1}, "poll": [1],
        "reply": "r", "renote": 5, "renoteId": 9, "channel": {"name": None}, "localOnly": "yes"}}},
    {"type": "channel", "body": {"id": "l", "type": "note", "body": {
        "user": {"username": None, "host": 5}, "text": None, "renote": {"renote": {"renote": {"text": "deep"}}}}}},
    {"type": "channel", "body": {"id": "m", "type": "notification", "body": None}},
    {"type": "channel", "body": {"id": "m", "type": "notification", "body": {"type": None}}},
    {"type": "channel", "body": {"id": "m", "type": "notification", "body": {
        "type": "reaction", "user": 1, "note": [], "reaction": {"x": 1}}}},
    {"type": "channel", "body": {"id": "m", "type": "notification", "body": {
        "type": "pollEnded", "note": {"poll": {"choices": [None, {"text": 1, "votes": "x"}]}}}}},
    {"type": "channel", "body": {"id": "m", "type": "notification", "body": {"type": "roleAssigned", "role": 5}}},
    {"type": "channel", "body": {"id": "ss", "type": "stats", "body": {"cpu": "hot", "mem": 1, "net": {"rx": None}}}},
    {"type": "channel", "body": {"id": "ss", "type": "stats", "body": {"cpu": True, "fs": {"r": [], "w": {}}}}},
    {"type": "channel", "body": {"id": "ss", "type": "statsLog", "body": [None, 1, {"cpu": 1e308}]}},
    {"type": "channel", "body": {"id": "ss", "type": "statsLog", "body": {"not": "a list"}}},
    {"type": "channel", "body": {"id": "qs", "type": "stats", "body": {"deliver": {}, "inbox": None}}},
    {"type": "channel", "body": {"id": "d", "type": "fileCreated", "body": {"size": "big", "isSensitive": 1}}},
    {"type": "channel", "body": {"id": "d", "type": "fileDeleted", "body": {"id": "x"}}},
    {"type": "channel", "body": {"id": "m", "type": "registryUpdated", "body": {"scope": "s", "key": None}}},
    {"type": "channel", "body": {"id": "rg", "type": "ended", "body": {"game": "x"}}},
    {"type": "channel", "body": {"id": "rg", "type": "changeReadyStates", "body": {"user1": None}}},
    {"type": "channel", "body": {"id": "rv", "type": "matched", "body": {"game": {"user1": None}}}},
    {"type": "noteUpdated", "body": None}, {"type": "noteUpdated", "body": {"type": "reacted", "body": None}},
    {"type": "noteUpdated", "body": {"id": 1, "type": "pollVoted", "body": {"choice": None}}},
    {"type": "emojiAdded", "body": None}, {"type": "emojiAdded", "body": {"emoji": [1]}},
    {"type": "emojiUpdated", "body": {"emojis": [None, "x", {"name": None}] * 20}},
    {"type": "announcementCreated", "body": {"announcement": {"title": None, "text": ["x"]}}},
    {"type": "connected", "body": "id"}, {"type": "connected", "body": {"id": {"deep": [1]}, "extra": True}},
    {"type": "connected"},
    {1: "int key", (1, 2): "tuple key"}, {"set": {1, 2}}, {"bytes": b"\x1b[2J"}, {"obj": object()},
    {"lone": json.loads('"\\udc00"'), json.loads('"\\ud800"'): "key"},
    _deep(50), _deep(100_000), [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]],
    _circular,
]


@pytest.mark.parametrize("value", WEIRD, ids=[f"weird{i}" for i in range(len(WEIRD))])
@pytest.mark.parametrize("width", [None, 1, 3, 40])
def test_weird_values_give_one_safe_line(value: Any, width: int | None) -> None:
    for color in (False, True):
        line = formatter(width, color).format(value, BASE_TIME)
        assert isinstance(line, str)
        assert_safe(line)
        if width is not None:
            assert columns(line) <= width


def _mutations(value: Any, rng: random.Random) -> Any:
    """``value`` with some of its leaves and subtrees swapped for values of the wrong kind."""
    replacements: list[Any] = [None, 0, -1, 1.5, True, "", "\x1b[2J", [], {}, [None], {"x": None},
                               json.loads('"\\ud83c"'), "\u202e", 10 ** 40]
    if isinstance(value, dict):
        return {k: (rng.choice(replacements) if rng.random() < 0.15 else _mutations(v, rng)) for k, v in value.items()}
    if isinstance(value, list):
        return [rng.choice(replacements) if rng.random() < 0.15 else _mutations(v, rng) for v in value]
    return value


def test_mutated_recorded_frames_never_break_the_line() -> None:
    rng = random.Random(20261127)
    frames = [frame for _, frame in distinct_frames()]
    for round_ in range(8):
        fmt = formatter(rng.choice([None, 20, 40, 120]), color=round_ % 2 == 1)
        for frame in frames:
            line = fmt.format(_mutations(copy.deepcopy(frame), rng), BASE_TIME)
            assert_safe(line)
            if fmt._width is not None:
                assert columns(line) <= fmt._width


def test_compact_json_never_raises() -> None:
    assert compact_json({"a": [1, "二"]}) == '{"a":[1,"二"]}'
    assert compact_json(_deep(100_000)) == "[too deeply nested]"
    assert compact_json({"\u202e": "\x85"}) == '{"\\u202e":"\\x85"}'
    assert compact_json(_circular).startswith("{")


# ---------------------------------------------------------------------------------------------
# The plain-note line is the span renderers' line
# ---------------------------------------------------------------------------------------------

NOTE_TEXTS: list[Any] = [
    None, "", "hi", "a" * 300, "お昼はラーメン🍜 #今日のごはん " * 12, "👩‍👩‍👧‍👦" * 30, "🇯🇵🇯🇵🇯🇵" * 20,
    "line one\n\n  line two\r\nthree\u2028four\tfive", "\x1b]52;c;ZXZpbA==\x07\x1b[2J\roverwrite\u202e",
    "$[x2 **big**] <center>mid</center> <plain>**kept**</plain> :blobcat:", "<b></b>", "ｶﾀｶﾅ゛ﾞ" * 30,
    "e\u0301" * 80, json.loads('"lone \\ud83c surrogate"'), 5, ["a"],
    # what can only show after the cut, or changes what is before it
    "語" * 60 + "\n\n後半", "x" * 90 + "$[x2 big] **b**", " " + "語" * 60 + "\nb", "\u3000" + "語" * 60 + "\nb",
    "語" * 50 + "\x1b[2J", "\u200b" * 200 + "語" * 10, "語" * 30 + "<b>" + "語" * 30 + "</b>", "**" + "語" * 60 + "**",
    "語" * 45 + "$[x2 " + "語" * 20 + "]", "a" * 1000 + "\n", "😀" * 100 + "\u2028",
]
NOTE_VARIANTS: list[dict[str, Any]] = [
    {}, {"cw": "spoiler ネタバレ"}, {"cw": ""}, {"cw": "長い注意書き" * 20}, {"cw": 3},
    {"visibility": "home"}, {"visibility": "followers", "localOnly": True, "isHidden": True},
    {"visibility": None}, {"visibility": 1},
    {"reply": {"user": {"username": "bob", "host": "b.example"}}, "replyId": "r1"},
    {"reply": {"user": None}}, {"reply": "gone", "replyId": "r2"}, {"replyId": "r\x1b3"}, {"replyId": 4},
    {"files": [{}, {}]}, {"files": None, "fileIds": ["f"]}, {"files": {}}, {"poll": {"choices": []}},
    {"poll": []}, {"channel": {"name": "部活\x07"}}, {"channel": {"name": 1}}, {"channel": "c"},
    {"files": [{}], "poll": {}, "channel": {"name": "all"}, "visibility": "specified", "reply": {}},
    {"user": {"username": "ユーザー\u202e", "host": "例え.example", "name": "名前"}}, {"user": None},
    {"user": {"username": ["x"], "host": {}}}, {"renoteId": "x"}, {"renote": {"text": "inner"}},
    {"renote": {"user": {"username": "carol", "host": "c.example"}, "text": "内側のノート" * 10, "files": [{}],
                "visibility": "home"}, "renoteId": "rn1"},
    {"renote": {"user": {"username": "dave"}, "cw": "inner cw", "text": "hidden", "reply": {"user": {}}},
     "visibility": "followers", "reply": {"user": {"username": "frank"}}},
    {"renote": {"text": "deep", "renote": {"text": "deeper"}}}, {"renote": {"text": "deep", "renoteId": "d"}},
    {"renote": {"text": "x", "poll": {}, "channel": {"name": "in"}}, "channel": {"name": "out"}},
    {"renote": None, "renoteId": "gone"}, {"renote": {"text": "q"}, "files": [{}]}, {"renote": {"text": "q"}, "poll": {}},
    {"renote": {"user": None, "text": None}}, {"renote": []},
]
WIDTHS = [None, 1, 8, 20, 33, 34, 40, 41, 60, 80, 100, 120]


def plain_note_cases() -> list[Any]:
    cases: list[Any] = [frame for _, frame in distinct_frames()]
    for text in NOTE_TEXTS:
        for variant in NOTE_VARIANTS:
            cases.append(note_frame(text, **copy.deepcopy(variant)))
    cases.append(note_frame("x", connection="ホーム\x1b"))
    cases += [{"type": "channel", "body": {"id": 1, "type": "note", "body": {}}}, {"type": "channel", "body": []}]
    return cases


@pytest.mark.parametrize("show_cw", [False, True])
@pytest.mark.parametrize("color", [False, True])
def test_plain_note_line_is_the_span_renderers_line(color: bool, show_cw: bool) -> None:
    """``_plain_note`` is a shortcut for common notes: wherever it answers, the spans agree."""
    cases = plain_note_cases()
    answered = dict.fromkeys(WIDTHS, 0)
    for width in WIDTHS:
        fmt = formatter(width, color, show_cw=show_cw)
        for index, value in enumerate(cases):
            stamp = fmt._stamp(BASE_TIME + index)
            quick = fmt._plain_note(value, stamp)
            if quick is not None:
                answered[width] += 1
                assert quick == fmt._spans_line(value, stamp), (width, value)
    # the shortcut takes most notes where the line is not cut as a whole, or this test proves little
    assert min(answered[None], answered[120]) > 0.4 * len(cases)
    assert answered[41] > 0.2 * len(cases)


def test_plain_note_line_answers_for_every_note_but_quotes() -> None:
    fmt = formatter(120)
    for variant in NOTE_VARIANTS:
        expected = "renote" not in variant and "renoteId" not in variant and variant.get("cw") != 3
        assert (fmt._plain_note(note_frame("hi", **variant), "00:00:00") is not None) == expected, variant
    assert fmt._plain_note(note_frame(5), "00:00:00") is None
    assert fmt._plain_note(note_frame("x" * 200), "00:00:00") is not None  # cut, not whole-line cut
    # pure renotes (no text of their own) of notes that are not renotes themselves
    pure = note_frame(None, renote=note_frame("inner")["body"]["body"], renoteId="r")
    assert fmt._plain_note(pure, "00:00:00") == "00:00:00 localTimeline @alice ♻ @alice: inner"
    deeper = note_frame(None, renote=note_frame(None, renote={"text": "x"})["body"]["body"])
    assert fmt._plain_note(deeper, "00:00:00") is None


# What fold_lines does, as one regular expression: each run of line breaks with the blanks and
# tabs around it becomes " ⏎ " (the definition it is checked against; it is several times slower).
FOLD_REFERENCE = re.compile("[ \t]*(?:\r?\n|[\u2028\u2029])(?:[ \t]*(?:\r?\n|[\u2028\u2029]))*[ \t]*")


def test_fold_lines_is_the_regular_expression() -> None:
    rng = random.Random(7)
    alphabet = [" ", "\t", "\r", "\n", "\r\n", "\u2028", "\u2029", "a", "語", "\u3000", "\x0b", "\x1c"]
    samples = ["", "a", "a\nb", " a \n\n b ", "a\r\nb", "a\r \nb", "a\n\u3000\nb", "\t", "x\ty"]
    samples += ["".join(rng.choices(alphabet, k=rng.randrange(12))) for _ in range(5000)]
    for text in samples:
        assert fold_lines(text) == FOLD_REFERENCE.sub(" ⏎ ", text.strip()).replace("\t", " "), repr(text)
