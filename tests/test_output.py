"""Rendering records from frames: ndjson, pretty, colour, jq, timestamps (pure, table-driven)."""

from __future__ import annotations

import json
import random
import re

import pytest

from misskey_cli.core.jsoncodec import loads
from misskey_cli.core.timefmt import parse_rfc3339, rfc3339
from misskey_cli.errors import UsageError
from misskey_cli.output.render import (
    JqRuntimeError,
    OutputOptions,
    Renderer,
    compile_filters,
    decide_color,
    decide_format,
)

NOTE = {"type": "channel", "body": {"id": "localTimeline", "type": "note",
                                    "body": {"id": "au2xv3yg4uqb0006", "text": "こんにちは 🌱\n改行", "cw": None,
                                             "big": 123456789012345678901234567890}}}
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def render(frame=NOTE, **options):
    return Renderer(OutputOptions(**options)).render(frame, 1795808922.184)


def test_ndjson_is_compact_utf8_without_escapes():
    [record] = render(format="ndjson")
    text = record.decode("utf-8")
    assert text.endswith("\n") and text.count("\n") == 1
    assert "こんにちは 🌱\\n改行" in text and "\\u" not in text
    assert json.loads(text) == NOTE


def test_timestamps_come_first():
    [record] = render(format="ndjson", timestamps=True)
    value = json.loads(record)
    assert next(iter(value)) == "ts" and value["ts"] == "2026-11-27T19:48:42.184Z"
    assert {k: v for k, v in value.items() if k != "ts"} == NOTE


def test_rfc3339_rounds_to_the_nearest_millisecond():
    assert rfc3339(0.0) == "1970-01-01T00:00:00.000Z"
    assert rfc3339(1795808922.9999) == "2026-11-27T19:48:43.000Z"
    assert rfc3339(1795808922.1844) == "2026-11-27T19:48:42.184Z"
    assert rfc3339(1795808922.1846) == "2026-11-27T19:48:42.185Z"


def test_an_rfc3339_time_read_back_prints_the_same():
    # --timestamps output and recordings are read back by replay: what it prints must not drift
    # (a float of whole milliseconds can sit a hair below them: .329 -> .32899...).
    rng = random.Random(3339)
    for _ in range(100_000):
        epoch = rng.uniform(0, 4e9)
        text = rfc3339(epoch)
        assert rfc3339(parse_rfc3339(text)) == text, epoch
    for millis in range(1795808922000, 1795808924000):  # every millisecond of two seconds
        text = rfc3339(millis / 1000)
        assert rfc3339(parse_rfc3339(text)) == text and text.endswith(f".{millis % 1000:03d}Z")


def test_pretty_without_colour_is_indented_json():
    [record] = render(format="pretty", color=False)
    text = record.decode("utf-8")
    assert text.startswith("{\n  \"type\": \"channel\"") and "\x1b[" not in text
    assert json.loads(text) == NOTE


def test_pretty_with_colour_keeps_the_text():
    [record] = render(format="pretty", color=True, style="monokai")
    text = record.decode("utf-8")
    assert "\x1b[" in text
    assert json.loads(ANSI.sub("", text)) == NOTE


@pytest.mark.parametrize(("filters", "args", "raw", "expected"), [
    ((".body.body.text",), {}, False, [b'"\xe3\x81\x93\xe3\x82\x93\xe3\x81\xab\xe3\x81\xa1\xe3\x81\xaf \xf0\x9f\x8c\xb1\\n\xe6\x94\xb9\xe8\xa1\x8c"\n']),
    ((".body.body.text",), {}, True, ["こんにちは 🌱\n改行\n".encode()]),
    ((".body", ".id"), {}, False, [b'"localTimeline"\n']),
    (("select(.type == \"nothing\")",), {}, False, []),
    ((".body.body | .id, .cw",), {}, False, [b'"au2xv3yg4uqb0006"\n', b"null\n"]),
    (("$x",), {"x": "v"}, True, [b"v\n"]),
    (("$n + 1",), {"n": 41}, False, [b"42\n"]),
])
def test_jq(filters, args, raw, expected):
    assert render(format="ndjson", filters=filters, args=args, raw_output=raw) == expected


def test_jq_sees_timestamps():
    [record] = render(format="ndjson", filters=(".ts",), timestamps=True)
    assert record == b'"2026-11-27T19:48:42.184Z"\n'


def test_jq_runtime_error_is_per_frame():
    renderer = Renderer(OutputOptions(format="ndjson", filters=(".body.body.text.x",)))
    with pytest.raises(JqRuntimeError, match="Cannot index string"):
        renderer.render(NOTE, 0.0)
    assert renderer.render({"type": "x", "body": None}, 0.0) == [b"null\n"]


