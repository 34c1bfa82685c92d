"""jqfast against libjq on generated programs and values: whenever the shortcut answers, it is jq's answer.

Programs are drawn from jqfast's own grammar (paths, optional access, indexes, comparisons,
and/or/not, //, object and array construction, interpolation, length, select, comma, pipes,
variables), with the spacing and comments jq allows; values are JSON texts with what tells jq
and Python apart (null, booleans, mixed types, -0, integers past 2**53, 1.50 against 1.5, tiny
and huge floats, control characters, U+007F, unicode, keywords as keys). The reference is libjq
run directly (the jq binding), each record as jq prints it (``tojson``).

The normal suite runs a fixed seed for a few seconds; ``MKSTREAM_JQ_DIFF_EXAMPLES=20000`` (or
``benchmarks/jqdiff.py``) runs the long mode.
"""

from __future__ import annotations

import json
import os

import jq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from misskey_cli.core.jsoncodec import loads
from misskey_cli.output.jqfast import Fallback, check_output, compile_fast, frame_is_exact
from misskey_cli.output.render import encode_like_jq

EXAMPLES = int(os.environ.get("MKSTREAM_JQ_DIFF_EXAMPLES", "200"))

IDENT_KEYS = ["a", "b", "and", "or", "not", "if", "then", "end", "null", "true", "type", "length", "__loc__", "ENV"]
KEYS = [*IDENT_KEYS, "é", "日本", "a b", "", "$x", "\u007f", "\n"]
NUMBERS = ["0", "-0", "1", "-1", "42", "-7", "9007199254740993", "-9007199254740993", "18446744073709551615",
           "-9223372036854775808", "100000000000000000001", "1.5", "1.50", "-0.0", "3.0", "1E5", "1e1000", "-1e1000",
           "0.1", "0.10000000000000001", "5e-324", "1e-400", "1.7976931348623157e308"]
PROGRAM_NUMBERS = ["0", "1", "-1", "2", "-0", "42", "9007199254740993", "100000000000000000001", "1.0", "1e0",
                   "0.1", "1e1000"]
ARGS = [1, -3, "s", "", None, True, False, [1, "a"], {"a": 1}, 1.5, float("nan"), 2 ** 60, "and"]


# ----- JSON texts ---------------------------------------------------------------------------------

strings = st.lists(st.sampled_from(["a", "b", "é", "日", "😀", "\u007f", "\x00", "\x1f", "\n", '"', "\\", "/", " ",
                                    "\u2028", "and", "null"]), max_size=5).map("".join)


def string_text(value: str, ascii_only: bool) -> str:
    return json.dumps(value, ensure_ascii=ascii_only)


scalars = st.one_of(
    st.sampled_from(["null", "true", "false"]),
    st.sampled_from(NUMBERS),
    st.integers(-(10 ** 6), 10 ** 6).map(str),
    st.builds(string_text, st.one_of(strings, st.sampled_from(KEYS)), st.booleans()),
    st.sampled_from(['"\\ud83c"', '"x\\ud83c\\udf89"']),  # a lone surrogate, and a pair
)
json_texts = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4).map(lambda items: "[" + ",".join(items) + "]"),
        st.lists(st.tuples(st.sampled_from(KEYS), inner), max_size=5).map(
            lambda pairs: "{" + ",".join(f"{json.dumps(k)}:{v}" for k, v in pairs) + "}"),
    ),
    max_leaves=12,
)


# ----- programs -----------------------------------------------------------------------------------

space = st.sampled_from([" ", " ", "", "  ", "\n", " # a comment\n", " # carried on \\\n.b\n"])


def key_access(key: str, style: int) -> str:
    if style == 0 and key in IDENT_KEYS:
        return f".{key}"
    if style == 1:
        return f".{json.dumps(key)}"
    return f".[{json.dumps(key)}]"


atoms = st.one_of(
    st.just("."),
    st.builds(key_access, st.sampled_from(KEYS), st.integers(0, 2)),
    st.builds(lambda n: f".[{n}]", st.sampled_from(["0", "1", "-1", "-3", "5", "1e0", "0E0"])),
    st.sampled_from(["null", "true", "false", "empty", "$x", "$y", "{$x}", "$ENV | length", "$__loc__", "[]", "{}",
                     "length", "not"]),
    st.sampled_from(PROGRAM_NUMBERS),
    st.builds(lambda s: json.dumps(s, ensure_ascii=False), strings),
)


