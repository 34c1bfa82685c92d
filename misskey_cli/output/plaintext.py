"""Server values as short plain text for the line view: compact JSON, folded lines, MFM reduced,
sizes, counts and the peaks of a stats log. Pure; nothing here knows about spans or colours."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from misskey_cli.core.safetext import escape_controls

_LINE_BREAK = re.compile("\r?\n|[\u2028\u2029]")
_MFM_FUNCTION = re.compile(r"\$\[[\w.,=+\-]+ ([^\[\]]*)\]")
_MFM_TAG = re.compile(r"</?(?:center|small|i|b|s|sup|sub|left|right)>")
_MFM_BOLD = re.compile(r"\*\*(.+?)\*\*")
_MFM_PLAIN = re.compile(r"<plain>(.*?)</plain>")
NEWLINE = " ⏎ "


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def compact_json(value: Any) -> str:
    """``value`` as compact JSON, terminal-safe; never raises (repr or a placeholder as last resorts)."""
    try:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=repr)
    except RecursionError:
        return "[too deeply nested]"
    except Exception:  # noqa: BLE001 - circular values, keys json cannot write
        try:
            text = repr(value)
        except Exception:  # noqa: BLE001 - a last resort that must not raise
            return f"[unprintable {type(value).__name__}]"
    return escape_controls(text)


def fold_lines(text: str) -> str:
    """``text`` stripped, each run of line breaks (and the blanks and tabs around them) folded to
    `` ⏎ ``, other tabs as spaces."""
    text = text.strip()
    # str.split for the common case (only \n): several times faster than the regular expression
    simple = "\r" not in text and "\u2028" not in text and "\u2029" not in text
    lines = text.split("\n") if simple else _LINE_BREAK.split(text)
    return NEWLINE.join([line for line in (piece.strip(" \t") for piece in lines) if line]).replace("\t", " ")


def reduce_mfm(text: str) -> str:
    """MFM markup reduced to readable text: ``$[x2 big]`` -> ``big``, tags and ``**`` dropped."""
    if "<" not in text and "$[" not in text and "**" not in text:  # str's search: faster than a regex
        return text
    if "<plain>" in text:
        pieces = _MFM_PLAIN.split(text)  # odd pieces are <plain> contents: literal
        return "".join(piece if i % 2 else __reduce_mfm_markup(piece) for i, piece in enumerate(pieces))
    return __reduce_mfm_markup(text)


def __reduce_mfm_markup(text: str) -> str:
    for _ in range(8):  # innermost $[...] first; bounded against pathological nesting
        reduced = _MFM_FUNCTION.sub(r"\1", text)
        if reduced == text:
            break
        text = reduced
    return _MFM_BOLD.sub(r"\1", _MFM_TAG.sub("", text))


def size_text(value: Any) -> str:
    """Bytes as a compact figure: ``109B``, ``3.4K``, ``882M``."""
    if not is_number(value):
        return "?"
    number = float(value)
    unit = "B"
    for bigger in ("K", "M", "G", "T"):
        if abs(number) < 1024:
            break
        number /= 1024
        unit = bigger
    return f"{number:.0f}{unit}" if unit == "B" or abs(number) >= 10 else f"{number:.1f}{unit}"


def count_text(value: Any) -> str:
    if not is_number(value):
        return "?"
    return f"{value:g}" if isinstance(value, float) else str(value)


def stats_peaks(log: list[Any]) -> str:
    """The peaks of a statsLog: ``cpu 2.0% mem 882M`` (server) or ``deliver waiting 3`` (queues)."""
    samples = [s for s in log if isinstance(s, dict)]
    if not samples:
        return ""
    cpus = [s["cpu"] for s in samples if is_number(s.get("cpu"))]
    mems = [m["used"] for s in samples if isinstance(m := s.get("mem"), dict) and is_number(m.get("used"))]
    bits = []
    if cpus:
        bits.append(f"cpu {max(cpus) * 100:.1f}%")
    if mems:
        bits.append(f"mem {size_text(max(mems))}")
    if bits:
        return " ".join(bits)
    for queue in ("deliver", "inbox"):
        waiting = [q["waiting"] for s in samples
                   if isinstance(q := s.get(queue), dict) and is_number(q.get("waiting"))]
        if waiting:
            bits.append(f"{queue} waiting {count_text(max(waiting))}")
    return " ".join(bits)


def stats_summary(clean: Callable[[str], str], stats: Any) -> str | None:
    """``cpu 1.0% mem 882M net rx 0B/s tx 0B/s fs r 0/s w 4/s`` or the queue counts (names through
    ``clean``); None if neither."""
    if not isinstance(stats, dict):
        return None
    if "cpu" in stats or "mem" in stats:
        bits = []
        if is_number(stats.get("cpu")):
            bits.append(f"cpu {stats['cpu'] * 100:.1f}%")
        mem = stats.get("mem")
        if isinstance(mem, dict):
            bits.append(f"mem {size_text(mem.get('used', mem.get('active')))}")
        net = stats.get("net")
        if isinstance(net, dict):
            bits.append(f"net rx {size_text(net.get('rx'))}/s tx {size_text(net.get('tx'))}/s")
        fs = stats.get("fs")
        if isinstance(fs, dict):
            bits.append(f"fs r {count_text(fs.get('r'))}/s w {count_text(fs.get('w'))}/s")
        return " ".join(bits)
    queues = [(name, q) for name, q in stats.items() if isinstance(q, dict)]
    if not queues:
        return None
    return ", ".join(
        f"{clean(name)} active {count_text(q.get('active'))} waiting {count_text(q.get('waiting'))}"
        f" delayed {count_text(q.get('delayed'))}"
        for name, q in queues
    )
