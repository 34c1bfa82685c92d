"""jqfast answers exactly as jq does: each filter shape, on every real frame of the recording.

The reference is the same Renderer with the shortcut switched off, so the comparison covers the
whole output path (encoding, -r) and not only the values.
"""

from __future__ import annotations

import json

import pytest
from conftest import fixture_frames

from misskey_cli.core import protocol
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


@pytest.fixture
def renderers(shared_jq):
    """(fast, slow): the same filters with and without the shortcut, sharing a jq worker per program."""

    def make(filters, raw=False, args=None):
        fast = Renderer(OutputOptions(format="ndjson", filters=filters, raw_output=raw, args=args or {}))
        slow = Renderer(OutputOptions(format="ndjson", filters=filters, raw_output=raw, args=args or {}))
        slow.fast = None
        return shared_jq(fast, slow)

    return make


def outcome(renderer, frame):
    data = json.dumps(frame, ensure_ascii=False).encode()
    try:
        return renderer.render(frame, 0.0, data)
    except JqRuntimeError as exc:
        return ("error", str(exc))


@pytest.mark.parametrize("raw", [False, True])
@pytest.mark.parametrize("program", FILTERS)
def test_fast_filters_answer_as_jq_on_every_frame(renderers, program, raw):
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


def test_chained_filters_are_fast_too(renderers):
    fast, slow = renderers((".body", "select(.type == \"note\")", ".body.text"))
    assert fast.fast is not None
    for frame in FRAMES:
        assert outcome(fast, frame) == outcome(slow, frame)


def test_a_bad_filter_is_still_judged_by_jq():
    with pytest.raises(UsageError):
        Renderer(OutputOptions(format="ndjson", filters=(".a) | (.b",)))


# ----- the cases of the issue "--jq answers exactly what jq answers": each as jq 1.8 (libjq) prints it --------

NULLS = {"type": "channel", "body": {"id": "l", "type": "note", "body": {"id": "n1", "text": None}}}
CASES = [
    # (filters, args, frame text, the records jq prints)
    ("select(.body.body.renoteCount > .body.body.repliesCount)", {}, NULLS, []),
    (".a < .b, .a > .b, .a <= .b, .a >= .b", {}, NULLS, [b"false", b"false", b"true", b"true"]),
    ("null < null, null <= null, null == null", {}, NULLS, [b"false", b"true", b"true"]),
    ("select(.body.body.user.host <= .body.body.user.name) | .body.body.id", {}, NULLS, [b'"n1"']),
    (".body.body.createdAt < .body.body.updatedAt", {}, NULLS, [b"false"]),
    (". and .b, . or .b, . and .type", {}, NULLS, [b"false", b"true", b"true"]),
    (".body.body.text | (. and .b), (. or .b)", {}, NULLS, [b"false", b"false"]),
    ("select(. and .body.body.text)", {}, NULLS, []),
    (".and, .or", {}, '{"type":"x","and":1,"or":2}', [b"1", b"2"]),
    (".a[1e0], .a[0E0]", {}, '{"type":"x","a":[5,6]}', [b"6", b"5"]),
    ("0.1 == 0.10000000000000001, 1 == 1.0000000000000001", {}, NULLS, [b"false", b"false"]),
    ("100000000000000000000 == 100000000000000000001, 1e1000 > 1e999", {}, NULLS, [b"false", b"true"]),
    (".a == .b", {}, '{"type":"x","a":0.1,"b":0.10000000000000001}', [b"false"]),
    (".a == .b", {}, '{"type":"x","a":100000000000000000000,"b":100000000000000000001}', [b"false"]),
    (".a == .b", {}, '{"type":"x","a":9007199254740993,"b":9007199254740992}', [b"false"]),
    (".a", {}, '{"type":"x","a":9007199254740993}', [b"9007199254740993"]),
    ('"\\(.a)", .a', {}, '{"type":"x","a":-0}', [b'"-0"', b"-0"]),
    (".a, .b", {}, '{"type":"x","a":1e1000,"b":1.50}', [b"1E+1000", b"1.50"]),
    ("$x < 1", {"x": float("nan")}, NULLS, [b"true"]),
    ("$ENV | type", {"ENV": "v"}, NULLS, [b'"object"']),
    ("$__loc__", {"__loc__": "v"}, NULLS, [b'{"file":"<top-level>","line":1}']),
    (".type # a comment \\\n| length", {}, NULLS, [b'"channel"']),
    ('.a', {}, '{"type":"x","a":"del \\u007f"}', [b'"del \\u007f"']),
]


@pytest.mark.parametrize(("program", "args", "frame", "expected"), CASES)
def test_the_cases_of_the_issue_answer_as_jq(renderers, program, args, frame, expected):
    data = (frame if isinstance(frame, str) else json.dumps(frame)).encode()
    decoded = protocol.decode(data)
    fast, slow = renderers((program,), args=args)
    want = [line + b"\n" for line in expected]
    for renderer in (fast, slow):
        assert renderer.render(decoded.value, 0.0, data, decoded.clean) == want, program


def test_an_unexpected_exception_in_the_shortcut_sends_the_frame_to_jq(renderers):
    fast, _ = renderers((".body.id",))

    def broken(value):
        raise ZeroDivisionError()

    fast.fast = broken
    frame = {"type": "channel", "body": {"id": "x"}}
    assert fast.render(frame, 0.0, json.dumps(frame).encode()) == [b'"x"\n']


@pytest.mark.parametrize("fmt", ["ndjson", "pretty"])
def test_a_frame_beyond_doubles_is_still_strict_json_unfiltered(fmt):
    data = b'{"type":"channel","body":{"n":1e999,"m":-1e999,"big":100000000000000000000000000,"s":"\\ud83c"}}'
    decoded = protocol.decode(data)
    assert not decoded.clean
    [record] = Renderer(OutputOptions(format=fmt)).render(decoded.value, 0.0, data, decoded.clean)
    assert b"Infinity" not in record and b"NaN" not in record
    json.loads(record, parse_constant=lambda name: pytest.fail(f"{name} is not JSON"))
    if fmt == "ndjson":
        assert record == data + b"\n"  # as the server sent it


def test_a_frame_beyond_doubles_goes_to_jq_with_its_literals():
    data = b'{"type":"channel","body":{"n":1e999,"s":"\\ud83c!"}}'
    decoded = protocol.decode(data)
    renderer = Renderer(OutputOptions(format="ndjson", filters=(".body.n, .body.s",)))
    assert renderer.render(decoded.value, 0.0, data, decoded.clean) == [b"1E+999\n", '"\ufffd!"\n'.encode()]