def combine(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    two = st.tuples(inner, space, inner)
    return st.one_of(
        st.builds(lambda f, k, q: f"{f}{key_access(k, 0 if k in IDENT_KEYS else 1)}{'?' if q else ''}",
                  inner.filter(lambda f: f.startswith(".")), st.sampled_from(KEYS), st.booleans()),
        st.builds(lambda f, n: f"({f})[{n}]", inner, st.sampled_from(["0", "-1"])),
        st.builds(lambda f: f"({f})?", inner),
        st.builds(lambda t, op: f"{t[0]}{t[1]}{op} {t[2]}", two,
                  st.sampled_from(["|", ",", "//", "and", "or", "==", "!=", "<", "<=", ">", ">="])),
        st.builds(lambda t, op: f"{t[0]}{t[1]}{op} {t[2]}", two, st.sampled_from(["==", "!=", "<", "<=", ">", ">="])),
        st.builds(lambda t, op: f"{t[0]}{t[1]}{op} {t[2]}", two, st.sampled_from(["and", "or", "//"])),
        st.builds(lambda f: f"({f})", inner),
        st.builds(lambda f: f"[{f}]", inner),
        st.builds(lambda f: f"select({f})", inner),
        st.builds(lambda f: f"{f} | length", inner),
        st.builds(lambda f: f"{f} | not", inner),
        st.builds(lambda k, f: f"{{{k}: {f}}}", st.sampled_from(IDENT_KEYS), inner),
        st.builds(lambda k, f, k2: f"{{{json.dumps(k)}: {f}, {k2}}}", st.sampled_from(KEYS), inner,
                  st.sampled_from(IDENT_KEYS)),
        st.builds(lambda f, g: f'"s\\({f}) t \\({g})"', inner.filter(lambda f: '"' not in f),
                  inner.filter(lambda f: '"' not in f)),
    )


programs = st.recursive(atoms, combine, max_leaves=6)


# ----- the comparison -----------------------------------------------------------------------------


def jq_records(program: str, text: str, args: dict) -> list[bytes] | None:
    """What jq prints for ``program`` on ``text``, record by record (None: jq fails on it)."""
    try:
        results = jq.compile(f"({program}\n\n) | tojson", args=args).input_text(text).all()
    except ValueError:
        return None
    return [r.encode() + b"\n" for r in results]


def fast_records(fast, text: str) -> list[bytes] | None:
    """What jqfast answers (as output.Renderer writes it), or None where it leaves the frame to jq."""
    data = text.encode()
    try:
        value, clean = loads(data)
    except ValueError:
        return None
    if not clean or not frame_is_exact(data):
        return None
    try:
        return [encode_like_jq(check_output(v)) for v in fast(value)]
    except Fallback:
        return None


TALLY = {"programs": 0, "fast": 0, "answered": 0, "frames": 0}


@settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large])
@given(program=programs, texts=st.lists(json_texts, min_size=1, max_size=8), x=st.sampled_from(ARGS),
       y=st.sampled_from(ARGS))
def test_jqfast_answers_exactly_what_libjq_answers(program, texts, x, y):
    args = {"x": x, "y": y, "ENV": "shadow?", "__loc__": "shadow?"}
    try:
        jq.compile(program, args=args)
    except ValueError:
        return  # jq does not compile it: mkstream refuses it at start
    TALLY["programs"] += 1
    fast = compile_fast(program, args)
    if fast is None:
        return
    TALLY["fast"] += 1
    for text in texts:
        TALLY["frames"] += 1
        answer = fast_records(fast, text)
        if answer is None:
            continue
        TALLY["answered"] += 1
        assert answer == jq_records(program, text, args), (program, text, args)


def test_the_generated_programs_exercise_the_shortcut():
    # Runs after the differential test (file order): a generator that jqfast never answered
    # for would make that test pass without checking anything.
    if TALLY["programs"] == 0:
        test_jqfast_answers_exactly_what_libjq_answers()
    assert TALLY["fast"] >= TALLY["programs"] // 3, TALLY
    assert TALLY["answered"] >= TALLY["frames"] // 10, TALLY
