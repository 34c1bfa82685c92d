"""safetext: server text never reaches a terminal with a control character, C1 or bidi override in it."""

from __future__ import annotations

import json
import re

import pytest

from misskey_cli.core.safetext import escape_controls, escape_json_text, is_safe

RAW_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")

ESCAPES = [
    # (what, input, expected)
    ("OSC 52 clipboard write", "hi\x1b]52;c;ZXZpbA==\x07", "hi\\x1b]52;c;ZXZpbA==\\x07"),
    ("OSC 52 with ST", "\x1b]52;c;ZXZpbA==\x1b\\", "\\x1b]52;c;ZXZpbA==\\x1b\\"),
    ("clear screen", "\x1b[2J\x1b[H", "\\x1b[2J\\x1b[H"),
    ("window title", "\x1b]0;pwned\x07", "\\x1b]0;pwned\\x07"),
    ("carriage return overwrite", "safe\rEVIL", "safe\\rEVIL"),
    ("newline and tab are escaped too", "a\nb\tc", "a\\nb\\tc"),
    ("NUL and backspace", "a\x00b\x08", "a\\x00b\\x08"),
    ("DEL", "x\x7fy", "x\\x7fy"),
    ("C1 CSI", "x\x9b2Jy", "x\\x9b2Jy"),
    ("C1 NEL and OSC", "\x85\x9d", "\\x85\\x9d"),
    ("RLO override", "abc\u202etxt.exe", "abc\\u202etxt.exe"),
    ("all embeddings", "\u202a\u202b\u202c\u202d", "\\u202a\\u202b\\u202c\\u202d"),
    ("isolates", "\u2066x\u2069\u2067\u2068", "\\u2066x\\u2069\\u2067\\u2068"),
    ("marks", "\u200e\u200f\u061c", "\\u200e\\u200f\\u061c"),
    ("lone high surrogate from json", json.loads('"a\\ud83cb"'), "a\\ud83cb"),
    ("lone low surrogate", json.loads('"\\udf63"'), "\\udf63"),
    ("reversed pair stays two escapes", json.loads('"\\udf63\\ud83c"'), "\\udf63\\ud83c"),
]

UNTOUCHED = [
    "",
    "hello from record2 (192803) 🌱",
    "今日はとても良い天気ですね☀️🌸 吾輩は猫である。",
    "👨\u200d👩\u200d👧\u200d👦 🧑🏽\u200d💻 ❤️\u200d🔥 🏳️\u200d🌈 🇯🇵",
    "ｶﾞｷﾞｸﾞ ＡＢＣ ①②③ ㍻ 𠮷野家",
    "e\u0301 (combining acute), \u200b zero width space, \u00a0 nbsp",
    "a backslash \\x1b typed by a person",
    json.loads('"\\ud83c\\udf63"'),  # a valid escaped pair decodes to one character: 🍣
]


@pytest.mark.parametrize(("what", "text", "expected"), ESCAPES, ids=[e[0] for e in ESCAPES])
def test_escape_controls(what: str, text: str, expected: str) -> None:
    out = escape_controls(text)
    assert out == expected
    assert RAW_UNSAFE.search(out) is None
    assert not is_safe(text)
    assert is_safe(out)


@pytest.mark.parametrize("text", UNTOUCHED)
def test_safe_text_is_returned_as_is(text: str) -> None:
    assert escape_controls(text) is text
    assert is_safe(text)


def test_every_unsafe_code_point_is_escaped() -> None:
    unsafe = [chr(c) for c in range(0x110000) if RAW_UNSAFE.match(chr(c))]
    assert len(unsafe) == 32 + 1 + 32 + 1 + 2 + 5 + 4 + 2048
    out = escape_controls("".join(unsafe))
    assert RAW_UNSAFE.search(out) is None
    assert out.isascii()


def test_surrogate_escape_can_be_encoded() -> None:
    out = escape_controls(json.loads('"\\ud83c text"'))
    assert out.encode("utf-8") == b"\\ud83c text"


JSON_VALUES = [
    {"text": "a\x1b]52;c;ZXZpbA==\x07b", "cw": None},
    {"name": "\u202eevil", "n": 1, "nested": ["\x85", "\u2066", {"k": "\x9b2J"}]},
    {"lone": json.loads('"\\ud83c"'), "ok": "🍣 お寿司"},
    ["\x7f", "\u200e", "\u061c", "plain"],
]


@pytest.mark.parametrize("value", JSON_VALUES)
@pytest.mark.parametrize("indent", [None, 2])
def test_escape_json_text_keeps_valid_json(value: object, indent: int | None) -> None:
    text = json.dumps(value, ensure_ascii=False, indent=indent)
    out = escape_json_text(text)
    assert RAW_UNSAFE.sub("", out.replace("\n", "")) == out.replace("\n", "")  # only layout newlines left
    assert json.loads(out) == value
    if indent:
        assert out.count("\n") == text.count("\n")


def test_escape_json_text_leaves_japanese_and_emoji_raw() -> None:
    text = json.dumps({"text": "今日は 🍜 #ラーメン"}, ensure_ascii=False)
    assert escape_json_text(text) is text


def test_escape_json_text_output_is_utf8_encodable() -> None:
    text = json.dumps({"lone": json.loads('"\\udf63"')}, ensure_ascii=False)
    assert escape_json_text(text).encode("utf-8") == b'{"lone": "\\udf63"}'
