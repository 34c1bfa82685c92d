"""Instructions per frame of the line formatter, counted by valgrind: a figure this noisy machine
cannot move, for comparing two versions of the code (the timing benchmarks swing by half).

Usage: python benchmarks/instructions.py [frames]. Needs valgrind (Debian: apt install valgrind).
It runs a child under ``valgrind --tool=cachegrind`` twice, once doing one pass over the note
frames and once three, and prints (difference / 2 passes / frames) for each job: ``decode`` alone
(protocol.decode, the cost every output format pays), ``ndjson`` (decode + the NDJSON record) and
``line`` (decode + the ``--format line --width 100`` record).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
CHILD = """
import sys, time
sys.path[:0] = [{here!r}, {root!r}]
from frames import note_frames
from misskey_cli.core import protocol
from misskey_cli.output.lineformat import LineFormatter
from misskey_cli.core.jsoncodec import dumps_line
job, count, passes = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
data = note_frames(count, "localTimeline")
formatter = LineFormatter(width=100, color=False)
start = time.time()
for _ in range(passes):
    for index, frame in enumerate(data):
        value = protocol.decode(frame, False).value
        if job == "ndjson":
            dumps_line(value)
        elif job == "line":
            (formatter.format(value, start + index * 3e-5) + "\\n").encode("utf-8", "replace")
"""


def instructions(job: str, count: int, passes: int) -> int:
    code = CHILD.format(here=str(HERE), root=str(HERE.parent))
    done = subprocess.run(["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null",
                           sys.executable, "-c", code, job, str(count), str(passes)],
                          capture_output=True, text=True, check=True)
    found = re.search(r"I\s+refs:\s+([\d,]+)", done.stderr)
    if found is None:
        raise SystemExit(f"no instruction count from valgrind: {done.stderr[-300:]}")
    return int(found.group(1).replace(",", ""))


def main() -> None:
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (Debian: apt install valgrind)")
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    for job in ("decode", "ndjson", "line"):
        per_frame = (instructions(job, count, 3) - instructions(job, count, 1)) / (2 * count)
        print(f"{job:8s} {per_frame:10,.0f} instructions/frame")


if __name__ == "__main__":
    main()
