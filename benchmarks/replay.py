"""Benchmark: ``mkstream replay`` against jq reading the same file, side by side in one run.

Usage: ``python benchmarks/replay.py [--frames N] [--rounds R] [--keep DIR]``.

It makes, in a temporary directory, ``frames.ndjson`` (N benchmark note frames from ``frames.py``,
about 1.5 KB each, mostly Japanese) and ``rec.ndjson``, the same frames written by mkstream's own
``Recorder`` (a header, then ``{"t":..,"frame":..}`` lines 10 ms apart), plus ``rec.ndjson.gz``.
Each round runs every contestant once, in a rotated order, as a child process whose stdout is a
pipe this script drains; a figure is the wall time from spawn to exit (start-up included, for
mkstream and jq alike). Each ratio is taken within a round (jq's time / mkstream's time), and the
median over the rounds is reported.

The fair anchor is jq on the same file doing the same job: ``jq -c .frame rec.ndjson`` reads the
recording and writes each frame as one compact line, exactly what ``mkstream replay rec.ndjson
--ndjson`` writes (and ``jq -c .frame.body.body.text rec.ndjson`` for ``--jq .body.body.text``);
those two carry the targets (3x and 1x). jq on the plain frames (``jq -c . frames.ndjson``, a
smaller input without the wrapper), the gzip recording and plain frames through mkstream are
shown beside them for information.
"""

from __future__ import annotations

import argparse
import gzip
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from frames import note_frames  # noqa: E402 - beside this file

from misskey_cli.recording.format import Subscriptions  # noqa: E402
from misskey_cli.recording.writer import Recorder  # noqa: E402

MKSTREAM = [sys.executable, "-m", "misskey_cli"]


@dataclass(frozen=True)
class Contestant:
    name: str
    argv: list[str]
    extra_lines: int = 0  # jq writes null for the recording's header line


@dataclass(frozen=True)
class Pair:
    """A mkstream contestant, its anchor, and the ratio it must reach (anchor time / mkstream time)."""

    mkstream: str
    anchor: str
    target: float | None  # None: shown for information


def make_inputs(directory: Path, count: int) -> dict[str, Path]:
    frames = note_frames(count, "localTimeline")
    plain = directory / "frames.ndjson"
    plain.write_bytes(b"".join(frame + b"\n" for frame in frames))
    recording = directory / "rec.ndjson"
    recording.unlink(missing_ok=True)  # the recorder appends
    start = 1795807722.0
    with Recorder.open(str(recording)) as recorder:
        recorder.header("misskey.example", Subscriptions(), start)
        for n in range(0, count, 1000):
            recorder.frames([(frame, False, start + (n + i) * 0.01) for i, frame in enumerate(frames[n:n + 1000])])
    packed = directory / "rec.ndjson.gz"
    with open(recording, "rb") as source, gzip.open(packed, "wb", compresslevel=6) as target:
        shutil.copyfileobj(source, target)
    return {"frames": plain, "rec": recording, "gz": packed}


def contestants(files: dict[str, Path], mkstream: list[str] = MKSTREAM) -> list[Contestant]:
    rec, plain, gz = str(files["rec"]), str(files["frames"]), str(files["gz"])
    return [
        Contestant("mkstream replay rec --ndjson", [*mkstream, "replay", rec, "--ndjson"]),
        Contestant("mkstream replay rec --jq .body.body.text", [*mkstream, "replay", rec, "--jq", ".body.body.text"]),
        Contestant("mkstream replay rec.gz --ndjson", [*mkstream, "replay", gz, "--ndjson"]),
        Contestant("mkstream replay frames --ndjson", [*mkstream, "replay", plain, "--ndjson"]),
        Contestant("jq -c .frame rec", ["jq", "-c", ".frame", rec], 1),
        Contestant("jq -c .frame.body.body.text rec", ["jq", "-c", ".frame.body.body.text", rec], 1),
        Contestant("jq -c . frames", ["jq", "-c", ".", plain]),
        Contestant("jq -c .body.body.text frames", ["jq", "-c", ".body.body.text", plain]),
    ]


