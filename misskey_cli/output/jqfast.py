"""Common jq filters evaluated in Python on the decoded frame, exactly as jq would. Pure.

jq (through jq.py) parses every frame's text again and converts each result back to Python,
about 80 µs a frame on this machine; most filters people write against the stream are paths,
``select`` with a comparison, object construction and string interpolation. ``compile_fast``
turns such a program into a Python function; anything outside that subset compiles to None
(jq is used), and anything the function meets at run time whose jq result it cannot promise to
reproduce exactly (an error jq would word, a non-integer number, a null compared by order it
does not know) raises ``Fallback``, and that one frame goes to jq. So results are jq's, value for
value and byte for byte once encoded (``encode_like_jq``).

Numbers are where the two differ most. jq 1.8 keeps every number literal (of the program and of
the input) as written and compares two literals exactly; a double cannot. An integer is the one
kind of number Python holds exactly as jq does (orjson decodes integers up to 64 bits exactly), so
the subset answers for integers only: a non-integer in a comparison, an output, an interpolation
or a ``length`` is a Fallback, a non-integer literal or an argument holding one keeps the whole
program on jq, and so do ``-0`` (an integer to orjson, a sign to jq; see ``frame_is_exact``).

The subset: ``.``, ``.key``, ``."key"``, ``.[N]``, ``.["key"]``, a ``?`` after any of them,
``|``, ``,``, ``//``, ``and``, ``or``, ``not``, ``==``, ``!=``, ``<``, ``<=``, ``>``, ``>=``,
``select(f)``, ``empty``, ``length``, ``(f)``, ``[f]``, ``{key: f, "key": f, key, $var}``,
literals, ``$name`` (``--arg``/``--argjson``) and ``"...\\(f)..."``. ``tests/test_jqfast.py``
checks each shape against jq on real frames.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Callable
from typing import Any

Filter = Callable[[Any], list[Any]]
SAFE_INT = 2 ** 53  # beyond it a number jq computes (``length`` of an integer) is a rounded double
# Program literals and arguments are kept to what orjson encodes (64 bits).
MAX_INT = 2 ** 63
# jq's own variables, which --arg cannot shadow: $ENV, $__loc__, $__prog_args and the like.
RESERVED_VARIABLES = frozenset({"ENV", "ARGS"})


class Unsupported(Exception):
    """The program is outside the subset: use jq for every frame."""


class Fallback(Exception):
    """This frame needs jq: an error to word, or a value jq would print differently."""


# ----- tokens ---------------------------------------------------------------------------------

# As jq 1.8's lexer reads them: `.name` is one token (a field, even `.and`), while `. and` is the
# identity and the operator; a comment runs to the end of the line, except that a backslash before
# the newline (or before another backslash) carries it on.
_TOKEN = re.compile(r"""
    (?P<space>[ \t\r\n]+|\#(?:\\\\|\\\r?\n|\r(?!\n)|[^\r\n])*)
  | (?P<field>\.[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>==|!=|<=|>=|//|[.|,()\[\]{}:?<>])
  | (?P<var>\$[A-Za-z_][A-Za-z0-9_]*)
  | (?P<num>-?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<string>")
""", re.VERBOSE)
_INTEGER = re.compile(r"-?[0-9]+")

_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


def _tokens(text: str) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            raise Unsupported(f"unexpected {text[pos]!r}")
        kind = match.lastgroup
        assert kind is not None
        if kind == "string":
            parts, pos = _string(text, match.end())
            out.append(("string", parts))
            continue
        pos = match.end()
        if kind == "num" and out and (out[-1][0] in ("num", "string", "ident", "var", "field")
                                      or out[-1][1] in (")", "]", "}", "?", ".")):
            raise Unsupported("arithmetic")  # `a -1` is subtraction
        if kind != "space":
            out.append((kind, match.group(kind)))
    return out


def _string(text: str, pos: int) -> tuple[list[str | list[tuple[str, Any]]], int]:
    """A string literal from after its opening quote: its parts (text, or the tokens of an interpolation)."""
    parts: list[str | list[tuple[str, Any]]] = []
    chunk: list[str] = []
    while pos < len(text):
        char = text[pos]
        if char == '"':
            parts.append("".join(chunk))
            return parts, pos + 1
        if char != "\\":
            chunk.append(char)
            pos += 1
            continue
        escape = text[pos + 1:pos + 2]
        if escape in _ESCAPES:
            chunk.append(_ESCAPES[escape])
            pos += 2
        elif escape == "u" and re.fullmatch(r"[0-9a-fA-F]{4}", text[pos + 2:pos + 6]):
            code = int(text[pos + 2:pos + 6], 16)
            if 0xD800 <= code <= 0xDFFF:
                raise Unsupported("surrogate escapes")
            chunk.append(chr(code))
            pos += 6
        elif escape == "(":
            depth, end = 1, pos + 2
            while end < len(text) and depth:  # find the matching parenthesis (strings inside are rare)
                if text[end] in '"#':
                    raise Unsupported("a string or a comment inside an interpolation")
                depth += {"(": 1, ")": -1}.get(text[end], 0)
                end += 1
            if depth:
                raise Unsupported("unclosed interpolation")
            parts.append("".join(chunk))
            chunk = []
            parts.append(_tokens(text[pos + 2:end - 1]))
            pos = end
        else:
            raise Unsupported(f"escape \\{escape}")
    raise Unsupported("unclosed string")


# ----- values, as jq sees them ----------------------------------------------------------------

_KIND_ORDER = {type(None): 0, bool: 1, int: 2, float: 2, str: 3, list: 4, dict: 5}
_NEGATIVE_ZERO = re.compile(rb"-0(?![0-9.eE])")


def truthy(value: Any) -> bool:
    return value is not None and value is not False


def frame_is_exact(data: bytes) -> bool:
    """False when the frame's text may hold ``-0``: orjson reads it as the integer 0, jq keeps the sign.

    (A ``-0`` inside a string only costs the shortcut for that frame.)
    """
    return b"-0" not in data or _NEGATIVE_ZERO.search(data) is None


def jq_equal(a: Any, b: Any) -> bool:
    ka, kb = _KIND_ORDER.get(type(a)), _KIND_ORDER.get(type(b))
    if ka is None or kb is None:
        raise Fallback()
    if ka == 2 and (type(a) is float or type(b) is float):
        raise Fallback()  # jq compares the literals as written, a double cannot
    if ka != kb:
        return False
    if ka == 4:
        return len(a) == len(b) and all(jq_equal(x, y) for x, y in zip(a, b, strict=True))
    if ka == 5:
        return a.keys() == b.keys() and all(jq_equal(a[k], b[k]) for k in a)
    return bool(a == b)


def jq_less(a: Any, b: Any) -> bool:
    """jq's order: null < false < true < numbers < strings < arrays < objects."""
    ka, kb = _KIND_ORDER.get(type(a)), _KIND_ORDER.get(type(b))
    if ka is None or kb is None:
        raise Fallback()
    if ka != kb:
        return ka < kb
    if ka == 0:
        return False  # null is not less than null
    if ka == 2 and (type(a) is float or type(b) is float):
        raise Fallback()
    if ka >= 4:
        raise Fallback()  # arrays and objects have rules of their own
    return bool(a < b)


def check_output(value: Any) -> Any:
    """``value`` when jq would print it as ``encode_like_jq`` does; Fallback otherwise (non-integers)."""
    kind = type(value)
    if kind is float:
        raise Fallback()  # jq prints the literal as written (1.50, 1E+5), which a double has lost
    if kind is int:
        if not -MAX_INT <= value < 2 * MAX_INT:
            raise Fallback()
    elif kind is dict:
        for item in value.values():
            check_output(item)
    elif kind is list:
        for item in value:
            check_output(item)
    return value


def exact_argument(value: Any) -> bool:
    """Whether an --arg/--argjson value is one the subset holds exactly as jq does."""
    kind = type(value)
    if kind is float:
        return False
    if kind is int:
        return bool(-SAFE_INT < value < SAFE_INT)  # jq.py passes arguments through json.dumps and jv_parse
    if kind is str:
        return not _has_surrogate(value)
    if kind is list:
        return all(exact_argument(item) for item in value)
    if kind is dict:
        return all(exact_argument(k) and exact_argument(v) for k, v in value.items())
    return value is None or kind is bool


def _has_surrogate(text: str) -> bool:
    return any("\ud800" <= char <= "\udfff" for char in text)


def _index(value: Any, key: Any) -> Any:
    if value is None:
        return None
    if type(value) is dict and type(key) is str:
        return value.get(key)
    if type(value) is list and type(key) is int:
        try:
            return value[key] if key >= -len(value) else None
        except IndexError:
            return None
    raise Fallback()  # jq raises an error that it words itself


# ----- the parser: tokens to Python functions ---------------------------------------------------


class _Parser:
    def __init__(self, tokens: list[tuple[str, Any]], args: dict[str, Any]) -> None:
        self.tokens = tokens
        self.pos = 0
        self.args = args

    def peek(self) -> tuple[str, Any] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self, value: str | None = None) -> tuple[str, Any]:
        token = self.peek()
        if token is None or (value is not None and token[1] != value):
            raise Unsupported(f"expected {value}")
        self.pos += 1
        return token

    def at(self, *values: str) -> bool:
        token = self.peek()
        return token is not None and token[0] in ("op", "ident") and token[1] in values

    def parse(self) -> Filter:
        f = self.pipe()
        if self.peek() is not None:
            raise Unsupported(f"unexpected {self.peek()}")
        return f

    def pipe(self) -> Filter:
        left = self.comma()
        if self.at("|"):
            self.take()
            right = self.pipe()
            return lambda v: [out for mid in left(v) for out in right(mid)]
        return left

    def comma(self) -> Filter:
        parts = [self.alternative()]
        while self.at(","):
            self.take()
            parts.append(self.alternative())
        if len(parts) == 1:
            return parts[0]
        return lambda v: [out for part in parts for out in part(v)]

    def alternative(self) -> Filter:
        left = self.boolean("or")
        if not self.at("//"):
            return left
        self.take()
        right = self.alternative()

        def alt(v: Any) -> list[Any]:
            try:
                found = [x for x in left(v) if truthy(x)]
            except Fallback:
                raise
            return found or right(v)

        return alt

    def boolean(self, word: str) -> Filter:
        left = self.boolean("and") if word == "or" else self.comparison()
        while self.at(word):
            self.take()
            right = self.boolean("and") if word == "or" else self.comparison()
            left = _and(left, right) if word == "and" else _or(left, right)
        return left

    def comparison(self) -> Filter:
        left = self.postfix()
        token = self.peek()
        if token is not None and token[0] == "op" and token[1] in _COMPARE:
            self.take()
            op = _COMPARE[token[1]]
            right = self.postfix()
            return lambda v: [op(_one(left, v), _one(right, v))]
        if token is not None and token[1] in ("+", "-", "*", "/", "%"):
            raise Unsupported("arithmetic")
        return left

    def postfix(self) -> Filter:
        f = self.term()
        while True:
            if self.at("?"):
                self.take()
                f = _optional(f)
            elif self.at("["):
                f = _then(f, self.bracket())  # a path of keys stays one walk (_then joins them)
            elif self.peek_kind() == "field":
                f = _then(f, self.key())
            elif self.at(".") and self.pos + 1 < len(self.tokens) and self.tokens[self.pos + 1][0] == "string":
                self.take()
                f = _then(f, self.key())
            else:
                return f

    def peek_kind(self) -> str | None:
        token = self.peek()
        return token[0] if token is not None else None

    def term(self) -> Filter:
        token = self.take()
        kind, value = token
        if kind == "field":
            self.pos -= 1
            return self.key()
        if kind == "op" and value == ".":
            # `. and .b` is the identity and `and` (jq reads `.and` as a field only when written as one word)
            nxt = self.peek()
            if nxt is not None and nxt[0] == "string":
                return self.key()
            if nxt == ("op", "["):
                return self.bracket()
            return lambda v: [v]
        if kind == "op" and value == "(":
            f = self.pipe()
            self.take(")")
            return f
        if kind == "op" and value == "[":
            return self.array()
        if kind == "op" and value == "{":
            return self.object()
        if kind == "string":
            return self.string(value)
        if kind == "num":
            number = _integer(value)
            return lambda v: [number]
        if kind == "var":
            return self.variable(value)
        if kind == "ident":
            return self.word(value)
        raise Unsupported(f"unexpected {value!r}")

    def array(self) -> Filter:
        if self.at("]"):
            self.take()
            return lambda v: [[]]
        f = self.pipe()
        self.take("]")
        return lambda v: [f(v)]

    def word(self, value: str) -> Filter:
        constants = {"null": None, "true": True, "false": False}
        if value in constants:
            constant = constants[value]
            return lambda v: [constant]
        if value == "empty":
            return lambda v: []
        if value == "not":
            return lambda v: [not truthy(v)]
        if value == "length":
            return lambda v: [_length(v)]
        if value == "select" and self.at("("):
            self.take("(")
            condition = self.pipe()
            self.take(")")
            return lambda v: [v for c in condition(v) if truthy(c)]
        raise Unsupported(f"function {value}")

    def variable(self, name: str) -> Filter:
        if name[1:] not in self.args or name[1:] in RESERVED_VARIABLES or name.startswith("$__"):
            raise Unsupported(f"variable {name}")  # jq's own variables win over --arg
        if not exact_argument(self.args[name[1:]]):
            raise Unsupported(f"variable {name} holds a number jq keeps otherwise")
        bound = self.args[name[1:]]
        return lambda v: [bound]

    def key(self) -> Filter:
        kind, value = self.take()
        if kind == "field":
            value = value[1:]
        elif kind == "string":
            if len(value) != 1 or not isinstance(value[0], str):
                raise Unsupported("an interpolated key")
            value = value[0]
        return _path((value,))

    def bracket(self) -> Filter:
        self.take("[")
        token = self.take()
        if token[0] == "num" and self.at("]"):
            index = _integer(token[1])
            if not -2 ** 31 < index < 2 ** 31:
                raise Unsupported("a huge index")
            self.take("]")
            return lambda v: [_index(v, index)]
        if token[0] == "string" and len(token[1]) == 1 and isinstance(token[1][0], str) and self.at("]"):
            self.take("]")
            return _path((token[1][0],))
        raise Unsupported("this kind of index")

    def object(self) -> Filter:
        entries: list[tuple[str, Filter]] = []
        while not self.at("}"):
            kind, value = self.take()
            if kind == "ident":
                name = value
            elif kind == "string" and len(value) == 1:
                name = value[0]
            elif kind == "var":
                name = value[1:]
                entries.append((name, self.variable(value)))
                if not self.at("}"):
                    self.take(",")
                continue
            else:
                raise Unsupported("this kind of key")
            if self.at(":"):
                self.take()
                entries.append((name, self.alternative_value()))
            else:
                entries.append((name, (lambda key: lambda v: [_index(v, key)])(name)))
            if not self.at("}"):
                self.take(",")
        self.take("}")

        def build(v: Any) -> list[Any]:
            return [{name: _one(f, v) for name, f in entries}]

        return build

    def alternative_value(self) -> Filter:
        # An object value is a single term up to , or } (jq's grammar): no bare pipe or comma.
        return self.alternative()

    def string(self, parts: list[Any]) -> Filter:
        pieces: list[str | Filter] = []
        for part in parts:
            if isinstance(part, str):
                pieces.append(part)
            else:
                pieces.append(_Parser(part, self.args).parse())
        if len(pieces) == 1 and isinstance(pieces[0], str):
            text = pieces[0]
            return lambda v: [text]

        def interpolate(v: Any) -> list[Any]:
            return ["".join(p if isinstance(p, str) else _text(_one(p, v)) for p in pieces)]

        return interpolate


_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "==": jq_equal,
    "!=": lambda a, b: not jq_equal(a, b),
    "<": jq_less,
    ">": lambda a, b: jq_less(b, a),
    "<=": lambda a, b: not jq_less(b, a),
    ">=": lambda a, b: not jq_less(a, b),
}


def _integer(text: str) -> int:
    """A number literal of the program, when it is an integer jq and Python hold alike."""
    if not _INTEGER.fullmatch(text):
        raise Unsupported("a non-integer literal")  # jq keeps 1.50 and 1e1000 as written
    number = int(text)
    if not -SAFE_INT < number < MAX_INT or (text.startswith("-") and number == 0):
        raise Unsupported("a negative literal jq computes")  # -x is jq's negation, done in doubles
    return number


def _one(f: Filter, v: Any) -> Any:
    """The single output of ``f`` (where jq would make a cartesian product of several: Fallback)."""
    outputs = f(v)
    if len(outputs) != 1:
        raise Fallback()
    return outputs[0]


def _then(f: Filter, g: Filter) -> Filter:
    keys, more = _KEYS.get(f), _KEYS.get(g)
    if keys is not None and more is not None:
        return _path(keys + more)  # `.body.body.user.host`: one loop, not a filter per key
    return lambda v: [out for mid in f(v) for out in g(mid)]


def _optional(f: Filter) -> Filter:
    def optional(v: Any) -> list[Any]:
        try:
            return f(v)
        except Fallback:
            # `?` hides an error, but Fallback may also mean "jq would print this differently":
            # only jq can tell which, so this frame goes to jq.
            raise
    return optional


def _and(left: Filter, right: Filter) -> Filter:
    return lambda v: [truthy(_one(right, v)) if truthy(_one(left, v)) else False]


def _or(left: Filter, right: Filter) -> Filter:
    return lambda v: [True if truthy(_one(left, v)) else truthy(_one(right, v))]


def _length(value: Any) -> Any:
    kind = type(value)
    if value is None:
        return 0
    if kind is str or kind is list or kind is dict:
        return len(value)
    if kind is int and -SAFE_INT < value < SAFE_INT:
        return abs(value)
    raise Fallback()  # booleans have no length (jq's error); jq computes |x| in doubles


def _text(value: Any) -> str:
    """A value interpolated into a string, as jq writes it."""
    kind = type(value)
    if kind is str:
        return str(value)
    if value is None:
        return "null"
    if kind is bool:
        return "true" if value else "false"
    if kind is int:
        return str(value)
    raise Fallback()  # floats, arrays, objects: jq's own formatting


_PATH = re.compile(r"\s*((?:\.[A-Za-z_][A-Za-z0-9_]*)+)\s*")


def compile_fast(program: str, args: dict[str, Any]) -> Filter | None:
    """A Python function computing ``program``'s outputs for a decoded frame, or None outside the subset."""
    path = _PATH.fullmatch(program)
    if path is not None:  # the commonest filter of all, `.body.body.text`, as one loop
        return _path(tuple(path[1][1:].split(".")))
    if _has_surrogate(program):
        return None
    try:
        return _Parser(_tokens(program), args).parse()
    except Exception:  # noqa: BLE001 - whatever the parser did not foresee, jq answers
        return None


def _path(keys: tuple[str, ...]) -> Filter:
    """``.a.b."c"["d"]``: each key of an object in turn; null stays null; anything else is jq's error."""
    def walk(value: Any) -> list[Any]:
        for key in keys:
            if type(value) is dict:
                value = value.get(key)
            elif value is not None:
                raise Fallback()  # jq words the error
        return [value]

    _KEYS[walk] = keys
    return walk


# The keys of each path filter made by ``_path``, so that ``_then`` can join two into one.
_KEYS: weakref.WeakKeyDictionary[Filter, tuple[str, ...]] = weakref.WeakKeyDictionary()