@pytest.mark.parametrize("bad", [".a |||", "nosuchfunction(1)", "$undefined"])
def test_jq_compile_errors_are_usage_errors(bad):
    with pytest.raises(UsageError, match="bad --jq filter"):
        compile_filters((bad,), {})
    compile_filters((".", "$x"), {"x": 1})  # the same machinery accepts good filters


@pytest.mark.parametrize(("data", "message"), [
    (b"not json", "not JSON"),
    (b'{"type":"x","body":"\xff"}', "invalid UTF-8"),
    (b"", "not JSON"),
])
def test_loads_errors(data, message):
    with pytest.raises(ValueError, match=message):
        loads(data)


def test_numbers_are_doubles_like_in_javascript_and_jq():
    # Misskey is JavaScript: it cannot send more precision than a double holds. 64-bit ints stay exact.
    assert loads(b'{"n": 123456789012345678901234567890}') == ({"n": 1.2345678901234568e29}, True)
    assert loads(b'{"n": 9007199254740993}') == ({"n": 9007199254740993}, True)


@pytest.mark.parametrize(("requested", "tty", "expected"), [
    (None, True, "pretty"), (None, False, "ndjson"), ("raw", True, "raw"), ("pretty", False, "pretty"),
])
def test_decide_format(requested, tty, expected):
    assert decide_format(requested, tty).name == expected


@pytest.mark.parametrize(("mode", "tty", "env", "expected"), [
    ("auto", True, {}, True),
    ("auto", False, {}, False),
    ("auto", True, {"NO_COLOR": "1"}, False),
    ("auto", False, {"FORCE_COLOR": "1"}, True),
    ("auto", True, {"NO_COLOR": ""}, True),
    ("always", False, {"NO_COLOR": "1"}, True),
    ("never", True, {"FORCE_COLOR": "1"}, False),
])
def test_decide_color(mode, tty, env, expected):
    assert decide_color(mode, tty, env) is expected


PATH_CASES = [
    {"type": "channel", "body": {"id": "l", "type": "note", "body": {"text": "あ", "n": 3, "f": 0.5, "b": True}}},
    {"type": "channel", "body": {"id": "l", "type": "note", "body": {"text": None}}},
    {"type": "channel", "body": {"id": "l", "type": "note", "body": None}},
    {"type": "channel", "body": {"id": "l", "type": "fileDeleted", "body": "au2xv3yg4uqb0006"}},
    {"type": "channel", "body": {"id": "l", "type": "statsLog", "body": [1, 2]}},
    {"type": "channel", "body": {"id": "l", "type": "note", "body": {"text": {"nested": [1, 2.5]}}}},
    {"type": "channel", "body": {"id": "l", "type": "note", "body": {"text": 2**60}}},
    {"type": "emojiAdded"},
]


@pytest.mark.parametrize("frame", PATH_CASES)
@pytest.mark.parametrize("filters", [(".body.body.text",), (".body", ".body.text"), (".type",), (".body.body.n",),
                                     (".body.body.f",), (".body.body.b",), (".missing.deeper",)])
@pytest.mark.parametrize("raw", [False, True])
def test_path_shortcut_answers_exactly_as_jq(shared_jq, frame, filters, raw):
    fast = Renderer(OutputOptions(format="ndjson", filters=filters, raw_output=raw))
    assert fast.fast is not None
    slow = Renderer(OutputOptions(format="ndjson", filters=filters, raw_output=raw))
    slow.fast = None  # jq itself
    shared_jq(fast, slow)
    data = json.dumps(frame, ensure_ascii=False).encode()
    try:
        expected = slow.render(frame, 0.0, data)
    except JqRuntimeError as exc:
        with pytest.raises(JqRuntimeError) as caught:
            fast.render(frame, 0.0, data)
        assert str(caught.value) == str(exc)
    else:
        assert fast.render(frame, 0.0, data) == expected


def test_colourer_uses_the_pygments_style_colours():
    from pygments.formatters import Terminal256Formatter

    codes = Terminal256Formatter(style="monokai").style_string
    [record] = render(format="pretty", color=True, style="monokai")
    text = record.decode()
    key_on, _ = codes["Token.Name.Tag"]
    string_on, _ = codes["Token.Literal.String.Double"]
    assert key_on + '"type"' in text and string_on + '"channel"' in text
    assert ANSI.sub("", text) == json.dumps(NOTE, indent=2, ensure_ascii=False) + "\n"
