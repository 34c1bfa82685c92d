"""Benchmark: LineFormatter.format on the benchmark's note frames (frames.py), in frames per second.

Usage: python benchmarks/lineformat.py [count]. Prints one figure per configuration: width 100
plain and coloured, width 40, and no width (pipes). Frames are decoded once, before timing, so
the figure is the formatter's own cost; a last line adds json.loads per frame for comparison.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from frames import note_frames

from misskey_cli.output.lineformat import LineFormatter

TARGET = 20_000  # frames/s on the 2-core reference machine


def measure(frames: list[bytes], *, width: int | None, color: bool, decode: bool = False, rounds: int = 7) -> float:
    """Best of ``rounds`` passes over ``frames``, in frames per second."""
    values = [json.loads(frame) for frame in frames]
    best = float("inf")
    for _ in range(rounds):
        formatter = LineFormatter(width=width, color=color)
        received_at = 1795807722.184
        start = time.perf_counter()
        if decode:
            for frame in frames:
                formatter.format(json.loads(frame), received_at)
        else:
            for value in values:
                formatter.format(value, received_at)
        best = min(best, time.perf_counter() - start)
    return len(frames) / best


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    frames = note_frames(count, "localTimeline")
    mean = sum(map(len, frames)) / len(frames)
    print(f"{count} note frames, mean {mean:.0f} bytes")
    for label, kwargs in (
        ("width 100, no colour", {"width": 100, "color": False}),
        ("width 100, colour", {"width": 100, "color": True}),
        ("width 40, colour", {"width": 40, "color": True}),
        ("no width (pipe), no colour", {"width": None, "color": False}),
        ("width 100, colour, with json.loads", {"width": 100, "color": True, "decode": True}),
    ):
        rate = measure(frames, **kwargs)  # type: ignore[arg-type]
        verdict = "ok" if rate >= TARGET else f"BELOW {TARGET}"
        print(f"{label:36} {rate:10,.0f} frames/s  {verdict}")


if __name__ == "__main__":
    main()