PAIRS = [
    Pair("mkstream replay rec --ndjson", "jq -c .frame rec", 3.0),
    Pair("mkstream replay rec --jq .body.body.text", "jq -c .frame.body.body.text rec", 1.0),
    Pair("mkstream replay rec --ndjson", "jq -c . frames", None),
    Pair("mkstream replay rec --jq .body.body.text", "jq -c .body.body.text frames", None),
    Pair("mkstream replay rec.gz --ndjson", "jq -c .frame rec", None),
    Pair("mkstream replay frames --ndjson", "jq -c . frames", 3.0),
]


def run(contestant: Contestant, expected_lines: int) -> float:
    """Seconds from spawn to exit; stdout drained through a pipe and its lines counted."""
    start = time.perf_counter()
    proc = subprocess.Popen(contestant.argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    assert proc.stdout is not None
    lines = 0
    fd = proc.stdout.fileno()
    while True:
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            break
        lines += chunk.count(b"\n")
    _, err = proc.communicate()
    elapsed = time.perf_counter() - start
    if proc.returncode != 0 or lines != expected_lines:
        raise SystemExit(f"{contestant.name}: exit {proc.returncode}, {lines} lines: {err.decode()[:500]}")
    return elapsed


def measure(count: int, rounds: int, mkstream: list[str] = MKSTREAM,
            log: Any = print) -> tuple[list[tuple[Pair, float]], dict[str, list[float]], int]:
    """Run every contestant ``rounds`` times on ``count`` frames; (pair ratios, times, recording bytes).

    ``benchmarks/run.py`` calls this for its report; ``main`` prints the same as tables.
    """
    with tempfile.TemporaryDirectory(prefix="mkstream-replay-bench-") as tmp:
        files = make_inputs(Path(tmp), count)
        field = contestants(files, mkstream)
        times: dict[str, list[float]] = {c.name: [] for c in field}
        for round_number in range(rounds):
            shift = round_number % len(field)
            for contestant in field[shift:] + field[:shift]:
                times[contestant.name].append(run(contestant, count + contestant.extra_lines))
            log(f"  replay round {round_number + 1} done")
        size = files["rec"].stat().st_size
    ratios = [(pair, statistics.median(a / m for a, m in zip(times[pair.anchor], times[pair.mkstream], strict=True)))
              for pair in PAIRS]
    return ratios, times, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--keep", type=Path, help="make the inputs in this directory and keep them")
    args = parser.parse_args()
    if shutil.which("jq") is None:
        raise SystemExit("jq is not installed")
    directory = args.keep or Path(tempfile.mkdtemp(prefix="mkstream-replay-bench-"))
    directory.mkdir(parents=True, exist_ok=True)
    try:
        files = make_inputs(directory, args.frames)
        size = files["rec"].stat().st_size
        print(f"{args.frames:,} note frames; recording {size / 1e6:.1f} MB "
              f"(gzip {files['gz'].stat().st_size / 1e6:.1f} MB); jq "
              f"{subprocess.run(['jq', '--version'], capture_output=True, text=True).stdout.strip()}; "
              f"{os.cpu_count()} cores; {args.rounds} rounds", flush=True)
        field = contestants(files)
        times: dict[str, list[float]] = {c.name: [] for c in field}
        for round_number in range(args.rounds):
            shift = round_number % len(field)
            for contestant in field[shift:] + field[:shift]:
                times[contestant.name].append(run(contestant, args.frames + contestant.extra_lines))
        print()
        print("| contestant | seconds (median) | lines/s | per round |")
        print("|---|---|---|---|")
        for contestant in field:
            median = statistics.median(times[contestant.name])
            rounds = ", ".join(f"{t:.2f}" for t in times[contestant.name])
            print(f"| `{contestant.name}` | {median:.2f} | {args.frames / median:,.0f} | {rounds} |")
        print()
        print("| ratio (anchor time / mkstream time, median of the paired rounds) | measured | target | result |")
        print("|---|---|---|---|")
        for pair in PAIRS:
            ratios = [a / m for a, m in zip(times[pair.anchor], times[pair.mkstream], strict=True)]
            ratio = statistics.median(ratios)
            if pair.target is None:
                target, verdict = "-", "-"
            else:
                target, verdict = f">= {pair.target:g}", "PASS" if ratio >= pair.target else "FAIL"
            print(f"| `{pair.mkstream}` vs `{pair.anchor}` | {ratio:.2f} | {target} | {verdict} |")
    finally:
        if args.keep is None:
            shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
