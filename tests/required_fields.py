"""The official client's types as a checker: does a payload have every field misskey-js requires, typed as declared?

The table, tests/fixtures/misskey_js_types.json, is our own JSON form of the TypeScript types of
misskey-js (the release named in its ``misskey_js`` key; see tests/fixtures/README.md for how it
was made). ``problems(value, kind)`` lists what is missing or mistyped, as JSON paths; ``[]`` means the
official client's types accept the value. Extra fields are allowed, as TypeScript allows them at run time.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from conftest import FIXTURES


@cache
def table() -> dict[str, Any]:
    with open(FIXTURES / "misskey_js_types.json", encoding="utf-8") as source:
        loaded: dict[str, Any] = json.load(source)
    return loaded


def _scalar_ok(value: Any, name: str) -> bool:
    if name in ("unknown", "any", "Blob"):
        return True
    if name == "null":
        return value is None
    if name == "string":
        return isinstance(value, str)
    if name == "boolean":
        return isinstance(value, bool)
    if name == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return False  # never


def check(value: Any, spec: dict[str, Any], path: str = "$") -> list[str]:
    """What in ``value`` the type ``spec`` (a node of the table) rejects, one line per problem."""
    if "ref" in spec:
        return check(value, table()["schemas"][spec["ref"]], path)
    if "type" in spec:
        return [] if _scalar_ok(value, spec["type"]) else [f"{path}: {_kind(value)}, declared {spec['type']}"]
    if "const" in spec:
        ok = value == spec["const"] and type(value) is type(spec["const"])
        return [] if ok else [f"{path}: {value!r}, declared {spec['const']!r}"]
    if "anyOf" in spec:
        return _any_of(value, spec["anyOf"], path)
    if "allOf" in spec:
        return [p for part in spec["allOf"] for p in check(value, part, path)]
    if "array" in spec:
        if not isinstance(value, list):
            return [f"{path}: {_kind(value)}, declared an array"]
        return [p for i, item in enumerate(value) for p in check(item, spec["array"], f"{path}[{i}]")]
    if "tuple" in spec:
        if not isinstance(value, list) or len(value) != len(spec["tuple"]):
            return [f"{path}: {_kind(value)}, declared a tuple of {len(spec['tuple'])}"]
        return [p for i, (item, t) in enumerate(zip(value, spec["tuple"], strict=True)) for p in check(item, t, f"{path}[{i}]")]
    if "object" in spec:
        return _object(value, spec, path)
    raise ValueError(f"unknown type node {spec!r}")


def _object(value: Any, spec: dict[str, Any], path: str) -> list[str]:
    if not isinstance(value, dict):
        return [f"{path}: {_kind(value)}, declared an object"]
    out: list[str] = []
    fields: dict[str, Any] = spec["object"]
    for name, field in fields.items():
        if name not in value:
            if not field.get("optional"):
                out.append(f"{path}.{name}: missing")
            continue
        out += check(value[name], field, f"{path}.{name}")
    extra = spec.get("additional")
    if extra is not None and extra != {"type": "never"}:  # Record<string, never>: a free-form object
        for name, item in value.items():
            if name not in fields:
                out += check(item, extra, f"{path}.{name}")
    return out


def _any_of(value: Any, options: list[dict[str, Any]], path: str) -> list[str]:
    if all("const" in option for option in options):  # an enum
        allowed = [option["const"] for option in options]
        return [] if value in allowed else [f"{path}: {value!r}, declared one of {allowed!r}"]
    best: list[str] | None = None
    for option in options:
        found = check(value, option, path)
        if not found:
            return []
        if _discriminated(value, option) or best is None or len(found) < len(best):
            best = found
            if _discriminated(value, option):
                break
    return best or [f"{path}: matches none of {len(options)} types"]


def _discriminated(value: Any, option: dict[str, Any]) -> bool:
    """The alternative of a tagged union (Notification) whose ``type`` constant the value carries."""
    if not isinstance(value, dict) or "object" not in option:
        return False
    tag = option["object"].get("type", {})
    return "const" in tag and value.get("type") == tag["const"]


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "boolean", int: "number", float: "number", str: "string", list: "array", dict: "object"}.get(
        type(value), type(value).__name__)


def problems(value: Any, kind: str) -> list[str]:
    """``kind``: an entity (``"Note"``), ``"endpoint:notes/create"`` (its 200 answer), ``"stream:drive/fileCreated"``
    (a channel event's body), ``"noteUpdated:reacted"`` or ``"broadcast:emojiAdded"`` (a top-level event's body)."""
    data = table()
    if kind.startswith("endpoint:"):
        spec = data["endpoints"][kind[len("endpoint:"):]]["response"]
    elif kind.startswith("stream:"):
        channel, event = kind[len("stream:"):].split("/")
        spec = data["stream"][channel][event]
    elif kind.startswith("noteUpdated:"):
        spec = data["noteUpdated"][kind[len("noteUpdated:"):]]
    elif kind.startswith("broadcast:"):
        spec = data["broadcast"][kind[len("broadcast:"):]]
    else:
        spec = {"ref": kind}
    return check(value, spec)
