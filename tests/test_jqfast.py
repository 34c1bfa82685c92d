"""jqfast answers exactly as jq does: each filter shape, on every real frame of the recording.

The reference is the same Renderer with the shortcut switched off, so the comparison covers the
whole output path (encoding, -r) and not only the values.
"""

from __future__ import annotations

import json

import pytest
from conftest import fixture_frames

from misskey_cli.errors import UsageError
from misskey_cli.output.jqfast import compile_fast
from misskey_cli.output.render import JqRuntimeError, OutputOptions, Renderer

FRAMES = [item["frame"] for item in fixture_frames() if item.get("frame") is not None]
ODD = [
    {"type": "channel", "body": {"id": "l", "type": "note", "body": {"text": 2 ** 60, "n": -0.0, "f": 1.5,
                                                                     "t": True, "z": 0, "e": "", "a": [1, "x"]}}},
    {"type": "channel", "body": "a string body"},
    {"type": "channel", "body": None},
    {"type": "x", "body": [1, 2, {"id": 3}]},
    {"type": 5},
]

FILTERS = [
    ".", ".body", ".body.body.text", ".body.body.user.username", '.body."id"', '.["type"]', ".body.body.files[0]",
    ".body.body.files[-1].name", ".body.id?", ".body.body.text?",
    "select(.body.body.user.host == null) | {t: .body.body.text, u: .body.body.user.username}",
    'select(.body.type == "note") | "\\(.body.body.user.username): \\(.body.body.text)"',
    'select(.body.body.user.host != null and .body.body.visibility == "public") | .body.body.id',
    "select(.body.body.renoteCount > 0 or .body.body.repliesCount >= 1) | [.body.body.id, .body.body.renoteCount]",
    "select(.body.body.cw) | .body.body.cw", "select(.body.body.text | not)", ".body.body.text // \"(no text)\"",
    ".body.body | {id, text, n: .renoteCount}", "{type, id: .body.id}", ".type, .body.type, empty",
    ".body.body.text | length", ".body | length", "[.body.body.user.name, .body.body.user.isBot]",
    '"\\(.type)/\\(.body.type)"', '"n=\\(.body.body.renoteCount)"', ".body.body.reactions", "true, false, null, 1, \"s\"",
    "select(.type < \"d\")", "select(.body.body.text == $want)", "{$want}", ".body.body.text # a comment",
    ".body.body.text | select(. != null) | length", "(.body | .id), .type",
]


def renderers(filters, raw=False, args=None):
    fast = Renderer(OutputOptions(format="ndjson", filters=filters, raw_output=raw, args=args or {}))
    slow = Renderer(OutputOptions(format="ndjson", filters=filters, raw_output=raw, args=args or {}))
    slow.fast = None
    return fast, slow


def outcome(renderer, frame):
    data = json.dumps(frame, ensure_ascii=False).encode()
    try:
        return renderer.render(frame, 0.0, data)
    except JqRuntimeError as exc:
        return ("error", str(exc))


@pytest.mark.parametrize("raw", [False, True])
@pytest.mark.parametrize("program", FILTERS)
def test_fast_filters_answer_as_jq_on_every_frame(program, raw):
    args = {"want": "hello"}
    fast, slow = renderers((program,), raw, args)
    assert fast.fast is not None, f"{program} should be in the fast subset"
    for frame in FRAMES + ODD:
        assert outcome(fast, frame) == outcome(slow, frame), (program, frame)


@pytest.mark.parametrize("program", [
    ".[]", ".body | keys", "map(.)", ".a + 1", ".a - 1", "def f: .; f", "input", "$__loc__", "..", ".a as $x | $x",
    "if . then 1 else 2 end", "reduce .[] as $x (0; . + $x)", '.body | test("x")', "@base64", ".a[1:2]",
    '"\\("nested")"', '"text \\(.body.body.text // "-")"', "$undefined_var",
])
def test_programs_outside_the_subset_are_left_to_jq(program):
    assert compile_fast(program, {}) is None


def test_chained_filters_are_fast_too():
    fast, slow = renderers((".body", "select(.type == \"note\")", ".body.text"))
    assert fast.fast is not None
    for frame in FRAMES:
        assert outcome(fast, frame) == outcome(slow, frame)


def test_a_bad_filter_is_still_judged_by_jq():
    with pytest.raises(UsageError):
        Renderer(OutputOptions(format="ndjson", filters=(".a) | (.b",)))
